"""Decoded images on disk: the one format in which stages hand images on (the objects chain's
crops and background patches, the study's prepared datasets), so nothing decodes an image file
twice. A folder holds ``dataset.json`` (name, source, classes, image size, split sizes) and, per
split, ``<split>_images.npy`` (N, 3, S, S) uint8, ``<split>_index.csv`` (id, label and any other
per-image columns; label '' where unknown) and, where there are object masks,
``<split>_masks.npy`` (N, S, S) bool."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cnnlab.io import load_array, save_array, write_csv, write_json


@dataclass
class Split:
    """The images of one split, their index (one row per image) and optional object masks
    (rows without one are all False; the index's `has_mask` column says which have one)."""

    images: np.ndarray  # (N, 3, S, S) uint8
    index: pd.DataFrame  # id, label, ...
    masks: np.ndarray | None = None  # (N, S, S) bool

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labelled(self) -> bool:
        """Every image has a label (and there is at least one)."""
        return len(self) > 0 and bool((self.index.label != "").all())

    def labels(self, classes: list[str]) -> np.ndarray:
        """(N,) int64 class indices into `classes`; -1 where the label is unknown."""
        lookup = {c: i for i, c in enumerate(classes)}
        return np.array([lookup.get(label, -1) for label in self.index.label], np.int64)

    def truth(self, rows=slice(None)) -> np.ndarray | None:
        """The object masks of `rows`, or None unless every one of them has a mask."""
        if self.masks is None or not self.index.has_mask.to_numpy()[rows].all():
            return None
        return self.masks[rows]

    def subset(self, rows) -> "Split":
        rows = np.asarray(rows)
        masks = None if self.masks is None else self.masks[rows]
        return Split(self.images[rows], self.index.iloc[rows].reset_index(drop=True), masks)


@dataclass
class ImageSet:
    name: str
    source: str  # human-readable: which data produced it (recorded with every metric)
    classes: list[str]
    splits: dict[str, Split] = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        return int(next(iter(self.splits.values())).images.shape[-1])


def save_images(data: ImageSet, folder: str | Path) -> None:
    """Write `data` into `folder` (the caller makes it atomic: see cnnlab.io.atomic_dir)."""
    folder = Path(folder)
    for name, split in data.splits.items():
        save_array(folder / f"{name}_images.npy", split.images)
        write_csv(folder / f"{name}_index.csv", split.index)
        if split.masks is not None:
            save_array(folder / f"{name}_masks.npy", split.masks)
    info = {"name": data.name, "source": data.source, "classes": list(data.classes), "image_size": data.image_size,
            "sizes": {name: len(split) for name, split in data.splits.items()}}  # fmt: skip
    write_json(folder / "dataset.json", info)


def read_info(folder: str | Path) -> dict:
    """dataset.json of a folder written by :func:`save_images`."""
    path = Path(folder) / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `dvc repro` to make it")
    return json.loads(path.read_text())


def load_images(folder: str | Path, splits: list[str] | None = None) -> ImageSet:
    """Read what :func:`save_images` wrote (all splits, or those named)."""
    folder = Path(folder)
    info = read_info(folder)
    out = ImageSet(info["name"], info["source"], info["classes"])
    for name in splits or info["sizes"]:
        index = pd.read_csv(folder / f"{name}_index.csv", dtype={"id": str, "label": str}, keep_default_na=False)
        masks = folder / f"{name}_masks.npy"
        out.splits[name] = Split(
            load_array(folder / f"{name}_images.npy"), index, load_array(masks) if masks.is_file() else None
        )
    return out
