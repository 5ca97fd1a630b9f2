"""The tracking store: where it is (the SQLite file at the repository root, or
MLFLOW_TRACKING_URI), whether it answers, and the one MLflow experiment every run goes to."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from cnnlab.errors import TrackingError

EXPERIMENT = "cnnlab"  # every run: a parent per DVC experiment, a child per stage execution
EXPERIMENT_ROLE = "experiment"  # tag cnnlab.role of a DVC experiment's parent run
SYSTEM_METRICS_INTERVAL_S = 2  # seconds between samples of CPU, memory (and GPU) on training runs
SAMPLING_INTERVAL_VARIABLE = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"  # set: its value instead
STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
PENDING_DIR = "mlflow-pending"  # records a run could not write to its store, until `cnnlab-sync`
SYNC_COMMAND = "cnnlab-sync"


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


def warm_up() -> None:
    """What MLflow otherwise builds in every process that logs a model: its map of the installed
    packages (about 3 s). The warm server (cnnlab.warm) calls it once for all stage processes;
    :meth:`StageRun.log_model` calls it too (it is cheap after the first call).

    MLflow checks a model's pip requirements against the environment at every save and load, and
    for each requirement rebuilds its package-to-module map from its module-to-package map, which
    it builds once per process and never changes (about 15 ms a requirement here: 0.15 s of every
    model cnnlab logs, a quarter of logging one). Here the rebuild happens once: the same map, the
    same check, the same warnings. Where MLflow no longer has these names, nothing is changed."""
    from mlflow.utils import requirements_utils as ru

    if not (hasattr(ru, "_init_packages_to_modules_map") and hasattr(ru, "_PACKAGES_TO_MODULES")):
        return
    build = ru._init_packages_to_modules_map
    if not hasattr(build, "cnnlab_once"):

        def once() -> None:
            if ru._PACKAGES_TO_MODULES is None:
                build()

        once.cnnlab_once = True
        ru._init_packages_to_modules_map = once
    ru._init_packages_to_modules_map()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def shown(uri: str) -> str:
    """`uri` fit for a message: a password in it (postgresql://user:secret@host/db) as ***."""
    return re.sub(r"(://[^/:@]+:)[^/@]*@", r"\1***@", uri)


def mlflow_module():
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    import mlflow

    return mlflow


@contextlib.contextmanager
def creation_lock(uri: str):
    """One process at a time opens a SQLite store: the first to open a new one creates its tables,
    and two doing it at once (queued experiments run two at a time) fail with "table ... already
    exists". A lock file beside the database (mlflow.db.lock); no lock where fcntl is missing."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl

        fd = os.open(uri.removeprefix("sqlite:///") + ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


DATABASES = ("postgresql", "mysql", "mssql")  # MLflow's database stores other than SQLite


def _reach_database(uri: str) -> None:
    """One connection to a database store, failing at once with the database's reason (a wrong
    password, no such database, nothing listening): MLflow retries a refused connection for about
    100 s before it says why."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 10} if uri.startswith("postgresql") else {})
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def check_store() -> str:
    """Make sure the tracking store answers; returns its URI.

    Raises:
        TrackingError: with the URI and what to set, before any training starts.
    """
    mlflow = mlflow_module()
    uri = tracking_uri()
    try:
        if uri.split("://")[0].split("+")[0] in DATABASES:
            _reach_database(uri)
        mlflow.set_tracking_uri(uri)
        with creation_lock(uri):
            client = mlflow.MlflowClient(uri)
            client.search_experiments(max_results=1)
    except Exception as e:  # any failure to reach the store
        where = f"MLFLOW_TRACKING_URI={shown(uri)}" if os.environ.get("MLFLOW_TRACKING_URI") else shown(uri)
        raise TrackingError(
            f"MLflow tracking store {where} cannot be reached ({shown(reason(e))}). "
            "Start that server or fix the address (user, password, host, port, database), or set "
            "MLFLOW_TRACKING_URI to a reachable store (unset it to use the default SQLite file mlflow.db at the "
            "repository root)."
        ) from None
    return uri


def experiment_named(mlflow, name: str) -> str:
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


def reason(e: BaseException) -> str:
    """The exception's type and first line; for a database error, the driver's own message
    (SQLAlchemy's first line is its generic wrapper)."""
    text = str(e.orig) if hasattr(e, "orig") and e.orig is not None else str(e)
    return f"{type(e).__name__}: {(text.strip().splitlines() or [''])[0][:200]}"
