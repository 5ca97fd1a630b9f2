"""Decoded crops on disk: one uint8 array per split, (N, 3, S, S), beside an index CSV, so
training never decodes image files again (and this module needs no torchvision)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cnnlab.io import load_array, save_array, write_csv


@dataclass
class CropSet:
    """Crops of one split: images (N, 3, S, S) uint8, index (path, label, has_mask), masks (N, S, S) bool."""

    images: np.ndarray
    index: pd.DataFrame
    masks: np.ndarray

    def save(self, folder: str | Path, split: str) -> None:
        folder = Path(folder)
        save_array(folder / f"{split}_images.npy", self.images)
        save_array(folder / f"{split}_masks.npy", self.masks)
        write_csv(folder / f"{split}_index.csv", self.index)

    @classmethod
    def load(cls, folder: str | Path, split: str) -> "CropSet":
        folder = Path(folder)
        index = pd.read_csv(folder / f"{split}_index.csv", dtype={"path": str, "label": str}, keep_default_na=False)
        return cls(load_array(folder / f"{split}_images.npy"), index, load_array(folder / f"{split}_masks.npy"))
