import os
import time

import matplotlib.pyplot as plt
import mlflow
import pytest

from cnnlab import tracking
from cnnlab.serving import log_model, register_best, weights_digest
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
        run.log_epoch({"epoch": 1, "val_acc": 0.5}, 1, prefix="none/seed0/")
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
    assert r.data.metrics["masked/val_accuracy"] == 0.75 and r.data.metrics["n"] == 3  # MLflow's / grouping
    assert r.data.metrics["none/seed0/val_acc"] == 0.5
    history = client.get_metric_history(run_id, "masked.train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5)]
    # artifacts live beside the store, not in the working directory
    assert r.info.artifact_uri.startswith((store / "mlartifacts").as_uri())
    assert list((store / "mlartifacts").rglob("curves.png"))


def test_system_metrics_sample_every_2_s_unless_mlflow_s_variable_says_otherwise(store, monkeypatch):
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")

    def sampled(seconds: float) -> tuple[str, bool]:
        with tracking.stage_run("study@a-b", {}, system_metrics=True) as run:
            time.sleep(seconds)
        interval = os.environ[tracking.SAMPLING_INTERVAL_VARIABLE]
        return interval, "system/cpu_utilization_percentage" in client.get_run(run.run_id).data.metrics

    monkeypatch.setenv(tracking.SAMPLING_INTERVAL_VARIABLE, "")  # records what to restore: MLflow sets it
    monkeypatch.delenv(tracking.SAMPLING_INTERVAL_VARIABLE)
    assert sampled(0)[0] == "2"  # (a run shorter than one interval gets no sample: MLflow's way)
    monkeypatch.setenv(tracking.SAMPLING_INTERVAL_VARIABLE, "0.1")
    assert sampled(1.0) == ("0.1", True)


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


def test_logged_model_is_registered_loads_back_and_scores_any_batch_size(store):
    import torch

    from cnnlab.models import ObjectsCNN

    model = ObjectsCNN(3, 8, 16).eval()
    usage = {"kind": "objects", "classes": ["a", "b", "c"], "input_size": 16, "strategy": "none"}
    with tracking.stage_run("train_classifier", {}) as run:
        for seed in (0, 1):
            log_model(run, model, "none-seed0", registered="cnnlab-objects-none", usage=usage,
                      tags={"seed": seed})  # fmt: skip
        run_id = run.run_id
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    versions = {v.version: v for v in client.search_model_versions("name='cnnlab-objects-none'")}
    assert sorted(versions) == ["1", "2"] or sorted(versions) == [1, 2]
    tags = versions[max(versions)].tags
    assert tags == {"seed": "1", "dvc.experiment": "brisk-lime", "cnnlab.weights_digest": weights_digest(model)}
    assert all(v.run_id == run_id for v in versions.values())
    info = mlflow.models.get_model_info("models:/cnnlab-objects-none/1")
    assert set(info.flavors) == {"python_function"} and info.metadata == usage  # a pyfunc from code: no pickle
    assert not any(p.suffix == ".pkl" for p in (store / "mlartifacts").rglob("*"))
    module, metadata, parts = tracking.load_logged_model("models:/cnnlab-objects-none/2")
    assert metadata == usage and module.eval() is module and parts == {}
    x = torch.rand(5, 3, 16, 16)  # another batch size than the example's
    torch.testing.assert_close(module(x), model(x))
    with pytest.raises(tracking.TrackingError, match="models:/cnnlab-objects-none/9: no such model"):
        tracking.load_logged_model("models:/cnnlab-objects-none/9")


def test_a_model_logged_as_torch_export_graphs_still_loads(store, tmp_path):
    """Models logged before the checkpoint artifact hold their networks as torch.export graphs
    (`network.pt2`, a segment_learned model's `masker.pt2`): they load and score as they did."""
    import torch

    from cnnlab.models import ObjectsCNN
    from cnnlab.models.mask_net import MaskNet
    from cnnlab.serving import MODEL_FILE, signature
    from cnnlab.usage import ModelUsage

    torch.manual_seed(0)
    model, masker, batch = ObjectsCNN(3, 8, 16).eval(), MaskNet(4).eval(), torch.rand(2, 3, 16, 16)
    files = {}
    for name, network in (("network", model), ("masker", masker)):
        files[name] = str(tmp_path / f"{name}.pt2")
        torch.export.save(torch.export.export(network, (batch,), dynamic_shapes=({0: torch.export.Dim.AUTO},)),
                          files[name])  # fmt: skip
    usage = {"kind": "objects", "classes": ["a", "b", "c"], "input_size": 16, "strategy": "none"}
    mlflow.set_tracking_uri(tracking.tracking_uri())  # the repository's store, as a stage sets it
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="old", python_model=str(MODEL_FILE), artifacts=files, model_config=usage,
                                       metadata=usage, signature=signature(ModelUsage.from_dict(usage, "old")),
                                       pip_requirements=["torch"])  # fmt: skip
    module, metadata, parts = tracking.load_logged_model(info.model_uri)
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x))
        torch.testing.assert_close(parts["masker"](x), masker(x))
    assert metadata == usage and module.train() is module


