"""The 8-class classifier's training data: crops as they are (baseline) and with the shortcut
class's crops replaced by their Grad-CAM-masked versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cnnlab.data.store import CropSet
from cnnlab.io import load_array
from cnnlab.train.loop import TensorData


def class_indices(labels, classes) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[label] for label in labels], np.int64)


def baseline_and_masked(crops: CropSet, masked_dir: str | Path, classes) -> tuple[TensorData, TensorData]:
    """(unmasked, masked) training sets over the same rows, in the same order."""
    masked_dir = Path(masked_dir)
    index = pd.read_csv(masked_dir / "index.csv", dtype=str, keep_default_na=False)
    position = {path: i for i, path in enumerate(crops.index.path)}
    rows = np.array([position[path] for path in index.path], np.int64)
    images = crops.images.copy()
    images[rows] = load_array(masked_dir / "masked_images.npy")
    labels = class_indices(crops.index.label, classes)
    return TensorData.from_numpy(crops.images, labels), TensorData.from_numpy(images, labels)
