"""Stage study: one cell of the dataset x model matrix. Train one model of `models` on one prepared
dataset (cnnlab.train.cell.run_study) and write its reports: metrics, per-class report, confusion
data, curves, test predictions, figures; all logged to its MLflow run. The transfer cells
(cnnlab.study.transfer) are study cells too."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cnnlab import figures
from cnnlab.data.arrays import ImageSet
from cnnlab.errors import ParamsError
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.params.schema import Params, StudyModel
from cnnlab.serving import log_model
from cnnlab.train import distributed
from cnnlab.train.cell import StudyResult, run_study
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.usage import ModelUsage


@dataclass
class Cell:
    """One cell: its data (the training split already cut for a transfer cell), model and what its
    MLflow run records."""

    data: ImageSet
    model: str
    cfg: StudyModel
    stage: str  # the MLflow run's stage name: study@<cell> or transfer@<cell>
    params: dict
    tags: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.data.name}-{self.model}"


def study_cell(p: Params, dataset: str, model: str, data: ImageSet, prepared: Path) -> Cell:
    """The study cell (dataset, model) of params `p` on `data`, prepared in folder `prepared`;
    errors name the key."""
    if model not in p.models:
        raise ParamsError(f"unknown model {model!r}; valid names (params key 'models'): {', '.join(p.models)}")
    if data.name != dataset:
        raise ParamsError(f"{prepared} holds dataset {data.name!r}, not {dataset!r}")
    cfg = p.models[model]
    params = {"seed": p.seed, "dataset": data.name, "model": model, **p.datasets[data.name].flat("dataset."),
              **cfg.flat("model."), **p.augment.flat("augment.")}  # fmt: skip
    tags = {"cnnlab.dataset": data.name, "cnnlab.model": model, "cnnlab.family": cfg.family}
    return Cell(data, model, cfg, f"study@{data.name}-{model}", params, tags)


def write_reports(result: StudyResult, data: ImageSet, folder: Path) -> None:
    """metrics.json, the per-class report, the train/val confusion data and the curves."""
    named = lambda idx: [data.classes[i] for i in idx]  # noqa: E731
    write_csv(folder / "curves.csv", pd.DataFrame(result.fit.history))
    for split in ("train", "val"):
        frame = pd.DataFrame({"actual": named(result.labels[split]), "predicted": named(result.predictions[split])})
        write_csv(folder / f"confusion_{split}.csv", frame)
    write_csv(folder / "classification_report.csv", pd.DataFrame(result.report))
    write_json(folder / "metrics.json", result.metrics)


@dataclass
class TrainedCell:
    """A trained cell: what the stage writes (:meth:`save`), shows (:meth:`figures`) and logs (:meth:`log`)."""

    cell: Cell
    result: StudyResult

    @property
    def usage(self) -> ModelUsage:
        data = self.cell.data
        return ModelUsage("study", classes=data.classes, input_size=data.image_size, model=self.cell.model,
                          family=self.cell.cfg.family)  # fmt: skip

    def save(self, out: Path, metrics: Path) -> None:
        """The model's checkpoint and its test predictions (`out`); the reports (`metrics`)."""
        data, result = self.cell.data, self.result
        if distributed.world_size() > 1:
            result.metrics["processes"] = distributed.world_size()
        with atomic_dir(out) as tmp:
            save_checkpoint(tmp / "model.pt", result.model, classes=data.classes, weights=result.init,
                            usage=self.usage.as_dict())  # fmt: skip
            predicted = [data.classes[i] for i in result.predictions["test"]]
            test = data.splits["test"]
            write_csv(tmp / "test_predictions.csv", pd.DataFrame({"id": test.index.id, "label": predicted}))
        write_reports(result, data, metrics)

    def figures(self) -> dict:
        data, r = self.cell.data, self.result
        return figures.study_cell(self.cell.name, data.classes, r.fit.history, r.labels, r.predictions,
                                  data.splits["val"], r.probabilities["val"])  # fmt: skip

    def log(self, run, out: Path, metrics: Path) -> None:
        """The predictions and report files, the metrics and the registered model on `run`."""
        data, result, name = self.cell.data, self.result, self.cell.name
        run.set_tag("cnnlab.weights", result.init)
        run.log_artifact(out / "test_predictions.csv")
        run.log_artifact(metrics / "classification_report.csv")
        run.log_metrics({k: v for k, v in result.metrics.items() if k in ("train", "val", "test")})
        run.log_metrics({"seconds": result.seconds, "best_epoch": result.metrics["best_epoch"]})
        own = {f"{split}_{k}": v for split in ("val", "test") for k, v in result.metrics.get(split, {}).items()}
        tags = {"dataset": data.name, "model": self.cell.model}
        tags |= {k: own[k] for k in ("val_accuracy", "test_accuracy") if k in own}  # a folder may have no test
        log_model(run, result.model, name, registered=f"cnnlab-{name}",
                  usage=self.usage, tags=tags, metrics=own)  # fmt: skip


def train_cell(p: Params, cell: Cell, *, checkpoint: Path, run, pretrained: Path | None = None) -> TrainedCell:
    """Train `cell` (resumed from `checkpoint`), each epoch's numbers on `run`; `pretrained`: the
    pretrain stage's checkpoint, for transfer models that load its backbone."""
    result = run_study(
        cell.data, cell.model, cell.cfg, p.augment, seed=p.seed, device=distributed.device(), checkpoint=checkpoint,
        on_epoch=lambda phase, row: run.log_epoch(row, row["epoch"], prefix=f"{phase}/"), pretrained=pretrained,
    )  # fmt: skip
    return TrainedCell(cell, result)
