"""The 8-class classifier's data, read once from the chain's stage outputs: crops of every split,
GrabCut and ground-truth masks, background patches, the Grad-CAM-masked crops of each seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cnnlab.data.store import CropSet
from cnnlab.data.strategies import ChainData
from cnnlab.io import load_array

EVAL_SPLITS = ("test", "paired")


def class_indices(labels, classes) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[label] for label in labels], np.int64)


def load_crops(crops_dir: str | Path) -> dict[str, CropSet]:
    """train and test crops, and the paired crops when the folder has paired/ images."""
    crops_dir = Path(crops_dir)
    splits = ["train", "test"] + (["paired"] if (crops_dir / "paired_index.csv").is_file() else [])
    return {s: CropSet.load(crops_dir, s) for s in splits}


def load_chain(crops: dict[str, CropSet], segments_dir: str | Path | None, backgrounds_dir: str | Path) -> ChainData:
    """ChainData over the crops; ground-truth masks only when every crop of every split has one."""
    truth = None
    if all(c.index.has_mask.all() for c in crops.values() if len(c.index)):
        truth = {s: c.masks for s, c in crops.items()}
    segments = None
    if segments_dir is not None:
        segments = {s: load_array(Path(segments_dir) / f"{s}_masks.npy") for s in crops}
    return ChainData(
        images={s: c.images for s, c in crops.items()},
        segments=segments,
        truth=truth,
        backgrounds=load_array(Path(backgrounds_dir) / "patches.npy"),
    )


def gradcam_crops(masked_dir: str | Path, seed: int, train: CropSet) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the train split, their Grad-CAM-masked crops) of one seed (gradcam_mask stage)."""
    folder = Path(masked_dir) / f"seed{seed}"
    index = pd.read_csv(folder / "index.csv", dtype=str, keep_default_na=False)
    position = {path: i for i, path in enumerate(train.index.path)}
    rows = np.array([position[path] for path in index.path], np.int64)
    return rows, load_array(folder / "masked_images.npy")


def split_rows(splits_csv: str | Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows) of the train split for one seed, as train_classifier drew them."""
    subset = pd.read_csv(splits_csv)[f"seed{seed}"].to_numpy()
    return np.flatnonzero(subset == "train"), np.flatnonzero(subset == "val")
