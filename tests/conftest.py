"""Shared fixtures: params made from the repository's params.yaml with a few keys overridden (as
lightning-hydra-template's fixtures shrink the real config), and a tiny dataset in the objects
format, made by the built-in generator."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# pytest-xdist (`-n auto` in pyproject.toml) runs one worker per usable CPU. Each worker, and every
# stage it starts (the pipeline tests' subprocesses inherit the environment), gets its share of
# the CPUs as torch threads: two workers of two threads each on a 2-core VM ran the suite in
# 1,010 s, two of one thread in 782 s (one process: about 1,080 s). Set before torch is imported.
WORKER_THREADS: int | None = None  # None: one process (`-n 0`), or OMP_NUM_THREADS set by the user
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    WORKER_THREADS = max(1, usable_cpus() // max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    os.environ["OMP_NUM_THREADS"] = str(WORKER_THREADS)


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: the CPUs this process may run on (xdist's own count is the machine's cores)."""
    return usable_cpus()


from cnnlab.data.synthetic import generate_objects  # noqa: E402
from cnnlab.params.schema import Params, Training, merge, parse_params, read_yaml  # noqa: E402 (after the threads)

REPO = Path(__file__).resolve().parents[1]
REPO_PARAMS = read_yaml(REPO / "params.yaml")


def params_data(overrides: dict | None = None) -> dict:
    """params.yaml as a mapping, with `overrides` merged in (cnnlab.params.schema.merge)."""
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
