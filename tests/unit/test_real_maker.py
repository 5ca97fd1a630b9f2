"""tests/helpers/make_real_objects.py writes folders the objects chain reads, of every kind."""

import numpy as np
import pytest

from cnnlab.data.objects import load_mask, load_rgb, read_objects
from tests.helpers.make_real_objects import write


@pytest.mark.parametrize("kind", ["digits", "letters", "pictograms", "camouflage"])
def test_each_kind_is_a_valid_objects_folder_with_paired_objects(tmp_path, kind):
    out = write(tmp_path / kind, train_per_class=2, test_per_class=1, shortcut="03", seed=0, kind=kind)
    ds = read_objects(out)
    assert len(ds.split("train")) == 16 and len(ds.split("test")) == 8
    for r in ds.split("test").itertuples(index=False):
        image = load_rgb(out / r.path)
        mask = load_mask(out / r.mask, image.shape[:2])
        paired = load_rgb(out / r.path.replace("test/", "paired/"))
        assert mask[r.y : r.y + r.h, r.x : r.x + r.w].sum() == mask.sum() > 0  # the object lies in its box
        # the same object on another background: close on the object, different around it
        diff = np.abs(image.astype(int) - paired)
        assert diff[mask].mean() < diff[~mask].mean()


def test_pictograms_fill_their_boxes_and_camouflage_objects_are_small(tmp_path):
    for kind, check in (("pictograms", lambda fill, side: fill > 0.85), ("camouflage", lambda fill, side: side <= 60)):
        out = write(tmp_path / kind, train_per_class=2, test_per_class=1, shortcut="02", seed=0, kind=kind)
        ds = read_objects(out)
        for r in ds.split("train").itertuples(index=False):
            mask = load_mask(out / r.mask, (160, 160))
            ys, xs = np.nonzero(mask)
            fill = (np.ptp(xs) + 1) * (np.ptp(ys) + 1) / (r.w * r.h)  # the object's extent against its box
            assert check(fill, max(r.w, r.h)), (kind, r.path, fill, r.w, r.h)
