"""Stage segment: a GrabCut foreground mask, from its box alone, for every crop of every split
(train, test, paired): what the `segment` and `mixed_rand` cures use, alike for every class. A
degenerate GrabCut mask (under 5% or over 95% of its crop) gives way to the crop's ring seeds,
then to the box's ellipse; the metrics say how often, per split."""

from __future__ import annotations

import numpy as np

from cnnlab.data.arrays import ImageSet
from cnnlab.data.objects import ObjectsDataset
from cnnlab.data.segment import SOURCES, segment_split
from cnnlab.metrics import mask_quality

METHOD = ("GrabCut initialised with the box (no training, no labels); degenerate masks: the ring seeds, then the "
          "box's ellipse")  # fmt: skip


def segment_crops(ds: ObjectsDataset, crops: ImageSet, size: int, settings: dict) -> tuple[dict, dict]:
    """({split: bool masks (N, size, size)}, metrics): every split of `crops` segmented from its
    boxes in `ds` (settings: params' segment_settings()); per split the mask quality (against the
    ground truth where the folder has it) and the share of masks from each source (`from_*`)."""
    metrics, masks = {"data_source": crops.source, "method": METHOD}, {}
    for name, split in crops.splits.items():
        masks[name], which = segment_split(ds, name, size, **settings)
        has = split.index.has_mask.to_numpy()
        truth = split.masks[has] if has.any() else None
        scored = masks[name][has] if has.any() else masks[name]
        shares = {f"from_{k}": float(np.mean(which == i)) for i, k in enumerate(SOURCES)}
        metrics[name] = {"crops": len(has), **mask_quality(scored, truth), **shares}
    return masks, metrics
