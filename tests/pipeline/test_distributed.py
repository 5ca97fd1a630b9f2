"""train_classifier under torchrun through DVC: `launcher` in params.yaml switches to
DistributedDataParallel (gloo, 2 processes on CPU); rank 0 alone writes outputs and logs. Then
the same stage as two nodes (`torchrun --nnodes 2`, c10d rendezvous on 127.0.0.1), as
docs/team.md runs it on two hosts: the same model as one node of two processes."""

from __future__ import annotations

import json
import shlex
import subprocess

import mlflow
import pytest
import torch
import yaml

from tests.pipeline.conftest import clean_env, copy_repo, free_port, sh, write_params

pytestmark = pytest.mark.slow

TRAINING = {"classifier": {"epochs": 6, "batch_size": 8}}  # on tests/pipeline/conftest.py's TRAINABLE


def test_torchrun_launcher_trains_with_two_processes_and_matches_one(trainable_template, tmp_path):
    repo = copy_repo(trainable_template, tmp_path / "repo")  # everything train_classifier reads has run
    write_params(repo, TRAINING)
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
    # to 1e-6 without BatchNorm: tests/unit/train/test_distributed.py).
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

    two_nodes(repo, tmp_path / "nodes")


def two_nodes(repo, out) -> None:
    """train_classifier's cmd from dvc.yaml, its outputs sent to `out`, run by two torchrun agents
    (`--nnodes 2 --nproc_per_node 1`, one "machine" each) that meet at a c10d rendezvous on
    127.0.0.1: every checkpoint equals the one of `--standalone --nproc_per_node 2` (DVC's run above)."""
    cmd = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["train_classifier"]["cmd"].split()
    args = dict(zip(cmd[2::2], cmd[3::2]))  # after `${launcher} stages/train_classifier.py`
    for name in ("--out", "--checkpoints", "--metrics", "--curves", "--figures"):
        args[name] = str(out / name.strip("-"))
    port = free_port()
    named = " ".join(f"{k} {shlex.quote(v)}" for k, v in args.items())
    agent = (f"torchrun --nnodes 2 --nproc_per_node 1 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:{port} "
             f"--rdzv-id cnnlab-test stages/train_classifier.py {named}")  # fmt: skip
    env = clean_env()
    nodes = [subprocess.Popen(agent, shell=True, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]  # fmt: skip
    logs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert json.loads((out / "metrics").read_text())["processes"] == 2
    standalone = sorted((repo / "data/models/classifier").rglob("*.pt"))
    assert [p.relative_to(repo / "data/models/classifier") for p in standalone] == [
        p.relative_to(out / "out") for p in sorted((out / "out").rglob("*.pt"))]  # fmt: skip
    for path in standalone:
        a = torch.load(path, weights_only=True)["model"]
        b = torch.load(out / "out" / path.relative_to(repo / "data/models/classifier"), weights_only=True)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), path.name
