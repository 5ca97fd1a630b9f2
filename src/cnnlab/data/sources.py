"""The study's datasets from their sources, decoded once into uint8 arrays split into
train/val/test (the format of :mod:`cnnlab.data.arrays`).

Sources (params ``datasets.<name>.source``; the name is the user's):

- ``synthetic``: the built-in stand-in (:mod:`cnnlab.data.synthetic_classes`), offline.
- ``cifar10``: the real CIFAR-10 through ``torchvision.datasets.CIFAR10``, read from
  ``<root>/cifar-10-batches-py/`` (torchvision checks every file's MD5 before reading).
- ``imagenette``: ``torchvision.datasets.Imagenette`` in ``<root>/imagenette2-*/``; its val split
  is the test set.
- ``folder``: an ImageFolder tree ``<root>/train/<class>/*``, optional ``<root>/val/<class>/*``
  and ``<root>/test/<class>/*`` (labelled) or ``<root>/test/*`` (unlabelled).

Where a source has no validation split, ``val_fraction`` of train is held out (stratified, seeded).
Images are resized (shorter side) and centre-cropped to ``image_size``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cnnlab.data.arrays import ImageSet, Split
from cnnlab.data.objects import IMAGE_SUFFIXES, load_rgb
from cnnlab.data.split import first_per_class, stratified_split
from cnnlab.data.synthetic_classes import CLASS_SHAPES, generate_class_images
from cnnlab.errors import DatasetError
from cnnlab.params.schema import Cifar10Dataset, Dataset, FolderDataset, ImagenetteDataset, SyntheticDataset

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
IMAGENETTE_URL = "https://github.com/fastai/imagenette"


def _split(images: np.ndarray, labels: np.ndarray, ids: list[str], classes: list[str]) -> Split:
    """A split from int labels (-1: unknown)."""
    names = [classes[k] if k >= 0 else "" for k in labels]
    return Split(images, pd.DataFrame({"id": ids, "label": names}))


def square(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, size, size): shorter side resized to `size`, then centre-cropped."""
    if image.shape[-2:] != (size, size):
        from torchvision.transforms.v2 import functional as TF  # only the real sources resize

        image = TF.center_crop(TF.resize(image, size, antialias=True), [size, size])
    return image


def decodesquare(paths: list[Path], size: int, desc: str) -> np.ndarray:
    """Decode image files to (N, 3, size, size) uint8: shorter side resized to `size`, centre-cropped."""
    out = np.empty((len(paths), 3, size, size), np.uint8)
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", leave=False)):
        image = torch.from_numpy(load_rgb(path).copy()).permute(2, 0, 1)  # DatasetError names an unreadable file
        out[i] = square(image, size).numpy()
    return out


def _hold_out(train: Split, classes: list[str], val_fraction: float, seed: int) -> tuple[Split, Split]:
    tr, va = stratified_split(train.labels(classes), val_fraction, seed, classes)
    return train.subset(tr), train.subset(va)


def _synthetic(name: str, cfg: SyntheticDataset, seed: int) -> ImageSet:
    classes = list(CLASS_SHAPES)
    images, labels = generate_class_images(seed, cfg.train_per_class, cfg.image_size, cfg.stream)
    test_images, test_labels = generate_class_images(seed, cfg.test_per_class, cfg.image_size, cfg.stream + 1)
    train = _split(images, labels, [f"train_{i:06d}" for i in range(len(labels))], classes)
    train, val = _hold_out(train, classes, cfg.val_fraction, seed)
    test = _split(test_images, test_labels, [f"test_{i:06d}" for i in range(len(test_labels))], classes)
    source = (
        f"synthetic (cnnlab shapes stand-in for {name}, seed {seed}, {cfg.train_per_class}+{cfg.test_per_class} "
        f"per class, {cfg.image_size} px)"
    )
    return ImageSet(name, source, classes, dict(train=train, val=val, test=test))


