"""The chain's 8-class CNN (the report's second), trained for every cure strategy
(objects.strategies) and every seed (objects.seeds) with the same settings. One seed gives every
strategy the same train/val split (splits.csv) and the same initial weights, so strategies compare
in pairs. Each (strategy, seed) checkpoints every epoch and resumes where an interrupted run stopped;
under torchrun, the processes share each fit and rank 0 writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from cnnlab import figures
from cnnlab.cures import CURE
from cnnlab.data.arrays import ImageSet
from cnnlab.data.sets import gradcam_crops
from cnnlab.data.split import read_split
from cnnlab.data.strategies import ChainData, needs_gradcam, train_images, unavailable
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.models import ObjectsCNN
from cnnlab.objects.decision import Decision
from cnnlab.objects.seeds import SeedResult, for_each_seed
from cnnlab.serving import log_model, register_best
from cnnlab.tensors import TensorData
from cnnlab.train import distributed
from cnnlab.train.checkpoint import load_model, save_checkpoint
from cnnlab.train.loop import fingerprint, fit
from cnnlab.usage import MASKING_KEYS, ModelUsage

if TYPE_CHECKING:
    from cnnlab.params.schema import Crop, ObjectsNet, Params


@dataclass(frozen=True)
class Settings:
    """What the step reads of params.yaml (train_classifier's `params` in dvc.yaml): the seeds
    (`seed`, `objects.seeds`), the cures (`objects.strategies`), the crops (`crop`), the network and
    its training (`classifier`), and how a model masks new crops as the pipeline masked its test
    crops: GrabCut's settings with its fallback (`segment`, crop.context, masker.seed_bins and
    seed_margin) and the learned masker's masking (cnnlab.usage.MASKING_KEYS: crop.context and five
    keys of masker)."""

    seeds: list[int]
    strategies: list[str]
    crop: Crop
    classifier: ObjectsNet
    segment: dict
    masking: dict

    @classmethod
    def of(cls, p: Params) -> Settings:
        return cls(seeds=p.objects.seed_list(p.seed), strategies=list(p.objects.strategies), crop=p.crop,
                   classifier=p.classifier, segment=p.segment_settings(),
                   masking={"context": p.crop.context,
                            **p.masker.model_dump(include=set(MASKING_KEYS) - {"context"})})  # fmt: skip


def tracked_params(s: Settings, shortcut: str | None) -> dict:
    """The settings the stage's MLflow run records (and each fit's resume fingerprint holds);
    `shortcut`: the find_shortcut stage's shortcut class (None: none)."""
    return {"seeds": ",".join(map(str, s.seeds)), "strategies": ",".join(s.strategies), "crop.size": s.crop.size,
            "shortcut_class": shortcut or "none", **s.classifier.flat("classifier.")}  # fmt: skip


def test_time_masker(maskers: Path, strategy: str, seed: int):
    """The learned masker that masks a `strategy` model's test crops (segment_learned), or None."""
    if CURE[strategy].test_masks and CURE[strategy].masks == "learned":
        return load_model(maskers / f"seed{seed}.pt")[0]
    return None


def usage(s: Settings, strategy: str, classes: list[str]) -> ModelUsage:
    """What it takes to use a model of `strategy` on new images (cnnlab predict): crops of
    crop.size px, and the settings that mask them at test time: GrabCut's and its fallback's for
    `segment`, the learned masker's masking for `segment_learned` (cnnlab.train.masker.Masking and
    crop.context; the masker itself goes with the model)."""
    cure = CURE[strategy]
    learned = cure.test_masks and cure.masks == "learned"
    return ModelUsage("objects", classes=classes, input_size=s.crop.size, strategy=strategy,
                      segment=s.segment if cure.test_masks and cure.masks == "segments" else None,
                      masker=s.masking if learned else None)  # fmt: skip