def _tiny_models(n: int):
    import torch

    from cnnlab.models import ObjectsCNN

    usage = {"kind": "objects", "classes": ["a", "b", "c"], "input_size": 16, "strategy": "none"}
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        models.append(ObjectsCNN(3, 8, 16).eval())
    return models, usage


def test_each_model_carries_its_own_metrics_and_the_best_validation_seed_is_the_champion(store):
    """Per experiment one version (the seed with the best validation accuracy); the alias
    `champion` on the best version over experiments, moved only by a better one; every logged
    model holds its own metrics and no other's (neither the run's nor another model's)."""
    models, usage = _tiny_models(3)
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    champions = []
    for experiment, vals in (("exp-a", (0.5, 0.7, 0.6)), ("exp-b", (0.6, 0.65, 0.4)), ("exp-c", (0.9, 0.7, 0.8))):
        os.environ["DVC_EXP_NAME"] = experiment
        with tracking.stage_run("train_classifier", {}) as run:
            for seed, (model, val) in enumerate(zip(models, vals)):
                log_model(run, model, f"none-seed{seed}", usage=usage, tags={"seed": seed},
                          metrics={"val_accuracy": val})  # fmt: skip
                run.log_metrics({"mean": {"none": {"val_accuracy": 0.0}}})  # the run's, after a model: no model's
            chosen = register_best(run, "cnnlab-objects-none", {f"none-seed{k}": (v, {"seed": k}) for k, v in
                                                                enumerate(vals)})  # fmt: skip
        assert chosen == f"none-seed{vals.index(max(vals))}"
        champions.append(client.get_model_version_by_alias("cnnlab-objects-none", "champion").version)
    versions = {int(v.version): v for v in client.search_model_versions("name='cnnlab-objects-none'")}
    assert sorted(versions) == [1, 2, 3]  # one per experiment
    assert [versions[k].tags["seed"] for k in (1, 2, 3)] == ["1", "1", "0"]
    assert [versions[k].tags["val_accuracy"] for k in (1, 2, 3)] == ["0.7", "0.65", "0.9"]
    assert [str(c) for c in champions] == ["1", "1", "3"]  # exp-b (0.65) did not beat 0.7; exp-c did
    served = mlflow.pyfunc.load_model("models:/cnnlab-objects-none@champion")
    assert served.metadata.get_model_info().model_id == versions[3].source.split("/")[-1]
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id
    logged = mlflow.search_logged_models([experiment], output_format="list")
    assert len(logged) == 9
    for m in logged:  # each carries its own validation accuracy, nothing else
        assert [(x.key, x.model_id) for x in m.metrics] == [("val_accuracy", m.model_id)], m.name


def test_a_later_stage_links_its_metrics_to_the_model_it_scored_by_its_weights(store):
    models, usage = _tiny_models(2)
    with tracking.stage_run("train_classifier", {}) as run:
        for seed, model in enumerate(models):
            log_model(run, model, f"none-seed{seed}", usage=usage, tags={"seed": seed},
                      metrics={"val_accuracy": 0.5 + seed / 10})  # fmt: skip
        register_best(run, "cnnlab-objects-none", {"none-seed0": (0.5, {"seed": 0}), "none-seed1": (0.6, {"seed": 1})})
    with tracking.stage_run("evaluate/none", {}) as run:  # another run: it knows the weights, not the model id
        for seed, model in enumerate(models):
            assert run.link_metrics(weights_digest(model), {"test_accuracy": 0.3 + seed / 10, "bg_gap": 0.1},
                                    "cnnlab-objects-none", ("test_accuracy",))  # fmt: skip
        assert not run.link_metrics("0" * 16, {"test_accuracy": 1.0})  # no model has those weights
    experiment = mlflow.MlflowClient().get_experiment_by_name(tracking.EXPERIMENT).experiment_id
    ranked = mlflow.search_logged_models([experiment], output_format="list",
                                         order_by=[{"field_name": "metrics.test_accuracy", "ascending": False}])
    assert [m.name for m in ranked] == ["none-seed1", "none-seed0"]
    assert {x.key for x in ranked[0].metrics} == {"val_accuracy", "test_accuracy", "bg_gap"}
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (version,) = client.search_model_versions("name='cnnlab-objects-none'")
    assert version.tags["seed"] == "1" and version.tags["test_accuracy"] == "0.4" and "bg_gap" not in version.tags


