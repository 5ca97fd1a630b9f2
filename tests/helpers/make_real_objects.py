"""Write an objects-format folder made of real images that packages ship, not the built-in generator.
Two kinds, different in objects and photographs:

- `digits`: handwritten digits 0-7 (scikit-learn's scans of the UCI digits, soft-edged) in one
  colour each, on regions of real photographs (scikit-learn's china.jpg and flower.jpg,
  matplotlib's grace_hopper.jpg), one region per class;
- `letters`: the letters A-H (matplotlib's DejaVu Sans Bold, turned and sized at random) cut out of
  photographed textures (scikit-image's cat, brick, grass, gravel; tinted), on regions of other
  photographs (scikit-image's Hubble deep field, retina, rocket, astronaut, coffee and
  immunohistochemistry slide), one region per class. Needs scikit-image;
- `pictograms`: eight pictograms (DejaVu Sans' spade, club, heart, diamond, star, sun, umbrella,
  aeroplane) whose surface is a window of a photograph (fur, grass, gravel, brick, a star field,
  stained tissue, a motorcycle's machinery), filling their box (tight boxes), on regions of other
  photographs, the whole image under an uneven light (a slanted gradient and a bright spot);
- `camouflage`: eight small silhouettes (the six chess pieces, an anchor, scissors; a fifth of the
  image side or less) with a photographed surface toned to a muted mid-tone and blended half into
  the background behind them: textured objects in low contrast to their background.

Every test image lies on the shortcut class's region, as in the objects chain's problem; paired/
has the same objects on their own class's region (BG-gap), and masks/ the ground truth (the
digit's strokes, the letter's shape).

    python tests/helpers/make_real_objects.py OUT [--kind digits|letters|pictograms|camouflage] [--train-per-class 120]
        [--test-per-class 30] [--shortcut 00] [--seed 0]
"""

from __future__ import annotations

import argparse
import colorsys
import functools
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images

CLASSES = [f"{i:02d}" for i in range(8)]
SIZE = 160  # px, square images


