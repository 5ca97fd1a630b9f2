"""The whole objects chain under DVC, on tiny params, in a temporary git repository."""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from cnnlab.data.arrays import load_images
from cnnlab.data.strategies import RECOMMENDABLE
from cnnlab.params.schema import STRATEGIES as CONFIG_STRATEGIES
from cnnlab.params.schema import parse_params
from cnnlab.predict import load_predictor
from cnnlab.tracking import flat_metrics
from cnnlab.train.masker import Masking, predict_masks
from tests.conftest import REPO
from tests.helpers.browser import chromium, draw_plots, find_chromium, inspect_page
from tests.pipeline.conftest import FAST_SAMPLES, TINY, clean_env, mlflow_server, sh

pytestmark = pytest.mark.slow

STAGES = ["generate", "crop", "backgrounds", "find_shortcut", "segment", "masker", "background_classifier",
          "gradcam_mask", "train_classifier", "evaluate"]  # fmt: skip
STRATEGIES = list(CONFIG_STRATEGIES)  # the default objects.strategies: every cure
# the evaluate stage logs one MLflow run per strategy beside its own
RUN_STAGES = sorted(STAGES + [f"evaluate/{s}" for s in STRATEGIES])
STUDY = [f"study@{d}-{m}" for d in ("cifar10", "imagenet10") for m in ("simple_cnn", "resnet")]
TRANSFER = [f"transfer@{d}-mobilenet_v3" for d in ("cifar10", "imagenet10")]
CELLS = STUDY + TRANSFER
# every figure, drawn once by the stage that owns its data, in reports/<stage>/
REPORT_FIGURES = [
    "crop/crops.png",
    "backgrounds/patches.png",
    "find_shortcut/shortcut.png",
    "segment/segment_masks.png",
    "masker/masker_masks.png",
    "background_classifier/curves.png",
    "gradcam_mask/gradcam_shortcut_masks.png",
    *[f"train_classifier/curves_{m}.png" for m in STRATEGIES],
    *[f"evaluate/confusion_test{n}.png" for n in ("", "_normalized")],
    "evaluate/strategies.png",
    "evaluate/mask_sources.png",
    "evaluate/gradcam_test_baseline_vs_best.png",
    "evaluate/test_predictions_best.png",
    *[f"features/filters_{d}.png" for d in ("early", "middle", "deep")],
    "features/deconvnet.png",
    "features/class_images.png",
    "augment/augmentations.png",
]
CELL_FIGURES = ["curves.png", "confusion.png", "confusion_normalized.png", "examples.png"]


