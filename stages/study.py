"""Stage study (one cell of the dataset x model matrix): train one model family on one prepared
dataset and write its reports: metrics, per-class report, confusion data, curves, test
predictions, figures; all logged to MLflow experiment cnnlab-study. Runs under torchrun too
(`launcher` in params.yaml)."""

import matplotlib.pyplot as plt
import pandas as pd

from cnnlab.config import ParamsError, to_flat_dict
from cnnlab.data.sources import load_prepared
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.models.zoo import FAMILIES
from cnnlab.stage import device, run_stage
from cnnlab.tracking import STUDY_EXPERIMENT, stage_run
from cnnlab.train import distributed
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.train.study import run_study
from cnnlab.viz.plots import confusion_matrices, prediction_grid, training_curves

EXAMPLES = 16


def main(p, args):
    if args.model not in FAMILIES:
        raise ParamsError(f"unknown model {args.model!r}; valid names: {', '.join(FAMILIES)}")
    cfg = getattr(p.models, args.model)
    data = load_prepared(args.prepared)
    if data.name != args.dataset:
        raise ParamsError(f"{args.prepared} holds dataset {data.name!r}, not {args.dataset!r}")
    name = f"{data.name}-{args.model}"
    params = {
        "seed": p.seed,
        "dataset": data.name,
        "model": args.model,
        **to_flat_dict(getattr(p.datasets, data.name), "dataset."),
        **to_flat_dict(cfg, "model."),
        **to_flat_dict(p.augment, "augment."),
    }
    tags = {"cnnlab.dataset": data.name, "cnnlab.model": args.model}
    checkpoint = args.checkpoints / f"{name}.pt"
    with stage_run(f"study@{name}", params, data_source=data.source, experiment=STUDY_EXPERIMENT, tags=tags) as run:
        result = run_study(
            data, args.model, cfg, p.augment, seed=p.seed, device=device(), checkpoint=checkpoint,
            on_epoch=lambda phase, row: run.log_epoch(row, row["epoch"], prefix=f"{phase}."),
        )  # fmt: skip
        if not distributed.is_main():  # under torchrun, rank 0 writes
            return
        if distributed.world_size() > 1:
            result.metrics["processes"] = distributed.world_size()
        run.set_tag("cnnlab.weights", result.init)
        classes = data.classes
        named = lambda idx: [classes[i] for i in idx]  # noqa: E731
        curves = pd.DataFrame(result.fit.history)
        figures = {
            "curves.png": training_curves(result.fit.history, title=name),
            "confusion.png": confusion_matrices(
                {split: (data.splits[split].labels, result.predictions[split]) for split in ("train", "val")},
                classes,
                title=f"{name} (counts)",
            ),
        }
        val = data.splits["val"]
        wrong = (result.predictions["val"] != val.labels).nonzero()[0]
        right = (result.predictions["val"] == val.labels).nonzero()[0]
        pick = list(wrong[: EXAMPLES // 2]) + list(right[: EXAMPLES - min(len(wrong), EXAMPLES // 2)])
        figures["examples.png"] = prediction_grid(
            val.images[pick],
            named(val.labels[pick]),
            named(result.predictions["val"][pick]),
            result.probabilities["val"][pick, result.predictions["val"][pick]],
            title=f"{name}: validation examples (wrong first)",
        )
        with atomic_dir(args.out) as tmp:
            save_checkpoint(tmp / "model.pt", result.model, classes=classes, weights=result.init)
            test = data.splits["test"]
            write_csv(
                tmp / "test_predictions.csv", pd.DataFrame({"id": test.ids, "label": named(result.predictions["test"])})
            )
            for fname, fig in figures.items():
                fig.savefig(tmp / fname, dpi=110)
                plt.close(fig)
        for fname in figures:
            run.log_artifact(args.out / fname, "figures")
        run.log_artifact(args.out / "model.pt", "model")
        run.log_artifact(args.out / "test_predictions.csv")
        run.log_metrics({k: v for k, v in result.metrics.items() if k in ("train", "val", "test")})
        run.log_metrics({"seconds": result.seconds, "best_epoch": result.metrics["best_epoch"]})
        m = args.metrics
        write_csv(m / "curves.csv", curves)
        for split in ("train", "val"):
            frame = pd.DataFrame(
                {"actual": named(data.splits[split].labels), "predicted": named(result.predictions[split])}
            )
            write_csv(m / f"confusion_{split}.csv", frame)
        write_csv(m / "classification_report.csv", pd.DataFrame(result.report))
        run.log_artifact(m / "classification_report.csv")
        write_json(m / "metrics.json", result.metrics)
    checkpoint.unlink(missing_ok=True)  # finished: nothing to resume


if __name__ == "__main__":
    run_stage(main, "prepared", "out", "checkpoints", "metrics", names=("dataset", "model"), doc=__doc__)
