"""Stage summary: the experiment's row in MLflow. The headline metrics (each cure's test accuracy
and shortcut-class recall, each study cell's test accuracy) go on the DVC experiment's parent run,
whose params are all of params.yaml, so the MLflow UI's table, parallel coordinates and scatter
plots compare experiments one row each; metrics/summary.json holds the same numbers for
`dvc exp show`."""

from cnnlab.warm import handoff

handoff()  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import json

from cnnlab.io import write_json
from cnnlab.stage import run_stage
from cnnlab.tracking import log_experiment_metrics


def headline(evaluation: dict, study: dict[str, dict]) -> dict:
    """{objects: {strategy: {test_accuracy, shortcut_class_test_recall}}, study: {cell: {test_accuracy,
    val_accuracy}}}: means over seeds for the objects chain; skipped strategies and unscored test
    sets left out."""
    keys = ("test_accuracy", "shortcut_class_test_recall")
    objects = {name: {k: m[k]["mean"] for k in keys if k in m} for name, m in evaluation["strategies"].items()
               if "skipped" not in m}  # fmt: skip
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
    run_id = log_experiment_metrics(summary)
    print(f"headline metrics on MLflow run {run_id} (the DVC experiment's parent)")
    write_json(args.out, summary)


if __name__ == "__main__":
    run_stage(main, "evaluation", "study", "out", doc=__doc__)
