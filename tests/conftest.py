"""Shared fixtures: params made from the repository's params.yaml with a few keys overridden (as
lightning-hydra-template's fixtures shrink the real config), and a tiny dataset in the objects
format, made by the built-in generator."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cnnlab.config import Params, Training, merge, parse_params, read_yaml
from cnnlab.data.synthetic import generate_objects

REPO = Path(__file__).resolve().parents[1]
REPO_PARAMS = read_yaml(REPO / "params.yaml")


def params_data(overrides: dict | None = None) -> dict:
    """params.yaml as a mapping, with `overrides` merged in (cnnlab.config.merge)."""
    return merge(REPO_PARAMS, overrides or {})


def make_params(overrides: dict | None = None) -> Params:
    """Validated params: the repository's params.yaml with `overrides` merged in."""
    return parse_params(params_data(overrides))


def training(**settings) -> Training:
    """A training config for the loop's tests: plain SGD, lr 0.05, batch 8, 2 epochs, no early
    stopping, with `settings` changed."""
    base = Training(optimizer="sgd", lr=0.05, momentum=0.0, weight_decay=0.0, batch_size=8, epochs=2, patience=0,
                   schedule="constant", label_smoothing=0.0)
    return base.model_copy(update=settings)


def tiny_objects_at(out: Path, seed: int = 1) -> Path:
    g = REPO_PARAMS["generate"]
    return generate_objects(out, seed=seed, classes=8, train_per_class=3, test_per_class=1, image_size=64,
                            object_scale=g["object_scale"], shared_backgrounds=g["shared_backgrounds"],
                            workers=1)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_objects_master(tmp_path_factory) -> Path:
    return tiny_objects_at(tmp_path_factory.mktemp("objects") / "objects")


@pytest.fixture
def tiny_objects(tiny_objects_master, tmp_path) -> Path:
    """A fresh copy per test, free to break."""
    dst = tmp_path / "objects"
    shutil.copytree(tiny_objects_master, dst)
    return dst
