"""The outbox: records a run could not write to its store, kept on disk in
mlflow-pending/<run id>/ and written by `cnnlab-sync` once the store answers again."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from cnnlab.errors import TrackingError
from cnnlab.tracking.registry import move_champion
from cnnlab.tracking.store import PENDING_DIR, SYNC_COMMAND, experiment_named, mlflow_module, reason, repo_root


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


def _replay(client, run_id: str, record: dict, files: Path) -> None:
    from mlflow.entities import Metric, Param

    op = record["op"]
    if op == "metrics":
        step, ts = record["step"], record["timestamp"]
        model_id = record.get("model_id")
        values = record["values"].items()
        client.log_batch(run_id, metrics=[Metric(k, v, ts, step, model_id=model_id) for k, v in values])
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
        move_champion(client, record["name"])
    elif op == "end":
        client.set_terminated(run_id, record["status"], end_time=record["end_time"])
    else:
        raise ValueError(f"unknown record {op!r}")


def sync(root: Path | None = None, uri: str | None = None) -> list[str]:
    """Write every pending run's records to its store (or to `uri`), oldest first, then delete
    them. Resumable: each run's progress is saved after every record.

    Returns the ids of the runs written. Raises TrackingError if a store still does not answer.
    """
    mlflow = mlflow_module()
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
                f"MLflow store {target} still cannot be reached ({reason(e)}); {folder} is kept. "
                f"Start it, or pass --uri to write the records to another store."
            ) from None
        run_id = meta["run_id"]
        try:
            client.get_run(run_id)
        except Exception:  # another store, or the run never reached it: a new run with the same name and tags
            experiment_id = experiment_named(mlflow, meta["experiment"])
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
