"""Stage crop: every image (train, test, paired) cut to its box and resized to crop.size, and again
with crop.context of the photograph around the box (the context crops the masker and the GrabCut
fallback learn each photograph's background from)."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.data.arrays import ImageSet
from cnnlab.data.crops import context_pad, crops_with_context
from cnnlab.data.objects import ObjectsDataset
from cnnlab.params.schema import Crop


@dataclass
class Cropped:
    """The crops of every split and their context crops (whose `masks` say which pixels lie inside
    the photograph)."""

    crops: ImageSet
    context: ImageSet

    def counts(self) -> dict[str, int]:
        """{<split>_crops: how many}: the stage's metrics."""
        return {f"{name}_crops": len(split) for name, split in self.crops.splits.items()}


def cut_crops(ds: ObjectsDataset, cfg: Crop) -> Cropped:
    """Crop every split of `ds` (paired only where the folder has it) at cfg.size px, with
    cfg.context of each box's side around it in the context crops."""
    splits = ["train", "test"] + (["paired"] if len(ds.split("paired")) else [])
    pad = context_pad(cfg.size, cfg.context)
    both = {s: crops_with_context(ds, s, cfg.size, pad) for s in splits}
    crops = ImageSet("crops", ds.source, list(ds.classes), {s: pair[0] for s, pair in both.items()})
    context = ImageSet("context crops", ds.source, list(ds.classes), {s: pair[1] for s, pair in both.items()})
    return Cropped(crops, context)
