"""Foreground masks for every crop from its box alone: GrabCut (Rother et al. 2004) initialised
with the box as its rectangle, so the pixels around the box seed the background model.

No training and no labels: every crop, of every class, in train and test alike, is segmented the
same way, which is what the `segment` and `mixed_rand` cures need (see cnnlab.data.strategies).
Where GrabCut's mask of a crop is degenerate (it keeps under 5% or over 95% of the box: on textured
objects it often keeps nothing), the crop's ring seeds (cnnlab.data.masks.ring_seeds, from the
photograph around the box) take its place, and where those are degenerate too, the box's ellipse.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from cnnlab.data.crops import context_crop, context_pad, crop_mask
from cnnlab.data.masks import ellipse, ring_seeds, sound
from cnnlab.data.objects import ObjectsDataset, load_rgb

SOURCES = ("grabcut", "ring_seeds", "ellipse")  # where a crop's mask came from (grabcut_crop's `which`)



def grabcut_crop(image: np.ndarray, box: tuple[int, int, int, int], size: int, *, iterations: int, max_side: int,
                 margin: float, fallback: dict | None = None) -> tuple[np.ndarray, int]:  # fmt: skip
    """The (size, size) bool mask of the crop of `box`: GrabCut's (:func:`grabcut_mask`), and with
    `fallback` ({context, bins, margin}: crop.context, masker.seed_bins, masker.seed_margin) the
    ring seeds' or the ellipse where GrabCut's is degenerate. Returns (mask, its SOURCES index)."""
    mask = crop_mask(grabcut_mask(image, box, iterations=iterations, max_side=max_side, margin=margin), box, size)
    if fallback is None or sound(mask[None])[0]:
        return mask, 0
    pad = context_pad(size, fallback["context"])
    context, valid = context_crop(image, box, size, pad)
    seeds = ring_seeds(context[None], valid[None], pad, bins=fallback["bins"], margin=fallback["margin"])[0]
    return (seeds, 1) if sound(seeds[None])[0] else (ellipse(size), 2)


def grabcut_mask(
    image: np.ndarray, box: tuple[int, int, int, int], *, iterations: int, max_side: int, margin: float
) -> np.ndarray:
    """(H, W) bool foreground mask of the object in `box` = (x, y, w, h) of an (H, W, 3) uint8 image.

    GrabCut runs on the box widened by `margin` of its longer side (clipped to the image; what
    lies outside the box is background by definition), downscaled so that region's longer side
    is at most `max_side` px, with OpenCV's RNG seeded so a rerun gives the same mask. A box
    that covers the whole image leaves GrabCut no background sample: the whole box is kept.
    """
    import cv2  # opencv-python-headless; 0.3 s to import, only in the stage that segments

    x, y, w, h = box
    height, width = image.shape[:2]
    pad = int(margin * max(w, h)) + 1
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(width, x + w + pad), min(height, y + h + pad)
    region = image[y0:y1, x0:x1]
    scale = min(1.0, max_side / max(region.shape[:2]))
    small = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else region
    sh, sw = small.shape[:2]
    rx, ry = min(int((x - x0) * scale), sw - 1), min(int((y - y0) * scale), sh - 1)
    rect = (rx, ry, max(1, min(int(round(w * scale)), sw - rx)), max(1, min(int(round(h * scale)), sh - ry)))
    out = np.zeros((height, width), bool)
    if rect[0] == 0 and rect[1] == 0 and rect[2] >= sw and rect[3] >= sh:
        out[y : y + h, x : x + w] = True
        return out
    labels = np.zeros((sh, sw), np.uint8)
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), labels, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # a degenerate region (e.g. one flat colour): keep the whole box
        out[y : y + h, x : x + w] = True
        return out
    fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    fg = cv2.resize(fg, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    out[y0:y1, x0:x1] = fg > 0
    out[:, :x] = out[:, x + w :] = False  # the object lies in its box
    out[:y] = out[y + h :] = False
    return out


def segment_split(
    ds: ObjectsDataset,
    split: str,
    size: int,
    *,
    iterations: int,
    max_side: int,
    margin: float,
    fallback: dict | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size) bool GrabCut masks of a split's crops, in the order of ds.split(split), with
    :func:`grabcut_crop`'s `fallback`, and (N,) int where each came from (SOURCES).

    `workers` threads (default: one per CPU core, at most 8) segment crops side by side: OpenCV
    releases the GIL, and its RNG is per thread, so the masks are the same for any number of
    workers. Images are read one at a time (a packed dataset's ZipFile counts its open members
    without a lock)."""
    rows = ds.split(split)
    reading = threading.Lock()

    def one(r) -> tuple[np.ndarray, int]:
        box = (r.x, r.y, r.w, r.h)
        with reading:
            image = load_rgb(ds.root / r.path)
        return grabcut_crop(image, box, size, iterations=iterations, max_side=max_side, margin=margin,
                            fallback=fallback)  # fmt: skip

    masks, which = np.zeros((len(rows), size, size), bool), np.zeros(len(rows), np.int64)
    bar = tqdm(total=len(rows), desc=f"segment {split}", unit="img")
    with bar, ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for i, (mask, source) in enumerate(pool.map(one, rows.itertuples(index=False))):
            masks[i], which[i] = mask, source
            bar.update()
    return masks, which
