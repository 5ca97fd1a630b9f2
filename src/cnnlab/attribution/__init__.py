"""Attribution: Grad-CAM masks (captum)."""
