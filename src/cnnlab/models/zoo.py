"""Build the study's models by name from their params; rebuild them from a checkpoint's `arch`."""

from __future__ import annotations

from torch import nn
from torchvision.transforms import v2

from cnnlab.config import ModelParams, ParamsError
from cnnlab.models.cifar import MishCNN, SimpleCNN
from cnnlab.models.imagenet10_cnn import ImageNet10CNN
from cnnlab.models.resnet import ResNet
from cnnlab.models.transfer import BACKBONES, TransferNet, WeightsError, imagenet_state_dict

FAMILIES = ("simple_cnn", "mish_cnn", "imagenet10_cnn", "resnet", "mobilenet_v3", "inception_v3")


class Resized(nn.Module):
    """Resize inputs to `size` x `size` before `model` (for a model that needs another size)."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.resize = v2.Resize((size, size), antialias=True)
        self.model = model

    def forward(self, x):
        return self.model(self.resize(x))


def _build(arch: dict, state_dict: dict | None = None) -> nn.Module:
    family, classes, size = arch["family"], arch["num_classes"], arch["input_size"]
    if family in BACKBONES:
        return TransferNet(
            family,
            classes,
            input_size=size,
            head_hidden=arch["head_hidden"],
            dropout=arch["dropout"],
            freeze_backbone=arch["freeze_backbone"],
            state_dict=state_dict,
        )
    if family == "simple_cnn":
        model = SimpleCNN(classes, size, arch["dropout"])
    elif family == "mish_cnn":
        model = MishCNN(classes, size, arch["dropout"])
    elif family == "imagenet10_cnn":
        model = ImageNet10CNN(classes, size, arch["dropout"])
    elif family == "resnet":
        model = ResNet(classes, arch["width"])
    else:
        raise ValueError(f"unknown model {family!r}; valid names: {', '.join(FAMILIES)}")
    return Resized(model, size) if size != arch["image_size"] else model


def build_model(family: str, cfg: ModelParams, num_classes: int, image_size: int) -> tuple[nn.Module, str]:
    """A fresh model for (image_size x image_size) inputs; returns (model, how its weights were initialised).

    Transfer models with `weights: imagenet` load torchvision's ImageNet weights; when these are
    unavailable they fail with :class:`WeightsError`, unless `allow_random_init` is set, in which
    case the returned description says so.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model {family!r}; valid names: {', '.join(FAMILIES)}")
    arch = {
        "family": family,
        "num_classes": num_classes,
        "image_size": image_size,
        "input_size": cfg.input_size or image_size,
        "dropout": cfg.dropout,
        "width": cfg.width,
        "head_hidden": cfg.head_hidden,
        "freeze_backbone": cfg.freeze_backbone,
    }
    state, init = None, "random"
    if family in BACKBONES and cfg.weights == "imagenet":
        try:
            state, init = imagenet_state_dict(family), "imagenet"
        except WeightsError:
            if not cfg.allow_random_init:
                raise
            init = "random (ImageNet weights unavailable; allow_random_init is set)"
    try:
        model = _build(arch, state)
    except ValueError as e:  # an input size the architecture cannot take
        raise ParamsError(f"models.{family}: {e}; set models.{family}.input_size") from None
    model.arch = arch
    return model, init


def rebuild(arch: dict) -> nn.Module:
    """The model described by a checkpoint's `arch`, with fresh weights (load the state dict next)."""
    model = _build(arch)
    model.arch = dict(arch)
    return model
