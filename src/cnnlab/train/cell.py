"""One run of the CIFAR-10 / ImageNet10 study: train one model on one prepared dataset, validate,
optionally retrain on train+val, and score it. Returns plain values; the study stage writes the
files, draws the figures and logs to MLflow."""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from cnnlab.data.arrays import ImageSet
from cnnlab.errors import ParamsError, WeightsError
from cnnlab.metrics import classification_metrics
from cnnlab.models.zoo import build_model, rebuild
from cnnlab.params.schema import Augment, StudyModel, needs_pretrained
from cnnlab.tensors import TensorData, loss_and_accuracy, predict, seed_everything
from cnnlab.train.checkpoint import read_checkpoint
from cnnlab.train.loop import FitResult, fingerprint, fit
from cnnlab.usage import ModelUsage


@dataclass
class StudyResult:
    model: nn.Module  # the final model (retrained on train+val when retrain_epochs > 0)
    init: str  # how the weights were initialised
    fit: FitResult  # the fit validated on val
    retrain: FitResult | None
    metrics: dict  # headline numbers (metrics/…/metrics.json)
    report: list[dict]  # per-class precision/recall/F1 on val, plus the macro row
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # split -> true class indices (-1: unknown)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # split -> predicted class indices
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N, classes) softmax
    seconds: float = 0.0


@contextmanager
def _one_image_batches(name: str, batch_size: int, images: int):
    """torch's BatchNorm refuses to train on one value per channel: a last batch of one image where
    a layer's output is 1 x 1 (MobileNetV3 at 32 px). Say which key to change instead."""
    try:
        yield
    except ValueError as e:
        if "Expected more than 1 value per channel when training" not in str(e):
            raise
        raise ParamsError(
            f"models.{name}: the last training batch holds 1 image ({images} images, batch_size {batch_size}) and "
            f"BatchNorm cannot train on it at this input size; set models.{name}.batch_size so that the last "
            f"batch holds 2 or more, or a larger models.{name}.input_size"
        ) from None


def _scores(model: nn.Module, images: torch.Tensor, classes: int, device) -> np.ndarray:
    """(N, classes) softmax probabilities (an empty split gives (0, classes))."""
    if not len(images):
        return np.zeros((0, classes), np.float32)
    return torch.softmax(predict(model, images, device), 1).numpy()


def _fit_summary(result: FitResult, retrain_epochs: int) -> dict:
    """How the fit went, and which model gave the test predictions (0: no retraining)."""
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "test_predictions_from": (
            f"model retrained on train+val for {retrain_epochs} epochs" if retrain_epochs else "the validated model"
        ),
    }


