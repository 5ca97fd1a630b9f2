"""Deterministic generator of the built-in objects dataset.

Eight object shapes (one per class) of random colour, size, position and rotation are pasted on
textured backgrounds. Every class has its own background family; the test images put objects of
every class on the background family of class 0, so a classifier that learned backgrounds instead
of objects answers "class 0" on the test set: the shortcut the objects chain has to remove.
Each test image has a pair in paired/: the same object on its own class's background (BG-gap).

The output follows the objects format read by :func:`cnnlab.data.objects.read_objects`, with
ground-truth masks and test labels.
"""

from __future__ import annotations

import colorsys
import functools
import json
import math
import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from tqdm import tqdm

from cnnlab.data.objects import BOX_COLUMNS, GENERATOR_MARKER
from cnnlab.io import atomic_dir

SHAPES = ("disc", "square", "triangle", "cross", "star", "ring", "hexagon", "arrow")

# One background family per class: (hue, stripe period as a fraction of the side, stripe angle in degrees).
_FAMILIES = [
    (0.30, 0.060, 20.0),
    (0.58, 0.110, 100.0),
    (0.08, 0.045, 60.0),
    (0.85, 0.150, 150.0),
    (0.00, 0.080, 0.0),
    (0.45, 0.035, 125.0),
    (0.70, 0.095, 45.0),
    (0.15, 0.130, 80.0),
]


def class_names(n: int) -> list[str]:
    return [f"{i:02d}" for i in range(n)]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], (size, size)."""
    grid = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
    big = Image.fromarray(grid, "L").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(big, dtype=np.float32) / 127.5 - 1.0


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def background(rng: np.random.Generator, family: int, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 textured background of the given family."""
    hue, period, angle = _FAMILIES[family]
    angle = math.radians(angle + rng.uniform(-12, 12))
    freq = 1.0 / (period * size * rng.uniform(0.9, 1.1))
    yy, xx = _grid(size)
    stripes = np.sin(2 * np.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 2 * np.pi))
    texture = 0.6 * stripes + 0.4 * _smooth_noise(rng, size, 6)  # (H, W) in [-1, 1]
    value = rng.uniform(0.45, 0.6)
    base = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.12, 0.22), value), dtype=np.float32)
    shade = np.array(colorsys.hsv_to_rgb(hue, 0.5, value * 0.55), dtype=np.float32)
    img = base[None, None, :] + texture[..., None] * (base - shade)[None, None, :]
    img = img * 255 + 5 * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[list[tuple[float, float]]]:
    """Outline polygons of a shape of radius r centred at (cx, cy), rotated by rot radians."""

    def ring(points):
        return [
            (cx + x * math.cos(rot) - y * math.sin(rot), cy + x * math.sin(rot) + y * math.cos(rot)) for x, y in points
        ]

    def regular(n, radius, phase=0.0):
        return [
            (radius * math.cos(phase + 2 * math.pi * k / n), radius * math.sin(phase + 2 * math.pi * k / n))
            for k in range(n)
        ]

    if shape == "square":
        return [ring(regular(4, r, math.pi / 4))]
    if shape == "triangle":
        return [ring(regular(3, r, -math.pi / 2))]
    if shape == "hexagon":
        return [ring(regular(6, r))]
    if shape == "star":
        pts = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.42
            a = -math.pi / 2 + math.pi * k / 5
            pts.append((radius * math.cos(a), radius * math.sin(a)))
        return [ring(pts)]
    if shape == "cross":
        t = r * 0.33
        return [
            ring(
                [
                    (-t, -r),
                    (t, -r),
                    (t, -t),
                    (r, -t),
                    (r, t),
                    (t, t),
                    (t, r),
                    (-t, r),
                    (-t, t),
                    (-r, t),
                    (-r, -t),
                    (-t, -t),
                ]
            )
        ]
    if shape == "arrow":
        return [
            ring(
                [
                    (-r, -0.3 * r),
                    (0.1 * r, -0.3 * r),
                    (0.1 * r, -0.75 * r),
                    (r, 0),
                    (0.1 * r, 0.75 * r),
                    (0.1 * r, 0.3 * r),
                    (-r, 0.3 * r),
                ]
            )
        ]
    raise ValueError(shape)


def object_mask(rng: np.random.Generator, shape: str, size: int, scale: tuple[float, float]) -> np.ndarray:
    """A (size, size) bool mask of one object of the given shape at a random pose."""
    r = min(rng.uniform(*scale) * size / 2, size / 2 - 2)  # in a small image, as large as fits
    cx, cy = rng.uniform(r + 2, size - r - 2, 2)
    rot = rng.uniform(0, 2 * math.pi)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape in ("disc", "ring"):
        rx, ry = r, r * rng.uniform(0.8, 1.0)  # slightly elliptic, rotated by drawing a polygon
        pts = [(rx * math.cos(t), ry * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 64, endpoint=False)]
        outer = [
            (cx + x * math.cos(rot) - y * math.sin(rot), cy + x * math.sin(rot) + y * math.cos(rot)) for x, y in pts
        ]
        draw.polygon(outer, fill=255)
        if shape == "ring":
            inner = [
                (cx + 0.5 * (x * math.cos(rot) - y * math.sin(rot)), cy + 0.5 * (x * math.sin(rot) + y * math.cos(rot)))
                for x, y in pts
            ]
            draw.polygon(inner, fill=0)
    else:
        for poly in _polygon(shape, cx, cy, r, rot):
            draw.polygon(poly, fill=255)
    return np.asarray(canvas) > 0


