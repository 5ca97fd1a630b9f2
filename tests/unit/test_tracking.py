import matplotlib.pyplot as plt
import mlflow
import pytest

from cnnlab import tracking
from cnnlab.stage import write_figures


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A repository root with the default SQLite store, as DVC would point to it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lime")
    return tmp_path


def test_stage_run_logs_everything_into_the_repository_store(store):
    with tracking.stage_run("train_classifier", {"lr": 0.05, "classifier.epochs": 2}, data_source="synthetic") as run:
        run.log_epoch({"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}, 1, prefix="masked.")
        run.log_epoch({"epoch": 2, "train_loss": 0.5, "val_acc": 0.75}, 2, prefix="masked.")
        run.log_metrics({"masked": {"val_accuracy": 0.75, "stopped_early": False}, "data_source": "x", "n": 3})
        write_figures({"curves.png": plt.figure()}, store / "reports" / "train_classifier", run)
        run_id = run.run_id
    assert (store / "reports/train_classifier/curves.png").stat().st_size > 1000  # the stage's output
    assert (store / "mlflow.db").is_file()
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    r = client.get_run(run_id)
    assert r.data.tags["dvc.experiment"] == "brisk-lime"
    assert r.data.tags["dvc.stage"] == "train_classifier"
    assert r.data.tags["cnnlab.data_source"] == "synthetic"
    assert "git.commit" in r.data.tags
    assert r.info.run_name == "brisk-lime/train_classifier"
    assert r.data.params == {"lr": "0.05", "classifier.epochs": "2"}
    assert r.data.metrics["masked.val_accuracy"] == 0.75 and r.data.metrics["n"] == 3
    history = client.get_metric_history(run_id, "masked.train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5)]
    # artifacts live beside the store, not in the working directory
    assert r.info.artifact_uri.startswith((store / "mlartifacts").as_uri())
    assert list((store / "mlartifacts").rglob("curves.png"))


def test_plain_repro_gets_a_name_from_the_commit(monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert tracking.dvc_experiment_name("0123456789abcdef") == "repro-0123456"
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    assert tracking.dvc_experiment_name("0123456789abcdef") == "exp-1"


def test_unreachable_store_says_what_to_set(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(tracking.TrackingError, match="http://127.0.0.1:9 cannot be reached.*MLFLOW_TRACKING_URI"):
        with tracking.stage_run("train_classifier", {}):
            pytest.fail("the stage body must not run")


def test_repo_root_without_dvc_root_finds_the_dvc_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert tracking.repo_root() == tmp_path


def test_logged_model_loads_back_and_takes_any_batch_size(store):
    import mlflow.pytorch
    import numpy as np
    import torch

    from cnnlab.models import ObjectsCNN

    model = ObjectsCNN(3, 8, 16).eval()
    with tracking.stage_run("train_classifier", {}) as run:
        run.log_model(model, "masked", np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32))
        run_id = run.run_id
    exp = mlflow.get_experiment_by_name(tracking.EXPERIMENT)
    logged = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    assert [m.name for m in logged if m.source_run_id == run_id] == ["masked"]
    loaded = mlflow.pytorch.load_model(logged[0].model_uri)
    x = torch.rand(5, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x))


class _StoreDown:
    """Makes the store fail from the `after`-th metrics call on, like a server that went away."""

    def __init__(self, monkeypatch, after: int):
        self.calls = 0
        real = mlflow.log_metrics

        def log_metrics(*args, **kwargs):
            self.calls += 1
            if self.calls > after:
                raise mlflow.exceptions.MlflowException("API request failed: Connection refused")
            return real(*args, **kwargs)

        for name in ("log_artifact", "log_artifacts", "set_tag"):
            monkeypatch.setattr(mlflow, name, self._down(getattr(mlflow, name)))
        # mlflow.end_run leaves the run, then tells the store
        monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", self._down(mlflow.MlflowClient.set_terminated))
        monkeypatch.setattr(mlflow, "log_metrics", log_metrics)
        self.after = after

    def _down(self, real):
        def call(*args, **kwargs):
            if self.calls > self.after:
                raise mlflow.exceptions.MlflowException("API request failed: Connection refused")
            return real(*args, **kwargs)

        return call


def test_store_failing_mid_run_keeps_the_records_and_sync_writes_them(store, monkeypatch, tmp_path, capsys):
    extra = tmp_path / "report.csv"
    extra.write_text("id,label\n1,00\n")
    with monkeypatch.context() as m, tracking.stage_run("train_classifier", {"lr": 0.05}) as run:
        _StoreDown(m, after=2)
        for epoch in range(1, 6):  # the store fails at epoch 3; training goes on
            run.log_epoch({"epoch": epoch, "val_acc": epoch / 10}, epoch, prefix="masked.")
        run.log_metrics({"masked": {"val_accuracy": 0.5}})
        run.set_tag("cnnlab.weights", "random")
        write_figures({"curves.png": plt.figure()}, tmp_path / "figures", run)
        run.log_artifact(extra)
        run_id = run.run_id
    err = capsys.readouterr().err
    assert (
        "cnnlab-sync" in err and "Connection refused" in err and "8 records" in err
    )  # epochs 3-5, final, tag, 2 files, end
    pending = tracking.pending_runs()
    assert [p.name for p in pending] == [run_id]

    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    assert [m.step for m in client.get_metric_history(run_id, "masked.val_acc")] == [1, 2]
    assert client.get_run(run_id).info.status == "RUNNING"  # its end is pending too

    # a stage started meanwhile reminds of the waiting records
    with tracking.stage_run("crop", {}):
        pass
    assert "1 MLflow run(s)" in capsys.readouterr().err

    assert tracking.sync() == [run_id]
    r = client.get_run(run_id)
    assert r.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "masked.val_acc")
    assert [(m.step, m.value) for m in history] == [(e, e / 10) for e in range(1, 6)]
    assert r.data.metrics["masked.val_accuracy"] == 0.5 and r.data.tags["cnnlab.weights"] == "random"
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["figures", "report.csv"]
    assert [a.path for a in client.list_artifacts(run_id, "figures")] == ["figures/curves.png"]
    assert tracking.pending_runs() == [] and not (store / tracking.PENDING_DIR / run_id).exists()


def test_sync_against_a_store_that_is_still_down_keeps_the_records(store, monkeypatch):
    with monkeypatch.context() as m, tracking.stage_run("evaluate", {}) as run:
        _StoreDown(m, after=0)
        run.log_metrics({"accuracy": 0.7})
    with pytest.raises(tracking.TrackingError, match="still cannot be reached.*--uri"):
        tracking.sync(uri="http://127.0.0.1:9")
    assert len(tracking.pending_runs()) == 1  # nothing lost
    # written to another store: a new run with the same name and tags
    other = store / "other"
    other.mkdir()
    (new_id,) = tracking.sync(uri=f"sqlite:///{other / 'mlflow.db'}")
    client = mlflow.MlflowClient(f"sqlite:///{other / 'mlflow.db'}")
    r = client.get_run(new_id)
    assert r.info.run_name.endswith("/evaluate") and r.data.metrics == {"accuracy": 0.7}
    assert r.info.status == "FINISHED"
