"""Reader for the objects dataset format ("bring your own data").

A dataset folder (or a .zip file of one: the `generate` stage packs the built-in dataset so, as
one file for DVC to hash instead of thousands) holds::

    train/<class>/<name>.png|jpg   RGB images, one folder per class
    test/<name>.png|jpg            unlabelled test images
    boxes.csv                      split,path,label,x,y,w,h   (one row per image)
    test_labels.csv   (optional)   path,label                 (scores the test set)
    masks/<path>.png  (optional)   ground-truth object masks, non-zero = object
    paired/<name>     (optional)   the object of test/<name>, same pose and box, on its own
                                   class's background (for the BG-gap; needs test_labels.csv)

:func:`read_objects` checks the whole folder before any stage writes anything and raises
:class:`DatasetError` naming the file, the CSV line or the class at fault.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from cnnlab.errors import DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
BOX_COLUMNS = ["split", "path", "label", "x", "y", "w", "h"]
GENERATOR_MARKER = "cnnlab_generator.json"


@dataclass(frozen=True)
class ObjectsDataset:
    """A validated objects dataset.

    Attributes:
        root: the dataset folder, or the top of a packed one (a zipfile.Path); `root / path`
            is an image either way (:func:`load_rgb` reads both).
        classes: class names (the folders of train/, sorted).
        rows: one row per image: split, path, label ('' for unlabelled test rows), x, y, w, h,
            width, height (image size), mask (relative mask path or ''). Images of paired/ are
            rows of split 'paired' with their test image's label and box.
        source: a short description of where the data came from (recorded with every metric).
    """

    root: Path | zipfile.Path
    classes: tuple[str, ...]
    rows: pd.DataFrame
    source: str

    def split(self, name: str) -> pd.DataFrame:
        return self.rows[self.rows.split == name].reset_index(drop=True)


def _line(i: int) -> str:
    # pandas row i is CSV line i + 2 (line 1 is the header)
    return f"line {i + 2}"


def dataset_root(root: str | Path) -> Path | zipfile.Path | None:
    """The dataset at `root`: a folder as it is; a .zip file as a zipfile.Path of its top (or of
    its one top folder, for a zip made of the folder itself); None when it is neither."""
    root = Path(root)
    if root.is_dir():
        return root
    if not (root.is_file() and zipfile.is_zipfile(root)):
        return None
    top = zipfile.Path(zipfile.ZipFile(root))
    if not (top / "boxes.csv").is_file():
        inner = list(top.iterdir())
        if len(inner) == 1 and inner[0].is_dir():
            return inner[0]
    return top


def _readable(path):
    """What PIL and pandas open: a file path as it is, a member of a packed dataset as bytes."""
    return io.BytesIO(path.read_bytes()) if isinstance(path, zipfile.Path) else path


def _rel(path, root) -> str:
    """`path` relative to the dataset root, with /."""
    if isinstance(path, zipfile.Path):
        return path.at[len(root.at) :].rstrip("/")
    return path.relative_to(root).as_posix()


def _image_files(folder) -> list:
    if not folder.is_dir():
        return []
    images = (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(images, key=lambda p: p.name)


def read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """The named columns of a CSV, as stripped strings (paths with /), or a DatasetError naming the
    file and what is wrong (empty, malformed, a column missing). A byte-order mark is allowed."""
    try:
        # utf-8-sig: spreadsheets often write a byte-order mark before the header
        frame = pd.read_csv(_readable(path), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: file is empty; expected the header {','.join(columns)}") from None
    except pd.errors.ParserError as e:
        raise DatasetError(f"{path}: cannot parse CSV ({e}); fix the malformed line") from None
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; the header must be {','.join(columns)}")
    frame = frame[columns].apply(lambda col: col.str.strip())
    if "path" in frame:
        frame["path"] = frame["path"].str.replace("\\", "/", regex=False)  # paths written on Windows
    return frame


def _describe_source(root, given: Path) -> str:
    marker = root / GENERATOR_MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        return f"synthetic (cnnlab generator, seed {info.get('seed')}) at {given}"
    return f"{'folder' if given.is_dir() else 'zip file'} {given}"


def read_objects(root: str | Path) -> ObjectsDataset:
    """Read and validate an objects dataset folder, or a .zip of one (without decoding the images).

    Image headers are opened to learn each image's size, so boxes are checked against it.

    Raises:
        DatasetError: naming the file, the boxes.csv line or the class, and what to do.
    """
    given = Path(root)
    root = dataset_root(given)
    if root is None:
        what = f"{given} is neither a folder nor a .zip file" if given.exists() else f"{given} does not exist"
        raise DatasetError(
            f"{what}; set params key 'objects.root' to a folder in the objects format, or a .zip of one (see README, "
            "'Bring your own data')"
        )
    boxes_path = root / "boxes.csv"
    rows = _read_boxes(boxes_path)
    class_dirs = _class_dirs(root)
    classes = tuple(p.name for p in class_dirs)
    rows = _whole_number_boxes(rows, boxes_path)
    sizes = [_checked_row(root, r, f"{boxes_path} {_line(i)} ({r.path})", classes)
             for i, r in enumerate(rows.itertuples(index=False))]  # fmt: skip
    rows = rows.assign(width=[w for w, _ in sizes], height=[h for _, h in sizes],
                       mask=[_mask_path(root, path) for path in rows.path])  # fmt: skip
    _check_listed(root, rows, class_dirs, boxes_path)
    if (root / "test_labels.csv").is_file():
        rows = _with_test_labels(root / "test_labels.csv", rows, classes, boxes_path)
    rows = pd.concat([rows, _paired_rows(root, rows)], ignore_index=True)
    source = _describe_source(root, given)
    return ObjectsDataset(root=root, classes=classes, rows=rows.reset_index(drop=True), source=source)


def _class_dirs(root: Path) -> list[Path]:
    """The class folders of train/, by name; each must hold images."""
    train = root / "train"
    class_dirs = sorted((p for p in train.iterdir() if p.is_dir()), key=lambda p: p.name) if train.is_dir() else []
    if not class_dirs:
        raise DatasetError(f"{root / 'train'}: no class folders; expected train/<class>/<image>")
    for d in class_dirs:
        if not _image_files(d):
            raise DatasetError(
                f"class '{d.name}' is empty: {d} holds no .png/.jpg images; add images or remove the folder"
            )
    return class_dirs


def _read_boxes(boxes_path: Path) -> pd.DataFrame:
    """boxes.csv, with its columns and at least one row."""
    if not boxes_path.is_file():
        raise DatasetError(f"{boxes_path} not found; every dataset folder needs a boxes.csv ({','.join(BOX_COLUMNS)})")
    rows = read_csv(boxes_path, BOX_COLUMNS)
    if rows.empty:
        raise DatasetError(f"{boxes_path}: no rows; add one row per image")
    return rows


def _whole_number_boxes(rows: pd.DataFrame, boxes_path: Path) -> pd.DataFrame:
    """The rows, one per image, with box coordinates as whole numbers of pixels."""
    dup = rows.path.duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DatasetError(f"{boxes_path} {_line(i)}: path {rows.path[i]} appears twice; keep one row per image")
    coords = {}
    for col in ("x", "y", "w", "h"):
        values = pd.to_numeric(rows[col], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float)) | (values != values.round()).to_numpy()  # NaN, inf, 3.5
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                f"{boxes_path} {_line(i)} ({rows.path[i]}): column {col} must be a whole number of pixels, "
                f"got {rows[col][i]!r}"
            )
        coords[col] = values.astype(np.int64)
    return rows.assign(**coords)


def _check_split_and_label(r, where: str, classes: tuple[str, ...]) -> None:
    parts = Path(r.path).parts
    if r.split == "train":
        if len(parts) != 3 or parts[0] != "train":
            raise DatasetError(f"{where}: train paths must look like train/<class>/<name>")
        if r.label == "":
            raise DatasetError(f"{where}: train row without a label; set label to its class ({parts[1]})")
        if r.label not in classes:
            raise DatasetError(
                f"{where}: unknown class '{r.label}'; classes are the folders of train/: {', '.join(classes)}"
            )
        if parts[1] != r.label:
            raise DatasetError(f"{where}: label '{r.label}' does not match its folder '{parts[1]}'")
    elif r.split == "test":
        if len(parts) != 2 or parts[0] != "test":
            raise DatasetError(f"{where}: test paths must look like test/<name>")
        if r.label != "":
            raise DatasetError(f"{where}: test rows carry no label; put test labels in test_labels.csv")
    else:
        raise DatasetError(f"{where}: split must be 'train' or 'test', got '{r.split}'")


def _checked_row(root: Path, r, where: str, classes: tuple[str, ...]) -> tuple[int, int]:
    """(width, height) of a row's image, once its split, label, path and box are checked."""
    _check_split_and_label(r, where, classes)
    if Path(r.path).suffix.lower() not in IMAGE_SUFFIXES:
        raise DatasetError(f"{where}: not a .png/.jpg image path")
    image_path = root / r.path
    if not image_path.is_file():
        raise DatasetError(f"{where}: image {image_path} does not exist; add it or delete the row")
    try:
        with Image.open(_readable(image_path)) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetError(f"{image_path}: unreadable image ({e}); replace the file or delete it and its row") from None
    if r.w <= 0 or r.h <= 0:
        raise DatasetError(f"{where}: zero-size box (w={r.w}, h={r.h}); boxes need w > 0 and h > 0")
    if r.x < 0 or r.y < 0 or r.x + r.w > width or r.y + r.h > height:
        raise DatasetError(
            f"{where}: box x={r.x} y={r.y} w={r.w} h={r.h} lies outside the {width}x{height} image; "
            "fix the box (x,y is the top-left pixel)"
        )
    return width, height


