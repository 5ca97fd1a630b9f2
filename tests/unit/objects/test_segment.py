"""The segment stage's step (cnnlab.objects.segment) on the tiny folder's crops."""

import pytest

from cnnlab.objects.segment import segment_crops
from tests.unit.objects.conftest import P


def test_segment_masks_every_split_and_counts_each_source(cropped, tiny_objects_master):
    ds, cut = cropped
    masks, metrics = segment_crops(ds, cut.crops, 16, P.segment_settings())
    assert set(masks) == set(cut.crops.splits) and metrics["data_source"] == cut.crops.source
    for split, m in masks.items():
        assert m.shape == (len(ds.split(split)), 16, 16) and m.dtype == bool
        shares = [v for k, v in metrics[split].items() if k.startswith("from_")]
        assert sum(shares) == pytest.approx(1.0)
        assert metrics[split]["degenerate_fraction"] == 0.0  # every degenerate mask fell back
    assert 0.0 < metrics["train"]["mask_iou"] <= 1.0  # the generator's folders have ground truth