@dataclass
class TrainedStrategies:
    """Every (strategy, seed)'s model, the metrics over seeds per strategy and the mean curves."""

    settings: Settings
    classes: list[str]
    maskers: Path
    metrics: dict
    models: dict[tuple[str, int], torch.nn.Module] = field(default_factory=dict)
    curves: dict[str, list[dict]] = field(default_factory=dict)
    finished: list[Path] = field(default_factory=list)  # per-epoch checkpoints: nothing to resume

    def save(self, *, models: Path, metrics: Path, curves: Path) -> None:
        """models/<strategy>/seed<N>.pt (with the masker of its test crops, if learned), the
        metrics, one curves CSV per strategy."""
        with atomic_dir(models) as tmp:
            for (strategy, seed), model in self.models.items():
                extra = {}
                if masker := test_time_masker(self.maskers, strategy, seed):
                    extra["masker"] = {"arch": dict(masker.arch), "model": masker.state_dict()}
                save_checkpoint(tmp / strategy / f"seed{seed}.pt", model, classes=self.classes,
                                usage=usage(self.settings, strategy, self.classes).as_dict(), **extra)  # fmt: skip
        with atomic_dir(curves) as tmp:
            for strategy, rows in self.curves.items():
                write_csv(tmp / f"{strategy}.csv", pd.DataFrame(rows))
        write_json(metrics, self.metrics)

    def figures(self) -> dict:
        shown = {}
        for strategy, rows in self.curves.items():
            shown |= figures.curves(rows, f"8-class CNN, {strategy} (mean over seeds)", f"curves_{strategy}.png")
        return shown

    def log(self, run) -> None:
        """The means over seeds of each strategy (and the number of processes) to `run`."""
        run.log_metrics({s: {k: v["mean"] for k, v in m.items() if isinstance(v, dict)}
                         for s, m in self.metrics["strategies"].items()}, prefix="mean/")  # fmt: skip
        if "processes" in self.metrics:
            run.log_metrics({"processes": self.metrics["processes"]})


def train_strategies(s: Settings, crops: ImageSet, chain: ChainData, *, splits: Path, masked: Path, maskers: Path,
                     checkpoints: Path, run, decision: Decision) -> TrainedStrategies:  # fmt: skip
    """Fit every available strategy on every seed; a strategy the data cannot serve (report
    without a shortcut class: `decision`, the find_shortcut stage's) is skipped with the reason in
    its metrics. `masked`: the gradcam_mask stage's crops; `maskers`: the masker stage's models;
    `checkpoints`: where each fit checkpoints every epoch."""
    seeds, train = s.seeds, crops.splits["train"]
    labels = train.labels(crops.classes)
    settings = {"classes": crops.classes, **tracked_params(s, decision.shortcut)}
    out = TrainedStrategies(s, crops.classes, maskers, {"data_source": crops.source, "lr": s.classifier.lr,
                                                        "seeds": seeds, "strategies": {}})  # fmt: skip
    for strategy in s.strategies:
        if why := unavailable(strategy, chain) or (decision.skipped("the report's cure") if needs_gradcam(strategy)
                                                   else None):  # fmt: skip
            print(f"note: strategy {strategy!r} skipped: {why}")
            out.metrics["strategies"][strategy] = {"skipped": why}
            continue

        def one_seed(seed: int) -> SeedResult:
            gradcam = gradcam_crops(masked, seed, train) if needs_gradcam(strategy) else None
            data = TensorData.from_numpy(train_images(strategy, chain, seed, gradcam), labels)
            split = read_split(splits, seed, train.index.id)
            model, result = fit_one(s, run, data, split, seed, strategy, settings, checkpoints, maskers)
            out.models[(strategy, seed)] = model
            out.finished.append(checkpoints / f"{strategy}-seed{seed}.pt")
            return SeedResult(result.summary(), history=result.history)

        per_seed = for_each_seed(seeds, one_seed)
        out.metrics["strategies"][strategy], out.curves[strategy] = per_seed.over_seeds, per_seed.curves
        register_best(run, f"cnnlab-objects-{strategy}", {f"{strategy}-seed{k}": (s["val_accuracy"], {
            "strategy": strategy, "seed": k}) for k, s in per_seed.summaries.items()})  # fmt: skip
    if distributed.world_size() > 1:
        out.metrics["processes"] = distributed.world_size()
    return out


def fit_one(s: Settings, run, data: TensorData, split, seed: int, strategy: str, settings: dict, checkpoints: Path,
            maskers: Path):  # fmt: skip
    """One (strategy, seed): the seed's split and initial weights (the same for every strategy),
    a fit that resumes from its checkpoint if params, seed and data are the same, logged to `run`."""
    name = f"{strategy}-seed{seed}"
    train, val = data.subset(split[0]), data.subset(split[1])
    torch.manual_seed(seed)
    model = ObjectsCNN(len(settings["classes"]), s.classifier.hidden, s.crop.size)
    result = fit(
        model, train, val, s.classifier, seed=seed, device=distributed.device(), checkpoint=checkpoints / f"{name}.pt",
        fingerprint=fingerprint({"model": name, **settings}, train, val), name=name,
        on_epoch=run.epoch_logger(name.replace("-seed", "/seed")),
    )  # fmt: skip
    masker = test_time_masker(maskers, strategy, seed)
    summary = result.summary()
    log_model(run, model, name, usage=usage(s, strategy, settings["classes"]),
              tags={"strategy": strategy, "seed": seed}, masker=masker,
              metrics={k: summary[k] for k in ("val_accuracy", "val_loss")})  # fmt: skip
    return model, result
