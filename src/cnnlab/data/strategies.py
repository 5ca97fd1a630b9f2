"""Cures of the background shortcut: what each strategy trains on and what it does to a crop at
test time. Arrays in, arrays out (uint8 crops (N, 3, S, S), bool masks (N, S, S)).

| strategy   | training crops                                             | test crops        |
|------------|------------------------------------------------------------|-------------------|
| none       | as they are (the baseline)                                 | as they are       |
| report     | the shortcut class's background blacked out by Grad-CAM    | as they are       |
| segment    | every crop's background blacked out (GrabCut masks)        | the same masking  |
| mixed_rand | every object (GrabCut mask) pasted on a random background  | as they are       |
|            | patch of a random class (Xiao et al. 2020, Mixed-Rand)     |                   |
| oracle     | `segment` with the ground-truth masks: an upper bound      | the same masking  |

`report` is the reference report's cure; it leaves "black background" as a cue of the shortcut
class. `segment` treats every crop alike, so neither a background nor the fill is tied to a class;
`mixed_rand` makes backgrounds independent of the label instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.config import STRATEGIES

BASELINE = "none"
UPPER_BOUND = "oracle"  # reported, never chosen as the best strategy
TEST_TIME_MASKS = {"segment": "segments", "oracle": "truth"}  # strategies that mask test crops too


def black_fill(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Crops with every pixel outside its mask set to 0."""
    return images * masks[:, None].astype(images.dtype)


def composite(images: np.ndarray, masks: np.ndarray, backgrounds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each crop's masked object on a background patch drawn uniformly from `backgrounds` (N_bg, 3, S, S)."""
    pick = rng.integers(0, len(backgrounds), len(images))
    return np.where(masks[:, None], images, backgrounds[pick])


@dataclass
class ChainData:
    """What the strategies read. `segments` and `truth` map a split name (train, test, paired) to
    its masks; `truth` is None where the folder lacks a ground-truth mask for some crop."""

    images: dict[str, np.ndarray]  # split -> (N, 3, S, S) uint8 crops
    segments: dict[str, np.ndarray] | None
    truth: dict[str, np.ndarray] | None
    backgrounds: np.ndarray  # (N_bg, 3, S, S) uint8 background-only patches of every class


def unavailable(strategy: str, data: ChainData) -> str | None:
    """Why `strategy` cannot run on this data (None when it can)."""
    if strategy == "oracle" and data.truth is None:
        return "the dataset folder has no ground-truth mask (masks/<path>.png) for every crop"
    if strategy in ("segment", "mixed_rand") and data.segments is None:
        return "no GrabCut masks (the segment stage's output)"
    return None


def train_images(
    strategy: str,
    data: ChainData,
    seed: int,
    gradcam: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The training crops (every row of the train split, val rows included) as `strategy` sees them.

    Args:
        gradcam: for `report`: (row indices into the train split, their Grad-CAM-masked crops).
        seed: draws the backgrounds of `mixed_rand`.
    """
    train = data.images["train"]
    if strategy == "none":
        return train
    if strategy == "report":
        if gradcam is None:
            raise ValueError("strategy 'report' needs the Grad-CAM-masked crops of the shortcut class")
        rows, masked = gradcam
        out = train.copy()
        out[rows] = masked
        return out
    if strategy == "segment":
        return black_fill(train, data.segments["train"])
    if strategy == "mixed_rand":
        return composite(train, data.segments["train"], data.backgrounds, np.random.default_rng([seed, 7]))
    if strategy == "oracle":
        return black_fill(train, data.truth["train"])
    raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")


def eval_images(strategy: str, data: ChainData, split: str) -> np.ndarray:
    """The crops of an evaluation split (test, paired) as `strategy` treats them at test time."""
    images = data.images[split]
    source = TEST_TIME_MASKS.get(strategy)
    if source is None:
        return images
    return black_fill(images, getattr(data, source)[split])