def _leaves(data: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in data.items():
        out |= _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return out


def _summary(root) -> dict:
    """metrics/summary/ as one dict: {objects: {strategy: {...}}, study: {cell: {...}}}."""
    folder = root / "metrics" / "summary"
    return {group.name: {f.stem: json.loads(f.read_text()) for f in sorted(group.glob("*.json"))}
            for group in sorted(folder.iterdir())}  # fmt: skip


def _shown(entry: dict) -> dict:
    """The headline metrics of one revision of `dvc exp show --json`, as _summary gives them."""
    out: dict = {}
    for path, found in ((entry.get("data") or {}).get("metrics") or {}).items():
        if path.startswith("metrics/summary/"):
            group, name = path.removeprefix("metrics/summary/").removesuffix(".json").split("/")
            out.setdefault(group, {})[name] = found.get("data", {})
    return out


def _runs(repo, kind: str = "chain", client=None):
    """The runs of MLflow experiment cnnlab: the objects chain's stage runs ("chain"), the study's
    (its cells, the transfer cells and pretrain), visualize's, or the DVC experiments' parents ("parent")."""
    client = client or mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cnnlab").experiment_id], max_results=1000)
    if kind == "parent":
        return [r for r in runs if r.data.tags.get("cnnlab.role") == "experiment"]
    stage = {r.info.run_id: r.data.tags.get("dvc.stage", "") for r in runs}
    study = ("study@", "transfer@", "pretrain")
    kinds = {"study": lambda s: s.startswith(study), "visualize": lambda s: s == "visualize",
             "chain": lambda s: s and not s.startswith(study) and s != "visualize"}  # fmt: skip
    return [r for r in runs if r.data.tags.get("cnnlab.role") != "experiment" and kinds[kind](stage[r.info.run_id])]


def test_repro_runs_the_chain_then_is_a_no_op_and_experiments_are_tracked(tiny_repo, chain_template):
    repo = tiny_repo
    out = sh("dvc repro", repo, env=clean_env() | FAST_SAMPLES)  # (the study's runs are checked for samples)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out.stdout

    ev = json.loads((repo / "metrics/evaluate.json").read_text())
    assert ev["data_source"].startswith("synthetic (cnnlab generator, seed 0)")
    assert ev["test_labelled"] is True
    assert ev["seeds"] == [0, 1] and list(ev["strategies"]) == STRATEGIES
    for strategy in STRATEGIES:  # every strategy, every seed
        m = ev["strategies"][strategy]
        for key in ("val_accuracy", "test_accuracy", "test_val_ratio", "test_shortcut_rate", "test_worst_class_recall",
                    "shortcut_class_test_recall"):  # fmt: skip
            assert 0 <= m[key]["mean"] <= (10 if key == "test_val_ratio" else 1), key
            assert set(m[key]["per_seed"]) == {"0", "1"} and m[key]["sd"] >= 0
        assert -1 <= m["bg_gap"]["mean"] <= 1
        assert (repo / f"data/models/classifier/{strategy}/seed1.pt").is_file()
    # chosen on validation among the cures that mask or randomise their validation crops, never the oracle
    assert ev["comparison"]["recommended"] in RECOMMENDABLE and "best_on_test" in ev["comparison"]
    assert "better" in ev["comparison"]["segment_minus_none"]["test_accuracy"]
    table = (repo / "metrics/objects_comparison.csv").read_text().splitlines()
    assert table[0].startswith("strategy,note,val_accuracy_mean,val_accuracy_sd") and len(table) == 1 + 7
    assert table[0].endswith(",train_mask_iou_mean,train_mask_iou_sd,test_mask_iou_mean,test_mask_iou_sd,"
                             "test_mask_degenerate_mean,test_mask_degenerate_sd")
    for strategy in ("segment", "segment_learned", "mixed_rand", "mixed_rand_learned"):  # mask quality beside accuracy
        assert 0 <= ev["strategies"][strategy]["test_mask_iou"]["mean"] <= 1
    assert ev["strategies"]["oracle"]["test_mask_iou"]["mean"] == 1.0
    assert "test_mask_iou" not in ev["strategies"]["none"]
    masker = json.loads((repo / "metrics/masker.json").read_text())
    assert masker["mask_iou"] == "available" and set(masker["per_seed"]) == {"0", "1"}
    for split in ("train", "test", "paired"):
        assert 0 <= masker["over_seeds"][f"{split}_mask_iou"]["mean"] <= 1
        assert 0 <= masker["over_seeds"][f"{split}_grabcut_agreement"]["mean"] <= 1
    assert sorted(p.name for p in (repo / "data/models/masker").iterdir()) == ["seed0.pt", "seed1.pt"]
    assert not list((repo / "data/checkpoints/masker").glob("*.pt"))  # finished: nothing left to resume
    # a segment_learned model carries its seed's masker, which masks new crops as the stage masked the test crops
    learned = load_predictor(str(repo / "data/models/classifier/segment_learned/seed1.pt"), torch.device("cpu"))
    saved = torch.load(repo / "data/models/masker/seed1.pt", weights_only=True)["model"]
    assert all(torch.equal(learned.masker.state_dict()[k], v) for k, v in saved.items())
    test_crops = load_images(repo / "data/interim/crops", ["test"]).splits["test"].images
    context = load_images(repo / "data/interim/context", ["test"]).splits["test"]
    masking = Masking.of(learned.usage.masker)
    again, _ = predict_masks(learned.masker, test_crops, context.images, context.masks, masking, "cpu")
    assert (again == np.load(repo / "data/interim/learned/seed1/test_masks.npy")).mean() > 0.99
    for split in ("train", "test"):  # never degenerate, and the run says against what it checked the masks
        assert masker["over_seeds"][f"{split}_degenerate_fraction"]["mean"] == 0
    assert masker["validation"]["says"] and masker["validation"]["grabcut_mask_iou"] is not None
    grad = json.loads((repo / "metrics/gradcam_mask.json").read_text())
    assert 0 <= grad["over_seeds"]["mask_iou"]["mean"] <= 1 and grad["crops"] == 5
    assert grad["per_seed"]["0"]["threshold_chosen_by"].startswith("best mask IoU on the")
    bg = json.loads((repo / "metrics/background_classifier.json").read_text())
    assert 0 <= bg["over_seeds"]["val_accuracy"]["mean"] <= 1
    seg = json.loads((repo / "metrics/segment.json").read_text())
    assert 0 <= seg["test"]["mask_iou"] <= 1 and seg["paired"]["crops"] == 16
    assert seg["test"]["degenerate_fraction"] == 0 and seg["test"]["from_grabcut"] + seg["test"]["from_ring_seeds"] \
        + seg["test"]["from_ellipse"] == pytest.approx(1)
    preds = (repo / "data/evaluation/test_predictions.csv").read_text().splitlines()
    assert preds[0] == "path,label" and len(preds) == 1 + 16
    curves = (repo / "metrics/curves/classifier/report.csv").read_text().splitlines()
    assert curves[0] == "epoch,train_loss,train_acc,val_loss,val_acc,runs" and len(curves) == 2

    # one MLflow run per stage (evaluate: per strategy), all in one store at the repository root
    runs = _runs(repo)
    assert sorted(r.data.tags["dvc.stage"] for r in runs) == RUN_STAGES
    best = [r for r in runs if r.data.tags.get("cnnlab.recommended") == "true"]
    assert len(best) == 1 and best[0].data.tags["cnnlab.strategy"] == ev["comparison"]["recommended"]
    assert {m.step for m in mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_metric_history(
        best[0].info.run_id, "per_seed/test_accuracy")} == {0, 1}  # fmt: skip
    assert not (repo / "mlruns").exists()

    # the study matrix: every dataset x model, its reports, its MLflow runs
    for stage in ["prepare@cifar10", "prepare@imagenet10", "pretrain", *CELLS]:
        assert f"Running stage '{stage}'" in out.stdout
    pretrain = json.loads((repo / "metrics/pretrain/metrics.json").read_text())
    assert pretrain["dataset"] == "shapes" and pretrain["model"] == "mobilenet_v3_pretrain"
    assert pretrain["weights"] == "random" and pretrain["sizes"] == {"train": 19, "val": 11, "test": 10}
    for stage in CELLS:
        cell = stage.split("@")[1]
        m = json.loads((repo / f"metrics/study/{cell}/metrics.json").read_text())
        assert m["data_source"].startswith("synthetic (cnnlab shapes stand-in")
        if stage in STUDY:
            assert m["weights"] == "random" and m["sizes"] == {"train": 19, "val": 11, "test": 10}
        else:  # no ImageNet weights offline: the pretrain stage's backbone; 2 training images per class
            assert m["weights"] == ("pretrained on shapes (synthetic (cnnlab shapes stand-in for shapes, seed 0, "
                                    "3+1 per class, 32 px)) (ImageNet weights unavailable; fallback: pretrained)")
            assert m["sizes"]["train"] <= 20 and m["sizes"]["val"] == 11
        assert 0 <= m["val"]["accuracy"] <= 1 and 0 <= m["test"]["macro_f1"] <= 1
        preds = (repo / f"data/study/{cell}/test_predictions.csv").read_text().splitlines()
        assert preds[0] == "id,label" and len(preds) == 11
        confusion = (repo / f"metrics/study/{cell}/confusion_val.csv").read_text().splitlines()
        assert confusion[0] == "actual,predicted" and len(confusion) == 12
        report = (repo / f"metrics/study/{cell}/classification_report.csv").read_text().splitlines()
        assert report[0] == "class,precision,recall,f1,support" and len(report) == 12
        assert (repo / f"data/study/{cell}/model.pt").stat().st_size > 1000
    study_runs = _runs(repo, "study")
    assert sorted(r.data.tags["dvc.stage"] for r in study_runs) == sorted(CELLS + ["pretrain"])
    run = next(r for r in study_runs if r.data.tags["dvc.stage"] == "study@cifar10-simple_cnn")
    assert run.data.tags["cnnlab.weights"] == "random"
    assert run.data.params["model.lr"] == str(TINY["models"]["simple_cnn"]["lr"])
    assert run.data.params["model.schedule"] == "onecycle"
    assert "fit/val_acc" in run.data.metrics and "val/macro_f1" in run.data.metrics  # MLflow's / grouping
    assert "system/cpu_utilization_percentage" in run.data.metrics  # the training runs' system metrics
    assert not list((repo / "data/checkpoints/study").glob("*.pt"))  # finished runs leave no checkpoint
    # dvc plots: curves, confusion data and the image plots of the visualize stage render
    plots = json.loads(sh("dvc plots show --json", repo).stdout)
    plots = plots.get("data", plots)
    assert "metrics/curves/classifier/segment.csv" in plots and "reports/features/class_images.png" in plots

    # the visualize stage: every figure, the metrics of the class images, the page, MLflow
    assert "Running stage 'visualize'" in out.stdout
    reports = repo / "reports"
    pngs = sorted(str(f.relative_to(reports)) for f in reports.rglob("*.png"))
    for name in REPORT_FIGURES + [f"study/{s.split('@')[1]}/{f}" for s in CELLS for f in CELL_FIGURES]:
        assert name in pngs and (reports / name).stat().st_size > 2000, name
    assert len(pngs) == len(REPORT_FIGURES) + len(CELLS) * len(CELL_FIGURES)  # nothing drawn twice
    vis = json.loads((repo / "metrics/visualize.json").read_text())
    assert vis["figures"] == len(pngs) and vis["class_images"]["cell"] == "cifar10-simple_cnn"
    # cifar10-imagenet10_cnn (params.yaml) is not in the tiny matrix: the first cell is used
    assert vis["used"] == {"features_cell": "cifar10-simple_cnn", "deconv_cell": "cifar10-resnet",
                           "class_images_cell": "cifar10-simple_cnn", "augment_dataset": "cifar10"}  # fmt: skip
    assert len(vis["class_images"]["confidence"]) == 10
    assert all(0 <= c <= 1 for c in vis["class_images"]["confidence"].values())
    if find_chromium():  # without it, the unit browser tests say why they skipped; the rest of this test runs
        seen = inspect_page(reports / "index.html", "pipeline_report.png")
        assert seen["errors"] == [] and len(seen["images"]) == len(pngs)
        assert all(loaded for _, loaded in seen["images"]), [src for src, ok in seen["images"] if not ok]
        assert seen["tables"] == {"objects-table-0": len(STRATEGIES), "study-table-0": len(CELLS),
                                  "features-table-0": 10}  # fmt: skip
    (vis_run,) = _runs(repo, "visualize")
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    assert "index.html" in {a.path for a in client.list_artifacts(vis_run.info.run_id)}
    # each stage's run holds its own figures, and only those: visualize writes into no other run
    train_run = next(r for r in runs if r.data.tags["dvc.stage"] == "train_classifier")
    logged = {a.path for a in client.list_artifacts(train_run.info.run_id, "figures")}
    assert logged == {f"figures/curves_{m}.png" for m in STRATEGIES}
    logged_models = client.search_logged_models([train_run.info.experiment_id])
    assert {m.name for m in logged_models if m.source_run_id == train_run.info.run_id} == {
        f"{m.replace('_', '-')}-seed{k}" for m in STRATEGIES for k in (0, 1)}  # fmt: skip
    eval_run = next(r for r in runs if r.data.tags["dvc.stage"] == "evaluate")
    logged = {a.path for a in client.list_artifacts(eval_run.info.run_id, "figures")}
    assert "figures/confusion_test_normalized.png" in logged
    assert eval_run.data.tags["cnnlab.recommended"] == ev["comparison"]["recommended"]
    # every trained model is an MLflow model (pt2), the study's too; registered once per experiment
    models = client.search_logged_models([study_runs[0].info.experiment_id])
    assert sorted(m.name for m in models if m.source_run_id in {r.info.run_id for r in study_runs}) == sorted(
        [s.split("@")[1].replace("_", "-") for s in CELLS] + ["pretrain-shapes-mobilenet-v3-pretrain"])  # fmt: skip
    registered = {m.name: len(client.search_model_versions(f"name='{m.name}'"))
                  for m in client.search_registered_models()}  # fmt: skip
    assert registered == {**{f"cnnlab-objects-{m}": 1 for m in STRATEGIES}, "cnnlab-objects-background": 1,
                          "cnnlab-objects-masker": 1,
                          **{f"cnnlab-{s.split('@')[1]}": 1 for s in CELLS},
                          "cnnlab-pretrain-mobilenet_v3_pretrain": 1}  # fmt: skip
    # each cure's version: its seed with the best validation accuracy, the champion, its test metrics as tags
    trained = json.loads((repo / "metrics/train_classifier.json").read_text())["strategies"]
    for m in STRATEGIES:
        version = client.get_model_version_by_alias(f"cnnlab-objects-{m}", "champion")
        val = trained[m]["val_accuracy"]["per_seed"]
        best = max(val, key=val.get)
        assert version.tags["seed"] == best and float(version.tags["val_accuracy"]) == val[best], m
        assert float(version.tags["test_accuracy"]) == ev["strategies"][m]["test_accuracy"]["per_seed"][best], m
        assert version.tags["dvc.experiment"].startswith("repro-")
    # every objects classifier carries its own validation and test metrics, and no other model's
    for model in (m for m in logged_models if m.source_run_id == train_run.info.run_id):
        strategy, seed = model.name.rsplit("-seed", 1)
        own = {k: v["per_seed"][seed] for k, v in ev["strategies"][strategy.replace("-", "_")].items()}
        linked = {x.key: x.value for x in model.metrics}
        assert set(linked) == set(own) | {"val_loss"} and linked["test_accuracy"] == own["test_accuracy"], model.name
    ranked = client.search_logged_models([train_run.info.experiment_id],
                                         filter_string=f"source_run_id = '{train_run.info.run_id}'",
                                         order_by=[{"field_name": "metrics.test_accuracy", "ascending": False}])
    tests = [{x.key: x.value for x in m.metrics}["test_accuracy"] for m in ranked]  # MLflow ranks the cures
    assert len(tests) == 2 * len(STRATEGIES) and tests == sorted(tests, reverse=True)
    # `cnnlab predict` on a champion gives what its checkpoint gives
    crop = repo.parent / "crop.png"
    Image.fromarray(test_crops[0].transpose(1, 2, 0)).save(crop)
    seed = client.get_model_version_by_alias("cnnlab-objects-none", "champion").tags["seed"]
    sh(f"cnnlab predict models:/cnnlab-objects-none@champion {crop} --out {repo.parent / 'a.csv'}", repo)
    sh(f"cnnlab predict data/models/classifier/none/seed{seed}.pt {crop} --out {repo.parent / 'b.csv'}", repo)
    served, saved = (pd.read_csv(repo.parent / f"{x}.csv") for x in "ab")
    assert served["label"].tolist() == saved["label"].tolist()
    np.testing.assert_allclose(served["probability"], saved["probability"], atol=1e-5)
    # one parent run for this DVC experiment: every params.yaml key, the headline metrics, the
    # stage runs as its children
    (parent,) = _runs(repo, "parent")
    # (and each model's settings taken from model_defaults, under the model's own key)
    assert set(parent.data.params) == set(parse_params(TINY).flat()) >= _leaves(TINY) | {"classifier.lr"}
    assert parent.data.params["models.resnet.momentum"] == str(TINY["model_defaults"]["momentum"])
    assert parent.data.params["lr"] == str(TINY["lr"]) and parent.data.tags["dvc.experiment"].startswith("repro-")
    summary = _summary(repo)
    assert parent.data.metrics["objects/segment/test_accuracy"] == summary["objects"]["segment"]["test_accuracy"]
    assert all(f"study/{s.split('@')[1]}/test_accuracy" in parent.data.metrics for s in CELLS)
    assert parent.data.metrics == flat_metrics(summary)
    assert parent.data.tags["cnnlab.data_source.objects"] == ev["data_source"]
    children = runs + study_runs + [vis_run]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    # lineage: each run names its inputs with DVC's hash of them (dvc.lock) and logs them as datasets
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    crops_md5 = next(o["md5"] for o in lock["crop"]["outs"] if o["path"] == "data/interim/crops")
    assert train_run.data.tags["dvc.input.crops"] == f"data/interim/crops@{crops_md5}"
    assert ("data/interim/crops", crops_md5) in {(d.dataset.name, d.dataset.digest)
                                                 for d in client.get_run(train_run.info.run_id).inputs.dataset_inputs}
    # every setting in use is tracked by a stage (dvc.lock records it, a change reruns the stage,
    # dvc exp show and dvc params diff show it)
    tracked = set().union(*(_leaves(stage.get("params", {}).get("params.yaml", {}))
                            for name, stage in lock.items() if name not in ("summary", "check_params")))
    # (summary and check_params track every key)
    used = {"datasets": [*TINY["study"]["datasets"], TINY["transfer"]["source"]],
            "models": [*TINY["study"]["models"], *TINY["transfer"]["models"], TINY["transfer"]["pretrain"]]}
    unused = [f"{key}.{name}." for key, names in used.items() for name in TINY[key] if name not in names]
    in_use = {k for k in _leaves(TINY) if not k.startswith(tuple(unused))}
    assert in_use - tracked == set() and len(in_use) > 90

    # the second repro does nothing, even after Python wrote its caches into a code folder that
    # stages depend on (an editable install does; a fresh clone has none)
    (repo / "src/cnnlab/models/__pycache__").mkdir()
    (repo / "src/cnnlab/models/__pycache__/zoo.cpython-311.pyc").write_bytes(b"\x00")
    again = sh("dvc repro", repo)
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout.lower()
    # dvc metrics show: the headline only (the stages' detailed JSON are plain outputs), one short
    # row per cure and per study cell
    shown = sh("dvc metrics show", repo).stdout.splitlines()
    rows = [f"metrics/summary/{group}/{name}.json" for group in summary for name in summary[group]]
    assert [line.split()[0] for line in shown[1:]] == sorted(rows), shown
    assert shown[0].split() == ["Path", "shortcut_class_test_recall", "test_accuracy", "test_accuracy_sd",
                                "test_mask_iou", "val_accuracy"] and max(map(len, shown)) < 180, shown  # fmt: skip

    # a second run from scratch, elsewhere: the session's chain template (the same params, its own
    # folder and MLflow store, `dvc repro summary`: all but the page) gives the same bytes, every
    # metrics file and every stage's dvc.lock entry (the hash of every output, figures included).
    # (A fresh clone's own `dvc repro` after `dvc pull`: test_push_to_a_remote_then_a_fresh_clone...)
    def metrics(root):
        return {f.relative_to(root): f.read_bytes() for f in sorted((root / "metrics").rglob("*")) if f.is_file()}

    mine, theirs = metrics(repo), metrics(chain_template)
    assert set(mine) - set(theirs) == {Path("metrics/visualize.json")} and set(theirs) <= set(mine)
    assert {f: b for f, b in mine.items() if f in theirs} == theirs
    lock, other = (yaml.safe_load((r / "dvc.lock").read_text())["stages"] for r in (repo, chain_template))
    assert set(lock) - set(other) == {"visualize"} and {k: lock[k] for k in other} == other
    sh("git add -A && git commit -qm 'first run'", repo)

    # `-S lr=` reruns only what reads lr
    exp = sh("dvc exp run -S lr=0.05", repo)
    ran = {s for s in STAGES if f"Running stage '{s}'" in exp.stdout}
    assert ran == {"train_classifier", "evaluate"} and "Running stage 'study@" not in exp.stdout
    # dvc exp show: the changed param and the headline numbers it moved, not every detail
    changed = sh("dvc exp show --only-changed --csv", repo).stdout.splitlines()[0].split(",")
    # (DVC's own columns, the param, the deps whose hashes moved, and at most the chain's headline)
    own = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor", "lr"}
    metric_columns = [c for c in changed if ".json:" in c]
    assert "lr" in changed and all(c in own or "/" in c for c in changed), changed
    assert all(c.startswith("metrics/summary/objects/") for c in metric_columns), changed  # lr moves no study cell
    assert len(metric_columns) <= len(STRATEGIES) * 4 and len(changed) < 45, changed
    show = json.loads(sh("dvc exp show --json", repo).stdout)
    lrs = set()
    for commit in show:
        for e in [commit] + [x for ex in commit.get("experiments") or [] for x in ex.get("revs", [])]:
            params = (e.get("data") or {}).get("params", {}).get("params.yaml", {}).get("data", {})
            if params:
                lrs.add(params["lr"])
                assert "test_accuracy" in _shown(e)["objects"]["segment"]
    assert lrs == {TINY["lr"], 0.05}  # the first run's lr (params.yaml) and the experiment's
    train_runs = [r for r in _runs(repo) if r.data.tags["dvc.stage"] == "train_classifier"]
    # the first run's lr (params.yaml) and the experiment's
    assert sorted(r.data.params["classifier.lr"] for r in train_runs) == sorted([str(TINY["lr"]), "0.05"])
    exp_names = {r.data.tags["dvc.experiment"] for r in train_runs}
    assert len(exp_names) == 2 and any(n.startswith("repro-") for n in exp_names)
    # one MLflow row per DVC experiment: the plain repro (run twice: still one parent) and the -S one,
    # each with the headline metrics
    parents = {r.data.tags["dvc.experiment"]: r for r in _runs(repo, "parent")}
    assert len(_runs(repo, "parent")) == 2 and set(parents) == exp_names
    (name,) = exp_names - {n for n in exp_names if n.startswith("repro-")}
    assert parents[name].data.params["lr"] == "0.05" and "objects/segment/test_accuracy" in parents[name].data.metrics
    assert parents[name].data.metrics == flat_metrics(_summary(repo))
    children = [r for r in _runs(repo) + _runs(repo, "visualize")
                if r.data.tags["mlflow.parentRunId"] == parents[name].info.run_id]  # fmt: skip
    assert sorted(r.data.tags["dvc.stage"] for r in children) == sorted(
        ["train_classifier", "evaluate", "visualize"] + [f"evaluate/{s}" for s in STRATEGIES])  # fmt: skip
    assert "Running stage 'summary'" in exp.stdout
    # dvc plots diff sets the two experiments side by side: each cure's test confusion matrix and
    # every training's train and val curves in one plot
    plots = json.loads(sh(f"dvc plots diff HEAD {name} --json", repo).stdout)
    plots = plots.get("data", plots)
    for strategy in STRATEGIES:
        (shown,) = plots[f"metrics/confusion_test/{strategy}.csv"]
        assert {d["rev"] for d in shown["content"]["data"]["values"]} == {"HEAD", name}
    for curve in ("metrics/curves/classifier/none.csv", "metrics/curves/background_classifier.csv",
                  "metrics/study/cifar10-resnet/curves.csv"):  # fmt: skip
        (shown,) = plots[curve]
        assert shown["content"]["transform"][0]["fold"] == ["train_acc", "val_acc"], curve


def test_auto_finds_class_00_and_the_explicit_pair_it_chose_gives_the_same_bytes(chain_repo):
    repo = chain_repo  # the chain has run with backgrounds.classes: auto (params.yaml's)
    found = json.loads((repo / "metrics/shortcut.json").read_text())
    assert found["shortcut"] == "00" and found["decided_by"].startswith("auto")
    assert found["detected"]["share"]["00"] == 1.0 and found["detected"]["typical_share"] >= 0.5
    before = {f: f.read_bytes() for f in sorted((repo / "metrics").rglob("*")) if f.is_file()}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["backgrounds"]["classes"] = ["00", found["contrast"]]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh("dvc repro summary", repo)
    # the same decision (data/interim/shortcut.json, byte for byte): nothing after find_shortcut reruns
    ran = [line for line in out.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'check_params':", "Running stage 'find_shortcut':",
                   "Running stage 'summary':"], out.stdout  # fmt: skip
    after = {f: f.read_bytes() for f in sorted((repo / "metrics").rglob("*")) if f.is_file()}
    changed = sorted(str(f.relative_to(repo)) for f in before if before[f] != after.get(f))
    assert changed == ["metrics/shortcut.json"] and set(after) == set(before)  # (it says how it was decided)
    assert json.loads((repo / "metrics/shortcut.json").read_text())["decided_by"].startswith("explicit")


def test_push_to_a_remote_then_a_fresh_clone_pulls_and_is_up_to_date(chain_repo, tmp_path):
    repo = chain_repo  # the objects chain, the study and the summary have run
    assert "up to date" in sh("dvc status evaluate", repo).stdout.lower()
    remote = tmp_path / "remote"
    sh(f"dvc remote add -d local {remote} && git add -A && git commit -qm 'chain and remote'", repo)
    sh("dvc push", repo)
    assert any(remote.rglob("*")), "nothing was pushed"
    clone = tmp_path / "clone"
    sh(f"git clone -q {repo} {clone}", tmp_path)
    sh("dvc pull evaluate --with-deps", clone)
    assert (clone / "data/models/classifier/report/seed0.pt").is_file()
    out = sh("dvc repro evaluate", clone)
    assert "Running stage" not in out.stdout and "up to date" in out.stdout.lower(), out.stdout
    assert not (clone / "mlflow.db").exists()  # nothing ran, nothing was logged
    # everything the row needs pulled (the template stops before the page): up to date, its files
    # as committed; the experiment's row goes into this clone's own store on request, with the
    # committed headline metrics
    sh("dvc pull --with-deps summary", clone)
    out = sh("dvc repro summary", clone)
    assert "Running stage" not in out.stdout, out.stdout  # (check_params: its stamp is committed)
    out = sh("dvc repro -f -s summary", clone)
    assert sh("git status --porcelain", clone).stdout == ""
    (row,) = _runs(clone, "parent")
    assert row.data.tags["dvc.experiment"] == f"repro-{sh('git rev-parse HEAD', clone).stdout[:7]}"
    summary = _summary(clone)
    masking = ["segment", "segment_learned", "mixed_rand", "mixed_rand_learned", "oracle"]  # + test_mask_iou
    assert row.data.metrics == flat_metrics(summary) and summary == _summary(repo)
    assert len(row.data.metrics) == len(STRATEGIES) * 4 + len(masking) + len(CELLS) * 2
    assert row.data.tags["shortcut/class"] == "00" and float(row.data.tags["shortcut/share"]) == 1.0


def test_a_model_version_registered_with_gto_is_fetched_by_dvc_artifacts_get(chain_repo):
    repo = chain_repo  # the objects chain has run; its models are in the DVC cache
    # dvc.yaml declares the artifact; `dvc artifacts get` fetches a version, and a version is a git tag
    out = sh("dvc artifacts get . objects-classifiers -o unversioned", repo, check=False)
    assert out.returncode != 0 and "Unable to find artifact 'objects-classifiers'" in out.stderr, out.stderr
    # the commands as docs/manual.md gives them (those that need no git remote)
    manual = (REPO / "docs/manual.md").read_text()
    documented = ("gto register objects-classifiers", "gto assign objects-classifiers",
                  "dvc artifacts get . objects-classifiers")  # fmt: skip
    commands = [line.split("  #")[0].strip() for line in manual.splitlines() if line.strip().startswith(documented)]
    assert [" ".join(c.split()[:2]) for c in commands] == ["gto register", "gto assign", "dvc artifacts"] + [
        "dvc artifacts"], commands  # fmt: skip
    for command in commands:
        sh(command, repo)
    assert sorted(sh("git tag", repo).stdout.split()) == ["objects-classifiers#prod#1", "objects-classifiers@v0.0.1"]
    models = repo / "data/models/classifier"
    for command in commands[2:]:  # the latest version, the version in prod: both this commit's models
        got = repo / command.split("-o")[1].strip()
        assert {f.relative_to(models): f.read_bytes() for f in models.rglob("*") if f.is_file()} == {
            f.relative_to(got): f.read_bytes() for f in got.rglob("*") if f.is_file()}  # fmt: skip
        assert (got / "segment/seed1.pt").is_file()


def test_dvc_plots_pages_draw_every_plot_without_internet(chain_repo):
    repo = chain_repo  # the objects chain and the study have run: their curves and confusions
    chromium()  # skips, saying why, where Debian's chromium is missing
    sh("dvc plots show -o plots-show", repo)
    (repo / "metrics/curves/classifier/none.csv").write_text(  # a workspace change for the diff to show
        (repo / "metrics/curves/classifier/none.csv").read_text().replace(",1\n", ",2\n"))
    sh("dvc plots diff HEAD -o plots-diff", repo)
    shown = json.loads(sh("dvc plots show --json", repo).stdout)["data"]
    vega = sum(plot["type"] == "vega" for plots in shown.values() for plot in plots)
    for page in ("plots-show", "plots-diff"):
        html = (repo / page / "index.html").read_text()
        assert "cdn.jsdelivr.net" not in html and "vega@5.33.1" in html  # .dvc/config's template
        seen = draw_plots(repo / page / "index.html", f"dvc_{page}.png")
        assert seen["errors"] == [] and seen["offsite"] == [], seen
        assert seen["plots"] == vega > 20 and seen["drawn"] == seen["plots"], (vega, seen)


TYPOS = {"lr=-1": "'lr' must be > 0, got -1", "lr=abc": "'lr' must be a number, got 'abc'",
         "objects.seeds=0": "'objects.seeds' must be >= 1, got 0",
         "objects.strategies=[segmnt]": "unknown name 'segmnt'"}


def test_a_bad_param_stops_dvc_exp_run_before_any_output_is_removed(chain_repo):
    repo = chain_repo  # everything up to the summary has run and is committed
    outputs = ["data/models/classifier/none/seed0.pt", "data/interim/crops", "data/evaluation/test_predictions.csv",
               "reports/train_classifier/curves_none.png", "data/summary_logged.txt", "data/params.ok"]  # fmt: skip
    tracked = {f: f.read_bytes() for f in sorted((repo / "metrics").rglob("*")) if f.is_file()}
    for override, message in TYPOS.items():
        out = sh(f"dvc exp run -S '{override}'", repo, check=False)
        log = out.stdout + out.stderr
        assert out.returncode != 0 and message in log, log
        assert re.findall(r"Running stage '([^']+)'", log) == ["check_params"], log  # no other stage started
        # only the edit (params.yaml compared by content: git may not see a same-size edit in the same second)
        assert sh("git status --porcelain -- . ':!params.yaml'", repo).stdout == "", override
        assert (repo / "params.yaml").read_text() != sh("git show HEAD:params.yaml", repo).stdout
        assert all((repo / path).exists() for path in outputs), override
        assert {f: f.read_bytes() for f in sorted((repo / "metrics").rglob("*")) if f.is_file()} == tracked
        sh("git checkout params.yaml", repo)
    assert "up to date" in sh("dvc status summary", repo).stdout.lower()  # nothing to redo


LRS = ["0.002", "0.005", "0.02", "0.05"]
# the queue's work is the same for any number of cures: each queued experiment trains two (4 fits,
# not the template's 14), which keeps the test's seconds in the queue rather than in training
QUEUED = ["none", "segment"]


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_queued_experiments_two_at_a_time_all_land(chain_repo, tmp_path, store):
    repo = chain_repo  # the objects chain has run and is committed; the MLflow store is empty
    # two workers: SQLite gets three, so the queue also turns over past the first pair; the server
    # two, both at once (the queue's turnover is the same code, and each experiment costs seconds)
    lrs = LRS[:3] if store == "sqlite" else LRS[1::2]
    with contextlib.ExitStack() as stack:
        env = clean_env()
        if store == "server":
            (tmp_path / "mlflow").mkdir()
            env["MLFLOW_TRACKING_URI"] = stack.enter_context(mlflow_server(tmp_path / "mlflow"))
        for lr in lrs:
            sh(f"dvc exp run --queue -S lr={lr} -S 'objects.strategies=[{','.join(QUEUED)}]' -n lr-{lr} summary", repo,
               env=env)  # fmt: skip
        sh("dvc queue start -j 2", repo, env=env)
        deadline = time.time() + 900
        while time.time() < deadline:
            status = sh("dvc queue status", repo, env=env).stdout
            if all(f"lr-{lr}" in status for lr in lrs) and not re.search(r"Queued|Running", status):
                break
            time.sleep(5)
        sh("dvc queue stop", repo, check=False, env=env)
        logs = "".join(sh(f"dvc queue logs lr-{lr}", repo, check=False).stdout[-1500:] for lr in lrs)
        assert status.count("Success") == len(lrs), status + logs
        show = json.loads(sh("dvc exp show --json", repo).stdout)
        shown = {x.get("name"): _shown(x) for commit in show for ex in commit.get("experiments") or []
                 for x in ex.get("revs", [])}  # fmt: skip
        assert {f"lr-{lr}" for lr in lrs} <= set(shown), shown.keys()
        assert all("test_accuracy" in shown[f"lr-{lr}"]["objects"]["segment"] for lr in lrs)
        if store == "server":
            client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
            runs, parents = _runs(repo, client=client), _runs(repo, "parent", client)
        else:
            runs, parents = _runs(repo), _runs(repo, "parent")
            assert all(r.info.artifact_uri.startswith((repo / "mlartifacts").as_uri()) for r in runs)
            assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))  # none lost in a temporary copy
        assert len(parents) == len(lrs)  # one per queued experiment
        for lr in lrs:
            mine = [r for r in runs if r.data.tags["dvc.experiment"] == f"lr-{lr}"]
            assert sorted(r.data.tags["dvc.stage"] for r in mine) == sorted(
                ["train_classifier", "evaluate"] + [f"evaluate/{s}" for s in QUEUED]
            ), lr
            assert all(r.info.status == "FINISHED" for r in mine)
            train = next(r for r in mine if r.data.tags["dvc.stage"] == "train_classifier")
            assert train.data.params["classifier.lr"] == lr
            # each queued experiment, run two at a time, has a parent of its own
            (parent,) = [r for r in parents if r.data.tags["dvc.experiment"] == f"lr-{lr}"]
            assert {r.data.tags["mlflow.parentRunId"] for r in mine} == {parent.info.run_id}
            assert parent.data.params["lr"] == lr
            # ... with its headline metrics (the summary stage ran in the experiment's copy)
            assert parent.data.metrics == flat_metrics(shown[f"lr-{lr}"]), lr
        if store == "server":
            assert not (repo / "mlflow.db").exists()  # everything went to the server


