"""Stage summary: the experiment's row. The headline metrics (each cure's test accuracy over seeds,
its sd and its shortcut-class recall; each study cell's accuracy) go on the DVC experiment's
parent run in MLflow, whose params are all of params.yaml, so the MLflow UI's table, parallel
coordinates and scatter plots compare experiments one row each. The same numbers are the metrics
DVC shows (`dvc metrics show`, `dvc exp show`): metrics/summary/objects/<strategy>.json and
metrics/summary/study/<cell>.json, one file each, so `dvc metrics show` prints one short row per
cure and per cell; a number's MLflow name is its file's path under metrics/summary/ and its key
(objects/segment/test_accuracy)."""

from __future__ import annotations


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


def data_sources(evaluation: dict, study: dict[str, dict]) -> dict[str, str]:
    """{objects: the chain's data source, <cell>: each study cell's}: the parent run's tags."""
    return {"objects": evaluation["data_source"], **{cell: m["data_source"] for cell, m in study.items()}}


def decision_tags(found: dict) -> dict[str, str]:
    """The find_shortcut stage's decision (its metrics JSON) as the parent run's shortcut/* tags."""
    detected = found.get("detected") or {}
    share = detected.get("share", {}).get(found["shortcut"]) if found["shortcut"] else detected.get("top_share")
    return {"shortcut/class": found["shortcut"] or "none", "shortcut/decided_by": found["decided_by"],
            "shortcut/share": "" if share is None else f"{share:.3f}"}  # fmt: skip
