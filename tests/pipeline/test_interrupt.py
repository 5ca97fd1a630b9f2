"""Killing train_classifier mid-training: the next `dvc repro` resumes from the last epoch
checkpoint and ends where an uninterrupted run ends."""

from __future__ import annotations

import copy
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch

from tests.pipeline.conftest import TINY, clean_env, make_repo, sh

pytestmark = pytest.mark.slow

EPOCHS = 12
PARAMS = copy.deepcopy(TINY)
PARAMS["generate"].update(train_per_class=10)
PARAMS["crop"] = {"size": 48}
PARAMS["classifier"] = {"epochs": EPOCHS, "batch_size": 4, "hidden": 64}


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
    ("sig", "shell"),
    [(signal.SIGTERM, "/bin/sh"), (signal.SIGKILL, "/bin/sh"), (signal.SIGTERM, "bash")],
    ids=["SIGTERM-sh", "SIGKILL-sh", "SIGTERM-bash"],
)
def test_a_killed_training_resumes_from_its_last_epoch_and_ends_the_same(tmp_path, sig, shell):
    executable = shutil.which(shell)
    if executable is None:
        pytest.skip(f"{shell} is not installed")
    repo = make_repo(tmp_path / "repo", PARAMS)
    sh("dvc repro gradcam_mask", repo)  # everything train_classifier reads
    env = clean_env() | {"SHELL": executable}  # the shell DVC runs stage commands with
    dvc = subprocess.Popen(
        ["dvc", "repro", "evaluate"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    stage = _stage_process(psutil.Process(dvc.pid), "train_classifier.py")
    checkpoint = repo / "data/checkpoints/classifier/baseline.pt"
    deadline = time.monotonic() + 300
    while _epoch(checkpoint) < 2:  # kill it inside a later epoch
        assert dvc.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
        time.sleep(0.02)
    stage.send_signal(sig)
    log = dvc.communicate(timeout=120)[0].decode()
    assert dvc.returncode != 0, log
    if sig == signal.SIGTERM:
        assert "terminated (SIGTERM)" in log
    killed_after = _epoch(checkpoint)
    assert 2 <= killed_after < EPOCHS
    assert not (repo / "data/models/classifier/baseline.pt").exists()  # nothing half-done looks finished

    out = sh("dvc repro evaluate", repo)
    resumed = re.search(r"baseline: resuming from \S+baseline\.pt after epoch (\d+)", out.stdout + out.stderr)
    assert resumed, out.stdout + out.stderr
    assert int(resumed.group(1)) == killed_after  # from the last checkpoint, not from zero
    assert not checkpoint.exists()  # a finished stage leaves no checkpoint behind
    after_resume = {
        f: (repo / f).read_bytes() for f in ("metrics/train_classifier.json", "metrics/curves/baseline.csv")
    }
    weights = torch.load(repo / "data/models/classifier/baseline.pt", weights_only=True)["model"]

    sh("dvc repro -f -s train_classifier", repo)  # the same training, uninterrupted
    for name, content in after_resume.items():
        assert (repo / name).read_bytes() == content, name
    again = torch.load(repo / "data/models/classifier/baseline.pt", weights_only=True)["model"]
    assert weights.keys() == again.keys() and all(torch.equal(weights[k], again[k]) for k in weights)
