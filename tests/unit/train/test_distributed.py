"""The training loop under torchrun: DistributedDataParallel on CPU with gloo, 2 processes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "helpers" / "ddp_fit.py"
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))


def _run(out: Path, *launcher: str, shuffle: bool = False, epochs: int = 4) -> dict:
    out.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["TQDM_DISABLE"] = "1"
    cmd = [*launcher, str(SCRIPT), str(out), "--epochs", str(epochs)] + (["--shuffle"] if shuffle else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = sorted(out.glob("rank*.json"))
    return {
        "history": json.loads((out / "history.json").read_text()),
        "ranks": [json.loads(p.read_text()) for p in ranks],
        "checkpoint": (out / "checkpoint.pt").exists(),
        "log": done.stdout + done.stderr,
    }


@pytest.mark.slow
def test_two_gloo_processes_split_the_data_and_match_one_process(tmp_path):
    assert TORCHRUN, "torchrun comes with torch"
    single = _run(tmp_path / "single", sys.executable)
    ddp = _run(tmp_path / "ddp", TORCHRUN, "--standalone", "--nproc_per_node", "2")
    # each process trained on its half of every epoch (40 images, 4 epochs)
    assert [r["seen"] for r in single["ranks"]] == [160]
    assert [r["seen"] for r in ddp["ranks"]] == [80, 80]
    # ... and both ended with the same weights
    assert ddp["ranks"][0]["weights"] == pytest.approx(ddp["ranks"][1]["weights"], abs=1e-9)
    # Without BatchNorm or dropout and in data order, the two half-batches of a step are exactly
    # the single process's batch, and DDP averages their gradients: the same training up to float
    # rounding. Stated tolerance: 1e-4 on losses and weights, accuracies equal.
    for one, two in zip(single["history"], ddp["history"], strict=True):
        assert two["train_loss"] == pytest.approx(one["train_loss"], abs=1e-4)
        assert two["val_loss"] == pytest.approx(one["val_loss"], abs=1e-4)
        assert two["train_acc"] == one["train_acc"] and two["val_acc"] == one["val_acc"]
    assert ddp["ranks"][0]["weights"] == pytest.approx(single["ranks"][0]["weights"], abs=1e-4)
    assert single["history"][-1]["train_loss"] < single["history"][0]["train_loss"]  # it did learn
    assert ddp["checkpoint"]  # written by rank 0


@pytest.mark.slow
def test_shuffled_ddp_stays_within_tolerance_of_one_process_and_resumes_exactly(tmp_path):
    ddp2 = (TORCHRUN, "--standalone", "--nproc_per_node", "2")
    single = _run(tmp_path / "single", sys.executable, shuffle=True)
    ddp = _run(tmp_path / "ddp", *ddp2, shuffle=True)
    # another sample order (DistributedSampler's), so only close: within 0.25 in final val loss
    assert ddp["history"][-1]["val_loss"] == pytest.approx(single["history"][-1]["val_loss"], abs=0.25)
    # interrupted after epoch 2 (its checkpoint kept), then run again: both ranks resume from
    # rank 0's checkpoint and end exactly where the uninterrupted run ended
    _run(tmp_path / "resumed", *ddp2, shuffle=True, epochs=2)
    resumed = _run(tmp_path / "resumed", *ddp2, shuffle=True)
    assert resumed["log"].count("resuming from") == 2  # rank 0 and rank 1
    assert resumed["history"] == ddp["history"]
    assert [r["weights"] for r in resumed["ranks"]] == [r["weights"] for r in ddp["ranks"]]
    assert [r["seen"] for r in resumed["ranks"]] == [40, 40]  # epochs 3 and 4 only