def paint_object(rng: np.random.Generator, bg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paint a randomly coloured, shaded object into `bg` where `mask` is set."""
    size = bg.shape[0]
    color = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0)), np.float32)
    shading = (0.8 + 0.2 * _smooth_noise(rng, size, 4))[mask]  # uneven lighting on the object, (K,)
    noise = 5 * rng.standard_normal((len(shading), 3), dtype=np.float32)
    out = bg.copy()
    out[mask] = np.clip(color[None, :] * shading[:, None] * 255 + noise, 0, 255).astype(np.uint8)
    return out


def box_around(rng: np.random.Generator, mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (x, y, w, h) of the mask, widened by a random margin and clipped to the image."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    mx = int((x1 - x0) * rng.uniform(0.08, 0.25))
    my = int((y1 - y0) * rng.uniform(0.08, 0.25))
    h_img, w_img = mask.shape
    x0, y0 = max(0, x0 - mx), max(0, y0 - my)
    x1, y1 = min(w_img, x1 + mx), min(h_img, y1 + my)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def _write_sample(job: tuple) -> tuple:
    """Draw one image from its own seeded generator and write it and its mask; returns its boxes.csv row."""
    tmp, rel, label, seed, split, index, cls, family, size, scale = job
    rng = np.random.default_rng([seed, split, index])
    mask = object_mask(rng, SHAPES[cls], size, scale)
    bg = background(rng, family, size)
    object_draws = rng.bit_generator.state
    images = {rel: paint_object(rng, bg, mask)}
    box = box_around(rng, mask)
    if split == 1:  # the BG-gap pair: the same object (pose, colour, shading) on its own class's background
        rng.bit_generator.state = object_draws
        own = background(np.random.default_rng([seed, 2, index]), cls, size)
        images["paired/" + Path(rel).name] = paint_object(rng, own, mask)
    for path, image in images.items():
        mask_path = (Path(tmp) / "masks" / path).with_suffix(".png")
        for p in (Path(tmp) / path, mask_path):
            p.parent.mkdir(parents=True, exist_ok=True)
        # Photos as JPEG (as cameras write them, and 10x faster to encode than noisy PNG); masks as PNG.
        Image.fromarray(image).save(Path(tmp) / path, quality=92)
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path, compress_level=1)
    return ("train" if split == 0 else "test", rel, label, *box)


def plan(seed: int, classes: int, train_per_class: int, test_per_class: int, shared_backgrounds: float) -> list[tuple]:
    """Every image to draw: (split 0=train/1=test, relative path, index, class, background family).

    Class 0 and every test image use family 0; a fraction `shared_backgrounds` of the other
    classes' training images use another non-zero family.
    """
    names = class_names(classes)
    rng = np.random.default_rng([seed, 99])
    out = []
    for c in range(classes):
        for i in range(train_per_class):
            family = c
            if c != 0 and classes > 2 and rng.uniform() < shared_backgrounds:
                family = int(rng.choice([f for f in range(1, classes) if f != c]))
            out.append((0, f"train/{names[c]}/{names[c]}_{i:04d}.jpg", c * 100_000 + i, c, family))
    # Test order is shuffled so that file names do not reveal the class.
    test_classes = rng.permutation(np.repeat(np.arange(classes), test_per_class))
    out += [(1, f"test/img_{i:04d}.jpg", i, int(c), 0) for i, c in enumerate(test_classes)]
    return out


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


POOL_FROM = 250  # images of 256 px (or as many pixels) from which generate_objects draws in a process pool


def generate_objects(
    out: str | Path,
    *,
    seed: int,
    classes: int,
    train_per_class: int,
    test_per_class: int,
    image_size: int,
    object_scale: tuple[float, float],
    shared_backgrounds: float,
    workers: int | None = None,
) -> Path:
    """Write the built-in dataset to `out` (replaced atomically) and return its path.

    Class 0's training images all lie on background family 0, and so do all test images, of
    every class. A fraction `shared_backgrounds` of the other classes' training images lie on
    the family of another class (never family 0), so that a classifier also has to learn the
    objects. The same arguments always give byte-identical files, whatever `workers` is.
    """
    names = class_names(classes)
    with atomic_dir(out) as tmp:
        jobs = [
            (str(tmp), rel, names[c] if split == 0 else "", seed, split, index, c, family, image_size, object_scale)
            for split, rel, index, c, family in plan(seed, classes, train_per_class, test_per_class, shared_backgrounds)
        ]
        if workers is None:  # a pool costs ~1 s to start: worth it from ~2 s of drawing (~250 images of 256 px)
            small = len(jobs) * image_size**2 < POOL_FROM * 256**2
            workers = 1 if small else min(4, os.cpu_count() or 1)
        bar = dict(total=len(jobs), desc="generate objects", unit="img")
        if workers == 1:
            rows = [_write_sample(job) for job in tqdm(jobs, **bar)]
        else:
            # the workers leave Ctrl-C to this process, which stops them (no traceback from each)
            with multiprocessing.get_context("spawn").Pool(workers, _ignore_interrupt) as pool:
                rows = list(tqdm(pool.imap(_write_sample, jobs, chunksize=16), **bar))
        pd.DataFrame(rows, columns=BOX_COLUMNS).to_csv(tmp / "boxes.csv", index=False, lineterminator="\n")
        test_labels = [(job[1], names[job[6]]) for job in jobs if job[4] == 1]
        pd.DataFrame(test_labels, columns=["path", "label"]).to_csv(
            tmp / "test_labels.csv", index=False, lineterminator="\n"
        )
        marker = dict(
            generator="cnnlab.data.synthetic",
            seed=seed,
            classes=classes,
            train_per_class=train_per_class,
            test_per_class=test_per_class,
            image_size=image_size,
            object_scale=list(object_scale),
            shared_backgrounds=shared_backgrounds,
        )
        (tmp / GENERATOR_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return Path(out)
