import matplotlib.pyplot as plt
import mlflow
import pytest

from cnnlab import tracking


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
        fig = plt.figure()
        run.log_figure(fig, "curves.png")
        run_id = run.run_id
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