def test_stage_runs_of_one_dvc_experiment_share_one_parent_with_all_params(store, monkeypatch):
    tracking.use_params({"lr": 0.01, "models.resnet.width": 16})
    ids = {}
    for stage in ("crop", "train_classifier"):
        with tracking.stage_run(stage, {}) as run:
            ids[stage] = run.run.data.tags["mlflow.parentRunId"]
    row = tracking.log_experiment_metrics({"objects": {"none": {"test_accuracy": 0.5}}}, {"cnnlab.data_source.x": "d"})
    parent = row["run_id"]
    assert ids["crop"] == ids["train_classifier"] == parent and row["experiment"] == "brisk-lime"
    monkeypatch.setenv("DVC_EXP_NAME", "other-exp")  # another experiment: another parent
    with tracking.stage_run("crop", {}) as run:
        assert run.run.data.tags["mlflow.parentRunId"] != parent
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    p = client.get_run(parent)
    assert p.info.run_name == "brisk-lime" and p.data.tags["cnnlab.role"] == "experiment"
    assert p.data.params == {"lr": "0.01", "models.resnet.width": "16"}
    assert p.data.metrics == {"objects/none/test_accuracy": 0.5} and p.data.tags["cnnlab.data_source.x"] == "d"
    children = client.search_runs([p.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(r.data.tags["dvc.stage"] for r in children) == ["crop", "train_classifier"]
    assert p.info.end_time >= max(r.info.end_time for r in children)  # the UI's duration spans its stages


def test_lineage_is_dvc_lock_s_hash_of_each_input(store, tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/crops").mkdir(parents=True)
    (tmp_path / "data/own").mkdir()
    (tmp_path / "data/own/a.png").write_bytes(b"x")
    lock = {"stages": {"crop": {"outs": [{"path": "data/crops", "md5": "0123456789abcdef0123456789abcdef.dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert tracking.dvc_digest("data/crops") == ("0123456789abcdef0123456789abcdef.dir", "dvc.lock")
    digest, how = tracking.dvc_digest("data/own")
    assert len(digest) == 32 and how.startswith("md5 of its file listing")
    inputs = {"crops": tmp_path / "data/crops", "own": tmp_path / "data/own"}
    with tracking.stage_run("segment", {}, inputs=inputs) as run:
        run_id = run.run_id
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    r = client.get_run(run_id)
    assert r.data.tags["dvc.input.crops"] == "data/crops@0123456789abcdef0123456789abcdef.dir"
    assert {d.dataset.name: d.dataset.digest for d in r.inputs.dataset_inputs} == {
        "data/crops": "0123456789abcdef0123456789abcdef.dir", "data/own": digest}  # fmt: skip


class _StoreDown:
    """Makes the store fail from the `after`-th metrics call on, like a server that went away."""

    def __init__(self, monkeypatch, after: int):
        self.calls = 0
        real = mlflow.MlflowClient.log_batch  # what a stage run's metrics go through

        def log_batch(*args, **kwargs):
            self.calls += 1
            if self.calls > after:
                raise mlflow.exceptions.MlflowException("API request failed: Connection refused")
            return real(*args, **kwargs)

        for name in ("log_artifact", "log_artifacts", "set_tag"):
            monkeypatch.setattr(mlflow, name, self._down(getattr(mlflow, name)))
        # mlflow.end_run leaves the run, then tells the store
        monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", self._down(mlflow.MlflowClient.set_terminated))
        monkeypatch.setattr(mlflow.MlflowClient, "log_batch", log_batch)
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
    assert r.data.metrics["masked/val_accuracy"] == 0.5 and r.data.tags["cnnlab.weights"] == "random"
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


def test_processes_opening_a_new_sqlite_store_at_once_all_get_it(tmp_path):
    """Queued experiments run two at a time: the first stages of both open a store that does not
    exist yet, and each would create its tables (one failed with "table ... already exists")."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    code = "from cnnlab.tracking import check_store; check_store(); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]  # fmt: skip
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-500:] for _, err in results]
    assert all(out.strip() == "ok" for out, _ in results)
