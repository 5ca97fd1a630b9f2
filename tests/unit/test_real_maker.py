"""tests/scripts/make_real_objects.py writes folders the objects chain reads, of both kinds."""

import numpy as np
import pytest

from cnnlab.data.objects import load_mask, load_rgb, read_objects
from tests.scripts.make_real_objects import write


@pytest.mark.parametrize("kind", ["digits", "letters"])
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
