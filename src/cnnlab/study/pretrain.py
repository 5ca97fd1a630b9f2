"""Stage pretrain: transfer.pretrain (a transfer family) trained from random weights on the
transfer.source dataset, so that transfer models have a pretrained backbone offline (their
`fallback: pretrained` where ImageNet weights cannot be had, or `weights: pretrained`): the
model's checkpoint, its metrics on the source (curves, accuracy) and an MLflow run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cnnlab.data.arrays import ImageSet
from cnnlab.data.sources import load_dataset
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.params.schema import Params
from cnnlab.serving import log_model
from cnnlab.train import distributed
from cnnlab.train.cell import StudyResult, run_study
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.usage import ModelUsage


def source_data(p: Params) -> tuple[ImageSet, dict, dict]:
    """(the transfer.source dataset, the run's params, its tags)."""
    name, source = p.transfer.pretrain, p.transfer.source
    cfg = p.models[name]
    data = load_dataset(source, p.datasets[source], p.seed)
    params = {"seed": p.seed, "dataset": source, "model": name, **p.datasets[source].flat("dataset."),
              **cfg.flat("model."), **p.augment.flat("augment.")}  # fmt: skip
    return data, params, {"cnnlab.dataset": source, "cnnlab.model": name, "cnnlab.family": cfg.family}


@dataclass
class Pretrained:
    """The pretrained backbone's training: what the stage writes (:meth:`save`) and logs (:meth:`log`)."""

    p: Params
    data: ImageSet
    result: StudyResult

    @property
    def usage(self) -> ModelUsage:
        # kind study: `cnnlab predict` runs it as a study model; dataset and source: what transfer cells record
        name, source = self.p.transfer.pretrain, self.p.transfer.source
        return ModelUsage("study", role="pretrain", classes=self.data.classes, input_size=self.data.image_size,
                          model=name, family=self.p.models[name].family, dataset=source,
                          source=self.data.source)  # fmt: skip

    def save(self, out: Path, metrics: Path) -> None:
        """The checkpoint (`out`/model.pt), the curves and metrics (`metrics`; no timings: a rerun
        gives the same bytes)."""
        with atomic_dir(out) as tmp:
            save_checkpoint(tmp / "model.pt", self.result.model, classes=self.data.classes, weights=self.result.init,
                            usage=self.usage.as_dict())  # fmt: skip
        metrics.mkdir(parents=True, exist_ok=True)
        write_csv(metrics / "curves.csv", pd.DataFrame(self.result.fit.history))
        write_json(metrics / "metrics.json", self.result.metrics)

    def log(self, run) -> None:
        name, source, result = self.p.transfer.pretrain, self.p.transfer.source, self.result
        run.log_metrics({k: v for k, v in result.metrics.items() if k in ("train", "val", "test")})
        run.log_metrics({"seconds": result.seconds})
        own = {f"{split}_{k}": v for split in ("val", "test") for k, v in result.metrics.get(split, {}).items()}
        tags = {"dataset": source, "model": name} | {k: own[k] for k in ("val_accuracy", "test_accuracy") if k in own}
        log_model(run, result.model, f"pretrain-{source}-{name}", registered=f"cnnlab-pretrain-{name}",
                  usage=self.usage, metrics=own, tags=tags)  # fmt: skip


def pretrain(p: Params, data: ImageSet, *, checkpoint: Path, run) -> Pretrained:
    """Train transfer.pretrain on `data` (resumed from `checkpoint`), each epoch's numbers on `run`."""
    name = p.transfer.pretrain
    result = run_study(
        data, name, p.models[name], p.augment, seed=p.seed, device=distributed.device(), checkpoint=checkpoint,
        on_epoch=lambda phase, row: run.log_epoch(row, row["epoch"], prefix=f"{phase}/"),
    )  # fmt: skip
    return Pretrained(p, data, result)
