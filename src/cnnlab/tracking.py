"""MLflow tracking: the only module that imports mlflow.

One store for everything. By default a SQLite file ``mlflow.db`` (and artifacts in
``mlartifacts/``) at the repository root, found through ``DVC_ROOT`` so that queued DVC
experiments, which run in a temporary copy of the repository, log into the same store.
``MLFLOW_TRACKING_URI`` overrides it.

Every stage execution is one run, tagged with the DVC experiment name, the stage, the git commit
and the data source.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

EXPERIMENT = "cnnlab-objects"  # the objects chain
STUDY_EXPERIMENT = "cnnlab-study"  # the CIFAR-10 / ImageNet10 matrix
REPORTS_EXPERIMENT = "cnnlab-reports"  # the visualize stage: every figure and the HTML page
STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used."""


def repo_root() -> Path:
    """The DVC repository root: DVC_ROOT when DVC runs the stage, else the nearest folder
    above the working directory that holds .dvc/ (or the working directory)."""
    env = os.environ.get("DVC_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return here


def default_uri() -> str:
    return f"sqlite:///{repo_root() / STORE_FILE}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def git_commit(cwd: str | Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def dvc_experiment_name(commit: str | None = None) -> str:
    """DVC_EXP_NAME inside `dvc exp run`; for a plain `dvc repro`, a name from the git commit."""
    name = os.environ.get("DVC_EXP_NAME")
    if name:
        return name
    commit = commit or git_commit()
    return f"repro-{commit[:7]}" if commit != "unknown" else "repro-nogit"


def _mlflow():
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    import mlflow

    return mlflow


def check_store() -> str:
    """Make sure the tracking store answers; returns its URI.

    Raises:
        TrackingError: with the URI and what to set, before any training starts.
    """
    mlflow = _mlflow()
    uri = tracking_uri()
    try:
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        client.search_experiments(max_results=1)
    except Exception as e:  # any failure to reach the store
        raise TrackingError(
            f"MLflow tracking store {uri} cannot be reached ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "Start that server, or set MLFLOW_TRACKING_URI to a reachable store "
            "(unset it to use the default SQLite file mlflow.db at the repository root)."
        ) from None
    return uri


def _experiment_id(mlflow, name: str) -> str:
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if mlflow.get_tracking_uri() == default_uri():
        # Absolute, so runs from a queued experiment's temporary copy land beside mlflow.db
        # (MLflow's own default, ./mlruns, would be inside that copy and lost).
        location = (repo_root() / ARTIFACT_DIR / name).as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:
        # Another process created it meanwhile.
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class StageRun:
    """Logging handle of one stage execution (see :func:`stage_run`)."""

    def __init__(self, mlflow, run):
        self._mlflow = mlflow
        self.run = run

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def log_epoch(self, metrics: dict[str, float], epoch: int, prefix: str = "") -> None:
        """All of one epoch's metrics in one call."""
        values = {f"{prefix}{k}": float(v) for k, v in metrics.items() if k != "epoch"}
        self._mlflow.log_metrics(values, step=epoch)

    def log_metrics(self, metrics: dict[str, Any], prefix: str = "") -> None:
        """Final metrics; nested dicts are flattened with '.', None and non-numbers skipped."""
        flat = {}

        def walk(d, p):
            for k, v in d.items():
                if isinstance(v, dict):
                    walk(v, f"{p}{k}.")
                elif isinstance(v, (int, float)) and not isinstance(v, bool):
                    flat[f"{p}{k}"] = float(v)

        walk(metrics, prefix)
        if flat:
            self._mlflow.log_metrics(flat)

    def set_tag(self, key: str, value: str) -> None:
        self._mlflow.set_tag(key, value)

    def log_figure(self, figure, name: str) -> None:
        """Log a matplotlib figure as figures/<name> and close it."""
        import matplotlib.pyplot as plt

        self._mlflow.log_figure(figure, f"figures/{name}")
        plt.close(figure)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), folder)

    def log_model(self, model, name: str, input_example) -> None:
        """The trained torch model, as an MLflow pytorch model (exported graph, no pickle).

        `input_example`: a small float numpy batch of the model's input shape (it also gives
        the model signature).
        """
        import mlflow.pytorch
        import torch

        version = torch.__version__.split("+")[0]
        mlflow.pytorch.log_model(
            model.eval(), name=name, input_example=input_example, pip_requirements=[f"torch=={version}"]
        )


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: dict[str, Any],
    *,
    data_source: str | None = None,
    experiment: str = EXPERIMENT,
    tags: dict[str, str] | None = None,
) -> Iterator[StageRun]:
    """Open one MLflow run for a stage execution.

    The run is named ``<dvc experiment>/<stage>`` and tagged with the DVC experiment name, the
    stage, the git commit, the data source and `tags`; `params` are logged as run parameters.
    Fails with :class:`TrackingError` before the stage does any work if the store is unreachable.
    """
    check_store()
    mlflow = _mlflow()
    commit = git_commit()
    exp_name = dvc_experiment_name(commit)
    tags = {
        **(tags or {}),
        "dvc.experiment": exp_name,
        "dvc.stage": stage,
        "git.commit": commit,
        "cnnlab.data_source": data_source or "n/a",
    }
    experiment_id = _experiment_id(mlflow, experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{exp_name}/{stage}", tags=tags) as run:
        if params:
            mlflow.log_params({k: str(v) for k, v in params.items()})
        yield StageRun(mlflow, run)


def attach_to_stage_run(stage: str, experiment: str, files: list[Path], folder: str = "figures") -> str | None:
    """Log `files` as artifacts of the newest finished run of `stage` (tagged dvc.stage) in the
    current DVC experiment: the run that made the model the figures show.

    Returns that run's id, or None when the store has no such run, e.g. when the model was
    restored from the DVC cache rather than trained here.
    """
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    exp_name = dvc_experiment_name(git_commit())
    runs = []
    if found is not None:
        runs = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`dvc.stage` = '{stage}' and tags.`dvc.experiment` = '{exp_name}' "
            "and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        return None
    run_id = runs[0].info.run_id
    for path in files:
        client.log_artifact(run_id, str(path), folder)
    return run_id
