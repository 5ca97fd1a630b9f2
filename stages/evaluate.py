"""Stage evaluate: every strategy's classifiers (one per seed) on their validation split, the test
set and the paired test images; the comparison table over seeds (mean, sd, per seed), paired
differences against the baseline, the test predictions, the figures of the test set, and one
MLflow run per strategy beside the stage's own."""

from cnnlab.warm import handoff

handoff()  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import json

import numpy as np
import pandas as pd
import torch

from cnnlab import figures, figures_gradcam
from cnnlab.data.arrays import load_images
from cnnlab.data.sets import gradcam_crops, load_chain, split_rows
from cnnlab.data.strategies import BASELINE, MASK_SOURCE, eval_images, train_images
from cnnlab.io import atomic_dir, save_array, write_csv, write_json
from cnnlab.metrics import mask_quality, over_seeds
from cnnlab.stage import device, run_stage, write_figures
from cnnlab.tensors import TensorData, predict
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import load_model
from cnnlab.train.scoring import comparison, comparison_table, score_classifier


def paired_rows(crops) -> np.ndarray | None:
    """The test row of each paired image (same file name), or None without labelled pairs."""
    if "paired" not in crops.splits or not crops.splits["test"].labelled:
        return None
    position = {name.split("/", 1)[1]: i for i, name in enumerate(crops.splits["test"].index.id)}
    return np.array([position[name.split("/", 1)[1]] for name in crops.splits["paired"].index.id], np.int64)


def mask_ious(chain, strategy: str, seed: int) -> dict:
    """{train_mask_iou, test_mask_iou} of a masking strategy's masks against the ground truth
    (where the folder has it): mask quality beside the cure's accuracy."""
    if strategy not in MASK_SOURCE or chain.truth is None:
        return {}
    return {f"{split}_mask_iou": mask_quality(chain.masks(strategy, split, seed), chain.truth[split])["mask_iou"]
            for split in ("train", "test")}  # fmt: skip


def log_strategy(name: str, agg: dict, info: dict) -> None:
    """One MLflow run per strategy: means, sd, per-seed values (step = seed), differences to the baseline."""
    params = {"strategy": name, "seeds": ",".join(map(str, info["seeds"])), "shortcut_class": info["shortcut_class"]}
    with stage_run(f"evaluate/{name}", params, data_source=info["data_source"], tags={"cnnlab.strategy": name}) as run:
        if "skipped" in agg:
            run.set_tag("cnnlab.skipped", agg["skipped"])
            return
        run.log_metrics({k: v["mean"] for k, v in agg.items()})
        run.log_metrics({k: v["sd"] for k, v in agg.items()}, prefix="sd/")
        for seed in info["seeds"]:
            run.log_epoch({k: v["per_seed"][str(seed)] for k, v in agg.items() if str(seed) in v["per_seed"]},
                          seed, prefix="per_seed/")  # fmt: skip
        diff = info["comparison"].get(f"{name}_minus_{BASELINE}", {})
        run.log_metrics({k: v["mean"] for k, v in diff.items()}, prefix=f"minus_{BASELINE}/")
        if name == info["comparison"].get("best"):
            run.set_tag("cnnlab.best", "true")


