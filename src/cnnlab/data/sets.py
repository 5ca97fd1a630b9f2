"""The objects chain's data, read once from its stage outputs: crops of every split, GrabCut and
ground-truth masks, background patches, the Grad-CAM-masked crops of each seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.data.arrays import ImageSet, Split, load_images
from cnnlab.data.strategies import ChainData
from cnnlab.io import load_array


def load_chain(
    crops: ImageSet,
    segments_dir: str | Path | None,
    backgrounds_dir: str | Path,
    learned_dir: str | Path | None = None,
    seeds: list[int] | None = None,
) -> ChainData:
    """ChainData over the crops; ground-truth masks only when every crop of every split has one;
    the learned masker's masks of `seeds` from `learned_dir` (the masker stage's output)."""
    truth = None
    if all(split.truth() is not None for split in crops.splits.values() if len(split)):
        truth = {name: split.masks for name, split in crops.splits.items()}
    segments = None
    if segments_dir is not None:
        segments = {name: load_array(Path(segments_dir) / f"{name}_masks.npy") for name in crops.splits}
    return ChainData(
        images={name: split.images for name, split in crops.splits.items()},
        segments=segments,
        truth=truth,
        backgrounds=load_images(backgrounds_dir).splits["patches"].images,
        learned=None if learned_dir is None else {
            seed: {name: load_array(Path(learned_dir) / f"seed{seed}" / f"{name}_masks.npy") for name in crops.splits}
            for seed in seeds
        },
    )  # fmt: skip


def gradcam_crops(masked_dir: str | Path, seed: int, train: Split) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the train split, their Grad-CAM-masked crops) of one seed (gradcam_mask stage)."""
    masked = load_images(Path(masked_dir) / f"seed{seed}").splits["shortcut"]
    position = {name: i for i, name in enumerate(train.index.id)}
    return np.array([position[name] for name in masked.index.id], np.int64), masked.images

