"""Saving and loading models: plain state dicts plus the arguments that rebuild the model,
always read back with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import WeightsError
from cnnlab.io import atomic_file
from cnnlab.models import ObjectsCNN


def save_checkpoint(path: str | Path, model: nn.Module, *, optimizer=None, **extra) -> None:
    """Write model weights (and optionally optimizer state and extra plain values) atomically."""
    state = {"arch": dict(model.arch), "model": model.state_dict(), **extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    with atomic_file(path, "wb") as f:
        torch.save(state, f)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from a checkpoint (an ObjectsCNN, the masker's MaskNet, or a study family by
    its `arch`); returns (model in eval mode, the whole state)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model not found; run `dvc repro` to train it")
    state = torch.load(path, map_location=device, weights_only=True)
    arch = state["arch"]
    if arch.get("family") == "mask_net":
        from cnnlab.models.mask_net import MaskNet

        model = MaskNet(arch["width"])
    elif "family" in arch:
        from cnnlab.models.zoo import rebuild  # the study's families import torchvision: only when needed

        model = rebuild(arch)
    else:
        model = ObjectsCNN(**arch)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def load_backbone(path: str | Path, family: str) -> tuple[dict, str]:
    """The backbone weights of the pretrain stage's checkpoint (the head left out) for a transfer
    model of `family`, and how to describe them ("pretrained on <dataset> (<source>)")."""
    from cnnlab.models.transfer import backbone_state_dict

    model, state = load_model(path)
    if model.arch["family"] != family:
        raise WeightsError(f"{path} holds a {model.arch['family']} backbone, not a {family} "
                           "(transfer.pretrain must be of the family that loads it)")  # fmt: skip
    usage = state["usage"]
    return backbone_state_dict(model), f"pretrained on {usage['dataset']} ({usage['source']})"
