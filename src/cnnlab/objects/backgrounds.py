"""Stage backgrounds: the boxes of every training image blacked out (background only) and
crop-sized patches cut from them: find_shortcut learns each class's background from them, the
background classifier trains on those of the shortcut and contrast classes, mixed_rand pastes
objects on all of them, evaluate checks leakage on them."""

from __future__ import annotations

from cnnlab.data.arrays import ImageSet
from cnnlab.data.crops import background_patches
from cnnlab.data.objects import ObjectsDataset
from cnnlab.params.schema import Backgrounds


def cut_backgrounds(ds: ObjectsDataset, cfg: Backgrounds, size: int, seed: int) -> ImageSet:
    """cfg.patches_per_image patches of `size` px per training image (at most cfg.max_box_overlap
    of a patch on the blacked-out box), drawn by `seed`: split "patches", labelled by class."""
    patches = background_patches(ds, ds.classes, size, cfg.patches_per_image, cfg.max_box_overlap, seed)
    return ImageSet("background patches", ds.source, list(ds.classes), {"patches": patches})
