"""The 80/20 train/validation split, stratified and seeded; the objects chain's per-seed split,
written once by the crop stage (splits.csv) and read by every step that trains or validates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from cnnlab.errors import DatasetError
from cnnlab.io import write_csv


def stratified_split(labels, val_fraction: float, seed: int, classes=None) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices), sorted, with every class in the same proportion in both.
    `classes`: the class names of the label indices (the error names a class by its folder)."""
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    n_val = int(np.ceil(val_fraction * len(labels)))
    if counts.min() < 2 or n_val < len(values) or len(labels) - n_val < len(values):
        fewest = values[counts.argmin()]
        name = classes[int(fewest)] if classes is not None else fewest
        raise DatasetError(
            f"too few images for a stratified {1 - val_fraction:.0%}/{val_fraction:.0%} split: class "
            f"{str(name)!r} has {counts.min()} of {len(labels)} images "
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


def write_splits(path: str | Path, ids, labels, val_fraction: float, seeds: list[int], classes=None) -> None:
    """splits.csv: one row per image (`id`) and one column per seed (`seed<N>`: train or val), the
    stratified split of `labels` (indices into `classes`, the names an error gives) that seed draws."""
    frame = pd.DataFrame({"id": list(ids)})
    for seed in seeds:
        _, val_idx = stratified_split(labels, val_fraction, seed, classes)
        frame[f"seed{seed}"] = np.where(np.isin(np.arange(len(frame)), val_idx), "val", "train")
    write_csv(path, frame)


def read_split(path: str | Path, seed: int, ids) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows) of one seed from splits.csv (write_splits), checked against the
    images it splits (`ids`, in order)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if f"seed{seed}" not in frame:
        seeds = ", ".join(c for c in frame.columns if c != "id")
        raise DatasetError(f"{path} has no column seed{seed} (it has {seeds}); run `dvc repro` to rewrite it")
    if frame.id.tolist() != [str(i) for i in ids]:
        raise DatasetError(f"{path} splits other images than the crops beside it; run `dvc repro` to rewrite it")
    subset = frame[f"seed{seed}"].to_numpy()
    return np.flatnonzero(subset == "train"), np.flatnonzero(subset == "val")
