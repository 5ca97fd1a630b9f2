"""The objects chain, unchanged, on a folder made of real images that packages ship (handwritten
digits on photographs, tests/scripts/make_real_objects.py), with class 03 as the shortcut class;
then without its ground-truth masks."""

from __future__ import annotations

import json
import shutil

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
    assert list(ev["strategies"]) == ["none", "report", "segment", "segment_learned", "mixed_rand",
                                      "mixed_rand_learned", "oracle"]  # fmt: skip
    for m in ev["strategies"].values():  # masks/ holds every ground truth, so the oracle runs too
        assert 0 <= m["shortcut_class_test_recall"]["mean"] <= 1 and "bg_gap" in m
    assert 0 <= ev["strategies"]["segment_learned"]["test_mask_iou"]["mean"] <= 1
    grad = json.loads((repo / "metrics/gradcam_mask.json").read_text())
    assert grad["shortcut_class"] == "03" and grad["crops"] == 4
    assert json.loads((repo / "metrics/masker.json").read_text())["mask_iou"] == "available"

    # without masks/: the masker still runs and says that IoU is not available
    shutil.rmtree(repo / "data/raw/digits/masks")
    sh("dvc repro masker", repo)
    masker = json.loads((repo / "metrics/masker.json").read_text())
    assert masker["mask_iou"].startswith("not available: the dataset folder has no masks/")
    assert not any(key.endswith("_mask_iou") for key in masker["over_seeds"])
    assert 0 < masker["over_seeds"]["test_kept_fraction"]["mean"] <= 1  # (1 epoch on 32 crops: may keep all)
    assert 0 <= masker["over_seeds"]["test_grabcut_agreement"]["mean"] <= 1
