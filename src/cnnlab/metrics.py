"""Metrics of the background shortcut and of mask quality (definitions: shared/SCIENCE.md)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, recall_score

# a crop's kept fraction outside this range: a degenerate mask (a box says an object is there)
DEGENERATE = (0.05, 0.95)


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
    """Kept-area fraction, the share of degenerate masks and the projection fill of predicted
    masks and, where ground truth is given, their mean IoU.

    Args:
        pred: (N, H, W) bool predicted masks (True = kept as object).
        truth: (N, H, W) bool ground-truth object masks, or None.

    Returns:
        kept_fraction: mean fraction of pixels kept; degenerate_fraction: the share of masks that
        keep under 5% or over 95% of their crop (DEGENERATE: a box says an object is there, so
        such a mask is wrong without ground truth); projection_fill: the mean
        share of a crop's rows and columns that hold a kept pixel (1: the mask reaches every side
        of its box, as the object of a tight box does; BoxInst's projection term); mask_iou: mean
        per-image pixel IoU (jaccard) with the ground truth (1 where both are empty), or None
        without ground truth.
    """
    pred = np.asarray(pred, bool)
    kept = pred.reshape(len(pred), -1).mean(1) if len(pred) else np.zeros(0)
    out = {
        "kept_fraction": float(pred.mean()) if pred.size else 0.0,
        "degenerate_fraction": float(np.mean((kept < DEGENERATE[0]) | (kept > DEGENERATE[1]))) if len(pred) else 0.0,
        "projection_fill": float((pred.any(2).mean(1) + pred.any(1).mean(1)).mean() / 2) if len(pred) else 0.0,
        "mask_iou": None,
    }
    if truth is not None and len(truth):
        out["mask_iou"] = float(np.mean(mask_ious(pred, truth)))
    return out


def mask_ious(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,) the pixel IoU (jaccard) of each mask with its ground truth; 1 where both are empty
    (scikit-learn's jaccard_score with zero_division=1, batched: one call per crop was a tenth of
    the masker stage's time)."""
    pred, truth = np.asarray(pred, bool).reshape(len(pred), -1), np.asarray(truth, bool).reshape(len(truth), -1)
    inter, union = (pred & truth).sum(1), (pred | truth).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


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


def _sd(values: np.ndarray) -> float:
    """Sample standard deviation (n - 1); 0.0 for a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def over_seeds(per_seed: dict[int, dict]) -> dict:
    """Mean and sample standard deviation over seeds of every numeric metric, with the per-seed values.

    Args:
        per_seed: seed -> flat dict of metrics (non-numbers and None are left out).

    Returns:
        metric -> {"mean", "sd" (n - 1 in the denominator; 0.0 for one seed), "per_seed": {seed: value}}.
        A metric missing (or None) for some seed is aggregated over the seeds that have it.
    """
    names = []
    for m in per_seed.values():
        names += [k for k, v in m.items() if _number(v) and k not in names]
    out = {}
    for name in names:
        values = {s: float(m[name]) for s, m in per_seed.items() if _number(m.get(name))}
        arr = np.array(list(values.values()))
        out[name] = {"mean": float(arr.mean()), "sd": _sd(arr), "per_seed": {str(s): v for s, v in values.items()}}
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def paired_difference(a: dict, b: dict, higher_is_better: bool = True) -> dict:
    """a - b over the seeds both have (same seed: same split and initial weights), and whether a is
    better than b: the mean difference, in the direction that is better, exceeds its standard
    deviation over seeds (|mean| - sd > 0), so a single lucky seed is not enough. Needs at least 2
    seeds to call anything better.

    Args:
        a, b: {seed: value} (the "per_seed" of :func:`over_seeds`).
        higher_is_better: False for metrics such as the BG-gap, where lower is better.
    """
    seeds = [s for s in a if s in b]
    d = np.array([a[s] - b[s] for s in seeds])
    mean, sd = (float(d.mean()), _sd(d)) if len(d) else (0.0, 0.0)
    return {
        "mean": mean,
        "sd": sd,
        "per_seed": {s: float(v) for s, v in zip(seeds, d)},
        "better": bool(len(d) > 1 and (mean if higher_is_better else -mean) - sd > 0),
    }


def mean_curves(histories: list[list[dict]]) -> list[dict]:
    """Per-epoch mean of several trainings' histories (each a list of epoch rows); an epoch only
    some trainings reached (early stopping) is averaged over those, `runs` says how many."""
    rows: dict[int, list[dict]] = {}
    for history in histories:
        for row in history:
            rows.setdefault(int(row["epoch"]), []).append(row)
    out = []
    for epoch in sorted(rows):
        group = rows[epoch]
        keys = [k for k in group[0] if k != "epoch"]
        out.append({"epoch": epoch, **{k: float(np.mean([r[k] for r in group])) for k in keys}, "runs": len(group)})
    return out
