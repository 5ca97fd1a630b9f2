"""Shared by the objects chain's step tests: tiny params and the tiny folder's crops."""

import pytest

from cnnlab.data.objects import read_objects
from cnnlab.objects.crop import cut_crops
from tests.conftest import make_params

P = make_params({"crop": {"size": 16}, "segment": {"iterations": 1, "max_side": 32}})


@pytest.fixture(scope="module")
def cropped(tiny_objects_master):
    ds = read_objects(tiny_objects_master)
    return ds, cut_crops(ds, P.crop)
