"""Stages study and transfer (one cell of the dataset x model matrix): train one model of `models`
on one prepared dataset and write its reports: metrics, per-class report, confusion data, curves,
test predictions, figures; all logged to its MLflow run. A transfer cell trains on the first
transfer.train_per_class images per class and may load the backbone of the pretrain stage
(--pretrained). Runs under torchrun too (`launcher` in params.yaml)."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import pandas as pd

from cnnlab import figures
from cnnlab.data.arrays import load_images
from cnnlab.data.split import first_per_class
from cnnlab.errors import ParamsError
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.serving import log_model
from cnnlab.stage import device, run_stage, write_figures
from cnnlab.tracking import stage_run
from cnnlab.train import distributed
from cnnlab.train.cell import run_study
from cnnlab.train.checkpoint import save_checkpoint


def write_reports(result, data, folder) -> None:
    """metrics.json, the per-class report, the train/val confusion data and the curves."""
    named = lambda idx: [data.classes[i] for i in idx]  # noqa: E731
    write_csv(folder / "curves.csv", pd.DataFrame(result.fit.history))
    for split in ("train", "val"):
        frame = pd.DataFrame({"actual": named(result.labels[split]), "predicted": named(result.predictions[split])})
        write_csv(folder / f"confusion_{split}.csv", frame)
    write_csv(folder / "classification_report.csv", pd.DataFrame(result.report))
    write_json(folder / "metrics.json", result.metrics)


def main(p, args):
    if args.model not in p.models:
        raise ParamsError(f"unknown model {args.model!r}; valid names (params key 'models'): {', '.join(p.models)}")
    cfg = p.models[args.model]
    data = load_images(args.prepared)
    if data.name != args.dataset:
        raise ParamsError(f"{args.prepared} holds dataset {data.name!r}, not {args.dataset!r}")
    cell = f"{data.name}-{args.model}"
    params = {"seed": p.seed, "dataset": data.name, "model": args.model, **p.datasets[data.name].flat("dataset."),
              **cfg.flat("model."), **p.augment.flat("augment.")}  # fmt: skip
    stage = f"study@{cell}"
    if args.model in p.transfer.models:  # a cell of the transfer matrix: its few training images
        train = data.splits["train"]
        data.splits["train"] = train.subset(first_per_class(train.index.label.to_numpy(), p.transfer.train_per_class))
        params.update(p.transfer.flat("transfer."))
        stage = f"transfer@{cell}"
    tags = {"cnnlab.dataset": data.name, "cnnlab.model": args.model, "cnnlab.family": cfg.family}
    checkpoint = args.checkpoints / f"{cell}.pt"
    with stage_run(stage, params, data_source=data.source, tags=tags, inputs={"prepared": args.prepared},
                   system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        result = run_study(
            data, args.model, cfg, p.augment, seed=p.seed, device=device(), checkpoint=checkpoint,
            on_epoch=lambda phase, row: run.log_epoch(row, row["epoch"], prefix=f"{phase}/"),
            pretrained=args.pretrained and args.pretrained / "model.pt",
        )  # fmt: skip
        if not distributed.is_main():  # under torchrun, rank 0 writes
            return
        if distributed.world_size() > 1:
            result.metrics["processes"] = distributed.world_size()
        run.set_tag("cnnlab.weights", result.init)
        test = data.splits["test"]
        metadata = {"kind": "study", "classes": data.classes, "input_size": data.image_size, "model": args.model,
                    "family": cfg.family}  # fmt: skip
        with atomic_dir(args.out) as tmp:
            save_checkpoint(tmp / "model.pt", result.model, classes=data.classes, weights=result.init, usage=metadata)
            predicted = [data.classes[i] for i in result.predictions["test"]]
            write_csv(tmp / "test_predictions.csv", pd.DataFrame({"id": test.index.id, "label": predicted}))
        shown = figures.study_cell(cell, data.classes, result.fit.history, result.labels, result.predictions,
                                   data.splits["val"], result.probabilities["val"])  # fmt: skip
        write_figures(shown, args.figures, run)
        write_reports(result, data, args.metrics)
        run.log_artifact(args.out / "test_predictions.csv")
        run.log_artifact(args.metrics / "classification_report.csv")
        run.log_metrics({k: v for k, v in result.metrics.items() if k in ("train", "val", "test")})
        run.log_metrics({"seconds": result.seconds, "best_epoch": result.metrics["best_epoch"]})
        own = {f"{split}_{k}": v for split in ("val", "test") for k, v in result.metrics.get(split, {}).items()}
        tags = {"dataset": data.name, "model": args.model}
        tags |= {k: own[k] for k in ("val_accuracy", "test_accuracy") if k in own}  # a folder may have no test
        log_model(run, result.model, cell, data.splits["val"].images, registered=f"cnnlab-{cell}", metadata=metadata,
                  tags=tags, metrics=own)  # fmt: skip
    checkpoint.unlink(missing_ok=True)  # finished: nothing to resume


if __name__ == "__main__":
    run_stage(main, "prepared", "checkpoints", "figures", doc=__doc__,
              names={"dataset": "a dataset of params.yaml datasets", "model": "a model of params.yaml models"},
              options={"pretrained": "pretrained backbones (pretrain stage), for the transfer cells"},
              out="the cell's model and its test predictions",
              metrics="folder: metrics JSON, classification report, curves, confusion CSVs")  # fmt: skip
