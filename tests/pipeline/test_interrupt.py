"""Killing train_classifier mid-training: the next `dvc repro` resumes from the last epoch
checkpoint and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import psutil
import pytest
import torch

from tests.pipeline.conftest import clean_env, copy_repo, free_port, mlflow_server, sh, shared_folder, write_params

pytestmark = pytest.mark.slow

EPOCHS = 8
TRAINING = {"classifier": {"epochs": EPOCHS, "batch_size": 4}}  # on tests/pipeline/conftest.py's TRAINABLE
OUTPUTS = ("metrics/train_classifier.json", "metrics/curves/classifier/none.csv")


def _repo(trainable_template, path: Path) -> Path:
    """A copy of the repository with everything train_classifier reads, and this module's training."""
    repo = copy_repo(trainable_template, path)
    write_params(repo, TRAINING)
    return repo


@pytest.fixture(scope="module")
def uninterrupted(trainable_template, tmp_path_factory) -> Path:
    """The same training run once without interruption (made once; each test compares with it)."""

    def build(path: Path) -> None:
        sh("dvc repro train_classifier", _repo(trainable_template, path))

    return shared_folder(tmp_path_factory, "interrupt-uninterrupted", build)


def _stage_process(root: psutil.Process, script: str, timeout: float = 120) -> psutil.Process:
    """The Python process running `script` under `root`. DVC starts a stage as `$SHELL -c cmd`;
    bash execs the command, dash (Debian's /bin/sh) forks it, and killing that shell would leave
    the training running as an orphan, so the match must be the interpreter itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in root.children(recursive=True):
            try:
                cmdline = child.cmdline()
                if cmdline and Path(cmdline[0]).name.startswith("python") and script in " ".join(cmdline):
                    return child
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    raise AssertionError(f"{script} did not start within {timeout} s")


def _epoch(checkpoint) -> int:
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # not there yet (written atomically, so never half-read)
        return 0


@pytest.mark.parametrize(
    ("sig", "shell", "group"),
    [(signal.SIGTERM, "/bin/sh", False), (signal.SIGKILL, "/bin/sh", False), (signal.SIGTERM, "bash", False),
     (signal.SIGINT, "/bin/sh", True)],
    ids=["SIGTERM-sh", "SIGKILL-sh", "SIGTERM-bash", "Ctrl-C"],
)  # fmt: skip
def test_a_killed_training_resumes_from_its_last_epoch_and_ends_the_same(trainable_template, uninterrupted, tmp_path,
                                                                         sig, shell, group):  # fmt: skip
    """`group`: the signal goes to the whole process group (DVC, its shell, the stage), as a
    terminal sends Ctrl-C; otherwise to the stage's process alone."""
    executable = shutil.which(shell)
    if executable is None:
        pytest.skip(f"{shell} is not installed")
    repo = _repo(trainable_template, tmp_path / "repo")  # everything train_classifier reads has run
    env = clean_env() | {"SHELL": executable}  # the shell DVC runs stage commands with
    dvc = subprocess.Popen(
        ["dvc", "repro", "train_classifier"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=group,
    )  # fmt: skip
    stage = _stage_process(psutil.Process(dvc.pid), "train_classifier.py")
    checkpoint = repo / "data/checkpoints/classifier/none-seed0.pt"
    deadline = time.monotonic() + 300
    while _epoch(checkpoint) < 2:  # kill it inside a later epoch
        assert dvc.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
        time.sleep(0.02)
    if group:
        os.killpg(dvc.pid, sig)
    else:
        stage.send_signal(sig)
    log = dvc.communicate(timeout=120)[0].decode()
    assert dvc.returncode != 0, log
    if sig == signal.SIGTERM:
        assert "interrupted (SIGTERM)" in log
    if sig == signal.SIGINT:  # one line from the stage, no traceback; the stage's status is an interrupted one
        assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
        assert len(re.findall(r"^error: interrupted \(Ctrl-C, SIGINT\); run `dvc repro` again", log, re.M)) == 1, log
        # 130 from the stage; DVC's /bin/sh (dash), interrupted as well, then dies by SIGINT itself (-2)
        assert re.search(r"exited with (130|-2)$", log, re.M), log
        (run,) = [r for r in mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").search_runs(
            [mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_experiment_by_name("cnnlab").experiment_id],
            "tags.`dvc.stage` = 'train_classifier'")]  # fmt: skip
        assert run.info.status == "KILLED"
    killed_after = _epoch(checkpoint)
    assert 2 <= killed_after < EPOCHS
    assert not (repo / "data/models/classifier/none/seed0.pt").exists()  # nothing half-done looks finished

    out = sh("dvc repro train_classifier", repo)
    resumed = re.search(r"none-seed0: resuming from \S+none-seed0\.pt after epoch (\d+)", out.stdout + out.stderr)
    assert resumed, out.stdout + out.stderr
    assert int(resumed.group(1)) == killed_after  # from the last checkpoint, not from zero
    assert not checkpoint.exists()  # a finished stage leaves no checkpoint behind
    # ... and ends where the same training, uninterrupted, ends
    for name in OUTPUTS:
        assert (repo / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    weights, again = (torch.load(r / "data/models/classifier/none/seed0.pt", weights_only=True)["model"]
                      for r in (repo, uninterrupted))  # fmt: skip
    assert weights.keys() == again.keys() and all(torch.equal(weights[k], again[k]) for k in weights)


def test_tracking_server_dying_mid_training_loses_nothing_and_sync_writes_it_later(trainable_template, tmp_path):
    repo = _repo(trainable_template, tmp_path / "repo")
    port = free_port()
    store = tmp_path / "mlflow"
    with mlflow_server(store, port) as uri:
        env = clean_env() | {"MLFLOW_TRACKING_URI": uri}
        dvc = subprocess.Popen(
            ["dvc", "repro", "train_classifier"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        checkpoint = repo / "data/checkpoints/classifier/none-seed0.pt"
        deadline = time.monotonic() + 300
        while _epoch(checkpoint) < 2:
            assert dvc.poll() is None and time.monotonic() < deadline, "training ended before the store went down"
            time.sleep(0.02)
    # the server is gone (all its processes killed): training goes on and the stage succeeds
    log = dvc.communicate(timeout=600)[0].decode()
    assert dvc.returncode == 0, log
    assert "cnnlab-sync" in log and f"127.0.0.1:{port}" in log, log
    metrics = json.loads((repo / "metrics/train_classifier.json").read_text())
    assert metrics["strategies"]["none"]["epochs_run"]["mean"] == EPOCHS
    assert (repo / "data/models/classifier/report/seed0.pt").is_file()
    (pending,) = (repo / "mlflow-pending").iterdir()
    run_id = pending.name

    out = sh("cnnlab-sync", repo, check=False, env=env)  # still down: says so, keeps everything
    assert out.returncode == 1 and "still cannot be reached" in out.stderr, out.stderr
    assert pending.is_dir()

    with mlflow_server(store, port):  # back, same store
        out = sh("cnnlab-sync", repo, env=env)
        assert run_id in out.stdout
        client = mlflow.MlflowClient(uri)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        for strategy in ("none", "report"):
            steps = [m.step for m in client.get_metric_history(run_id, f"{strategy}/seed0/val_acc")]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (strategy, steps)
            mean = metrics["strategies"][strategy]["val_accuracy"]["mean"]
            assert run.data.metrics[f"mean/{strategy}/val_accuracy"] == pytest.approx(mean)
        figures = {a.path for a in client.list_artifacts(run_id, "figures")}
        assert figures == {"figures/curves_none.png", "figures/curves_report.png"}  # reports/train_classifier/
        models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        # the model logged before the failure is a logged model; the one kept pending, the run's artifacts
        assert {m.name for m in models if m.source_run_id == run_id} | artifacts >= {"none-seed0", "report-seed0"}
        # ... and both are registered, the pending one by cnnlab-sync
        for strategy in ("none", "report"):
            (version,) = client.search_model_versions(f"name='cnnlab-objects-{strategy}'")
            assert version.run_id == run_id and version.tags["seed"] == "0"
    assert not (repo / "mlflow-pending").exists() or not any((repo / "mlflow-pending").iterdir())
