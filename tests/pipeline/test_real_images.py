"""The objects chain, unchanged, on a folder made of real images that packages ship (handwritten
digits on photographs, tests/scripts/make_real_objects.py), with class 03 as the shortcut class."""

from __future__ import annotations

import json

import pytest

from cnnlab.config import merge
from tests.pipeline.conftest import TINY, make_repo, sh
from tests.scripts.make_real_objects import write

pytestmark = pytest.mark.slow


def test_the_chain_runs_on_real_images_with_another_shortcut_class(tmp_path):
    params = merge(TINY, {"objects": {"root": "data/raw/digits"}, "backgrounds": {"classes": ["03", "06"]},
                          "classifier": {"val_fraction": 0.34}})  # fmt: skip
    repo = make_repo(tmp_path / "repo", params)
    write(repo / "data/raw/digits", train_per_class=4, test_per_class=2, shortcut="03", seed=0)
    out = sh("dvc repro evaluate", repo)
    assert "Running stage 'train_classifier'" in out.stdout
    ev = json.loads((repo / "metrics/evaluate.json").read_text())
    assert ev["data_source"] == "folder data/raw/digits" and ev["shortcut_class"] == "03"
    assert list(ev["strategies"]) == ["none", "report", "segment", "mixed_rand", "oracle"]
    for m in ev["strategies"].values():  # masks/ holds every ground truth, so the oracle runs too
        assert 0 <= m["shortcut_class_test_recall"]["mean"] <= 1 and "bg_gap" in m
    grad = json.loads((repo / "metrics/gradcam_mask.json").read_text())
    assert grad["shortcut_class"] == "03" and grad["crops"] == 4
