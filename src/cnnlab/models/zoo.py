"""Build the study's models from their params (`family` and its settings); rebuild them from a
checkpoint's `arch`."""

from __future__ import annotations

from torch import nn
from torchvision.transforms import v2

from cnnlab.errors import ParamsError, WeightsError
from cnnlab.models.cifar import MishCNN, SimpleCNN
from cnnlab.models.imagenet10_cnn import ImageNet10CNN
from cnnlab.models.resnet import ResNet
from cnnlab.models.transfer import BACKBONES, TransferNet, imagenet_state_dict
from cnnlab.params.schema import StudyModel


class Resized(nn.Module):
    """Resize inputs to `size` x `size` before `model` (for a model that needs another size)."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.resize = v2.Resize((size, size), antialias=True)
        self.model = model

    def forward(self, x):
        return self.model(self.resize(x))


def _build(arch: dict, state_dict: dict | None = None) -> nn.Module:
    family, classes = arch["family"], arch["num_classes"]
    size = arch["input_size"] if arch.get("input_size") else arch["image_size"]  # input_size 0: the image size
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
        raise ValueError(f"unknown model family {family!r}")
    return Resized(model, size) if size != arch["image_size"] else model


def _pretrained(name: str, backbone: tuple[dict, str] | None) -> tuple[dict, str]:
    if backbone is None:
        raise ParamsError(f"models.{name} loads the pretrain stage's backbone: list it in transfer.models")
    return backbone


def build_model(
    name: str, cfg: StudyModel, num_classes: int, image_size: int, pretrained: tuple[dict, str] | None = None
) -> tuple[nn.Module, str]:
    """A fresh model for (image_size x image_size) inputs; returns (model, how its weights were initialised).

    Transfer models load their backbone by `weights`: imagenet (torchvision's ImageNet weights; where
    these cannot be had, by `fallback`: the pretrained backbone, random weights, or a
    :class:`WeightsError`), pretrained (`pretrained`: the pretrain stage's backbone weights and
    how to describe them, from :func:`cnnlab.train.cell.load_backbone`) or none.
    """
    # the family's own settings (not its training): what rebuilds the model from a checkpoint
    own = cfg.model_dump(exclude=set(StudyModel.model_fields))
    arch = {"num_classes": num_classes, "image_size": image_size, **own}
    family = cfg.family
    state, init = None, "random"
    if family in BACKBONES and cfg.weights == "imagenet":
        try:
            state, init = imagenet_state_dict(family), "imagenet"
        except WeightsError as e:
            if cfg.fallback == "error":
                raise WeightsError(f"models.{name}: {e}") from None
            if cfg.fallback == "pretrained":
                state, init = _pretrained(name, pretrained)
            init = f"{init} (ImageNet weights unavailable; fallback: {cfg.fallback})"
    elif family in BACKBONES and cfg.weights == "pretrained":
        state, init = _pretrained(name, pretrained)
    try:
        model = _build(arch, state)
    except ValueError as e:  # an input size the architecture cannot take
        raise ParamsError(f"models.{name}: {e}; set models.{name}.input_size") from None
    model.arch = arch
    return model, init


def rebuild(arch: dict) -> nn.Module:
    """The model described by a checkpoint's `arch`, with fresh weights (load the state dict next)."""
    model = _build(arch)
    model.arch = dict(arch)
    return model
