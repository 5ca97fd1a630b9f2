"""MLflow tracking: the only package that imports mlflow (but for cnnlab.serving, the model
class that MLflow itself loads).

One store for everything. By default a SQLite file ``mlflow.db`` (and artifacts in
``mlartifacts/``) at the repository root, found through ``DVC_ROOT`` so that queued DVC
experiments, which run in a temporary copy of the repository, log into the same store.
``MLFLOW_TRACKING_URI`` overrides it.

One MLflow experiment, ``cnnlab``, holds one parent run per DVC experiment (``DVC_EXP_NAME``, or
``repro-<commit>`` for a plain ``dvc repro``) with all of params.yaml as its params and the
headline metrics (the ``summary`` stage), and under it one child run per stage execution, tagged
with the DVC experiment name, the stage, the git commit and the data source. The MLflow UI's
table then compares experiments one row each. Metric names group with ``/``
(``none/seed0/val_acc``).

If the store stops answering in the middle of a run (a server restarted, a network drop), the
stage still finishes and writes its outputs: the run's remaining records (metrics, tags, figures,
artifacts, models, its end) are kept in ``mlflow-pending/<run id>/`` at the repository root, the
stage says so at the end, and ``cnnlab-sync`` (``python -m cnnlab.tracking sync``) writes them
once the store is back.

The package, by job: store (where the store is and whether it answers), runs (the parent and
stage runs and what a stage logs), outbox (records kept while the store is down, `cnnlab-sync`),
lineage (git commit, DVC experiment name, dvc.lock hashes of the inputs).
"""

from cnnlab.errors import TrackingError
from cnnlab.tracking.lineage import dvc_digest, dvc_experiment_name, git_commit
from cnnlab.tracking.outbox import PendingRecords, pending_runs, sync, sync_main
from cnnlab.tracking.runs import (
    StageRun,
    flat_metrics,
    load_logged_model,
    log_experiment_metrics,
    stage_run,
    use_params,
)
from cnnlab.tracking.store import (
    EXPERIMENT,
    PENDING_DIR,
    SAMPLING_INTERVAL_VARIABLE,
    STORE_FILE,
    SYNC_COMMAND,
    check_store,
    default_uri,
    repo_root,
    tracking_uri,
    warm_up,
)

__all__ = [
    "EXPERIMENT", "PENDING_DIR", "SAMPLING_INTERVAL_VARIABLE", "STORE_FILE", "SYNC_COMMAND", "PendingRecords",
    "StageRun", "TrackingError", "check_store",
    "default_uri", "dvc_digest", "dvc_experiment_name", "flat_metrics", "git_commit", "load_logged_model",
    "log_experiment_metrics", "pending_runs", "repo_root", "stage_run", "sync", "sync_main", "tracking_uri",
    "use_params", "warm_up",
]  # fmt: skip
