"""The 80/20 train/validation split, stratified and seeded."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def stratified_split(labels, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices), sorted, with every class in the same proportion in both."""
    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=labels)
    return np.sort(train_idx), np.sort(val_idx)
