"""train_classifier under torchrun through DVC: `launcher` in params.yaml switches to
DistributedDataParallel (gloo, 2 processes on CPU); rank 0 alone writes outputs and logs."""

from __future__ import annotations

import json

import mlflow
import pytest
import yaml

from cnnlab.config import merge
from tests.pipeline.conftest import TINY, make_repo, sh

pytestmark = pytest.mark.slow

PARAMS = merge(TINY, {
    "generate": {"train_per_class": 10},
    "crop": {"size": 48},
    "classifier": {"epochs": 6, "batch_size": 8, "hidden": 64, "val_fraction": 0.2},
    "objects": {"seeds": 1, "strategies": ["none", "report"]},
})  # fmt: skip


def test_torchrun_launcher_trains_with_two_processes_and_matches_one(tmp_path):
    repo = make_repo(tmp_path / "repo", PARAMS)
    sh("dvc repro train_classifier", repo)
    single = json.loads((repo / "metrics/train_classifier.json").read_text())

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["launcher"] = "torchrun --standalone --nproc_per_node 2"
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    out = sh("dvc repro train_classifier", repo)
    ran = [line for line in out.stdout.splitlines() if line.startswith("Running stage")]
    # only the training reran (and the params check, which any params edit reruns)
    assert ran == ["Running stage 'check_params':", "Running stage 'train_classifier':"], out.stdout
    ddp = json.loads((repo / "metrics/train_classifier.json").read_text())
    assert "processes" not in single and ddp["processes"] == 2
    # Stated tolerance. On 64 training crops with BatchNorm over half-batches and the
    # DistributedSampler's order, the two runs are close but not equal (the loop itself matches
    # to 1e-6 without BatchNorm: tests/unit/test_distributed.py).
    for name in ("none", "report"):
        d, one = ddp["strategies"][name], single["strategies"][name]
        assert d["epochs_run"]["mean"] == one["epochs_run"]["mean"] == 6
        assert d["val_accuracy"]["mean"] == pytest.approx(one["val_accuracy"]["mean"], abs=0.25), name
        assert d["val_loss"]["mean"] == pytest.approx(one["val_loss"]["mean"], rel=0.5), name

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cnnlab").experiment_id
    runs = client.search_runs([experiment], "tags.`dvc.stage` = 'train_classifier'", order_by=["start_time ASC"])
    assert len(runs) == 2  # one per `dvc repro`: rank 1 logged nothing
    assert [m.step for m in client.get_metric_history(runs[1].info.run_id, "report/seed0/val_acc")] == list(range(1, 7))
    assert runs[1].data.metrics["processes"] == 2
    assert not list((repo / "data/checkpoints/classifier").glob("*.pt"))  # rank 0 cleaned up