def _check_listed(root: Path, rows: pd.DataFrame, class_dirs: list[Path], boxes_path: Path) -> None:
    """Every image on disk has a row, and every class a row."""
    listed = set(rows.path)
    on_disk = [p for d in class_dirs for p in _image_files(d)] + _image_files(root / "test")
    for p in on_disk:
        if _rel(p, root) not in listed:
            raise DatasetError(f"{p}: image without a row in {boxes_path}; add its box or remove the image")
    for d in class_dirs:
        if not (rows.label == d.name).any():
            raise DatasetError(f"class '{d.name}' has no rows in {boxes_path}")


def _with_test_labels(path: Path, rows: pd.DataFrame, classes: tuple[str, ...], boxes_path: Path) -> pd.DataFrame:
    """The rows with the test rows' labels from test_labels.csv (every test row needs one)."""
    labels = read_csv(path, ["path", "label"])
    test_paths = set(rows.path[rows.split == "test"])
    lookup = {}
    for i, r in enumerate(labels.itertuples(index=False)):
        where = f"{path} {_line(i)} ({r.path})"
        if r.path not in test_paths:
            raise DatasetError(f"{where}: not a test row of {boxes_path}")
        if r.label not in classes:
            raise DatasetError(f"{where}: unknown class '{r.label}'; classes are: {', '.join(classes)}")
        lookup[r.path] = r.label
    missing = sorted(test_paths - set(lookup))
    if missing:
        raise DatasetError(f"{path}: no label for {missing[0]} ({len(missing)} test images unlabelled)")
    rows = rows.copy()
    is_test = rows.split == "test"
    rows.loc[is_test, "label"] = rows.path[is_test].map(lookup)
    return rows


