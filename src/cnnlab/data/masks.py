"""Masks from the box and the image around it, and the rule every mask source obeys.

- :func:`ring_seeds`: each crop's object from two colour models of its own photograph: the
  background's from the ring of pixels just outside the box (background by definition: the box
  holds the object), the object's from the box, refitted a few times (GrabCut's idea without the
  graph cut: Rother et al. 2004). No training, no labels; what the learned masker starts from.
- :func:`sound` and :func:`first_sound`: a box says an object is there, so a mask that keeps under
  5% or over 95% of its crop is wrong by construction (degenerate); where one source gives such a
  mask, the next source in line gives the crop's mask, and the box's inscribed ellipse is the last.

Arrays in, arrays out: context crops (N, 3, S + 2 pad, S + 2 pad) uint8 with their validity
(N, S + 2 pad, S + 2 pad) bool (cnnlab.data.crops.context_crop), masks (N, S, S) bool.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from cnnlab.metrics import DEGENERATE


def kept(masks: np.ndarray) -> np.ndarray:
    """(N,) the fraction of each crop that its mask keeps."""
    masks = np.asarray(masks, bool)
    return masks.reshape(len(masks), -1).mean(1) if len(masks) else np.zeros(0)


def sound(masks: np.ndarray) -> np.ndarray:
    """(N,) bool: the mask keeps at least 5% and at most 95% of its crop (not degenerate)."""
    k = kept(masks)
    return (k >= DEGENERATE[0]) & (k <= DEGENERATE[1])


def ellipse(size: int) -> np.ndarray:
    """(size, size) bool: the ellipse inscribed in the crop (the box's prior shape, 79% kept)."""
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    return ((yy - c) / (size / 2)) ** 2 + ((xx - c) / (size / 2)) ** 2 <= 1


def first_sound(*sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per crop, the mask of the first source in `sources` (each (N, S, S) bool) that is sound,
    else the inscribed ellipse. Returns (masks (N, S, S), which (N,) int: the source's position,
    len(sources) for the ellipse)."""
    out = np.array(sources[0], bool, copy=True)
    which = np.full(len(out), len(sources), np.int64)
    for i in range(len(sources) - 1, -1, -1):  # the earliest sound source wins
        ok = sound(sources[i])
        out[ok], which[ok] = np.asarray(sources[i], bool)[ok], i
    out[which == len(sources)] = ellipse(out.shape[-1])
    return out, which


def _colour_bins(images: torch.Tensor, bins: int) -> torch.Tensor:
    """(N, P) the colour histogram bin of every pixel of uint8 (N, 3, H, W) images."""
    q = images.long() * bins // 256
    return ((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]).flatten(1)


def _log_histograms(bin_of: torch.Tensor, weights: torch.Tensor, bins: int) -> torch.Tensor:
    """(N, bins^3) log of each crop's colour histogram of the weighted pixels, one count added to
    every bin (a colour never seen is unlikely, not impossible)."""
    h = torch.ones(len(bin_of), bins**3).scatter_add_(1, bin_of, weights)
    return (h / h.sum(1, keepdim=True)).log()


def ring_seeds(context: np.ndarray, valid: np.ndarray, pad: int, *, bins: int, margin: float,
               refits: int = 3, smooth: int = 3) -> np.ndarray:  # fmt: skip
    """(N, S, S) bool object masks of the crops inside context crops, from their own colours.

    Per crop, a colour histogram (`bins` per channel) of the background: at first the ring of
    valid pixels outside the box, then also the box's pixels called background; one of the
    object: at first every pixel of the box, then those called object. A box pixel is object
    where the log-likelihood ratio, averaged over its `smooth` x `smooth` neighbourhood (nearby
    pixels share a label), exceeds `margin` (nats); `refits` times.

    Args:
        context: (N, 3, S + 2 pad, S + 2 pad) uint8; valid: (N, S + 2 pad, S + 2 pad) bool.
        pad: context pixels on each side of the box.
    """
    x = torch.from_numpy(np.ascontiguousarray(context))
    n, _, side, _ = x.shape
    bin_of = _colour_bins(x, bins)
    inside = torch.zeros(side, side, dtype=torch.bool)
    inside[pad : side - pad, pad : side - pad] = True
    inside = inside.flatten()[None].expand(n, -1)
    valid_t = torch.from_numpy(np.ascontiguousarray(valid)).flatten(1)
    obj, bg = inside.float(), (~inside & valid_t).float()
    for _ in range(refits):
        ratio = (_log_histograms(bin_of, obj, bins) - _log_histograms(bin_of, bg, bins)).gather(1, bin_of)
        ratio = F.avg_pool2d(ratio.reshape(n, 1, side, side), smooth, 1, smooth // 2, count_include_pad=False)
        is_obj = (ratio.flatten(1) > margin) & inside
        obj, bg = is_obj.float(), (~is_obj & valid_t).float()
    return is_obj.reshape(n, side, side)[:, pad : side - pad, pad : side - pad].numpy()
