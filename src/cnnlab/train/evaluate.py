"""Scoring one trained classifier for the objects chain."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnlab.metrics import shortcut_metrics
from cnnlab.train.loop import TensorData, predict


def score_classifier(
    model: nn.Module,
    val: TensorData,
    test_images: torch.Tensor,
    test_labels: np.ndarray | None,
    backgrounds: TensorData,
    *,
    shortcut: int,
    num_classes: int,
    device: torch.device,
) -> tuple[dict, np.ndarray]:
    """Shortcut metrics of one classifier; returns (metrics, test predictions as class indices).

    Args:
        val: the validation split (as this model saw it: masked or not).
        test_images: (N, 3, S, S) uint8 test crops; test_labels: their class indices, or None.
        backgrounds: background-only patches labelled with the class they were cut from; a model
            that scores well above chance on them reads backgrounds (a leakage check).
    """
    val_pred = predict(model, val.images, device).argmax(1).numpy()
    test_pred = predict(model, test_images, device).argmax(1).numpy()
    bg_pred = predict(model, backgrounds.images, device).argmax(1).numpy()
    val_m = shortcut_metrics(val.labels.numpy(), val_pred, shortcut_class=shortcut, num_classes=num_classes)
    m = {
        "val": val_m,
        "val_accuracy": val_m["accuracy"],
        "test_shortcut_rate": float(np.mean(test_pred == shortcut)) if len(test_pred) else None,
        "background_only_accuracy": float(np.mean(bg_pred == backgrounds.labels.numpy())),
    }
    if test_labels is not None:
        t = shortcut_metrics(test_labels, test_pred, shortcut_class=shortcut, num_classes=num_classes)
        m.update(
            test_accuracy=t["accuracy"],
            test_val_ratio=t["accuracy"] / max(m["val_accuracy"], 1e-12),
            test_worst_class_recall=t["worst_class_recall"],
            test_recall=t["recall"],
        )
    return m, test_pred
