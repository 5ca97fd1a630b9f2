"""The Grad-CAM threshold is chosen on validation crops: the gradcam_mask stage runs, and chooses
the same, with the test crops gone from its input folder."""

import argparse
import importlib.util
import json
import shutil

import torch

from cnnlab.data.arrays import ImageSet, save_images
from cnnlab.data.crops import crop_split
from cnnlab.data.objects import read_objects
from cnnlab.data.split import write_splits
from cnnlab.models import ObjectsCNN
from cnnlab.objects.decision import Decision, write_decision
from cnnlab.train.checkpoint import save_checkpoint
from tests.conftest import REPO, make_params


def _stage():
    spec = importlib.util.spec_from_file_location("gradcam_mask_stage", REPO / "stages/gradcam_mask.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_threshold_selection_never_reads_the_test_set(tiny_objects, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # the MLflow store of this test
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ds = read_objects(tiny_objects)
    crops = tmp_path / "crops"
    splits = {split: crop_split(ds, split, 16) for split in ("train", "test")}
    save_images(ImageSet("crops", ds.source, list(ds.classes), splits), crops)
    p = make_params(
        {
            "objects": {"seeds": 2},
            "crop": {"size": 16},
            "classifier": {"val_fraction": 0.34},
            "gradcam": {"candidates": [0.0, 0.3, 0.6]},
        }
    )
    splits_csv = tmp_path / "splits.csv"
    write_splits(splits_csv, splits["train"].index.id, splits["train"].labels(list(ds.classes)), 0.34, [0, 1])
    models = tmp_path / "bg"
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_checkpoint(models / f"seed{seed}.pt", ObjectsCNN(2, 8, 16))
    stage = _stage()
    decision = tmp_path / "shortcut.json"  # the find_shortcut stage's
    write_decision(decision, Decision(ds.classes[0], ds.classes[1]))

    def run(name):
        args = argparse.Namespace(crops=crops, splits=splits_csv, shortcut=decision, model=models, out=tmp_path / name,
                                  metrics=tmp_path / f"{name}.json", figures=tmp_path / f"{name}_figures")  # fmt: skip
        stage.main(p, args)
        return json.loads(args.metrics.read_text())

    with_test = run("with_test")
    for f in crops.glob("test_*"):
        f.unlink()  # a stage that read the test crops would fail now
    without = run("without_test")
    for seed in ("0", "1"):
        a, b = with_test["per_seed"][seed], without["per_seed"][seed]
        assert a["threshold"] == b["threshold"] and a["validation_iou_by_threshold"] == b["validation_iou_by_threshold"]
        assert (
            a["threshold_chosen_by"].startswith("best mask IoU on the")
            and "validation crops of class 00" in a["threshold_chosen_by"]
        )
    assert (tmp_path / "without_test/seed1/shortcut_images.npy").read_bytes() == (
        tmp_path / "with_test/seed1/shortcut_images.npy"
    ).read_bytes()
    assert (tmp_path / "without_test_figures/gradcam_shortcut_masks.png").stat().st_size > 1000
    shutil.rmtree(tmp_path / "with_test")
