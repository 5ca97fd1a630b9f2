"""Stage prepare: one study dataset loaded from its source (built-in synthetic, torchvision's
CIFAR-10 or Imagenette, an ImageFolder tree of your own), decoded once into uint8 arrays, split
into train/val/test."""

from __future__ import annotations

from cnnlab.data.arrays import ImageSet
from cnnlab.data.sources import load_dataset
from cnnlab.errors import ParamsError
from cnnlab.params.schema import Params


def prepare(p: Params, dataset: str) -> ImageSet:
    """The dataset named `dataset` in params' `datasets`, decoded and split (seeded by p.seed)."""
    if dataset not in p.datasets:
        raise ParamsError(f"unknown dataset {dataset!r}; valid names (params key 'datasets'): "
                          f"{', '.join(p.datasets)}")  # fmt: skip
    return load_dataset(dataset, p.datasets[dataset], p.seed)


def describe(dataset: str, data: ImageSet) -> str:
    """One line: the dataset's source, classes and split sizes."""
    sizes = ", ".join(f"{name} {len(split)}" for name, split in data.splits.items())
    return f"{dataset}: {data.source}; {len(data.classes)} classes; {sizes}"
