"""Scoring the objects chain's classifiers: one (strategy, seed) at a time, then the strategies
compared over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from cnnlab.data.strategies import BASELINE, RECOMMENDABLE, UPPER_BOUND
from cnnlab.metrics import paired_difference, shortcut_metrics
from cnnlab.tensors import TensorData, predict


def _labels_of(pred: torch.Tensor) -> np.ndarray:
    return pred.argmax(1).numpy()


def score_classifier(
    model: nn.Module,
    val: TensorData,
    test_images: torch.Tensor,
    test_labels: np.ndarray | None,
    backgrounds: TensorData,
    *,
    shortcut: int | None,
    num_classes: int,
    device: torch.device,
    paired_images: torch.Tensor | None = None,
    paired_rows: np.ndarray | None = None,
) -> tuple[dict, np.ndarray]:
    """Shortcut metrics of one classifier; returns (metrics, test predictions as class indices).

    Args:
        val: the validation split (as this model's strategy saw it).
        test_images: (N, 3, S, S) uint8 test crops (as its strategy treats them at test time);
            test_labels: their class indices, or None.
        backgrounds: background-only patches labelled with the class they were cut from; a model
            that scores well above chance on them reads backgrounds (a leakage check).
        paired_images, paired_rows: the same objects as test rows `paired_rows`, on their own
            class's background: BG-gap = accuracy on these - accuracy on those test rows.

    Metric names say "shortcut class" for the class whose background the test images share;
    `shortcut` None (no class shares it): those metrics are left out.
    """
    val_pred = _labels_of(predict(model, val.images, device))
    test_pred = _labels_of(predict(model, test_images, device))
    bg_pred = _labels_of(predict(model, backgrounds.images, device))
    val_m = shortcut_metrics(val.labels.numpy(), val_pred, shortcut_class=shortcut, num_classes=num_classes)
    m = {"val_accuracy": val_m["accuracy"]}
    if shortcut is not None:
        m["test_shortcut_rate"] = float(np.mean(test_pred == shortcut)) if len(test_pred) else None
    m["background_only_accuracy"] = float(np.mean(bg_pred == backgrounds.labels.numpy()))
    if test_labels is not None:
        t = shortcut_metrics(test_labels, test_pred, shortcut_class=shortcut, num_classes=num_classes)
        m.update(
            test_accuracy=t["accuracy"],
            test_val_ratio=t["accuracy"] / max(m["val_accuracy"], 1e-12),
            test_worst_class_recall=t["worst_class_recall"],
            test_recall=t["recall"],
        )
        if shortcut is not None:
            m["shortcut_class_test_recall"] = t["recall"][shortcut]
        if paired_images is not None and len(paired_rows):
            own = _labels_of(predict(model, paired_images, device))
            truth = test_labels[paired_rows]
            m["own_background_accuracy"] = float(np.mean(own == truth))
            m["shortcut_background_accuracy"] = float(np.mean(test_pred[paired_rows] == truth))
            m["bg_gap"] = m["own_background_accuracy"] - m["shortcut_background_accuracy"]
    return m, test_pred


COMPARED = ("test_accuracy", "test_val_ratio", "shortcut_class_test_recall", "test_shortcut_rate",
            "test_worst_class_recall", "bg_gap")  # fmt: skip
TABLE = ("val_accuracy", *COMPARED, "background_only_accuracy", "train_mask_iou", "test_mask_iou",
         "test_mask_degenerate")  # fmt: skip
LOWER_IS_BETTER = {"test_shortcut_rate", "bg_gap"}  # fewer shortcut-class answers; a smaller BG-gap


def comparison(results: dict) -> dict:
    """Paired differences of each strategy against the baseline; the recommended strategy, chosen
    on validation crops only (:func:`recommend`); and the best non-oracle strategy by mean test
    accuracy (reported only: nothing is chosen by it).

    Args:
        results: strategy -> metric -> over-seeds record (:func:`cnnlab.metrics.over_seeds`), or
            {"skipped": why}.
    """
    out = {}
    if BASELINE in results:
        for name, agg in results.items():
            if name == BASELINE or "skipped" in agg:
                continue
            out[f"{name}_minus_{BASELINE}"] = {
                k: paired_difference(agg[k]["per_seed"], results[BASELINE][k]["per_seed"], k not in LOWER_IS_BETTER)
                for k in COMPARED
                if k in agg and k in results[BASELINE]
            }
    out |= recommend(results)
    ranked = [
        (agg["test_accuracy"]["mean"], n) for n, agg in results.items() if "test_accuracy" in agg and n != UPPER_BOUND
    ]
    if ranked:
        out["best_on_test"] = max(ranked)[1]
        out["best_on_test_note"] = "highest mean test accuracy over seeds, oracle excluded: reported, never chosen by"
    return out


def recommend(results: dict) -> dict:
    """{recommended, recommended_chosen_by}: the cure of RECOMMENDABLE (cnnlab.data.strategies)
    with the highest mean validation accuracy over seeds (ties: the first); where none of them
    ran, the highest among the others, the oracle excluded. No test crop or label is read."""
    ran = {n: agg["val_accuracy"]["mean"] for n, agg in results.items() if "val_accuracy" in agg and n != UPPER_BOUND}
    pool = {n: v for n, v in ran.items() if n in RECOMMENDABLE} or ran
    if not pool:
        return {}
    name = max(pool, key=lambda n: (pool[n], -list(pool).index(n)))
    if set(pool) <= set(RECOMMENDABLE):
        among = f"the cures whose validation crops are masked or randomised as their training crops ({', '.join(pool)})"
    else:
        among = f"every cure that ran, the oracle excluded (none of {', '.join(RECOMMENDABLE)} ran)"
    return {"recommended": name,
            "recommended_chosen_by": f"highest mean validation accuracy over seeds among {among}; no test crop or "
                                     "label is read"}  # fmt: skip


def comparison_table(results: dict) -> pd.DataFrame:
    """One row per strategy: a note, then mean and sd over seeds of each metric of TABLE."""
    rows = []
    for name, agg in results.items():
        note = agg.get("skipped", "upper bound (ground-truth masks)" if name == UPPER_BOUND else "")
        row = {"strategy": name, "note": note}
        for k in TABLE:
            if k in agg:
                row[f"{k}_mean"], row[f"{k}_sd"] = agg[k]["mean"], agg[k]["sd"]
        rows.append(row)
    return pd.DataFrame(rows)