def test_a_model_param_reruns_only_that_models_cells(chain_repo):
    repo = chain_repo  # the study has run and is committed
    exp = sh("dvc exp run -S models.resnet.epochs=2 study", repo)
    ran = set(re.findall(r"Running stage '([^']+)'", exp.stdout))
    assert ran == {"check_params", "study@cifar10-resnet", "study@imagenet10-resnet"}  # the check: any params edit
    # `-S` edits the key in the model's own block; the shared block stays one block (nothing is
    # expanded into the models) and `dvc params diff` names exactly the key that changed
    diff = json.loads(sh("dvc params diff --json", repo).stdout)["params.yaml"]
    epochs = TINY["models"]["resnet"]["epochs"]
    assert {k: (v["old"], v["new"]) for k, v in diff.items()} == {"models.resnet.epochs": (epochs, 2)}
    written = yaml.safe_load((repo / "params.yaml").read_text())
    assert written["model_defaults"] == TINY["model_defaults"]
    assert written["models"]["resnet"].keys() == TINY["models"]["resnet"].keys()
    # a shared setting is every cell's: one changed in model_defaults leaves every cell out of date
    exp = sh("dvc exp run -S model_defaults.momentum=0.5 study@cifar10-simple_cnn", repo)
    assert set(re.findall(r"Running stage '([^']+)'", exp.stdout)) == {"check_params", "study@cifar10-simple_cnn"}
    diff = json.loads(sh("dvc params diff --json", repo).stdout)["params.yaml"]
    assert {k: (v["old"], v["new"]) for k, v in diff.items()} == {"models.resnet.epochs": (epochs, 2),
                                                                  "model_defaults.momentum": (0.9, 0.5)}
    status = sh("dvc status study --json", repo).stdout
    assert all(f"study@{cell}" in status for cell in ("imagenet10-simple_cnn", "cifar10-resnet", "imagenet10-resnet"))
