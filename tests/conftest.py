"""Shared fixtures: a tiny dataset in the objects format, made by the built-in generator."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cnnlab.data.synthetic import generate_objects

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_objects_master(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("objects") / "objects"
    generate_objects(out, seed=1, classes=8, train_per_class=3, test_per_class=1, image_size=64, workers=1)
    return out


@pytest.fixture
def tiny_objects(tiny_objects_master, tmp_path) -> Path:
    """A fresh copy per test, free to break."""
    dst = tmp_path / "objects"
    shutil.copytree(tiny_objects_master, dst)
    return dst
