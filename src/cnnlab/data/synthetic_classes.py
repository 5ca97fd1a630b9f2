"""Built-in stand-ins for CIFAR-10 and ImageNet10: 10 classes of shapes on cluttered backgrounds.

Each class is one shape; its colour, size, pose and the background (one of eight textured
families, independent of the class) are random, so only the shape identifies the class. The
same seed always gives the same arrays.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from cnnlab.data.synthetic import SHAPES, background, object_mask, paint_object

CLASS_SHAPES = (*SHAPES, "bar", "chevron")  # 10 classes
N_FAMILIES = 8


def _extra_mask(rng: np.random.Generator, shape: str, size: int, scale: tuple[float, float]) -> np.ndarray:
    """Masks of the two shapes the objects generator does not draw."""
    r = min(rng.uniform(*scale) * size / 2, size / 2 - 1)  # in a small image, as large as fits
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    rot = rng.uniform(0, 2 * math.pi)
    if shape == "bar":
        pts = [(-r, -0.28 * r), (r, -0.28 * r), (r, 0.28 * r), (-r, 0.28 * r)]
    else:  # chevron
        k = 0.7 * r  # its corners lie at k * sqrt(2) from the centre, inside the image
        pts = [(-k, -k), (-0.35 * k, -k), (k, 0), (-0.35 * k, k), (-k, k), (0.35 * k, 0)]
    poly = [(cx + x * math.cos(rot) - y * math.sin(rot), cy + x * math.sin(rot) + y * math.cos(rot)) for x, y in pts]
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon(poly, fill=255)
    return np.asarray(canvas) > 0


def class_image(rng: np.random.Generator, cls: int, size: int, extent=(0.45, 0.85)) -> np.ndarray:
    """One (size, size, 3) uint8 image of class `cls`, its object spanning `extent` of the side."""
    shape = CLASS_SHAPES[cls]
    bg = background(rng, int(rng.integers(N_FAMILIES)), size)
    mask = object_mask(rng, shape, size, extent) if shape in SHAPES else _extra_mask(rng, shape, size, extent)
    return paint_object(rng, bg, mask)


def generate_class_images(seed: int, per_class: int, size: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, size, size) uint8, labels (N,) int64), classes interleaved in a seeded order.

    `stream` separates independent sets drawn with the same seed (train vs test, one dataset vs another).
    """
    order = np.random.default_rng([seed, stream]).permutation(np.repeat(np.arange(len(CLASS_SHAPES)), per_class))
    images = np.empty((len(order), 3, size, size), np.uint8)
    for i, cls in enumerate(order):
        images[i] = class_image(np.random.default_rng([seed, stream, i]), int(cls), size).transpose(2, 0, 1)
    return images, order.astype(np.int64)
