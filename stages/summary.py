"""Stage summary: the experiment's row. The headline metrics (each cure's test accuracy over seeds,
its sd and its shortcut-class recall; each study cell's accuracy) go on the DVC experiment's
parent run in MLflow, whose params are all of params.yaml, so the MLflow UI's table, parallel
coordinates and scatter plots compare experiments one row each. The same numbers are the metrics
DVC shows (`dvc metrics show`, `dvc exp show`): metrics/summary/objects/<strategy>.json and
metrics/summary/study/<cell>.json, one file each, so `dvc metrics show` prints one short row per
cure and per cell; a number's MLflow name is its file's path under metrics/summary/ and its key
(objects/segment/test_accuracy).

The last output lists the metric names that went to MLflow (the same for every run of the same
params, so dvc.lock does not change with the run's id). It is a DVC output never taken from the
run cache (dvc.yaml), so this stage runs wherever it is missing (a fresh clone that did not `dvc
pull`) and whenever params.yaml changed, even when every other stage was skipped or restored."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import json

from cnnlab.io import atomic_dir, write_json, write_text
from cnnlab.stage import run_stage
from cnnlab.tracking import EXPERIMENT, flat_metrics, log_experiment_metrics


def headline(evaluation: dict, study: dict[str, dict]) -> dict:
    """{objects: {strategy: {val_accuracy, test_accuracy, test_accuracy_sd, shortcut_class_test_recall,
    test_mask_iou (masking strategies, with ground truth)}},
    study: {cell: {val_accuracy, test_accuracy}}}: means (and the sd) over seeds for the objects
    chain; skipped strategies left out, test numbers only where the test set is labelled."""
    objects = {}
    for name, m in evaluation["strategies"].items():
        if "skipped" in m:
            continue
        objects[name] = {"val_accuracy": m["val_accuracy"]["mean"]}
        if "test_accuracy" in m:  # an unlabelled test set has predictions only
            objects[name] |= {"test_accuracy": m["test_accuracy"]["mean"], "test_accuracy_sd": m["test_accuracy"]["sd"]}
            if "shortcut_class_test_recall" in m:  # (no shortcut class: none)
                objects[name]["shortcut_class_test_recall"] = m["shortcut_class_test_recall"]["mean"]
        if "test_mask_iou" in m:
            objects[name]["test_mask_iou"] = m["test_mask_iou"]["mean"]
    cells = {}
    for cell, m in study.items():
        cells[cell] = {"val_accuracy": m["val"]["accuracy"]}
        if "test" in m:  # an unlabelled test set has predictions only
            cells[cell]["test_accuracy"] = m["test"]["accuracy"]
    return {"objects": objects, "study": cells}


def main(p, args):
    evaluation = json.loads(args.evaluation.read_text())
    study = {cell: json.loads((args.study / cell / "metrics.json").read_text()) for cell in p.cells()}
    summary = headline(evaluation, study)
    sources = {"objects": evaluation["data_source"], **{cell: m["data_source"] for cell, m in study.items()}}
    found = json.loads(args.shortcut.read_text())
    detected = found.get("detected") or {}
    share = detected.get("share", {}).get(found["shortcut"]) if found["shortcut"] else detected.get("top_share")
    decision = {"shortcut/class": found["shortcut"] or "none", "shortcut/decided_by": found["decided_by"],
                "shortcut/share": "" if share is None else f"{share:.3f}"}  # fmt: skip
    row = log_experiment_metrics(summary, {f"cnnlab.data_source.{k}": v for k, v in sources.items()} | decision)
    print(f"headline metrics on MLflow run {row['run_id']} ({row['experiment']}, the DVC experiment's parent)")
    with atomic_dir(args.out) as tmp:
        for group, rows in summary.items():
            for name, numbers in rows.items():
                write_json(tmp / group / f"{name}.json", numbers)
    names = "".join(f"{name}\n" for name in flat_metrics(summary))
    write_text(args.logged, f"# logged to the DVC experiment's parent run (MLflow experiment {EXPERIMENT})\n{names}")


if __name__ == "__main__":
    run_stage(main, doc=__doc__, evaluation="the evaluate stage's metrics JSON",
              study="folder of the study cells' metrics (one folder per cell)",
              shortcut="the find_shortcut stage's metrics JSON (the decision: tags shortcut/* of the parent run)",
              out="folder of the headline metrics, one JSON per group and name",
              logged="text file: the metrics logged to the DVC experiment's parent MLflow run")  # fmt: skip
