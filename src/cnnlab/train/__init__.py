"""The one training loop, checkpoints and evaluation."""
