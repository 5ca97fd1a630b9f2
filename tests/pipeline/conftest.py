"""A throw-away git + DVC repository holding cnnlab's pipeline with tiny params."""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
import yaml

from cnnlab.params.schema import merge
from tests.conftest import REPO, params_data

# the tests' tiny pipeline: params.yaml with these keys overridden (every other key as there)
SHRINK = {
    "objects": {"seeds": 2},
    "generate": {"train_per_class": 5, "test_per_class": 2, "image_size": 64},
    "crop": {"size": 24},
    "segment": {"iterations": 1, "max_side": 32},
    "masker": {"width": 4, "rounds": 2, "epochs": 1, "round_epochs": 1, "batch_size": 16},
    "background_classifier": {"epochs": 1, "batch_size": 4, "hidden": 16},
    "gradcam": {"batch_size": 16},
    "classifier": {"epochs": 1, "batch_size": 8, "hidden": 16},
    # both stand-ins (configs/full.yaml), so that the matrices have two datasets
    "study": {"datasets": ["cifar10", "imagenet10"], "models": ["simple_cnn", "resnet"]},
    "transfer": {"models": ["mobilenet_v3"], "train_per_class": 2},
    "datasets": {
        "cifar10": {"train_per_class": 3, "test_per_class": 1, "val_fraction": 0.34},
        "imagenet10": {"train_per_class": 3, "test_per_class": 1, "val_fraction": 0.34, "image_size": 24},
        "shapes": {"train_per_class": 3, "test_per_class": 1, "val_fraction": 0.34},
    },
    "models": {
        "simple_cnn": {"epochs": 2, "batch_size": 8},
        "resnet": {"epochs": 1, "batch_size": 8, "width": 4},
        "mobilenet_v3": {"epochs": 1, "batch_size": 8},
        "mobilenet_v3_pretrain": {"epochs": 1, "batch_size": 8},
    },
    "augment": {"rotate_shift": {"p": 0.0}, "cutmix": {"p": 0.5}},
    # visualize.features_cell (cifar10-imagenet10_cnn) is not in this matrix: it falls back
    "visualize": {"class_images": {"steps": 4}},
}
TINY = params_data(SHRINK)


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    # the stages' `python` and `dvc` are this interpreter's
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env["DVC_NO_ANALYTICS"] = "1"
    env["TQDM_DISABLE"] = "1"
    return env