def _cifar10(name: str, cfg: Cifar10Dataset, seed: int) -> ImageSet:
    from torchvision.datasets import CIFAR10

    root = Path(cfg.root)
    splits = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = CIFAR10(str(root), train=train, download=cfg.download)
        except (RuntimeError, OSError) as e:
            raise DatasetError(
                f"CIFAR-10 not found in {root}/cifar-10-batches-py ({str(e).splitlines()[0][:100]}). "
                f"Set datasets.{name}.download: true on a machine with internet, or download {CIFAR10_URL} "
                f"and extract it into {root}; or run a synthetic dataset offline (study.datasets)."
            ) from None
        labels = np.asarray(ds.targets, np.int64)
        keep = first_per_class(labels, cfg.limit_per_class)
        images = torch.from_numpy(np.ascontiguousarray(ds.data[keep].transpose(0, 3, 1, 2)))
        if cfg.image_size != 32:
            from torchvision.transforms.v2 import functional as TF

            images = TF.resize(images, [cfg.image_size, cfg.image_size], antialias=True)
        splits[split] = _split(images.numpy(), labels[keep], [str(i) for i in keep], list(ds.classes))
    splits["train"], splits["val"] = _hold_out(splits["train"], list(ds.classes), cfg.val_fraction, seed)
    limit = f", first {cfg.limit_per_class} per class" if cfg.limit_per_class else ""
    source = f"torchvision CIFAR-10 ({root}{limit}, {cfg.image_size} px)"
    return ImageSet(name, source, list(ds.classes), {s: splits[s] for s in ("train", "val", "test")})


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_tree(folder: Path, classes: list[str] | None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files and labels of an ImageFolder-style tree folder/<class>/*."""
    found = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if classes is None:
        classes = found
    elif found != classes:
        raise DatasetError(
            f"{folder}: class folders {found} differ from train/'s {classes}; every split needs the same classes"
        )
    paths, labels = [], []
    for c, name in enumerate(classes):
        files = _files(folder / name)
        if not files:
            raise DatasetError(f"{folder / name}: no images (.png, .jpg, .jpeg)")
        paths += files
        labels += [c] * len(files)
    return paths, np.asarray(labels, np.int64), classes


def _folder(name: str, cfg: FolderDataset, seed: int) -> ImageSet:
    root = Path(cfg.root)
    if not (root / "train").is_dir():
        raise DatasetError(
            f"{root}/train not found: the folder source expects {root}/train/<class>/*.jpg (and optionally "
            f"val/<class>/, test/<class>/ or test/*.jpg). Put your ImageFolder tree there or set "
            f"datasets.{name}.root to it."
        )
    paths, labels, classes = _class_tree(root / "train", None)
    keep = first_per_class(labels, cfg.limit_per_class)
    paths, labels = [paths[i] for i in keep], labels[keep]

    def decoded(ps: list[Path], ls: np.ndarray, split: str) -> Split:
        ids = [p.relative_to(root).as_posix() for p in ps]
        return _split(decodesquare(ps, cfg.image_size, f"decode {split}"), ls, ids, classes)

    splits = {"train": decoded(paths, labels, "train")}
    if (root / "val").is_dir():
        vp, vl, _ = _class_tree(root / "val", classes)
        splits["val"] = decoded(vp, vl, "val")
    else:
        splits["train"], splits["val"] = _hold_out(splits["train"], classes, cfg.val_fraction, seed)
    test = root / "test"
    if test.is_dir() and any(d.is_dir() for d in test.iterdir()):
        tp, tl, _ = _class_tree(test, classes)
    elif test.is_dir():
        tp = _files(test)
        tl = np.full(len(tp), -1, np.int64)
    else:
        tp, tl = [], np.zeros(0, np.int64)
    splits["test"] = decoded(tp, tl, "test")
    limit = f", first {cfg.limit_per_class} per class" if cfg.limit_per_class else ""
    return ImageSet(name, f"folder {root}{limit} ({cfg.image_size} px)", classes,
                    {s: splits[s] for s in ("train", "val", "test")})  # fmt: skip


def _imagenette(name: str, cfg: ImagenetteDataset, seed: int) -> ImageSet:
    from torchvision.datasets import Imagenette

    size = "160px" if cfg.image_size <= 160 else "320px" if cfg.image_size <= 320 else "full"
    archive = Path(Imagenette._ARCHIVES[size][0]).name
    root = Path(cfg.root)
    splits = {}
    for split, tv_split in (("train", "train"), ("test", "val")):
        try:
            ds = Imagenette(str(root), split=tv_split, size=size, download=cfg.download, loader=lambda p: p)
        except (RuntimeError, OSError) as e:
            raise DatasetError(
                f"Imagenette ({size}) not found in {root} ({str(e).splitlines()[0][:100]}). Set "
                f"datasets.{name}.download: true on a machine with internet, or get {archive} from "
                f"{IMAGENETTE_URL} and extract it into {root}; or run a synthetic dataset offline (study.datasets)."
            ) from None
        items = [ds[i] for i in range(len(ds))]  # (path, label); the loader returns the path
        labels = np.asarray([label for _, label in items], np.int64)
        keep = first_per_class(labels, cfg.limit_per_class)
        paths = [Path(items[i][0]) for i in keep]
        ids = [os.path.relpath(p, root) for p in paths]
        classes = [names[0] for names in ds.classes]
        splits[split] = _split(decodesquare(paths, cfg.image_size, f"decode {split}"), labels[keep], ids, classes)
    splits["train"], splits["val"] = _hold_out(splits["train"], classes, cfg.val_fraction, seed)
    limit = f", first {cfg.limit_per_class} per class" if cfg.limit_per_class else ""
    return ImageSet(name, f"torchvision Imagenette {size} ({root}{limit}, {cfg.image_size} px)", classes,
                    {s: splits[s] for s in ("train", "val", "test")})  # fmt: skip


LOADERS = {"synthetic": _synthetic, "cifar10": _cifar10, "imagenette": _imagenette, "folder": _folder}


def load_dataset(name: str, cfg: Dataset, seed: int) -> ImageSet:
    """Load dataset `name` from the source its params choose.

    Raises:
        DatasetError: a real source is missing or malformed, with how to get or fix it.
    """
    return LOADERS[cfg.source](name, cfg, seed)
