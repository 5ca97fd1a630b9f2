"""Stage evaluate: baseline and masked classifier on the validation split and the test set;
shortcut metrics for both and the test predictions (path,label)."""

import json

import numpy as np
import pandas as pd
import torch

from cnnlab.data.sets import baseline_and_masked, class_indices
from cnnlab.data.store import CropSet
from cnnlab.io import atomic_dir, load_array, write_csv, write_json
from cnnlab.stage import device, run_stage
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import load_model
from cnnlab.train.evaluate import score_classifier
from cnnlab.train.loop import TensorData
from cnnlab.viz.plots import confusion_matrices

MODELS = ("baseline", "masked")


def main(p, args):
    info = json.loads((args.crops / "dataset.json").read_text())
    classes = info["classes"]
    shortcut = classes.index(p.backgrounds.classes[0])
    train = CropSet.load(args.crops, "train")
    test = CropSet.load(args.crops, "test")
    val_rows = np.flatnonzero(pd.read_csv(args.models / "split.csv").subset.to_numpy() == "val")
    sets = dict(zip(MODELS, baseline_and_masked(train, args.masked, classes)))
    labelled = bool(len(test.index)) and bool((test.index.label != "").all())
    test_labels = class_indices(test.index.label, classes) if labelled else None
    patches = pd.read_csv(args.backgrounds / "patches.csv")
    source_class = class_indices([p.backgrounds.classes[k] for k in patches.label], classes)
    backgrounds = TensorData.from_numpy(load_array(args.backgrounds / "patches.npy"), source_class)
    with stage_run("evaluate", {"shortcut_class": classes[shortcut]}, data_source=info["source"]) as run:
        metrics = {"data_source": info["source"], "test_labelled": labelled, "chance_rate": 1 / len(classes)}
        panels = {}
        with atomic_dir(args.out) as tmp:
            for name in MODELS:
                model, _ = load_model(args.models / f"{name}.pt", device())
                val = sets[name].subset(val_rows)
                metrics[name], test_pred = score_classifier(
                    model, val, torch.from_numpy(test.images), test_labels, backgrounds,
                    shortcut=shortcut, num_classes=len(classes), device=device(),
                )  # fmt: skip
                if labelled:
                    panels[f"{name}: test"] = (test_labels, test_pred)
                frame = pd.DataFrame({"path": test.index.path, "label": [classes[i] for i in test_pred]})
                # The deliverable is the masked model's predictions; the baseline's sit beside them.
                write_csv(tmp / ("test_predictions.csv" if name == "masked" else f"{name}_test_predictions.csv"), frame)
        if labelled:
            metrics["effect"] = {
                "test_accuracy_gain": metrics["masked"]["test_accuracy"] - metrics["baseline"]["test_accuracy"],
                "test_shortcut_rate_drop": metrics["baseline"]["test_shortcut_rate"]
                - metrics["masked"]["test_shortcut_rate"],
            }
        run.log_metrics(metrics)
        if panels:
            run.log_figure(confusion_matrices(panels, classes, "test set (rows: true class)"), "test_confusion.png")
        run.log_artifact(args.out / "test_predictions.csv")
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "crops", "masked", "backgrounds", "models", "out", "metrics", doc=__doc__)
