"""MLflow runs: one parent run per DVC experiment, one child run per stage execution, and what a
stage logs into its run (params, metrics per epoch, figures, artifacts, models, lineage)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from cnnlab.errors import TrackingError
from cnnlab.tracking.lineage import dvc_digest, dvc_experiment_name, git_commit
from cnnlab.tracking.outbox import PendingRecords, pending_runs
from cnnlab.tracking.registry import WEIGHTS_TAG, move_champion
from cnnlab.tracking.store import (
    EXPERIMENT,
    EXPERIMENT_ROLE,
    PENDING_DIR,
    SAMPLING_INTERVAL_VARIABLE,
    STORE_FILE,
    SYNC_COMMAND,
    SYSTEM_METRICS_INTERVAL_S,
    check_store,
    default_uri,
    experiment_named,
    mlflow_module,
    reason,
    repo_root,
    shown,
    tracking_uri,
    warm_up,
)

_experiment_params: dict[str, Any] = {}
# The step a model is logged at: one no metric has. MLflow links to a new model every metric its run
# holds at the model's step (and every later one logged at it by mlflow.log_metrics); at step -1,
# a model gets only the metrics logged for it by name (StageRun.log_model's `metrics`).
MODEL_STEP = -1


def use_params(flat: dict[str, Any]) -> None:
    """The experiment's params (all of params.yaml, flattened): its parent run gets them (called
    by cnnlab.stage.run_stage before a stage runs)."""
    _experiment_params.clear()
    _experiment_params.update(flat)


def _params_hash() -> str:
    return hashlib.sha256(json.dumps(_experiment_params, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
        self.models: dict[str, str] = {}  # name -> LoggedModel id, of the models this run logged

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def _write(self, call: Callable[[], None], keep: Callable[[PendingRecords], None]) -> None:
        if self.pending is None:
            try:
                call()
                return
            except Exception as e:  # the store failed: keep this and every later record on disk
                self.failure = reason(e)
                self.pending = PendingRecords.open(self.run_id, {**self._meta, "uri": self.uri, "error": self.failure})
                print(
                    f"warning: MLflow store {shown(self.uri)} failed ({self.failure}); this run's records are kept in "
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

    def _log_values(self, values: dict[str, float], step: int | None, model_id: str | None = None) -> None:
        """The client's log_batch, not mlflow.log_metrics: that one links every metric of a step to
        every model the run logged at that step (a model's metrics would be every model's)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._write(
            lambda: self._client.log_batch(
                self.run_id, metrics=[Metric(k, v, now, step or 0, model_id=model_id) for k, v in values.items()]),
            lambda pending: pending.add("metrics", values=values, step=step or 0, timestamp=now, model_id=model_id),
        )  # fmt: skip

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

    def log_model(self, name: str, artifacts: dict[str, Path], *, registered: str | None, metadata: dict, tags: dict,
                  python_model: Path, signature, metrics: dict[str, float] | None = None, code: Path | None = None,
                  requirements: list[str] | None = None) -> None:  # fmt: skip
        """A trained model as an MLflow pyfunc model "from code" (`python_model`, the file that
        defines it: cnnlab.serving, no pickle) with `artifacts` (name -> file: cnnlab.serving logs
        the model's checkpoint), a LoggedModel of this run with `tags` and its own `metrics` linked
        to it (nothing else is: see :meth:`_log_values`); registered as a new version of model
        `registered` (:meth:`register`) unless that is None. Every trained model of cnnlab is logged
        this way (cnnlab.serving.log_model).

        Args:
            metadata: what it takes to use the model (kind, classes, input size, strategy,
                preprocessing): the model's config and its MLmodel metadata. No input example is
                stored: MLflow would load and score every model to check it (seconds each);
                tests/unit/test_predict.py does.
            tags: tags of the logged model (and of its version), beside the DVC experiment's name.
            code: a package folder the model carries (MLflow's code_paths: on sys.path where it
                is loaded); requirements: its pip requirements.

        Kept pending, the model is saved in the same format, written later as artifacts under
        `name` and registered from there.
        """
        import mlflow.pyfunc

        warm_up()
        if not requirements:
            import torch

            requirements = [f"torch=={torch.__version__.split('+')[0]}"]
        options = dict(python_model=str(python_model), artifacts={k: str(v) for k, v in artifacts.items()},
                       model_config=metadata, metadata=metadata, signature=signature, pip_requirements=requirements,
                       code_paths=[str(code)] if code else None)  # fmt: skip
        tags = self._version_tags(tags)

        def call():
            with warnings.catch_warnings():  # "An input example was not provided": on purpose, above
                warnings.filterwarnings("ignore", message=".*input example was not provided")
                info = mlflow.pyfunc.log_model(name=name, tags=tags, step=MODEL_STEP, **options)
            self.models[name] = info.model_id

        def keep(pending):
            folder = pending.new_file(name)
            mlflow.pyfunc.save_model(str(folder), **options)
            pending.add("artifact", file=folder.name, folder=name, name=name)

        self._write(call, keep)
        if metrics:
            self._log_values({k: float(v) for k, v in metrics.items()}, None, model_id=self.models.get(name))
        if registered:
            self.register(name, registered, tags)

    def _version_tags(self, tags: dict) -> dict[str, str]:
        """`tags` as strings, with the DVC experiment's name: a logged model's and a version's tags."""
        return {**{k: str(v) for k, v in tags.items()}, "dvc.experiment": self._meta["tags"]["dvc.experiment"]}

    def register(self, name: str, registered: str, tags: dict) -> None:
        """The model `name` that this run logged, as a new version of registered model `registered`
        with `tags`; then the alias `champion` goes to the version with the best validation
        accuracy (:func:`move_champion`). Kept pending, the version is made by `cnnlab-sync`."""
        import mlflow

        tags = self._version_tags(tags)

        def call():
            source = f"models:/{self.models[name]}" if name in self.models else f"runs:/{self.run_id}/{name}"
            mlflow.register_model(source, registered, tags=tags)
            move_champion(self._client, registered)

        self._write(call, lambda pending: pending.add("register", path=name, name=registered, tags=tags))

    def link_metrics(self, weights: str, metrics: dict[str, float], registered: str | None = None,
                     version_tags: tuple[str, ...] = ()) -> bool:  # fmt: skip
        """Log `metrics` to this run linked to the LoggedModel whose weights digest is `weights`
        (tag cnnlab.weights_digest, cnnlab.serving.weights_digest: the model another stage logged),
        and those of them named in `version_tags` as tags of its version of `registered` where it
        has one. False where the store holds no such model (or is down: nothing is linked then)."""
        if self.pending is not None:
            return False
        try:
            found = self._mlflow.search_logged_models(
                experiment_ids=[self.run.info.experiment_id], filter_string=f"tags.`{WEIGHTS_TAG}` = '{weights}'",
                order_by=[{"field_name": "creation_timestamp", "ascending": False}], max_results=1,
                output_format="list")  # fmt: skip
            versions = self._client.search_model_versions(f"name='{registered}'") if registered and found else []
        except Exception:  # noqa: BLE001 - a failed look-up leaves the models unlinked, nothing else
            return False
        if not found:
            return False
        versions = [v for v in versions if v.source == f"models:/{found[0].model_id}"]  # registered from it
        self._log_values({k: float(v) for k, v in metrics.items()}, None, model_id=found[0].model_id)
        for version in versions:
            for key, value in ((k, metrics[k]) for k in version_tags if k in metrics):
                self._write(lambda v=version, k=key, x=value: self._client.set_model_version_tag(
                    registered, v.version, k, str(x)), lambda pending: None)  # fmt: skip
        return True

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
                f"{self.pending.folder}. When {shown(self.uri)} answers again, run `{SYNC_COMMAND}` "
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
    mlflow = mlflow_module()
    commit = git_commit()
    name = dvc_experiment_name(commit)
    run_id = _experiment_run(mlflow, experiment_named(mlflow, EXPERIMENT), name, commit)
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
    mlflow = mlflow_module()
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
    experiment_id = experiment_named(mlflow, EXPERIMENT)
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
    in eval mode, its metadata (usage) and its other networks by name (a
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
    mlflow = mlflow_module()
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
            f"{uri}: no such model in MLflow store {shown(tracking_uri())} ({reason(e)}); "
            "registered names: cnnlab-objects-<strategy>, cnnlab-objects-background, cnnlab-<dataset>-<model>"
        ) from None
    if graph is None:
        raise TrackingError(f"{uri}: not a model of cnnlab's (no network in it)")
    from cnnlab.tensors import frozen

    return (graph if "pytorch" not in info.flavors else frozen(graph)), metadata, parts
