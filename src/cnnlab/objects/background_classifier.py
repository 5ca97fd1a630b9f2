"""The background classifier of the chain: the report's first CNN tells the shortcut class's
background (label 0) from the contrast class's (label 1), on crop-sized patches, once per seed
(each seed its own split of the patches and initial weights)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from cnnlab import figures
from cnnlab.data.arrays import ImageSet
from cnnlab.data.split import stratified_split
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.models import ObjectsCNN
from cnnlab.objects.seeds import PerSeed, SeedResult, for_each_seed, log_means
from cnnlab.serving import log_model, register_best
from cnnlab.tensors import TensorData
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.train.distributed import device
from cnnlab.train.loop import fit
from cnnlab.usage import ModelUsage

if TYPE_CHECKING:
    from cnnlab.params.schema import ObjectsNet


def tracked_params(cfg: ObjectsNet, seeds: list[int], size: int) -> dict:
    """The settings the stage's MLflow run records: all that the step reads of params.yaml
    (`background_classifier`, the seeds of `seed` and `objects.seeds`, crop.size)."""
    return {"seeds": ",".join(map(str, seeds)), "crop.size": size, **cfg.flat("background_classifier.")}


@dataclass
class BackgroundClassifiers:
    """One classifier per seed, with what it takes to use them (`usage`, for cnnlab predict)."""

    source: str
    classes: list[str]
    seeds: PerSeed
    sizes: dict[str, int]  # train_patches, val_patches
    usage: ModelUsage

    @property
    def metrics(self) -> dict:
        return {"data_source": self.source, "classes": self.classes, **self.sizes, "over_seeds": self.seeds.over_seeds}

    def save(self, *, models: Path, metrics: Path, curves: Path) -> None:
        """Each seed's checkpoint (models/seed<N>.pt), the metrics and the mean training curves."""
        with atomic_dir(models) as tmp:
            for seed, model in self.seeds.models.items():
                save_checkpoint(tmp / f"seed{seed}.pt", model, classes=self.classes, usage=self.usage.as_dict())
        write_csv(curves, pd.DataFrame(self.seeds.curves))
        write_json(metrics, self.metrics)

    def figures(self) -> dict:
        return figures.curves(self.seeds.curves, "background classifier (mean over seeds)")


def save_skipped(why: str, *, models: Path, metrics: Path, curves: Path) -> None:
    """No shortcut class, so no classifier: an empty models folder, the reason as the metrics, a
    curves CSV with its header only."""
    with atomic_dir(models):
        pass
    write_csv(curves, pd.DataFrame(columns=["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "runs"]))
    write_json(metrics, {"skipped": why})


def train_background_classifiers(cfg: ObjectsNet, seeds: list[int], size: int, backgrounds: ImageSet, run,
                                 pair: list[str]) -> BackgroundClassifiers:  # fmt: skip
    """Fit the classifier (`cfg`: params.yaml's background_classifier) of every seed on the patches
    (`size` px) of `pair` (the shortcut class and the contrast class: the find_shortcut stage's
    decision), each fit and model logged to `run` (the stage's MLflow run)."""
    classes = list(pair)
    patches = backgrounds.splits["patches"]
    keep = patches.index.label.isin(classes).to_numpy()
    labels = (patches.index.label[keep] == classes[1]).astype(int).to_numpy()  # 0: the shortcut class's
    data = TensorData.from_numpy(patches.images[keep], labels)
    usage = ModelUsage("objects", classes=[f"background {c}" for c in classes], input_size=size,
                       strategy="none")  # fmt: skip
    sizes = {}

    def one_seed(seed: int) -> SeedResult:
        train_idx, val_idx = stratified_split(labels, cfg.val_fraction, seed, classes)
        sizes.update(train_patches=len(train_idx), val_patches=len(val_idx))
        torch.manual_seed(seed)
        model = ObjectsCNN(2, cfg.hidden, size)
        train, val = data.subset(train_idx), data.subset(val_idx)
        name = f"seed{seed}"
        result = fit(model, train, val, cfg, seed=seed, device=device(), name=name, on_epoch=run.epoch_logger(name))
        summary = result.summary()
        log_model(run, model, name, usage=usage, tags={"seed": seed},
                  metrics={k: summary[k] for k in ("val_accuracy", "val_loss")})  # fmt: skip
        return SeedResult(summary, model, result.history)

    per_seed = for_each_seed(seeds, one_seed)
    register_best(run, "cnnlab-objects-background",
                  {f"seed{k}": (s["val_accuracy"], {"seed": k}) for k, s in per_seed.summaries.items()})  # fmt: skip
    out = BackgroundClassifiers(backgrounds.source, classes, per_seed, sizes, usage)
    log_means(run, out.metrics["over_seeds"])
    return out
