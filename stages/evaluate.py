"""Stage evaluate: every strategy's classifiers (one per seed) on their validation split, the test
set and the paired test images; the comparison table over seeds (mean, sd, per seed), paired
differences against the baseline, one MLflow run per strategy, and the test predictions."""

import json

import numpy as np
import pandas as pd
import torch

from cnnlab.data.sets import class_indices, gradcam_crops, load_chain, load_crops, split_rows
from cnnlab.data.strategies import BASELINE, UPPER_BOUND, eval_images, train_images
from cnnlab.io import atomic_dir, load_array, write_csv, write_json
from cnnlab.metrics import over_seeds, paired_difference
from cnnlab.stage import device, run_stage
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import load_model
from cnnlab.train.evaluate import score_classifier
from cnnlab.train.loop import TensorData

COMPARED = ("test_accuracy", "test_val_ratio", "shortcut_class_test_recall", "test_shortcut_rate",
            "test_worst_class_recall", "bg_gap")  # fmt: skip
TABLE = ("val_accuracy", *COMPARED, "background_only_accuracy")
LOWER_IS_BETTER = {"test_shortcut_rate", "bg_gap"}  # fewer shortcut-class answers; a smaller BG-gap


def comparison(results: dict) -> dict:
    """Paired differences of each strategy against the baseline, and the best non-oracle strategy
    by mean test accuracy (reported only: nothing is tuned on the test set)."""
    out = {}
    if BASELINE in results:
        for name, agg in results.items():
            if name == BASELINE or "skipped" in agg:
                continue
            out[f"{name}_minus_{BASELINE}"] = {
                k: paired_difference(agg[k]["per_seed"], results[BASELINE][k]["per_seed"], k not in LOWER_IS_BETTER)
                for k in COMPARED
                if k in agg and k in results[BASELINE]
            }
    ranked = [
        (agg["test_accuracy"]["mean"], n) for n, agg in results.items() if "test_accuracy" in agg and n != UPPER_BOUND
    ]
    if ranked:
        out["best"] = max(ranked)[1]
        out["best_chosen_by"] = "highest mean test accuracy over seeds, oracle excluded (a report, not a tuned knob)"
    return out


def main(p, args):
    info = json.loads((args.crops / "dataset.json").read_text())
    classes = info["classes"]
    shortcut = classes.index(p.backgrounds.classes[0])
    crops = load_crops(args.crops)
    chain = load_chain(crops, args.segments, args.backgrounds)
    train_labels = class_indices(crops["train"].index.label, classes)
    test = crops["test"]
    labelled = bool(len(test.index)) and bool((test.index.label != "").all())
    test_labels = class_indices(test.index.label, classes) if labelled else None
    paired_rows = None
    if "paired" in crops and labelled:
        position = {path.split("/", 1)[1]: i for i, path in enumerate(test.index.path)}
        paired_rows = np.array([position[path.split("/", 1)[1]] for path in crops["paired"].index.path], np.int64)
    patches = pd.read_csv(args.backgrounds / "patches.csv")
    backgrounds = TensorData.from_numpy(load_array(args.backgrounds / "patches.npy"), patches.label.to_numpy())
    trained = json.loads(args.trained.read_text())["strategies"]
    seeds = p.objects.seed_list(p.seed)
    metrics = {"data_source": info["source"], "test_labelled": labelled, "shortcut_class": classes[shortcut],
               "chance_rate": 1 / len(classes), "seeds": seeds,
               "sd": "sample standard deviation over seeds (n - 1)",
               "better_means": "paired difference over seeds (same split and initial weights): mean - sd > 0",
               "strategies": {}}  # fmt: skip
    with atomic_dir(args.out) as tmp:
        for strategy, trained_m in trained.items():
            if "skipped" in trained_m:
                metrics["strategies"][strategy] = {"skipped": trained_m["skipped"]}
                continue
            test_view = torch.from_numpy(np.ascontiguousarray(eval_images(strategy, chain, "test")))
            paired_view = None
            if paired_rows is not None:
                paired_view = torch.from_numpy(np.ascontiguousarray(eval_images(strategy, chain, "paired")))
            per_seed = {}
            for seed in seeds:
                gradcam = gradcam_crops(args.masked, seed, crops["train"]) if strategy == "report" else None
                data = TensorData.from_numpy(train_images(strategy, chain, seed, gradcam), train_labels)
                _, val_idx = split_rows(args.models / "splits.csv", seed)
                model, _ = load_model(args.models / strategy / f"seed{seed}.pt", device())
                m, pred = score_classifier(
                    model, data.subset(val_idx), test_view, test_labels, backgrounds, shortcut=shortcut,
                    num_classes=len(classes), device=device(), paired_images=paired_view, paired_rows=paired_rows,
                )  # fmt: skip
                per_seed[seed] = {k: v for k, v in m.items() if k != "test_recall"}
                frame = pd.DataFrame({"path": test.index.path, "label": [classes[i] for i in pred]})
                write_csv(tmp / strategy / f"seed{seed}_test_predictions.csv", frame)
            metrics["strategies"][strategy] = over_seeds(per_seed)
        metrics["comparison"] = comparison(metrics["strategies"])
        best = metrics["comparison"].get("best", next(iter(trained)))
        # the deliverable: the best strategy's first-seed predictions
        (tmp / "test_predictions.csv").write_bytes((tmp / best / f"seed{seeds[0]}_test_predictions.csv").read_bytes())
        rows = []
        for name, agg in metrics["strategies"].items():
            row = {
                "strategy": name,
                "note": agg.get("skipped", "upper bound (ground-truth masks)" if name == UPPER_BOUND else ""),
            }
            for k in TABLE:
                if k in agg:
                    row[f"{k}_mean"], row[f"{k}_sd"] = agg[k]["mean"], agg[k]["sd"]
            rows.append(row)
        table = pd.DataFrame(rows)
    write_csv(args.table, table)
    for name, agg in metrics["strategies"].items():  # one MLflow run per strategy, its seeds inside
        with stage_run(f"evaluate/{name}", {"strategy": name, "seeds": ",".join(map(str, seeds)),
                                            "shortcut_class": classes[shortcut]},
                       data_source=info["source"], tags={"cnnlab.strategy": name}) as run:  # fmt: skip
            if "skipped" in agg:
                run.set_tag("cnnlab.skipped", agg["skipped"])
                continue
            run.log_metrics({k: v["mean"] for k, v in agg.items()})
            run.log_metrics({k: v["sd"] for k, v in agg.items()}, prefix="sd.")
            for seed in seeds:
                run.log_epoch({k: v["per_seed"][str(seed)] for k, v in agg.items() if str(seed) in v["per_seed"]},
                              seed, prefix="per_seed.")  # fmt: skip
            diff = metrics["comparison"].get(f"{name}_minus_{BASELINE}", {})
            run.log_metrics({k: v["mean"] for k, v in diff.items()}, prefix=f"minus_{BASELINE}.")
            if name == metrics["comparison"].get("best"):
                run.set_tag("cnnlab.best", "true")
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "crops", "segments", "backgrounds", "masked", "models", "trained", "out", "metrics", "table",
              doc=__doc__)  # fmt: skip