# MLflow publishes a system-metrics sample after a whole interval (cnnlab's: 2 s), and the tiny
# pipeline's training runs take about 2 s: where a test looks for the samples, they come faster
# (each costs a training stage 4-8% of its seconds here, so only there)
FAST_SAMPLES = {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.2"}


def sh(
    cmd: str, cwd: Path, check: bool = True, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    env = clean_env() if env is None else env
    out = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"`{cmd}` failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def make_repo(path: Path, params: dict) -> Path:
    path.mkdir(parents=True)
    for item in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / item, path / item)
    for folder in ("stages", "src"):
        shutil.copytree(REPO / folder, path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git init -q && dvc init -q", path)
    shutil.copy(REPO / ".dvcignore", path / ".dvcignore")  # what DVC does not hash (Python caches)
    shutil.copytree(REPO / ".dvc" / "plots", path / ".dvc" / "plots")  # the plot templates of dvc.yaml
    # the page of `dvc plots show` that draws offline, as .dvc/config names it
    shutil.copy(REPO / ".dvc" / "plots_offline.html", path / ".dvc" / "plots_offline.html")
    html_template = configparser.ConfigParser()
    html_template.read(REPO / ".dvc" / "config")
    with open(path / ".dvc" / "config", "a") as config:  # as `dvc config plots.html_template ...` writes it
        config.write(f"[plots]\n    html_template = {html_template['plots']['html_template']}\n")
    sh("git add -A && git commit -qm init", path)
    return path


@pytest.fixture
def tiny_repo(tmp_path) -> Path:
    return make_repo(tmp_path / "repo", TINY)


def copy_repo(template: Path, dest: Path) -> Path:
    """A copy of a repository made by make_repo (git history, DVC cache and outputs), with a
    fresh MLflow store: the copy's runs are its own (the template's store names its folder)."""
    skip = shutil.ignore_patterns("mlflow.db", "mlartifacts", "mlflow-pending", "tmp")
    shutil.copytree(template, dest, symlinks=True, ignore=lambda d, names: skip(d, names) if d in (
        str(template), str(template / ".dvc")) else set())  # fmt: skip
    return dest


def shared_folder(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """`build(path)` makes a repository at `path`, once per test run: under pytest-xdist the first
    worker to ask makes it while the others wait on a lock file, and all use it. Tests take a copy
    (copy_repo) and never change it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this run's folder, above each worker's own
    folder, made = root / f"shared-{name}", root / f"shared-{name}.made"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():  # (a worker whose build failed left no mark: the next one starts over)
            shutil.rmtree(folder, ignore_errors=True)
            build(folder / "repo")
            made.touch()
    return folder / "repo"


def shared_repo(tmp_path_factory, name: str, params: dict, build: Callable[[Path], None]) -> Path:
    """A repository made by make_repo, then `build(repo)`, once per test run (shared_folder)."""
    return shared_folder(tmp_path_factory, name, lambda path: build(make_repo(path, params)))


def write_params(repo: Path, overrides: dict) -> None:
    """params.yaml of `repo` with `overrides` merged in (not committed)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(merge(params, overrides), sort_keys=False))


# what train_classifier reads, bigger than TINY's where a training must last several epochs (the
# interrupt and torchrun tests): 10 images per class, 48 px crops, one seed of two strategies (the
# resume and the distributed mechanisms are the same for every strategy and seed); each test
# sets its own `classifier` training on top
TRAINABLE = merge(TINY, {
    "generate": {"train_per_class": 10},
    "crop": {"size": 48},
    "classifier": {"hidden": 64, "val_fraction": 0.2},
    "objects": {"seeds": 1, "strategies": ["none", "report"]},
})  # fmt: skip


@pytest.fixture(scope="session")
def trainable_template(tmp_path_factory) -> Path:
    """The TRAINABLE repository with every stage before train_classifier run and committed."""

    def build(repo: Path) -> None:
        sh("dvc repro gradcam_mask", repo)
        sh("git add -A && git commit -qm 'up to the training'", repo)

    return shared_repo(tmp_path_factory, "trainable", TRAINABLE, build)


@pytest.fixture(scope="session")
def chain_template(tmp_path_factory) -> Path:
    """The tiny repository after `dvc repro summary` (the objects chain, the study and the
    summary: all but the page), committed; made once per test run, tests take a copy (`chain_repo`)."""

    def build(repo: Path) -> None:
        sh("dvc repro summary", repo)
        sh("git add -A && git commit -qm 'the objects chain'", repo)

    return shared_repo(tmp_path_factory, "chain", TINY, build)


@pytest.fixture
def chain_repo(chain_template, tmp_path) -> Path:
    return copy_repo(chain_template, tmp_path / "repo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(cmd: list[str], cwd: Path, env: dict, ready: str):
    """Start a server (`cmd`, its own process group) and wait until GET `ready` answers; yields
    the process and stops it, with all its workers, afterwards."""
    server = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(ready, timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.time() < deadline, f"{' '.join(cmd[:5])} did not come up"
                time.sleep(1)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(30)


@contextlib.contextmanager
def mlflow_server(folder: Path, port: int | None = None, backend: str | None = None, allowed_hosts: str | None = None,
                  env: dict | None = None):  # fmt: skip
    """`mlflow server` on 127.0.0.1 (at a free port unless given) with its runs in `backend` (a
    database URI; default: a SQLite file in `folder`) and its artifacts in `folder`, answering the
    Host headers `allowed_hosts` (its --allowed-hosts; default MLflow's: localhost and private
    addresses), `env` added to its environment; yields its URI and stops it, with all its workers,
    afterwards. Without MLflow's server-side jobs, which cnnlab does not use (docs/team.md)."""
    port = port or free_port()
    backend = backend or f"sqlite:///{folder / 'server.db'}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", backend, "--artifacts-destination", str(folder / "art"),
           "--workers", "1"] + (["--allowed-hosts", allowed_hosts] if allowed_hosts else [])  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"http://127.0.0.1:{port}"
    env = clean_env() | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"} | (env or {})
    with served(cmd, folder, env, f"{uri}/health"):
        yield uri
