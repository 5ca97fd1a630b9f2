"""The study's datasets from their sources, as decoded uint8 arrays split into train/val/test.

Sources (params ``datasets.<name>.source``):

- ``synthetic``: the built-in stand-in (:mod:`cnnlab.data.synthetic_classes`), offline.
- ``torchvision`` (cifar10): the real CIFAR-10 through ``torchvision.datasets.CIFAR10``, read
  from ``<root>/cifar-10-batches-py/`` (torchvision checks every file's MD5 before reading).
- ``folder`` (imagenet10): an ImageFolder tree ``<root>/train/<class>/*``, optional
  ``<root>/val/<class>/*`` and ``<root>/test/<class>/*`` (labelled) or ``<root>/test/*`` (unlabelled).
- ``imagenette`` (imagenet10): ``torchvision.datasets.Imagenette`` in ``<root>/imagenette2-*/``;
  its val split is the test set.

Where a source has no validation split, ``val_fraction`` of train is held out (stratified, seeded).
Images are resized (shorter side) and centre-cropped to ``image_size``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cnnlab.config import DatasetParams
from cnnlab.data.objects import IMAGE_SUFFIXES, DatasetError, load_rgb
from cnnlab.data.synthetic_classes import CLASS_SHAPES, generate_class_images
from cnnlab.train.split import stratified_split

SPLITS = ("train", "val", "test")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
IMAGENETTE_URL = "https://github.com/fastai/imagenette"


@dataclass
class Split:
    images: np.ndarray  # (N, 3, S, S) uint8
    labels: np.ndarray  # (N,) int64; -1 where unknown (an unlabelled test set)
    ids: list[str]  # one name per image (file path or index), for the predictions CSV

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Prepared:
    name: str
    source: str  # human-readable: which data produced it
    classes: list[str]
    image_size: int
    splits: dict[str, Split] = field(default_factory=dict)


def _square(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, size, size): shorter side resized to `size`, then centre-cropped."""
    if image.shape[-2:] != (size, size):
        from torchvision.transforms.v2 import functional as TF  # only the real sources resize

        image = TF.center_crop(TF.resize(image, size, antialias=True), [size, size])
    return image


def _decode(paths: list[Path], size: int, desc: str) -> np.ndarray:
    out = np.empty((len(paths), 3, size, size), np.uint8)
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", leave=False)):
        image = torch.from_numpy(load_rgb(path).copy()).permute(2, 0, 1)  # DatasetError names an unreadable file
        out[i] = _square(image, size).numpy()
    return out