def main(p, args):
    crops = load_images(args.crops)
    classes, test = crops.classes, crops.splits["test"]
    shortcut = classes.index(p.backgrounds.classes[0])
    seeds = p.objects.seed_list(p.seed)
    chain = load_chain(crops, args.segments, args.backgrounds, args.learned, seeds)
    train_labels = crops.splits["train"].labels(classes)
    test_labels = test.labels(classes) if test.labelled else None
    pairs = paired_rows(crops)
    backgrounds = load_images(args.backgrounds).splits["patches"]
    background_data = TensorData.from_numpy(backgrounds.images, backgrounds.labels(classes))
    trained = json.loads(args.trained.read_text())["strategies"]
    metrics = {"data_source": crops.source, "test_labelled": test.labelled, "shortcut_class": classes[shortcut],
               "chance_rate": 1 / len(classes), "seeds": seeds,
               "sd": "sample standard deviation over seeds (n - 1)",
               "better_means": "paired difference over seeds (same split and initial weights): mean - sd > 0",
               "strategies": {}}  # fmt: skip
    views, models = {}, {}  # of the first seed, for the figures
    inputs = {"crops": args.crops, "segments": args.segments, "backgrounds": args.backgrounds, "masked": args.masked,
              "learned": args.learned, "models": args.models}  # fmt: skip
    with stage_run("evaluate", {"seeds": ",".join(map(str, seeds)), "shortcut_class": classes[shortcut]},
                   data_source=crops.source, inputs=inputs) as run, atomic_dir(args.out) as tmp:  # fmt: skip
        for strategy, trained_m in trained.items():
            if "skipped" in trained_m:
                metrics["strategies"][strategy] = {"skipped": trained_m["skipped"]}
                continue
            per_seed = {}
            for seed in seeds:
                view = np.ascontiguousarray(eval_images(strategy, chain, "test", seed))
                paired_view = None
                if pairs is not None:
                    paired_view = torch.from_numpy(np.ascontiguousarray(eval_images(strategy, chain, "paired", seed)))
                gradcam = gradcam_crops(args.masked, seed, crops.splits["train"]) if strategy == "report" else None
                data = TensorData.from_numpy(train_images(strategy, chain, seed, gradcam), train_labels)
                _, val_idx = split_rows(args.models / "splits.csv", seed)
                model, _ = load_model(args.models / strategy / f"seed{seed}.pt", device())
                m, pred = score_classifier(
                    model, data.subset(val_idx), torch.from_numpy(view), test_labels, background_data,
                    shortcut=shortcut, num_classes=len(classes), device=device(), paired_images=paired_view,
                    paired_rows=pairs,
                )  # fmt: skip
                per_seed[seed] = {k: v for k, v in m.items() if k != "test_recall"} | mask_ious(chain, strategy, seed)
                frame = pd.DataFrame({"path": test.index.id, "label": [classes[i] for i in pred]})
                write_csv(tmp / strategy / f"seed{seed}_test_predictions.csv", frame)
                models.setdefault(strategy, model)
                views.setdefault(strategy, view)
            metrics["strategies"][strategy] = over_seeds(per_seed)
        metrics["comparison"] = comparison(metrics["strategies"])
        best = metrics["comparison"].get("best", next(iter(models)))
        # the deliverable: the best strategy's first-seed predictions
        (tmp / "test_predictions.csv").write_bytes((tmp / best / f"seed{seeds[0]}_test_predictions.csv").read_bytes())
        logits = {name: predict(model, torch.from_numpy(views[name]), device()) for name, model in models.items()}
        with atomic_dir(args.confusion) as folder:  # DVC confusion plots: `dvc plots diff` sets runs side by side
            for name, lg in logits.items() if test.labelled else ():
                write_csv(folder / f"{name}.csv", pd.DataFrame({"actual": [classes[k] for k in test_labels],
                                                                "predicted": [classes[k] for k in lg.argmax(1)]}))
        shown = figures.strategies(metrics) | figures_gradcam.test_figures(test, classes, views, logits, models, best,
                                                                             seeds[0], device())  # fmt: skip
        gradcam_rows, _ = gradcam_crops(args.masked, seeds[0], crops.splits["train"])
        gradcam = load_images(args.masked / f"seed{seeds[0]}").splits["shortcut"]
        sources, arrays = figures.mask_source_examples(crops.splits["train"], chain, gradcam, gradcam_rows, seeds[0],
                                                       crops.source)  # fmt: skip
        for name, array in arrays.items():  # for `cnnlab mask-figure`, beside another run's
            save_array(tmp / "mask_sources" / f"{name}.npy", array)
        shown |= sources
        run.set_tag("cnnlab.best", best)
        write_figures(shown, args.figures, run)
        write_csv(args.table, comparison_table(metrics["strategies"]))
        run.log_artifact(args.table)
    for name, agg in metrics["strategies"].items():
        log_strategy(name, agg, metrics)
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "crops", "segments", "backgrounds", "masked", "learned", "models", "trained", "out", "metrics",
              "table", "figures", "confusion", doc=__doc__)  # fmt: skip
