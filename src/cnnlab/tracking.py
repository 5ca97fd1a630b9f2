"""MLflow tracking: the only module that imports mlflow (but for cnnlab.serving, the model
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
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from tqdm import tqdm

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
    packages (about 3 s). The warm server (cnnlab.warm) calls it once for all stage processes."""
    from mlflow.utils.requirements_utils import _init_packages_to_modules_map

    _init_packages_to_modules_map()


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


_experiment_params: dict[str, Any] = {}


def use_params(flat: dict[str, Any]) -> None:
    """The experiment's params (all of params.yaml, flattened): its parent run gets them (called
    by cnnlab.stage.run_stage before a stage runs)."""
    _experiment_params.clear()
    _experiment_params.update(flat)


def _params_hash() -> str:
    return hashlib.sha256(json.dumps(_experiment_params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _mlflow():
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    import mlflow

    return mlflow


@contextlib.contextmanager
def _creation_lock(uri: str):
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


def check_store() -> str:
    """Make sure the tracking store answers; returns its URI.

    Raises:
        TrackingError: with the URI and what to set, before any training starts.
    """
    mlflow = _mlflow()
    uri = tracking_uri()
    try:
        mlflow.set_tracking_uri(uri)
        with _creation_lock(uri):
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


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


class PendingRecords:
    """The records of one run that its store did not take, on disk in ``mlflow-pending/<run id>/``:
    ``meta.json`` (store, experiment, run name, tags, why), ``records.jsonl`` (one record per
    line, appended and fsynced) and ``files/`` (copies of figures, artifacts and saved models)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.records = folder / "records.jsonl"
        self.files = folder / "files"

    @classmethod
    def open(cls, run_id: str, meta: dict) -> "PendingRecords":
        pending = cls(repo_root() / PENDING_DIR / run_id)
        pending.files.mkdir(parents=True, exist_ok=True)
        meta_file = pending.folder / "meta.json"
        if not meta_file.exists():
            meta_file.write_text(json.dumps({"run_id": run_id, **meta}, indent=1))
        return pending

    def add(self, op: str, **fields) -> None:
        with open(self.records, "a") as f:
            f.write(json.dumps({"op": op, **fields}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def new_file(self, name: str) -> Path:
        """A fresh path under files/ for a copy of `name`."""
        n = sum(1 for _ in self.files.iterdir())
        return self.files / f"{n:04d}-{Path(name).name}"

    def count(self) -> int:
        return len(self.records.read_text().splitlines()) if self.records.exists() else 0


def pending_runs(root: Path | None = None) -> list[Path]:
    """Folders of runs whose records are waiting for `cnnlab-sync`."""
    folder = (root or repo_root()) / PENDING_DIR
    return sorted(p.parent for p in folder.glob("*/meta.json"))


_LOCKS: dict[Path, tuple[tuple[int, int], dict[str, str]]] = {}


def _locked_outputs(lock: Path) -> dict[str, str]:
    """{path: md5} of every output in dvc.lock; parsed once per version of the file (it is large:
    0.15 s a parse in pure Python on a 2-core VM, and a stage asks once per input)."""
    import yaml

    try:
        st = lock.stat()
    except OSError:
        return {}
    stamp = (st.st_mtime_ns, st.st_size)
    if lock in _LOCKS and _LOCKS[lock][0] == stamp:
        return _LOCKS[lock][1]
    loader = yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader  # libyaml: 10x faster
    stages = (yaml.load(lock.read_text(), Loader=loader) or {}).get("stages", {})
    outs = {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", []) if "md5" in out}
    _LOCKS[lock] = (stamp, outs)
    return outs


def dvc_digest(path: str | Path) -> tuple[str, str]:
    """(digest, how it was made) of a stage's input, for its lineage: DVC's own md5 from dvc.lock
    when a stage outputs it (written as soon as that stage finished, or restored it); for a folder
    that holds several outputs, an md5 of theirs; for anything else (a dataset folder of your
    own), an md5 of its listing (paths, sizes, modification times), said as such."""
    rel = Path(os.path.relpath(Path(path).resolve(), Path.cwd())).as_posix()
    outs = _locked_outputs(Path("dvc.lock").resolve())
    if rel in outs:
        return outs[rel], "dvc.lock"
    inner = sorted((p, h) for p, h in outs.items() if p.startswith(rel + "/"))
    if inner:
        return hashlib.md5(json.dumps(inner).encode()).hexdigest(), "md5 of the dvc.lock hashes of the outputs in it"
    root = Path(path)
    files = sorted(root.rglob("*")) if root.is_dir() else [root]
    listing = [(f.relative_to(root).as_posix() if root.is_dir() else f.name, f.stat().st_size, f.stat().st_mtime_ns)
               for f in files if f.is_file()]  # fmt: skip
    return hashlib.md5(json.dumps(listing).encode()).hexdigest(), "md5 of its file listing (not a DVC output)"


class StageRun:
    """Logging handle of one stage execution (see :func:`stage_run`).

    Every call goes to the store until one fails; from then on the records go to
    :class:`PendingRecords`, so training never stops or loses a record because of the store.
    """

    def __init__(self, mlflow, run, uri: str, meta: dict):
        self._mlflow = mlflow
        self._client = mlflow.MlflowClient(uri)
        self.run = run
        self.uri = uri
        self._meta = meta
        self.pending: PendingRecords | None = None
        self.failure: str | None = None

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def _write(self, call: Callable[[], None], keep: Callable[[PendingRecords], None]) -> None:
        if self.pending is None:
            try:
                call()
                return
            except Exception as e:  # the store failed: keep this and every later record on disk
                self.failure = _reason(e)
                self.pending = PendingRecords.open(self.run_id, {**self._meta, "uri": self.uri, "error": self.failure})
                print(
                    f"warning: MLflow store {self.uri} failed ({self.failure}); this run's records are kept in "
                    f"{self.pending.folder} until `{SYNC_COMMAND}`",
                    file=sys.stderr,
                )
        keep(self.pending)

    def log_inputs(self, inputs: dict[str, Path]) -> None:
        """The run's lineage: each input's digest (see :func:`dvc_digest`) as tag
        `dvc.input.<name>` = `<path>@<digest>`, and each input as an MLflow dataset input."""
        for name, path in inputs.items():
            digest, how = dvc_digest(path)
            rel = Path(os.path.relpath(Path(path).resolve(), Path.cwd())).as_posix()
            self.set_tag(f"dvc.input.{name}", f"{rel}@{digest}")

            def call(rel=rel, digest=digest, name=name, how=how):
                from mlflow.data.dataset_source_registry import resolve_dataset_source
                from mlflow.data.meta_dataset import MetaDataset

                source = resolve_dataset_source(Path(rel).resolve().as_uri())
                dataset = MetaDataset(source, name=rel, digest=digest[:36])
                self._mlflow.log_input(dataset, context=name, tags={"cnnlab.digest": how})

            self._write(call, lambda pending: None)  # kept pending, the tag above holds the lineage

    def log_params(self, params: dict[str, Any]) -> None:
        values = {k: str(v) for k, v in params.items()}
        self._write(
            lambda: self._mlflow.log_params(values),
            lambda pending: pending.add("params", values=values),
        )

    def log_epoch(self, metrics: dict[str, float], epoch: int, prefix: str = "") -> None:
        """All of one epoch's metrics in one call."""
        values = {f"{prefix}{k}": float(v) for k, v in metrics.items() if k != "epoch"}
        self._log_values(values, epoch)

    def epoch_logger(self, group: str = "") -> Callable[[dict], None]:
        """A callback for :func:`cnnlab.train.loop.fit`'s `on_epoch`: each epoch's row, its metrics
        named `<group>/<metric>` (MLflow groups them)."""
        return lambda row: self.log_epoch(row, row["epoch"], prefix=f"{group}/" if group else "")

    def _log_values(self, values: dict[str, float], step: int | None) -> None:
        now = int(time.time() * 1000)
        self._write(
            lambda: self._mlflow.log_metrics(values, step=step, timestamp=now),
            lambda pending: pending.add("metrics", values=values, step=step or 0, timestamp=now),
        )

    def log_metrics(self, metrics: dict[str, Any], prefix: str = "") -> None:
        """Final metrics; nested dicts are flattened with '/' (MLflow's grouping), None and
        non-numbers skipped."""
        flat = flat_metrics(metrics, prefix)
        if flat:
            self._log_values(flat, None)

    def set_tag(self, key: str, value: str) -> None:
        self._write(lambda: self._mlflow.set_tag(key, value), lambda pending: pending.add("tag", key=key, value=value))

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        """A file, or a folder's files, under `folder` of the run's artifacts."""
        path = Path(path)

        def call():
            if path.is_dir():
                self._mlflow.log_artifacts(str(path), folder)
            else:
                self._mlflow.log_artifact(str(path), folder)

        def keep(pending):
            copy = pending.new_file(path.name)
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, copy)
            pending.add("artifact", file=copy.name, folder=folder, name=path.name)

        self._write(call, keep)

    def log_model(self, model, name: str, images, *, registered: str, metadata: dict, tags: dict,
                  python_model: Path, signature, parts: dict | None = None) -> None:  # fmt: skip
        """The trained torch model as an MLflow pyfunc model "from code" (`python_model`, the file
        that defines it: cnnlab.serving, no pickle) with the network exported by torch.export as
        its artifact `network`, registered as a new version of model `registered`; every trained
        model of cnnlab is logged this way (cnnlab.stage.log_model).

        Args:
            images: a few (N, 3, S, S) uint8 images the model takes (N >= 2 keeps the exported
                graph's batch size free). No input example is stored: MLflow would load and score
                every model to check it (seconds each); tests/unit/test_predict.py does.
            metadata: what it takes to use the model (kind, classes, input size, strategy,
                preprocessing): the model's config and its MLmodel metadata.
            tags: tags of the model version, beside the DVC experiment's name.
            parts: other networks the model uses on the same images (name -> torch module; a
                segment_learned classifier's `masker`), exported the same way as artifacts `name`.

        Kept pending, the model is saved in the same format, written later as artifacts under
        `name` and registered from there.
        """
        import mlflow.pyfunc
        import torch

        from cnnlab.tensors import to_float

        network = Path(tempfile.mkdtemp(prefix="cnnlab-model-")) / "network.pt2"
        batch = to_float(torch.as_tensor(images[:2]), torch.contiguous_format)
        artifacts = {}
        for part, module in {"network": model, **(parts or {})}.items():
            exported = torch.export.export(module.eval(), (batch,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
            artifacts[part] = str(network.with_name(f"{part}.pt2"))
            torch.export.save(exported, artifacts[part])
        requirements = [f"torch=={torch.__version__.split('+')[0]}", "pillow", "pandas", "opencv-python-headless"]
        options = dict(python_model=str(python_model), artifacts=artifacts, model_config=metadata,
                       metadata=metadata, signature=signature, pip_requirements=requirements)  # fmt: skip
        tags = {**{k: str(v) for k, v in tags.items()}, "dvc.experiment": self._meta["tags"]["dvc.experiment"]}

        def call():
            with warnings.catch_warnings():  # "An input example was not provided": on purpose, above
                warnings.filterwarnings("ignore", message=".*input example was not provided")
                info = mlflow.pyfunc.log_model(name=name, registered_model_name=registered, **options)
            for key, value in tags.items():
                self._client.set_model_version_tag(registered, info.registered_model_version, key, value)

        def keep(pending):
            folder = pending.new_file(name)
            mlflow.pyfunc.save_model(str(folder), **options)
            pending.add("artifact", file=folder.name, folder=name, name=name)
            pending.add("register", path=name, name=registered, tags=tags)

        try:
            self._write(call, keep)
        finally:
            shutil.rmtree(network.parent, ignore_errors=True)

    def end(self, status: str) -> None:
        """Mark the run FINISHED or FAILED; report kept records."""
        now = int(time.time() * 1000)

        def ours() -> bool:
            active = self._mlflow.active_run()
            return active is not None and active.info.run_id == self.run_id

        def call():
            if ours():
                self._mlflow.end_run(status)
            else:
                self._client.set_terminated(self.run_id, status, end_time=now)

        def keep(pending):
            pending.add("end", status=status, end_time=now)
            if ours():  # leave no active run behind in this process (the store's copy ends at sync)
                with contextlib.suppress(Exception):
                    self._mlflow.end_run(status)

        self._write(call, keep)
        if self.pending is not None:
            print(
                f"warning: MLflow did not get {self.pending.count()} records of run {self.run_id} "
                f"({self.failure}). Outputs and metrics/ are complete; the records are kept in "
                f"{self.pending.folder}. When {self.uri} answers again, run `{SYNC_COMMAND}` "
                "(python -m cnnlab.tracking sync) to write them to the store.",
                file=sys.stderr,
            )


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{'a/b': value} of every number in a nested dict (MLflow's metric names)."""
    flat = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            flat.update(flat_metrics(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            flat[f"{prefix}{k}"] = float(v)
    return flat


class _OtherRank:
    """The run handle of a torchrun process other than rank 0: it logs nothing (rank 0 does)."""

    run_id = None
    pending = None

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def _experiment_run(mlflow, experiment_id: str, exp_name: str, commit: str) -> str:
    """The id of this DVC experiment's parent run (the one with its name and params), made with
    all of params.yaml as its params when it does not exist yet. Stages of one experiment run one
    after the other, so only one of them makes it; queued experiments have names of their own."""
    client = mlflow.MlflowClient(mlflow.get_tracking_uri())
    digest = _params_hash()
    query = (f"tags.`dvc.experiment` = '{exp_name}' and tags.`cnnlab.role` = '{EXPERIMENT_ROLE}' "
             f"and tags.`cnnlab.params_hash` = '{digest}'")  # fmt: skip
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    from mlflow.entities import Param

    tags = {"dvc.experiment": exp_name, "cnnlab.role": EXPERIMENT_ROLE, "cnnlab.params_hash": digest,
            "git.commit": commit}  # fmt: skip
    run_id = client.create_run(experiment_id, run_name=exp_name, tags=tags).info.run_id
    params = [Param(k, str(v)) for k, v in _experiment_params.items()]
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params per call
        client.log_batch(run_id, params=params[start : start + 100])
    client.set_terminated(run_id, "FINISHED")  # it stays open to its children and its metrics
    return run_id


def log_experiment_metrics(metrics: dict[str, Any], tags: dict[str, str] | None = None) -> dict[str, str]:
    """Log headline metrics (nested dicts flattened with '/') and `tags` to the DVC experiment's
    parent run and set its end time to now. Returns {"experiment": the DVC experiment's name,
    "run_id": the parent run's id}. Fails with :class:`TrackingError` if the store cannot be reached."""
    uri = check_store()
    mlflow = _mlflow()
    commit = git_commit()
    name = dvc_experiment_name(commit)
    run_id = _experiment_run(mlflow, _experiment_id(mlflow, EXPERIMENT), name, commit)
    now = int(time.time() * 1000)
    from mlflow.entities import Metric, RunTag

    values = [Metric(k, v, now, 0) for k, v in flat_metrics(metrics).items()]
    client = mlflow.MlflowClient(uri)
    for start in range(0, len(values), 1000):
        client.log_batch(run_id, metrics=values[start : start + 1000])
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    client.set_terminated(run_id, "FINISHED")  # its end: the experiment's last stage (the UI's duration)
    return {"experiment": name, "run_id": run_id}


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: dict[str, Any],
    *,
    data_source: str | None = None,
    tags: dict[str, str] | None = None,
    system_metrics: bool | None = None,
    inputs: dict[str, Path] | None = None,
) -> Iterator[StageRun]:
    """Open one MLflow run for a stage execution, a child of its DVC experiment's parent run.

    The run is named ``<dvc experiment>/<stage>`` and tagged with the DVC experiment name, the
    stage, the git commit, the data source and `tags`; `params` are logged as run parameters.
    `system_metrics`: CPU, memory (and GPU) usage sampled during the run (MLflow's system metrics);
    the training stages pass ``tracking.system_metrics``, the others nothing (off).
    `inputs`: name -> path of the data the stage reads, recorded as its lineage (:meth:`StageRun.log_inputs`).
    Fails with :class:`TrackingError` before the stage does any work if the store is unreachable;
    if it fails later, see :class:`StageRun`. Under torchrun only rank 0 logs.
    """
    if os.environ.get("RANK", "0") != "0":
        yield _OtherRank()  # type: ignore[misc]
        return
    uri = check_store()
    mlflow = _mlflow()
    waiting = pending_runs()
    if waiting:
        print(
            f"note: {len(waiting)} MLflow run(s) in {repo_root() / PENDING_DIR} are waiting to be written; "
            f"run `{SYNC_COMMAND}` when their store answers",
            file=sys.stderr,
        )
    commit = git_commit()
    exp_name = dvc_experiment_name(commit)
    tags = {
        **(tags or {}),
        "dvc.experiment": exp_name,
        "dvc.stage": stage,
        "git.commit": commit,
        "cnnlab.data_source": data_source or "n/a",
    }
    experiment_id = _experiment_id(mlflow, EXPERIMENT)
    tags["mlflow.parentRunId"] = _experiment_run(mlflow, experiment_id, exp_name, commit)
    run_name = f"{exp_name}/{stage}"
    if system_metrics:
        # MLflow publishes a sample only after a whole interval: a run shorter than it gets none.
        # MLflow's own variable, where it is set, wins (the tests' runs take about 2 s).
        if SAMPLING_INTERVAL_VARIABLE not in os.environ:
            mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
        mlflow.set_system_metrics_samples_before_logging(1)
    run = mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, tags=tags, log_system_metrics=bool(system_metrics)
    )
    handle = StageRun(mlflow, run, uri, {"experiment": EXPERIMENT, "run_name": run_name, "tags": tags})
    status = "FAILED"
    try:
        if params:
            handle.log_params(params)
        handle.log_inputs(inputs or {})
        yield handle
        status = "FINISHED"
    except Exception:
        raise
    except BaseException:  # Ctrl-C, SIGTERM (cnnlab.stage.Interrupted), an exit: the run was stopped
        status = "KILLED"
        raise
    finally:
        handle.end(status)


def load_logged_model(uri: str):
    """A logged model (models:/<name>/<version>, runs:/<run>/<name>): its network as a torch module
    in eval mode (cnnlab.serving.frozen), its metadata (usage) and its other networks by name (a
    segment_learned classifier's `masker`; {} for most models).
    Models logged before the serving contract (MLflow pytorch flavor, pt2) load too.

    Raises:
        TrackingError: the model or the store cannot be found, or the model is not cnnlab's, saying which.
    """
    if tracking_uri() == default_uri() and not (repo_root() / STORE_FILE).exists():
        raise TrackingError(
            f"{uri}: no MLflow store here ({repo_root() / STORE_FILE} does not exist); run this in the repository "
            "whose pipeline logged the model, or set MLFLOW_TRACKING_URI to its store"
        )
    check_store()
    mlflow = _mlflow()
    try:
        info = mlflow.models.get_model_info(uri)
        metadata = info.metadata or {}
        if "python_function" in info.flavors and "pytorch" not in info.flavors:
            python_model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
            graph = python_model.network if hasattr(python_model, "network") else None
            parts = dict(python_model.parts) if hasattr(python_model, "parts") else {}
        else:  # logged before the serving contract: the pytorch flavor
            import mlflow.pytorch

            graph, parts = mlflow.pytorch.load_model(uri, device="cpu"), {}
    except Exception as e:  # unknown name or version, a run without that model, a broken store
        raise TrackingError(
            f"{uri}: no such model in MLflow store {tracking_uri()} ({_reason(e)}); "
            "registered names: cnnlab-objects-<strategy>, cnnlab-objects-background, cnnlab-<dataset>-<model>"
        ) from None
    if graph is None:
        raise TrackingError(f"{uri}: not a model of cnnlab's (no network in it)")
    from cnnlab.tensors import frozen

    return (graph if "pytorch" not in info.flavors else frozen(graph)), metadata, parts


def _replay(client, run_id: str, record: dict, files: Path) -> None:
    from mlflow.entities import Metric, Param

    op = record["op"]
    if op == "metrics":
        step, ts = record["step"], record["timestamp"]
        client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v in record["values"].items()])
    elif op == "params":
        client.log_batch(run_id, params=[Param(k, v) for k, v in record["values"].items()])
    elif op == "tag":
        client.set_tag(run_id, record["key"], record["value"])
    elif op == "artifact":
        path = files / record["file"]
        if path.is_dir():
            client.log_artifacts(run_id, str(path), record["folder"])
        else:
            # a kept copy has a numbered name; the store gets the original one
            target = files / "_upload" / record["name"]
            target.parent.mkdir(exist_ok=True)
            shutil.copy2(path, target)
            client.log_artifact(run_id, str(target), record["folder"])
            shutil.rmtree(target.parent)
    elif op == "register":  # the model went in as the run's artifacts above; a version of it now
        import mlflow

        mlflow.register_model(f"runs:/{run_id}/{record['path']}", record["name"], tags=record["tags"])
    elif op == "end":
        client.set_terminated(run_id, record["status"], end_time=record["end_time"])
    else:
        raise ValueError(f"unknown record {op!r}")


def sync(root: Path | None = None, uri: str | None = None) -> list[str]:
    """Write every pending run's records to its store (or to `uri`), oldest first, then delete
    them. Resumable: each run's progress is saved after every record.

    Returns the ids of the runs written. Raises TrackingError if a store still does not answer.
    """
    mlflow = _mlflow()
    synced = []
    for folder in pending_runs(root):
        meta = json.loads((folder / "meta.json").read_text())
        target = uri or meta["uri"]
        mlflow.set_tracking_uri(target)
        client = mlflow.MlflowClient(target)
        try:
            client.search_experiments(max_results=1)
        except Exception as e:
            raise TrackingError(
                f"MLflow store {target} still cannot be reached ({_reason(e)}); {folder} is kept. "
                f"Start it, or pass --uri to write the records to another store."
            ) from None
        run_id = meta["run_id"]
        try:
            client.get_run(run_id)
        except Exception:  # another store, or the run never reached it: a new run with the same name and tags
            experiment_id = _experiment_id(mlflow, meta["experiment"])
            run_id = client.create_run(experiment_id, tags=meta["tags"], run_name=meta["run_name"]).info.run_id
        progress = folder / "applied"
        done = int(progress.read_text()) if progress.exists() else 0
        records = (folder / "records.jsonl").read_text().splitlines() if (folder / "records.jsonl").exists() else []
        for i, line in enumerate(tqdm(records, desc=f"sync {meta['run_name']}", unit="record")):
            if i < done:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a record cut off by a crash while it was written
                if i == len(records) - 1:
                    break
                raise
            _replay(client, run_id, record, folder / "files")
            progress.write_text(str(i + 1))
        shutil.rmtree(folder)
        synced.append(run_id)
    return synced


def sync_main(argv: list[str] | None = None) -> None:
    """`cnnlab-sync`: write the records that MLflow runs kept in mlflow-pending/ to their store."""
    parser = argparse.ArgumentParser(prog=SYNC_COMMAND, description=sync_main.__doc__)
    parser.add_argument("--uri", help="write to this tracking store instead of the one each run used")
    parser.add_argument("--root", type=Path, help="repository root (default: the one above the working directory)")
    args = parser.parse_args(argv)
    waiting = pending_runs(args.root)
    if not waiting:
        print(f"nothing to sync: no runs in {(args.root or repo_root()) / PENDING_DIR}")
        return
    try:
        synced = sync(args.root, args.uri)
    except TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {len(synced)} run(s) to the store: {', '.join(synced)}")


if __name__ == "__main__":
    if sys.argv[1:2] != ["sync"]:
        sys.exit("usage: python -m cnnlab.tracking sync [--uri URI] [--root DIR]")
    sync_main(sys.argv[2:])