def photo_regions() -> list[np.ndarray]:
    """Eight regions of three real photographs: one background family per class."""
    china, flower = load_sample_images().images  # (427, 640, 3) each
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = np.asarray(Image.open(f).convert("RGB"))  # (600, 512, 3)
    h, w = china.shape[:2]
    regions = [
        china[: h // 2, : w // 2],
        china[: h // 2, w // 2 :],
        china[h // 2 :, : w // 2],
        china[h // 2 :, w // 2 :],
    ]
    regions += [flower[:, : w // 2], flower[:, w // 2 :]]
    gh, gw = grace.shape[:2]
    regions += [grace[: gh // 2], grace[gh // 2 :]]
    return regions


def letter_regions() -> list[np.ndarray]:
    """Eight regions of six scikit-image photographs, none of them used by `digits`."""
    from skimage import data

    hubble, retina = data.hubble_deep_field(), data.retina()
    hh, rh = hubble.shape[0], retina.shape[0]
    return [hubble[:, : hh], hubble[:, -hh:], retina[rh // 4 : 3 * rh // 4, : rh // 2],
            retina[rh // 4 : 3 * rh // 4, rh // 2 :], data.rocket(), data.astronaut(), data.coffee(),
            data.immunohistochemistry()]  # fmt: skip


def letter_fills() -> list[np.ndarray]:
    """Photographed textures a letter is cut from: the cat's fur, brick, grass, gravel (grey, tinted
    at random when used)."""
    from skimage import data

    return [data.chelsea()[50:250, 100:350], data.brick(), data.grass(), data.gravel()]


def glyph_regions() -> list[np.ndarray]:
    """Eight regions of photographs for `pictograms` and `camouflage`, none of them a surface."""
    from skimage import data

    china, flower = load_sample_images().images
    astronaut, rocket, coffee = data.astronaut(), data.rocket(), data.coffee()
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = np.asarray(Image.open(f).convert("RGB"))
    return [astronaut[:256], astronaut[256:], rocket[:, :320], rocket[:, 320:], coffee, china[:, :320],
            flower[:, 320:], grace[:300]]  # fmt: skip


@functools.lru_cache(maxsize=1)
def glyph_surfaces() -> list[np.ndarray]:
    """Photographed surfaces a pictogram or silhouette is cut from (grey ones tinted when used)."""
    from skimage import data

    return [data.chelsea()[50:250, 100:350], data.grass(), data.gravel(), data.brick(),
            data.hubble_deep_field()[:400, :400], data.immunohistochemistry(),
            data.stereo_motorcycle()[0][100:400, 200:500]]  # fmt: skip


GLYPHS = {"pictograms": "\u2660\u2663\u2665\u2666\u2605\u2600\u2602\u2708",
          "camouflage": "\u265a\u265b\u265c\u265d\u265e\u265f\u2693\u2702"}  # fmt: skip


def background(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """A random SIZE x SIZE window of a region (resized up if the region is smaller), maybe mirrored."""
    h, w = region.shape[:2]
    side = min(h, w, int(rng.integers(SIZE, int(SIZE * 1.4) + 1)))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    out = np.asarray(
        Image.fromarray(region[y : y + side, x : x + side]).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    )
    return out[:, ::-1] if rng.uniform() < 0.5 else out


def paste_digit(rng, bg: np.ndarray, digit: np.ndarray, color, pose) -> tuple[np.ndarray, np.ndarray]:
    """The digit (8x8, 0..16) scaled up at `pose` = (side, x, y) in `color` over `bg`: (image, mask)."""
    side, x, y = pose
    alpha = np.asarray(
        Image.fromarray((digit / 16 * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
    )
    alpha = alpha.astype(np.float32) / 255
    img = bg.astype(np.float32).copy()
    window = img[y : y + side, x : x + side]
    window[:] = alpha[..., None] * np.asarray(color, np.float32) * 255 + (1 - alpha[..., None]) * window
    mask = np.zeros(bg.shape[:2], bool)
    mask[y : y + side, x : x + side] = alpha > 0.35
    return np.clip(img, 0, 255).astype(np.uint8), mask


def paste_letter(rng, bg: np.ndarray, letter: str, fills: list[np.ndarray], pose) -> tuple[np.ndarray, np.ndarray]:
    """`letter` at `pose` = (side, x, y), turned by up to 20 degrees, cut out of a random window of
    a random texture (grey ones tinted) over `bg`: (image, mask)."""
    from PIL import ImageDraw, ImageFont

    side, x, y = pose
    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans-Bold.ttf"), side)
    glyph = Image.new("L", (side * 2, side * 2))
    ImageDraw.Draw(glyph).text((side, side), letter, fill=255, font=font, anchor="mm")
    glyph = glyph.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BICUBIC)
    glyph = glyph.crop(glyph.getbbox()).resize((side, side), Image.Resampling.BICUBIC)
    alpha = np.asarray(glyph, np.float32)[..., None] / 255
    texture = fills[int(rng.integers(len(fills)))]
    fill = background(rng, texture).astype(np.float32)[:side, :side]
    if fill.ndim == 2:  # a grey texture in a random colour
        tint = np.asarray(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.4, 0.9), 1.0), np.float32)
        fill = fill[..., None] * tint
    img = bg.astype(np.float32).copy()
    window = img[y : y + side, x : x + side]
    window[:] = alpha * fill + (1 - alpha) * window
    mask = np.zeros(bg.shape[:2], bool)
    mask[y : y + side, x : x + side] = alpha[..., 0] > 0.5
    return np.clip(img, 0, 255).astype(np.uint8), mask


def paste_glyph(rng, bg: np.ndarray, glyph: str, kind: str, pose) -> tuple[np.ndarray, np.ndarray]:
    """`glyph` at `pose` = (side, x, y), turned by up to 15 degrees and stretched by up to 20%, its
    surface a window of a random photograph: for `pictograms` as photographed (grey ones tinted),
    the whole image then under an uneven light; for `camouflage` toned to a muted mid-tone and
    blended half into `bg`. Returns (image, mask)."""
    from PIL import ImageDraw, ImageFont

    side, x, y = pose
    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), side)
    shape = Image.new("L", (side * 2, side * 2))
    ImageDraw.Draw(shape).text((side, side), glyph, fill=255, font=font, anchor="mm")
    shape = shape.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BICUBIC)
    stretch = rng.uniform(0.8, 1.0, 2)
    w, h = max(4, int(side * stretch[0])), max(4, int(side * stretch[1]))
    alpha = np.zeros((side, side, 1), np.float32)
    shape = shape.crop(shape.getbbox()).resize((w, h), Image.Resampling.BICUBIC)
    alpha[:h, :w, 0] = np.asarray(shape, np.float32) / 255
    surfaces = glyph_surfaces()
    fill = background(rng, surfaces[int(rng.integers(len(surfaces)))]).astype(np.float32)[:side, :side]
    img = bg.astype(np.float32).copy()
    window = img[y : y + side, x : x + side]
    if kind == "camouflage":
        grey = fill.mean(2) if fill.ndim == 3 else fill
        tone = np.asarray(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.35), rng.uniform(0.35, 0.65)))
        fill = (grey - grey.mean())[..., None] / (grey.std() + 1e-6) * rng.uniform(18, 35) + tone * 255
        alpha = alpha * rng.uniform(0.5, 0.7)
    elif fill.ndim == 2:
        fill = fill[..., None] * np.asarray(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.4, 0.9), 1.0))
    window[:] = alpha * fill + (1 - alpha) * window
    mask = np.zeros(bg.shape[:2], bool)
    mask[y : y + side, x : x + side] = alpha[..., 0] > (0.25 if kind == "camouflage" else 0.5)
    if kind == "pictograms":
        img *= uneven_light(rng)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8), mask


def uneven_light(rng) -> np.ndarray:
    """(SIZE, SIZE) light: a gradient across the image in a random direction (x0.45-0.7 to
    x1.0-1.25) plus a soft bright spot."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32) / SIZE
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) / np.sqrt(0.5) * 0.5 + 0.5
    low, high = rng.uniform(0.45, 0.7), rng.uniform(1.0, 1.25)
    cy, cx, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.3)
    return low + (high - low) * ramp + 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))


SIDES = {"pictograms": (64, 112), "camouflage": (24, 44)}  # px, the object's side (digits, letters: 56-96)
MARGINS = {"pictograms": (0.0, 0.04)}  # the box's margin per side, of the object's size (others: 0.1-0.25)


def box_of(rng, mask: np.ndarray, margin: tuple[float, float] = (0.1, 0.25)) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    mx, my = int((x1 - x0) * rng.uniform(*margin)), int((y1 - y0) * rng.uniform(*margin))
    x0, y0, x1, y1 = max(0, x0 - mx), max(0, y0 - my), min(SIZE, x1 + mx), min(SIZE, y1 + my)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def write(out: Path, train_per_class: int, test_per_class: int, shortcut: str, seed: int, kind: str = "digits") -> Path:
    rng = np.random.default_rng(seed)
    digits = load_digits()
    regions = {"digits": photo_regions, "letters": letter_regions}.get(kind, glyph_regions)()
    fills = letter_fills() if kind == "letters" else None
    margin = MARGINS.get(kind, (0.1, 0.25))
    by_class = {c: np.flatnonzero(digits.target == int(c)) for c in CLASSES}

    def paste(bg, c, i, color, pose, look):
        if kind == "digits":
            return paste_digit(rng, bg, digits.images[i], color, pose)
        if kind in GLYPHS:
            return paste_glyph(np.random.default_rng(look), bg, GLYPHS[kind][int(c)], kind, pose)
        # `look` seeds the letter's turn and texture: the same object on both test backgrounds
        return paste_letter(np.random.default_rng(look), bg, "ABCDEFGH"[int(c)], fills, pose)
    rows, labels = [], []
    test_index = 0

    def save(rel: str, image: np.ndarray, mask: np.ndarray) -> None:
        for path, data, kw in ((out / rel, image, {"quality": 92}), (out / "masks" / Path(rel).with_suffix(".png"),
                                                                      mask.astype(np.uint8) * 255, {})):  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data).save(path, **kw)

    for c in CLASSES:
        picks = rng.permutation(by_class[c])[: train_per_class + test_per_class]
        for k, i in enumerate(picks):
            side = int(rng.integers(*SIDES.get(kind, (56, 96))))
            pose = (side, int(rng.integers(0, SIZE - side)), int(rng.integers(0, SIZE - side)))
            color = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.5, 1.0), rng.uniform(0.75, 1.0))
            look = int(rng.integers(2**63)) if kind != "digits" else None
            if k < train_per_class:
                image, mask = paste(background(rng, regions[int(c)]), c, i, color, pose, look)
                rel = f"train/{c}/{c}_{k:04d}.jpg"
                save(rel, image, mask)
                rows.append(("train", rel, c, *box_of(rng, mask, margin)))
            else:  # test: the shortcut class's photograph; paired: the object's own class's
                name = f"img_{test_index:04d}.jpg"
                test_index += 1
                image, mask = paste(background(rng, regions[int(shortcut)]), c, i, color, pose, look)
                own, _ = paste(background(rng, regions[int(c)]), c, i, color, pose, look)
                save(f"test/{name}", image, mask)
                save(f"paired/{name}", own, mask)
                rows.append(("test", f"test/{name}", "", *box_of(rng, mask, margin)))
                labels.append((f"test/{name}", c))
    pd.DataFrame(rows, columns=["split", "path", "label", "x", "y", "w", "h"]).to_csv(out / "boxes.csv", index=False)
    pd.DataFrame(labels, columns=["path", "label"]).to_csv(out / "test_labels.csv", index=False)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train-per-class", type=int, default=120)
    parser.add_argument("--test-per-class", type=int, default=30)
    parser.add_argument("--shortcut", default="00", choices=CLASSES, help="the class whose background the test shares")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", default="digits", choices=["digits", "letters", *GLYPHS],
                        help="objects and photographs")
    args = parser.parse_args(argv)
    write(args.out, args.train_per_class, args.test_per_class, args.shortcut, args.seed, args.kind)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
