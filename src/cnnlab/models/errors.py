"""Errors of the model builders, in a module of their own so that catching them (every stage
does, in cnnlab.stage) does not import torchvision."""


class WeightsError(RuntimeError):
    """Pretrained weights are neither in the local torch cache nor downloadable."""
