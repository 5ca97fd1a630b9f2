"""One run of the CIFAR-10 / ImageNet10 study: train one model family on one prepared dataset,
validate, optionally retrain on train+val, and score it. Returns plain values; the stage writes
files and :class:`cnnlab.tracking.StageRun` logs them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from cnnlab.config import AugmentParams, ModelParams, to_flat_dict
from cnnlab.data.augment import build_augment
from cnnlab.data.sources import Prepared
from cnnlab.metrics import classification_metrics
from cnnlab.models.zoo import build_model
from cnnlab.train.loop import FitResult, TensorData, evaluate, fit, predict, seed_everything


@dataclass
class StudyResult:
    model: nn.Module  # the final model (retrained on train+val when retrain_epochs > 0)
    init: str  # how the weights were initialised
    fit: FitResult  # the fit validated on val
    retrain: FitResult | None
    metrics: dict  # headline numbers (metrics/…/metrics.json)
    report: list[dict]  # per-class precision/recall/F1 on val, plus the macro row
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # split -> predicted class indices
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, classes) softmax
    seconds: float = 0.0


def fingerprint(family: str, cfg: ModelParams, augment: AugmentParams, data: Prepared, seed: int) -> str:
    """What a resumable checkpoint must match: the model's and augmentation's params, the seed
    and the training data."""
    h = hashlib.sha256()
    h.update(json.dumps([family, to_flat_dict(cfg), to_flat_dict(augment), seed, data.source], sort_keys=True).encode())
    for split in ("train", "val"):
        h.update(data.splits[split].labels.tobytes())
        h.update(data.splits[split].images[:: max(1, len(data.splits[split]) // 64)].tobytes())
    return h.hexdigest()


def _tensors(data: Prepared, split: str) -> TensorData:
    s = data.splits[split]
    return TensorData.from_numpy(s.images, s.labels)


def run_study(
    data: Prepared,
    family: str,
    cfg: ModelParams,
    augment_cfg: AugmentParams,
    *,
    seed: int,
    device: torch.device,
    checkpoint: Path | None = None,
    on_epoch: Callable[[str, dict], None] | None = None,
) -> StudyResult:
    """Train `family` on `data` as its params say; see the README's "Study" section.

    - single_batch: train on one batch (of `batch_size` images, seeded) without augmentation:
      the training loss should fall to about zero while the validation loss rises.
    - retrain_epochs > 0: after validation, train a fresh model (same seed) on train+val for that
      many epochs; its predictions are the test predictions.
    """
    start = time.perf_counter()
    classes = len(data.classes)
    train, val = _tensors(data, "train"), _tensors(data, "val")
    augment = build_augment(augment_cfg, classes, data.image_size) if cfg.augment else None
    if cfg.single_batch:
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: cfg.batch_size]
        train, augment = train.subset(pick), None
    seed_everything(seed)
    model, init = build_model(family, cfg, classes, data.image_size)
    report_epoch = (lambda phase: lambda row: on_epoch(phase, row)) if on_epoch else (lambda phase: None)
    result = fit(
        model, train, val, cfg, seed=seed, device=device, checkpoint=checkpoint,
        fingerprint=fingerprint(family, cfg, augment_cfg, data, seed) if checkpoint else None,
        on_epoch=report_epoch("fit"), augment=augment, name=f"{data.name}-{family}",
    )  # fmt: skip
    retrained = None
    train_loss, train_acc = evaluate(model, train, device)
    val_loss, _ = evaluate(model, val, device)
    preds, probs = {}, {}
    for split, tensors in (("train", train), ("val", val)):
        logits = predict(model, tensors.images, device)
        probs[split] = torch.softmax(logits, 1).numpy()
        preds[split] = probs[split].argmax(1)
    val_summary, report = classification_metrics(val.labels.numpy(), preds["val"], data.classes)
    final = model
    if cfg.retrain_epochs:
        seed_everything(seed)
        final, _ = build_model(family, cfg, classes, data.image_size)
        both = TensorData(torch.cat([train.images, val.images]), torch.cat([train.labels, val.labels]))
        retrained = fit(
            final, both, None, dataclasses.replace(cfg, epochs=cfg.retrain_epochs), seed=seed, device=device,
            on_epoch=report_epoch("retrain"), augment=augment, name=f"{data.name}-{family} retrain",
        )  # fmt: skip
    test = data.splits["test"]
    test_logits = predict(final, torch.from_numpy(np.ascontiguousarray(test.images)), device)
    probs["test"] = torch.softmax(test_logits, 1).numpy() if len(test) else np.zeros((0, classes), np.float32)
    preds["test"] = probs["test"].argmax(1) if len(test) else np.zeros(0, np.int64)
    metrics = {
        "dataset": data.name,
        "model": family,
        "data_source": data.source,
        "weights": init,
        "sizes": {split: len(s) for split, s in data.splits.items()},
        "single_batch": cfg.single_batch,
        "train": {"loss": train_loss, "accuracy": train_acc},
        "val": {"loss": val_loss, **val_summary},
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "test_predictions_from": (
            f"model retrained on train+val for {cfg.retrain_epochs} epochs" if retrained else "the validated model"
        ),
    }
    if len(test) and (test.labels >= 0).all():
        test_summary, _ = classification_metrics(test.labels, preds["test"], data.classes)
        metrics["test"] = test_summary
    return StudyResult(
        model=final, init=init, fit=result, retrain=retrained, metrics=metrics, report=report,
        predictions=preds, probabilities=probs, seconds=time.perf_counter() - start,
    )  # fmt: skip