def _limit(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` images of every class (all when 0)."""
    if not per_class:
        return np.arange(len(labels))
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))


def _hold_out(train: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    tr, va = stratified_split(train.labels, val_fraction, seed)
    pick = lambda idx: Split(train.images[idx], train.labels[idx], [train.ids[i] for i in idx])  # noqa: E731
    return pick(tr), pick(va)


def _synthetic(name: str, cfg: DatasetParams, seed: int) -> Prepared:
    stream = {"cifar10": 10, "imagenet10": 20}[name]
    images, labels = generate_class_images(seed, cfg.train_per_class, cfg.image_size, stream)
    test_images, test_labels = generate_class_images(seed, cfg.test_per_class, cfg.image_size, stream + 1)
    train = Split(images, labels, [f"train_{i:06d}" for i in range(len(labels))])
    train, val = _hold_out(train, cfg.val_fraction, seed)
    test = Split(test_images, test_labels, [f"test_{i:06d}" for i in range(len(test_labels))])
    source = (
        f"synthetic (cnnlab shapes stand-in for {name}, seed {seed}, {cfg.train_per_class}+{cfg.test_per_class} "
        f"per class, {cfg.image_size} px)"
    )
    return Prepared(name, source, list(CLASS_SHAPES), cfg.image_size, dict(train=train, val=val, test=test))


def _cifar10(cfg: DatasetParams, seed: int) -> Prepared:
    from torchvision.datasets import CIFAR10

    root = Path(cfg.root)
    splits = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = CIFAR10(str(root), train=train, download=cfg.download)
        except (RuntimeError, OSError) as e:
            raise DatasetError(
                f"CIFAR-10 not found in {root}/cifar-10-batches-py ({str(e).splitlines()[0][:100]}). "
                f"Set datasets.cifar10.download: true on a machine with internet, or download {CIFAR10_URL} "
                f"and extract it into {root}; or set datasets.cifar10.source: synthetic to work offline."
            ) from None
        labels = np.asarray(ds.targets, np.int64)
        keep = _limit(labels, cfg.limit_per_class)
        images = torch.from_numpy(np.ascontiguousarray(ds.data[keep].transpose(0, 3, 1, 2)))
        if cfg.image_size != 32:
            from torchvision.transforms.v2 import functional as TF

            images = TF.resize(images, [cfg.image_size, cfg.image_size], antialias=True)
        splits[split] = Split(images.numpy(), labels[keep], [str(i) for i in keep])
    splits["train"], splits["val"] = _hold_out(splits["train"], cfg.val_fraction, seed)
    limit = f", first {cfg.limit_per_class} per class" if cfg.limit_per_class else ""
    source = f"torchvision CIFAR-10 ({root}{limit}, {cfg.image_size} px)"
    return Prepared("cifar10", source, list(ds.classes), cfg.image_size, splits)


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


def _folder(cfg: DatasetParams, seed: int) -> Prepared:
    root = Path(cfg.root)
    if not (root / "train").is_dir():
        raise DatasetError(
            f"{root}/train not found: the folder source expects {root}/train/<class>/*.jpg (and optionally "
            f"val/<class>/, test/<class>/ or test/*.jpg). Put your ImageFolder tree there, set "
            f"datasets.imagenet10.root to it, or set datasets.imagenet10.source: synthetic to work offline."
        )
    paths, labels, classes = _class_tree(root / "train", None)
    keep = _limit(labels, cfg.limit_per_class)
    paths, labels = [paths[i] for i in keep], labels[keep]
    rel = lambda ps: [p.relative_to(root).as_posix() for p in ps]  # noqa: E731
    splits = {"train": Split(_decode(paths, cfg.image_size, "decode train"), labels, rel(paths))}
    if (root / "val").is_dir():
        vp, vl, _ = _class_tree(root / "val", classes)
        splits["val"] = Split(_decode(vp, cfg.image_size, "decode val"), vl, rel(vp))
    else:
        splits["train"], splits["val"] = _hold_out(splits["train"], cfg.val_fraction, seed)
    test = root / "test"
    if test.is_dir() and any(d.is_dir() for d in test.iterdir()):
        tp, tl, _ = _class_tree(test, classes)
    elif test.is_dir():
        tp = _files(test)
        tl = np.full(len(tp), -1, np.int64)
    else:
        tp, tl = [], np.zeros(0, np.int64)
    splits["test"] = Split(_decode(tp, cfg.image_size, "decode test"), tl, rel(tp))
    limit = f", first {cfg.limit_per_class} per class" if cfg.limit_per_class else ""
    return Prepared("imagenet10", f"folder {root}{limit} ({cfg.image_size} px)", classes, cfg.image_size, splits)


def _imagenette(cfg: DatasetParams, seed: int) -> Prepared:
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
                f"datasets.imagenet10.download: true on a machine with internet, or get {archive} from "
                f"{IMAGENETTE_URL} and extract it into {root}; or set datasets.imagenet10.source: synthetic."
            ) from None
        items = [ds[i] for i in range(len(ds))]  # (path, label); the loader returns the path
        labels = np.asarray([label for _, label in items], np.int64)
        keep = _limit(labels, cfg.limit_per_class)
        paths = [Path(items[i][0]) for i in keep]
        ids = [os.path.relpath(p, root) for p in paths]
        splits[split] = Split(_decode(paths, cfg.image_size, f"decode {split}"), labels[keep], ids)
    splits["train"], splits["val"] = _hold_out(splits["train"], cfg.val_fraction, seed)
    classes = [names[0] for names in ds.classes]
    limit = f", first {cfg.limit_per_class} per class" if cfg.limit_per_class else ""
    return Prepared("imagenet10", f"torchvision Imagenette {size} ({root}{limit}, {cfg.image_size} px)", classes,
                    cfg.image_size, splits)  # fmt: skip


def load_dataset(name: str, cfg: DatasetParams, seed: int) -> Prepared:
    """Load dataset `name` ("cifar10" or "imagenet10") from the source its params choose.

    Raises:
        DatasetError: a real source is missing or malformed, with how to get or fix it.
    """
    if cfg.source == "synthetic":
        return _synthetic(name, cfg, seed)
    if name == "cifar10" and cfg.source == "torchvision":
        return _cifar10(cfg, seed)
    if name == "imagenet10" and cfg.source == "folder":
        return _folder(cfg, seed)
    if name == "imagenet10" and cfg.source == "imagenette":
        return _imagenette(cfg, seed)
    raise DatasetError(f"datasets.{name}.source: {cfg.source!r} is not a source of {name}")


def save_prepared(prepared: Prepared, out: str | Path) -> None:
    """Write the splits as .npy arrays, the ids as CSV and dataset.json, replacing `out` atomically."""
    import pandas as pd

    from cnnlab.io import atomic_dir, save_array, write_csv, write_json

    with atomic_dir(out) as tmp:
        for name, split in prepared.splits.items():
            save_array(tmp / f"{name}_images.npy", split.images)
            save_array(tmp / f"{name}_labels.npy", split.labels)
            write_csv(tmp / f"{name}_ids.csv", pd.DataFrame({"id": split.ids}))
        info = {
            "name": prepared.name,
            "source": prepared.source,
            "classes": prepared.classes,
            "image_size": prepared.image_size,
            "sizes": {name: len(split) for name, split in prepared.splits.items()},
            "test_labelled": bool(len(prepared.splits["test"]) and (prepared.splits["test"].labels >= 0).all()),
        }
        write_json(tmp / "dataset.json", info)


def load_prepared(folder: str | Path) -> Prepared:
    """Read what :func:`save_prepared` wrote."""
    import json

    import pandas as pd

    from cnnlab.io import load_array

    folder = Path(folder)
    if not (folder / "dataset.json").is_file():
        raise FileNotFoundError(f"{folder}/dataset.json not found; run `dvc repro` to prepare the dataset")
    info = json.loads((folder / "dataset.json").read_text())
    splits = {
        name: Split(
            load_array(folder / f"{name}_images.npy"),
            load_array(folder / f"{name}_labels.npy"),
            pd.read_csv(folder / f"{name}_ids.csv", dtype=str, keep_default_na=False)["id"].tolist(),
        )
        for name in SPLITS
    }
    return Prepared(info["name"], info["source"], info["classes"], info["image_size"], splits)
