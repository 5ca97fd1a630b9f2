"""Fit a model while logging every epoch to its MLflow run."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnlab.config import TrainParams
from cnnlab.tracking import StageRun
from cnnlab.train.loop import FitResult, TensorData, fit, to_float
from cnnlab.viz.plots import training_curves


def fit_tracked(
    run: StageRun,
    name: str,
    model: nn.Module,
    train: TensorData,
    val: TensorData,
    cfg: TrainParams,
    *,
    seed: int,
    device: torch.device,
    checkpoint: Path | None = None,
    fingerprint: str | None = None,
    log_model: bool = True,
) -> FitResult:
    """:func:`cnnlab.train.loop.fit`, with per-epoch metrics (prefixed ``name.``), the curves
    figure and (if `log_model`) the trained model logged to the run."""
    result = fit(
        model,
        train,
        val,
        cfg,
        seed=seed,
        device=device,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        name=name,
        on_epoch=lambda row: run.log_epoch(row, row["epoch"], prefix=f"{name}."),
    )
    run.log_figure(training_curves(result.history, title=name), f"{name}_curves.png")
    if not log_model:
        return result
    example = to_float(val.images[:2]).numpy()  # batch 2: a batch of 1 would fix the exported batch size
    run.log_model(model.cpu(), name=name.replace("_", "-"), input_example=example)
    return result
