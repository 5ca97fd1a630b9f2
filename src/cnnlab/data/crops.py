"""Crops by box, background-only images and crop-sized background patches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from cnnlab.data.arrays import Split
from cnnlab.data.objects import ObjectsDataset, load_mask, load_rgb


def crop_resize(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Cut `box` = (x, y, w, h) out of an (H, W, 3) uint8 image and resize it to (3, size, size)."""
    x, y, w, h = box
    t = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)  # (3, H, W)
    out = TF.resized_crop(t, top=y, left=x, height=h, width=w, size=[size, size], antialias=True)
    return out.numpy()


def crop_mask(mask: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Cut `box` out of an (H, W) bool mask and resize it (nearest) to (size, size) bool."""
    x, y, w, h = box
    t = torch.from_numpy(mask.astype(np.uint8))[None]  # (1, H, W)
    out = TF.resized_crop(
        t, top=y, left=x, height=h, width=w, size=[size, size], interpolation=InterpolationMode.NEAREST
    )
    return out[0].numpy() > 0


def context_pad(size: int, context: float) -> int:
    """Pixels of context on each side of a `size` px crop: `context` of its side, rounded."""
    return int(round(context * size))


def context_crop(image: np.ndarray, box: tuple[int, int, int, int], size: int,
                 pad: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The box and `pad` crop pixels of the image around it on every side, at the crop's scale:
    ((3, size + 2 pad, size + 2 pad) uint8, (size + 2 pad, size + 2 pad) bool: inside the image).
    The central size x size pixels are :func:`crop_resize`'s crop; what lies outside the box is
    this photograph's own background (the masker's ring, cnnlab.data.masks.ring_seeds), black and
    not valid where the window leaves the image."""
    x, y, w, h = box
    fx, fy = w / size, h / size  # image px per crop px
    margin = int(np.ceil(pad * max(fx, fy))) + 1
    height, width = image.shape[:2]
    framed = np.zeros((height + 2 * margin, width + 2 * margin, 4), np.uint8)
    framed[margin : margin + height, margin : margin + width, :3] = image
    framed[margin : margin + height, margin : margin + width, 3] = 1
    t = torch.from_numpy(framed).permute(2, 0, 1)  # (4, H', W'): RGB and "inside the image"
    top, left = int(round(y - pad * fy)) + margin, int(round(x - pad * fx)) + margin
    side = size + 2 * pad
    window = dict(top=top, left=left, height=int(round(side * fy)), width=int(round(side * fx)), size=[side, side])
    rgb = TF.resized_crop(t[:3], **window, antialias=True)
    valid = TF.resized_crop(t[3:], **window, interpolation=InterpolationMode.NEAREST)[0] > 0
    return rgb.numpy(), valid.numpy()


def crop_split(ds: ObjectsDataset, split: str, size: int) -> Split:
    """Crop every image of a split to its box; ground-truth masks are cropped the same way.
    The index: id (the image's path in the folder), label ('' where unknown), has_mask."""
    return crops_with_context(ds, split, size, 0)[0]


def crops_with_context(ds: ObjectsDataset, split: str, size: int, pad: int) -> tuple[Split, Split | None]:
    """:func:`crop_split`'s crops and, with `pad` > 0, each box with its context
    (:func:`context_crop`) from the same decoded image: a second Split with the same index, whose
    `masks` say which pixels lie inside the image (None without `pad`)."""
    rows = ds.split(split)
    images = np.zeros((len(rows), 3, size, size), np.uint8)
    masks = np.zeros((len(rows), size, size), bool)
    side = size + 2 * pad
    context, valid = np.zeros((len(rows), 3, side, side), np.uint8), np.zeros((len(rows), side, side), bool)
    for i, r in enumerate(tqdm(rows.itertuples(index=False), total=len(rows), desc=f"crop {split}", unit="img")):
        image = load_rgb(ds.root / r.path)
        box = (r.x, r.y, r.w, r.h)
        images[i] = crop_resize(image, box, size)
        if pad:
            context[i], valid[i] = context_crop(image, box, size, pad)
        if r.mask:
            masks[i] = crop_mask(load_mask(ds.root / r.mask, image.shape[:2]), box, size)
    index = pd.DataFrame({"id": rows.path, "label": rows.label, "has_mask": rows["mask"] != ""})
    return Split(images, index, masks), (Split(context, index, valid) if pad else None)


def black_out(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of an (H, W, 3) image with the box set to black: the background only."""
    x, y, w, h = box
    out = image.copy()
    out[y : y + h, x : x + w] = 0
    return out


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Fraction of box a's area covered by box b."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3])


def place_patch(
    rng: np.random.Generator,
    image_hw: tuple[int, int],
    box: tuple[int, int, int, int],
    max_overlap: float,
    tries: int = 50,
) -> tuple[int, int, int, int]:
    """A patch with the box's own size (so it has the crops' scale) at a random position,
    overlapping the blacked-out box by at most `max_overlap` of its area when possible
    (otherwise the least-overlapping of `tries` positions)."""
    height, width = image_hw
    w, h = box[2], box[3]
    best, best_overlap = None, 2.0
    for _ in range(tries):
        x = int(rng.integers(0, width - w + 1))
        y = int(rng.integers(0, height - h + 1))
        patch = (x, y, w, h)
        ov = _overlap(patch, box)
        if ov < best_overlap:
            best, best_overlap = patch, ov
        if ov <= max_overlap:
            break
    return best


def background_patches(
    ds: ObjectsDataset,
    classes: tuple[str, ...],
    size: int,
    patches_per_image: int,
    max_overlap: float,
    seed: int,
    split: str = "train",
) -> Split:
    """Background-only images of the given classes cut into crop-sized patches: (N, 3, size, size)
    uint8, indexed by id (the source image), label (its class) and x, y, w, h (the patch's box).
    `split` another than train: every image of that split, whatever its label (test images may
    have none), from a generator of its own."""
    rng = np.random.default_rng([seed, 4] if split == "train" else [seed, 4, len(split), *split.encode()])
    rows = ds.split(split)
    if split == "train":
        rows = rows[rows.label.isin(classes)].reset_index(drop=True)
    patches, index = [], []
    for r in tqdm(rows.itertuples(index=False), total=len(rows), desc=f"backgrounds {split}", unit="img"):
        box = (r.x, r.y, r.w, r.h)
        bg = black_out(load_rgb(ds.root / r.path), box)
        for _ in range(patches_per_image):
            patch = place_patch(rng, bg.shape[:2], box, max_overlap)
            patches.append(crop_resize(bg, patch, size))
            index.append((r.path, r.label, *patch))
    return Split(np.stack(patches), pd.DataFrame(index, columns=["id", "label", "x", "y", "w", "h"]))
