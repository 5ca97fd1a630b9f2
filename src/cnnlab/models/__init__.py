"""Model families, each built from a small config."""

from cnnlab.models.objects_cnn import ObjectsCNN

__all__ = ["ObjectsCNN"]
