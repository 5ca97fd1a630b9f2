"""Cures of the background shortcut: what each strategy trains on and what it does to a crop at
test time. Arrays in, arrays out (uint8 crops (N, 3, S, S), bool masks (N, S, S)).

| strategy           | training crops                                       | test crops        |
|--------------------|------------------------------------------------------|-------------------|
| none               | as they are (the baseline)                           | as they are       |
| report             | the shortcut class's background blacked out by       | as they are       |
|                    | Grad-CAM                                             |                   |
| segment            | every crop's background blacked out (GrabCut masks)  | the same masking  |
| mixed_rand         | every object (GrabCut mask) pasted on a random       | as they are       |
|                    | background patch of a random class (Xiao et al.      |                   |
|                    | 2020, Mixed-Rand)                                    |                   |
| segment_learned,   | segment, mixed_rand with the learned masker's masks  | as segment,       |
| mixed_rand_learned | (the masker stage; one masker per seed)              | mixed_rand        |
| oracle             | `segment` with the ground-truth masks: upper bound   | the same masking  |

`report` is the reference report's cure; it leaves "black background" as a cue of the shortcut
class. `segment` treats every crop alike, so neither a background nor the fill is tied to a class;
`mixed_rand` makes backgrounds independent of the label instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.cures import BASELINE, CURE, RECOMMENDABLE, STRATEGIES, UPPER_BOUND

__all__ = ["BASELINE", "RECOMMENDABLE", "STRATEGIES", "UPPER_BOUND"]  # (the records' roles, cnnlab.cures)
# where each masking cure's masks come from (a ChainData field), and the cures that mask test crops too
MASK_SOURCE = {c.name: c.masks for c in CURE.values() if c.masks}
TEST_TIME_MASKS = tuple(c.name for c in CURE.values() if c.test_masks)
MISSING = {"truth": "the dataset folder has no ground-truth mask (masks/<path>.png) for every crop",
           "segments": "no GrabCut masks (the segment stage's output)",
           "learned": "no learned masks (the masker stage's output)"}  # fmt: skip


def black_fill(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Crops with every pixel outside its mask set to 0."""
    return images * masks[:, None].astype(images.dtype)


def composite(images: np.ndarray, masks: np.ndarray, backgrounds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each crop's masked object on a background patch drawn uniformly from `backgrounds` (N_bg, 3, S, S)."""
    pick = rng.integers(0, len(backgrounds), len(images))
    return np.where(masks[:, None], images, backgrounds[pick])


@dataclass
class ChainData:
    """What the strategies read. `segments` (GrabCut) and `truth` map a split name (train, test,
    paired) to its masks; `truth` is None where the folder lacks a ground-truth mask for some
    crop; `learned` maps a seed to its masker's masks of each split."""

    images: dict[str, np.ndarray]  # split -> (N, 3, S, S) uint8 crops
    segments: dict[str, np.ndarray] | None
    truth: dict[str, np.ndarray] | None
    backgrounds: np.ndarray  # (N_bg, 3, S, S) uint8 background-only patches of every class
    learned: dict[int, dict[str, np.ndarray]] | None = None

    def masks(self, strategy: str, split: str, seed: int) -> np.ndarray:
        """The (N, S, S) bool masks that `strategy` uses on `split` at `seed`."""
        source = getattr(self, MASK_SOURCE[strategy])
        return source[seed][split] if MASK_SOURCE[strategy] == "learned" else source[split]


def unavailable(strategy: str, data: ChainData) -> str | None:
    """Why `strategy` cannot run on this data (None when it can)."""
    source = CURE[strategy].masks
    return MISSING[source] if source and getattr(data, source) is None else None


def _as_is(strategy: str, data: ChainData, seed: int, gradcam) -> np.ndarray:
    return data.images["train"]


def _gradcam(strategy: str, data: ChainData, seed: int, gradcam) -> np.ndarray:
    if gradcam is None:
        raise ValueError(f"strategy {strategy!r} needs the Grad-CAM-masked crops of the shortcut class")
    rows, masked = gradcam
    out = data.images["train"].copy()
    out[rows] = masked
    return out


def _black_fill(strategy: str, data: ChainData, seed: int, gradcam) -> np.ndarray:
    return black_fill(data.images["train"], data.masks(strategy, "train", seed))


def _composite(strategy: str, data: ChainData, seed: int, gradcam) -> np.ndarray:
    rng = np.random.default_rng([seed, 7])
    return composite(data.images["train"], data.masks(strategy, "train", seed), data.backgrounds, rng)


# how a cure's training crops are made (cnnlab.cures.Cure.train): (strategy, data, seed, gradcam) -> crops
TRAIN_VIEWS = {"as_is": _as_is, "gradcam": _gradcam, "black_fill": _black_fill, "composite": _composite}


def needs_gradcam(strategy: str) -> bool:
    """Whether `strategy` trains on the gradcam_mask stage's crops (so needs a shortcut class)."""
    return CURE[strategy].train == "gradcam"


def train_images(
    strategy: str,
    data: ChainData,
    seed: int,
    gradcam: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The training crops (every row of the train split, val rows included) as `strategy` sees them.

    Args:
        gradcam: for `report`: (row indices into the train split, their Grad-CAM-masked crops).
        seed: draws the backgrounds of `mixed_rand` (the same for `mixed_rand_learned`) and picks
            the learned masker.
    """
    if strategy not in CURE:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    return TRAIN_VIEWS[CURE[strategy].train](strategy, data, seed, gradcam)


def eval_images(strategy: str, data: ChainData, split: str, seed: int) -> np.ndarray:
    """The crops of an evaluation split (test, paired) as `strategy` treats them at test time
    (`seed`: whose learned masks)."""
    images = data.images[split]
    if strategy not in TEST_TIME_MASKS:
        return images
    return black_fill(images, data.masks(strategy, split, seed))
