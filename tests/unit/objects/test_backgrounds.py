"""The backgrounds stage's step (cnnlab.objects.backgrounds) on the tiny folder."""

import numpy as np

from cnnlab.data.objects import read_objects
from cnnlab.objects.backgrounds import cut_backgrounds
from tests.unit.objects.conftest import P


def test_backgrounds_cuts_patches_per_training_image_seeded(tiny_objects_master):
    ds = read_objects(tiny_objects_master)
    found = cut_backgrounds(ds, P.backgrounds, 16, seed=3)
    patches = found.splits["patches"]
    assert len(patches) == len(ds.split("train")) * P.backgrounds.patches_per_image
    assert patches.images.shape[1:] == (3, 16, 16)
    again = cut_backgrounds(ds, P.backgrounds, 16, seed=3).splits["patches"]
    assert np.array_equal(patches.images, again.images)