def _paired_rows(root, rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of paired/<name>: the test row of test/<name> with the paired image's path and mask."""
    files = _image_files(root / "paired")
    if not files:
        return rows.iloc[:0]
    test = rows[rows.split == "test"].set_index("path")
    out = []
    for f in files:
        rel, test_rel = _rel(f, root), f"test/{f.name}"
        if test_rel not in test.index:
            raise DatasetError(
                f"{f}: paired image without a test image {root / test_rel}; remove it or add the test image"
            )
        r = test.loc[test_rel]
        if r.label == "":
            raise DatasetError(f"{f}: paired images need test labels; add {root / 'test_labels.csv'}")
        with Image.open(_readable(f)) as im:
            if im.size != (r.width, r.height):
                raise DatasetError(
                    f"{f}: {im.size[0]}x{im.size[1]}, its test image {r.width}x{r.height}; pairs share the box"
                )
        out.append({**r.to_dict(), "split": "paired", "path": rel, "mask": _mask_path(root, rel)})
    return pd.DataFrame(out, columns=rows.columns)


def _mask_path(root, rel: str) -> str:
    for candidate in (Path("masks") / Path(rel).with_suffix(".png"), Path("masks") / (rel + ".png")):
        if (root / candidate.as_posix()).is_file():
            return candidate.as_posix()
    return ""


def load_rgb(path: str | Path | zipfile.Path) -> np.ndarray:
    """Decode an image file (or a member of a packed dataset) to an (H, W, 3) uint8 array;
    greyscale and RGBA are converted to RGB.

    Raises:
        DatasetError: the file is unreadable or truncated.
    """
    try:
        with Image.open(_readable(path)) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DatasetError(
            f"{path}: unreadable or truncated image ({e}); replace the file or delete it and its row"
        ) from None


def load_mask(path: str | Path | zipfile.Path, shape: tuple[int, int]) -> np.ndarray:
    """Decode a ground-truth mask to an (H, W) bool array (non-zero = object)."""
    try:
        with Image.open(_readable(path)) as im:
            im.load()
            mask = np.asarray(im.convert("L")) > 0
    except (UnidentifiedImageError, OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: unreadable mask ({e}); replace or delete it") from None
    if mask.shape != shape:
        raise DatasetError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, its image {shape[1]}x{shape[0]}")
    return mask
