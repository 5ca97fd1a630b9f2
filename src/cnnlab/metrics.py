"""Metrics of the background shortcut and of mask quality (definitions: shared/SCIENCE.md)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, jaccard_score, recall_score


def shortcut_metrics(y_true, y_pred, *, shortcut_class: int, num_classes: int) -> dict:
    """Accuracy, rate of predictions of the shortcut class and the worst per-class recall.

    Args:
        y_true, y_pred: integer class indices of equal length.
        shortcut_class: index of the class whose background the shifted test set shares.
        num_classes: number of classes (a class never predicted or absent still counts).

    Returns:
        accuracy; shortcut_rate (fraction of predictions equal to `shortcut_class`, chance
        1/num_classes); worst_class_recall (minimum recall over the classes present in y_true);
        recall (per-class list, None for classes absent from y_true).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(num_classes))
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    present = np.isin(labels, y_true)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "shortcut_rate": float(np.mean(y_pred == shortcut_class)),
        "worst_class_recall": float(recall[present].min()),
        "recall": [float(r) if p else None for r, p in zip(recall, present)],
    }


def mask_quality(pred: np.ndarray, truth: np.ndarray | None = None) -> dict:
    """Kept-area fraction of predicted masks and, where ground truth is given, their mean IoU.

    Args:
        pred: (N, H, W) bool predicted masks (True = kept as object).
        truth: (N, H, W) bool ground-truth object masks, or None.

    Returns:
        kept_fraction: mean fraction of pixels kept; mask_iou: mean per-image pixel IoU
        (jaccard) with the ground truth, or None without ground truth.
    """
    pred = np.asarray(pred, bool)
    out = {"kept_fraction": float(pred.mean()) if pred.size else 0.0, "mask_iou": None}
    if truth is not None and len(truth):
        ious = [jaccard_score(t.ravel(), p.ravel(), zero_division=1.0) for p, t in zip(pred, np.asarray(truth, bool))]
        out["mask_iou"] = float(np.mean(ious))
    return out


def classification_metrics(y_true, y_pred, classes: list[str]) -> tuple[dict, list[dict]]:
    """Accuracy and macro precision/recall/F1, plus one row per class (scikit-learn).

    Returns:
        (summary: accuracy, macro_precision, macro_recall, macro_f1;
         rows: class, precision, recall, f1, support for every class, then a "macro avg" row).
        Classes without predictions or without examples score 0 (zero_division=0).
    """
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    summary = {
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_precision": float(mp),
        "macro_recall": float(mr),
        "macro_f1": float(mf),
    }
    rows = [
        {"class": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    ]
    rows.append({"class": "macro avg", "precision": float(mp), "recall": float(mr), "f1": float(mf),
                 "support": int(s.sum())})  # fmt: skip
    return summary, rows
