"""The objects chain's data steps on a tiny folder: crop (cnnlab.objects.crop), backgrounds
(cnnlab.objects.backgrounds), segment (cnnlab.objects.segment), generate (cnnlab.objects.generate)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from cnnlab.data.objects import read_objects
from cnnlab.objects.backgrounds import cut_backgrounds
from cnnlab.objects.crop import cut_crops
from cnnlab.objects.generate import write_dataset
from cnnlab.objects.segment import segment_crops
from tests.conftest import make_params

P = make_params({"crop": {"size": 16}, "segment": {"iterations": 1, "max_side": 32}})


@pytest.fixture(scope="module")
def cropped(tiny_objects_master):
    ds = read_objects(tiny_objects_master)
    return ds, cut_crops(ds, P.crop)


def test_crop_cuts_every_split_with_its_context(cropped):
    ds, cut = cropped
    pad = round(P.crop.context * 16)
    for split, crops in cut.crops.splits.items():
        assert crops.images.shape == (len(ds.split(split)), 3, 16, 16)
        context = cut.context.splits[split]
        assert context.images.shape[-1] == 16 + 2 * pad
        assert context.masks.dtype == bool and context.masks.any()  # which pixels lie inside the photograph
    assert cut.counts() == {f"{s}_crops": len(ds.split(s)) for s in cut.crops.splits}


def test_backgrounds_cuts_patches_per_training_image_seeded(tiny_objects_master):
    ds = read_objects(tiny_objects_master)
    found = cut_backgrounds(ds, P.backgrounds, 16, seed=3)
    patches = found.splits["patches"]
    assert len(patches) == len(ds.split("train")) * P.backgrounds.patches_per_image
    assert patches.images.shape[1:] == (3, 16, 16)
    again = cut_backgrounds(ds, P.backgrounds, 16, seed=3).splits["patches"]
    assert np.array_equal(patches.images, again.images)


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


def test_generate_writes_one_zip_of_the_objects_format(tmp_path):
    cfg = P.generate.model_copy(update={"classes": 2, "train_per_class": 1, "test_per_class": 1, "image_size": 32})
    out = tmp_path / "raw" / "objects.zip"
    write_dataset(cfg, 0, out)
    names = zipfile.ZipFile(out).namelist()
    assert "boxes.csv" in names and any(n.startswith("train/") for n in names)
    assert not list(out.parent.glob(".generate-*"))  # the temporary folder is gone
