"""The 80/20 train/validation split, stratified and seeded."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from cnnlab.errors import DatasetError


def stratified_split(labels, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices), sorted, with every class in the same proportion in both."""
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    n_val = int(np.ceil(val_fraction * len(labels)))
    if counts.min() < 2 or n_val < len(values) or len(labels) - n_val < len(values):
        raise DatasetError(
            f"too few images for a stratified {1 - val_fraction:.0%}/{val_fraction:.0%} split: class "
            f"{str(values[counts.argmin()])!r} has {counts.min()} of {len(labels)} images "
            f"across {len(values)} classes; "
            "every class needs at least 2 and each side of the split one per class (add images or change val_fraction)"
        )
    idx = np.arange(len(labels))
    train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=labels)
    return np.sort(train_idx), np.sort(val_idx)


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices (in order) of the first `per_class` images of every class (all when 0)."""
    if not per_class:
        return np.arange(len(labels))
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))
