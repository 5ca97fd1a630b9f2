"""The objects chain, unchanged, on a folder made of real images that packages ship (handwritten
digits on photographs, tests/helpers/make_real_objects.py), with class 03 as the shortcut class,
which find_shortcut finds; then without its ground-truth masks; then with no training class on the
test images' background."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cnnlab.params.schema import merge
from tests.conftest import REPO
from tests.helpers.make_real_objects import write
from tests.pipeline.conftest import TINY, make_repo, sh

pytestmark = pytest.mark.slow

# the tiny params on the real images' folder; one seed (what these tests check is the data's path
# through the chain, the same for every seed: the seeds' loop is tested on the built-in data)
REAL = {"objects": {"root": "data/raw/digits", "seeds": 1}, "classifier": {"val_fraction": 0.34}}


def test_the_chain_runs_on_real_images_with_another_shortcut_class(tmp_path):
    # backgrounds.classes: auto (params.yaml's): nothing says which class is the shortcut
    params = merge(TINY, REAL)
    repo = make_repo(tmp_path / "repo", params)
    write(repo / "data/raw/digits", train_per_class=4, test_per_class=2, shortcut="03", seed=0)
    out = sh("dvc repro evaluate", repo)
    assert "Running stage 'train_classifier'" in out.stdout
    found = json.loads((repo / "metrics/shortcut.json").read_text())
    assert found["shortcut"] == "03" and found["decided_by"].startswith("auto")
    assert found["detected"]["share"]["03"] >= 0.5 and found["detected"]["p_value"] < 1e-3
    assert "find_shortcut: shortcut class 03, contrast class" in out.stdout
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


def _without_class(folder: Path, name: str) -> None:
    """Take class `name` out of an objects folder: its training images, its test images and
    paired/: the test images left lie on a background (class `name`'s) that no training class has."""
    shutil.rmtree(folder / "train" / name)
    shutil.rmtree(folder / "masks" / "train" / name, ignore_errors=True)
    for extra in ("paired", "masks/paired"):
        shutil.rmtree(folder / extra, ignore_errors=True)
    labels = pd.read_csv(folder / "test_labels.csv", dtype=str, keep_default_na=False)
    gone = set(labels.path[labels.label == name])
    labels[labels.label != name].to_csv(folder / "test_labels.csv", index=False)
    boxes = pd.read_csv(folder / "boxes.csv", dtype=str, keep_default_na=False)
    boxes[~boxes.path.str.startswith(f"train/{name}/") & ~boxes.path.isin(gone)].to_csv(folder / "boxes.csv",
                                                                                       index=False)  # fmt: skip
    for path in gone:
        (folder / path).unlink()
        (folder / "masks" / path).with_suffix(".png").unlink(missing_ok=True)


def test_test_images_on_a_background_no_training_class_has_mean_no_shortcut_and_the_chain_still_runs(tmp_path):
    params = merge(TINY, REAL)
    repo = make_repo(tmp_path / "repo", params)
    write(repo / "data/raw/digits", train_per_class=4, test_per_class=2, shortcut="03", seed=0)
    _without_class(repo / "data/raw/digits", "03")
    out = sh("dvc repro evaluate", repo)
    assert "find_shortcut: no shortcut class" in out.stdout
    found = json.loads((repo / "metrics/shortcut.json").read_text())
    assert found["shortcut"] is None and found["detected"]["reason"]
    assert json.loads((repo / "data/interim/shortcut.json").read_text())["shortcut"] is None
    for stage in ("background_classifier", "gradcam_mask"):  # nothing to tell apart, nothing to mask
        assert "needs a shortcut class" in json.loads((repo / f"metrics/{stage}.json").read_text())["skipped"]
    ev = json.loads((repo / "metrics/evaluate.json").read_text())
    assert ev["shortcut_class"] is None
    assert "needs a shortcut class" in ev["strategies"]["report"]["skipped"]
    ran = {name: m for name, m in ev["strategies"].items() if "skipped" not in m}
    assert set(ran) == {"none", "segment", "segment_learned", "mixed_rand", "mixed_rand_learned", "oracle"}
    for m in ran.values():  # scored as ever, without the class-specific metrics
        assert 0 <= m["test_accuracy"]["mean"] <= 1 and "shortcut_class_test_recall" not in m
        assert "test_shortcut_rate" not in m
    table = pd.read_csv(repo / "metrics/objects_comparison.csv", keep_default_na=False).set_index("strategy")
    assert table.note["report"].startswith("the report's cure needs a shortcut class")
    headline = _summary_module().headline(ev, {})  # the experiment's row: no report, no class-specific metric
    assert "report" not in headline["objects"] and "shortcut_class_test_recall" not in headline["objects"]["none"]


def _summary_module():
    spec = importlib.util.spec_from_file_location("summary_stage", REPO / "stages" / "summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # (its handoff() runs nothing when imported)
    return module
