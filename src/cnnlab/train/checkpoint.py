"""Saving and loading models: plain state dicts plus the arguments that rebuild the model,
always read back with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import WeightsError
from cnnlab.io import atomic_file
from cnnlab.models import ObjectsCNN
from cnnlab.models.mask_net import MaskNet


def save_checkpoint(path: str | Path, model: nn.Module, *, optimizer=None, **extra) -> None:
    """Write model weights (and optionally optimizer state and extra plain values) atomically."""
    state = {"arch": dict(model.arch), "model": model.state_dict(), **extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    with atomic_file(path, "wb") as f:
        torch.save(state, f)


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """The whole state a checkpoint holds (weights, arch, usage, ...), read with weights_only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model not found; run `dvc repro` to train it")
    return torch.load(path, map_location=device, weights_only=True)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild an objects-chain model from a checkpoint (an ObjectsCNN or the masker's MaskNet, by
    its `arch`); returns (model in eval mode, the whole state). A study model (its arch has a
    `family`) is rebuilt by cnnlab.train.cell.load_study_model, so the chain never imports the
    study's model zoo."""
    state = read_checkpoint(path, device)
    arch = state["arch"]
    if arch.get("family") == "mask_net":
        model = MaskNet(arch["width"])
    elif "family" in arch:
        raise WeightsError(f"{path} holds a {arch['family']} (a study model); load it with "
                           "cnnlab.train.cell.load_study_model")  # fmt: skip
    else:
        model = ObjectsCNN(**arch)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state