def run_study(
    data: ImageSet,
    name: str,
    cfg: StudyModel,
    augment_cfg: Augment,
    *,
    seed: int,
    device: torch.device,
    checkpoint: Path | None = None,
    on_epoch: Callable[[str, dict], None] | None = None,
    pretrained: Path | None = None,
) -> StudyResult:
    """Train model `name` (params `cfg`) on `data`; see docs/manual.md, "The study".

    - single_batch: train on one batch (of `batch_size` images, seeded) without augmentation:
      the training loss should fall to about zero while the validation loss rises.
    - retrain_epochs > 0: after validation, train a fresh model (same seed) on train+val for that
      many epochs; its predictions are the test predictions.
    - pretrained: the pretrain stage's checkpoint, for transfer models that load its backbone.
    """
    from cnnlab.data.augment import build_augment  # torchvision: only where a study trains

    start = time.perf_counter()
    classes = len(data.classes)
    labels = {split: s.labels(data.classes) for split, s in data.splits.items()}
    train, val = (TensorData.from_numpy(data.splits[s].images, labels[s]) for s in ("train", "val"))
    augment = build_augment(augment_cfg, classes, data.image_size) if cfg.augment else None
    if cfg.single_batch:
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: cfg.batch_size]
        train, augment, labels["train"] = train.subset(pick), None, labels["train"][pick.numpy()]
    backbone = load_backbone(pretrained, cfg.family) if pretrained and needs_pretrained(cfg) else None
    seed_everything(seed)
    model, init = build_model(name, cfg, classes, data.image_size, backbone)
    report_epoch = (lambda phase: lambda row: on_epoch(phase, row)) if on_epoch else (lambda phase: None)
    settings = {"model": name, "params": cfg.model_dump(), "augment": augment_cfg.model_dump(), "seed": seed,
                "source": data.source}  # fmt: skip
    if init.startswith("pretrained"):  # a checkpoint trained from another pretrained backbone is not resumed
        settings["backbone"] = hashlib.sha256(Path(pretrained).read_bytes()).hexdigest()
    with _one_image_batches(name, cfg.batch_size, len(train)):
        result = fit(
            model, train, val, cfg, seed=seed, device=device, checkpoint=checkpoint,
            fingerprint=fingerprint(settings, train, val) if checkpoint else None,
            on_epoch=report_epoch("fit"), augment=augment, name=f"{data.name}-{name}",
        )  # fmt: skip
    retrained = None
    train_loss, train_acc = loss_and_accuracy(model, train, device)
    val_loss, _ = loss_and_accuracy(model, val, device)
    probs = {split: _scores(model, t.images, classes, device) for split, t in (("train", train), ("val", val))}
    val_summary, report = classification_metrics(labels["val"], probs["val"].argmax(1), data.classes)
    final = model
    if cfg.retrain_epochs:
        seed_everything(seed)
        final, _ = build_model(name, cfg, classes, data.image_size, backbone)
        both = TensorData(torch.cat([train.images, val.images]), torch.cat([train.labels, val.labels]))
        with _one_image_batches(name, cfg.batch_size, len(both)):
            retrained = fit(
                final, both, None, cfg.model_copy(update={"epochs": cfg.retrain_epochs}), seed=seed, device=device,
                on_epoch=report_epoch("retrain"), augment=augment, name=f"{data.name}-{name} retrain",
            )  # fmt: skip
    test = data.splits["test"]
    probs["test"] = _scores(final, torch.from_numpy(np.ascontiguousarray(test.images)), classes, device)
    preds = {split: p.argmax(1) for split, p in probs.items()}
    metrics = {
        "dataset": data.name, "model": name, "family": cfg.family, "data_source": data.source, "weights": init,
        "sizes": {split: len(s) for split, s in data.splits.items()}, "single_batch": cfg.single_batch,
        "train": {"loss": train_loss, "accuracy": train_acc}, "val": {"loss": val_loss, **val_summary},
        **_fit_summary(result, cfg.retrain_epochs if retrained else 0),
    }  # fmt: skip
    if test.labelled:
        metrics["test"], _ = classification_metrics(labels["test"], preds["test"], data.classes)
    return StudyResult(
        model=final, init=init, fit=result, retrain=retrained, metrics=metrics, report=report, labels=labels,
        predictions=preds, probabilities=probs, seconds=time.perf_counter() - start,
    )  # fmt: skip


def load_study_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a study model (one of cnnlab.models.zoo's families) from its checkpoint; returns
    (model in eval mode, the whole state)."""
    state = read_checkpoint(path, device)
    model = rebuild(state["arch"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def load_backbone(path: str | Path, family: str) -> tuple[dict, str]:
    """The backbone weights of the pretrain stage's checkpoint (the head left out) for a transfer
    model of `family`, and how to describe them ("pretrained on <dataset> (<source>)")."""
    from cnnlab.models.transfer import backbone_state_dict

    model, state = load_study_model(path)
    if model.arch["family"] != family:
        raise WeightsError(f"{path} holds a {model.arch['family']} backbone, not a {family} "
                           "(transfer.pretrain must be of the family that loads it)")  # fmt: skip
    usage = ModelUsage.from_dict(state.get("usage") or {}, str(path))
    return backbone_state_dict(model), f"pretrained on {usage.dataset} ({usage.source})"
