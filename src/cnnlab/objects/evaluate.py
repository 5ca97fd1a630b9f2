"""The chain's evaluation: every strategy's classifiers (one per seed) on their validation split
(splits.csv), the test set and the paired test images; the comparison over seeds (mean, sd, per
seed) with paired differences against the baseline, the test predictions, the figures of the test
set, and one MLflow run per strategy beside the stage's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cnnlab import figures, figures_gradcam
from cnnlab.data.arrays import ImageSet, load_images
from cnnlab.data.sets import gradcam_crops
from cnnlab.data.split import read_split
from cnnlab.data.strategies import BASELINE, MASK_SOURCE, ChainData, eval_images, needs_gradcam, train_images
from cnnlab.io import atomic_dir, save_array, write_csv, write_json
from cnnlab.metrics import mask_quality
from cnnlab.objects.seeds import SeedResult, for_each_seed
from cnnlab.serving import weights_digest
from cnnlab.tensors import TensorData, predict
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import load_model
from cnnlab.train.distributed import device
from cnnlab.train.scoring import comparison, comparison_table, score_classifier


def tracked_params(seeds: list[int], shortcut: str | None) -> dict:
    """The settings the stage's MLflow run records: the seeds (`seed`, `objects.seeds`: all that the
    step reads of params.yaml) and `shortcut`, the find_shortcut stage's class."""
    return {"seeds": ",".join(map(str, seeds)), "shortcut_class": shortcut or "none"}


def paired_rows(crops: ImageSet) -> np.ndarray | None:
    """The test row of each paired image (same file name), or None without labelled pairs."""
    if "paired" not in crops.splits or not crops.splits["test"].labelled:
        return None
    position = {name.split("/", 1)[1]: i for i, name in enumerate(crops.splits["test"].index.id)}
    return np.array([position[name.split("/", 1)[1]] for name in crops.splits["paired"].index.id], np.int64)


def mask_stats(chain: ChainData, strategy: str, seed: int) -> dict:
    """A masking strategy's masks beside its accuracy: {train,test}_mask_degenerate (the share of
    masks keeping under 5% or over 95% of their crop) and, where the folder has ground truth,
    {train,test}_mask_iou."""
    if strategy not in MASK_SOURCE:
        return {}
    out = {}
    for split in ("train", "test"):
        q = mask_quality(chain.masks(strategy, split, seed), None if chain.truth is None else chain.truth[split])
        out[f"{split}_mask_degenerate"] = q["degenerate_fraction"]
        if q["mask_iou"] is not None:
            out[f"{split}_mask_iou"] = q["mask_iou"]
    return out


@dataclass
class Evaluation:
    """The comparison (`metrics`), each (strategy, seed)'s test predictions, and, for the figures,
    the first seed's model, test view and logits of each strategy."""

    crops: ImageSet
    chain: ChainData
    masked: Path  # the gradcam_mask stage's crops
    metrics: dict
    predictions: dict[tuple[str, int], pd.DataFrame] = field(default_factory=dict)
    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    views: dict[str, np.ndarray] = field(default_factory=dict)
    digests: dict[tuple[str, int], str] = field(default_factory=dict)  # each model's weights (its logged model's tag)

    @property
    def recommended(self) -> str:
        """The cure the run recommends (chosen on validation: cnnlab.train.scoring.recommend)."""
        return self.metrics["comparison"].get("recommended", next(iter(self.models)))

    @cached_property
    def logits(self) -> dict[str, torch.Tensor]:
        return {name: predict(model, torch.from_numpy(self.views[name]), device())
                for name, model in self.models.items()}  # fmt: skip

    @cached_property
    def mask_sources(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The mask-source figure and its arrays (cnnlab.figures.mask_source_examples), first seed."""
        seed, train = self.metrics["seeds"][0], self.crops.splits["train"]
        rows, gradcam = None, None
        if self.metrics["shortcut_class"] is not None:  # (none: gradcam_mask masked nothing)
            rows, _ = gradcam_crops(self.masked, seed, train)
            gradcam = load_images(self.masked / f"seed{seed}").splits["shortcut"]
        return figures.mask_source_examples(train, self.chain, gradcam, rows, seed, self.crops.source)

    def save(self, *, out: Path, metrics: Path, table: Path, confusion: Path, run) -> None:
        """out/<strategy>/seed<N>_test_predictions.csv, out/test_predictions.csv (the recommended
        strategy's first seed: the deliverable), out/mask_sources/ (for `cnnlab mask-figure`), the
        metrics, the comparison table (logged to `run`, tagged with the recommended strategy) and
        one confusion CSV per strategy (DVC plots)."""
        test, classes = self.crops.splits["test"], self.crops.classes
        with atomic_dir(out) as tmp:
            for (strategy, seed), frame in self.predictions.items():
                write_csv(tmp / strategy / f"seed{seed}_test_predictions.csv", frame)
            write_csv(tmp / "test_predictions.csv", self.predictions[(self.recommended, self.metrics["seeds"][0])])
            for name, array in self.mask_sources[1].items():
                save_array(tmp / "mask_sources" / f"{name}.npy", array)
        with atomic_dir(confusion) as folder:  # `dvc plots diff` sets runs side by side
            for name, lg in self.logits.items() if test.labelled else ():
                write_csv(folder / f"{name}.csv", pd.DataFrame({"actual": [classes[k] for k in test.labels(classes)],
                                                                "predicted": [classes[k] for k in lg.argmax(1)]}))
        write_csv(table, comparison_table(self.metrics["strategies"]))
        write_json(metrics, self.metrics)
        run.set_tag("cnnlab.recommended", self.recommended)
        run.log_artifact(table)

    def figures(self) -> dict:
        test, seed = self.crops.splits["test"], self.metrics["seeds"][0]
        shown = figures.strategies(self.metrics)
        shown |= figures_gradcam.evaluation_figures(test, self.crops.classes, self.views, self.logits, self.models,
                                                    self.recommended, seed, device())  # fmt: skip
        return shown | self.mask_sources[0]


def evaluate_strategies(seeds: list[int], crops: ImageSet, chain: ChainData, *, splits: Path, masked: Path,
                        models: Path, trained: dict, background_patches: ImageSet,
                        shortcut_class: str | None) -> Evaluation:  # fmt: skip
    """Score every strategy that train_classifier trained (`trained`: its metrics' strategies;
    `models`: its models folder) on every seed of `seeds`; the comparison in `metrics["comparison"]`.
    `shortcut_class`: the find_shortcut stage's (None: the class-specific metrics are left out)."""
    classes, test, train = crops.classes, crops.splits["test"], crops.splits["train"]
    shortcut = None if shortcut_class is None else classes.index(shortcut_class)
    metrics = {"data_source": crops.source, "test_labelled": test.labelled, "shortcut_class": shortcut_class,
               "chance_rate": 1 / len(classes), "seeds": seeds,
               "sd": "sample standard deviation over seeds (n - 1)",
               "better_means": "paired difference over seeds (same split and initial weights): mean - sd > 0",
               "strategies": {}}  # fmt: skip
    out = Evaluation(crops, chain, masked, metrics)
    patches = background_patches.splits["patches"]
    context = {"test_labels": test.labels(classes) if test.labelled else None, "pairs": paired_rows(crops),
               "backgrounds": TensorData.from_numpy(patches.images, patches.labels(classes)),
               "train_labels": train.labels(classes), "shortcut": shortcut}  # fmt: skip
    for strategy, trained_m in trained.items():
        if "skipped" in trained_m:
            metrics["strategies"][strategy] = {"skipped": trained_m["skipped"]}
            continue

        def one_seed(seed: int) -> SeedResult:
            return _score(out, strategy, seed, splits=splits, models=models, **context)

        metrics["strategies"][strategy] = for_each_seed(seeds, one_seed).over_seeds
    metrics["comparison"] = comparison(metrics["strategies"])
    return out


def _score(out: Evaluation, strategy: str, seed: int, *, splits: Path, models: Path, test_labels, pairs,
           backgrounds: TensorData, train_labels, shortcut: int | None) -> SeedResult:  # fmt: skip
    """One (strategy, seed): its model on its validation rows, the test set as the strategy
    treats it, the paired images; its test predictions kept in `out`."""
    chain, crops = out.chain, out.crops
    view = np.ascontiguousarray(eval_images(strategy, chain, "test", seed))
    paired_view = None
    if pairs is not None:
        paired_view = torch.from_numpy(np.ascontiguousarray(eval_images(strategy, chain, "paired", seed)))
    gradcam = gradcam_crops(out.masked, seed, crops.splits["train"]) if needs_gradcam(strategy) else None
    data = TensorData.from_numpy(train_images(strategy, chain, seed, gradcam), train_labels)
    _, val_idx = read_split(splits, seed, crops.splits["train"].index.id)
    model, _ = load_model(models / strategy / f"seed{seed}.pt", device())
    m, pred = score_classifier(
        model, data.subset(val_idx), torch.from_numpy(view), test_labels, backgrounds, shortcut=shortcut,
        num_classes=len(crops.classes), device=device(), paired_images=paired_view, paired_rows=pairs,
    )  # fmt: skip
    labels = [crops.classes[i] for i in pred]
    out.predictions[(strategy, seed)] = pd.DataFrame({"path": crops.splits["test"].index.id, "label": labels})
    out.models.setdefault(strategy, model)
    out.views.setdefault(strategy, view)
    out.digests[(strategy, seed)] = weights_digest(model)
    return SeedResult({k: v for k, v in m.items() if k != "test_recall"} | mask_stats(chain, strategy, seed))


VERSION_TAGS = ("test_accuracy", "test_worst_class_recall", "shortcut_class_test_recall")  # on registered versions


def log_strategies(metrics: dict, digests: dict[tuple[str, int], str]) -> None:
    """One MLflow run per strategy: means, sd, per-seed values (step = seed), differences to the
    baseline; each seed's values also linked to that seed's logged model (found by `digests`, its
    weights' digest; train_classifier logged it) and its test metrics set as tags of the version
    registered from it, so MLflow's models view ranks the cures."""
    for name, agg in metrics["strategies"].items():
        params = {"strategy": name, "seeds": ",".join(map(str, metrics["seeds"])),
                  "shortcut_class": metrics["shortcut_class"] or "none"}  # fmt: skip
        with stage_run(f"evaluate/{name}", params, data_source=metrics["data_source"],
                       tags={"cnnlab.strategy": name}) as run:  # fmt: skip
            if "skipped" in agg:
                run.set_tag("cnnlab.skipped", agg["skipped"])
                continue
            run.log_metrics({k: v["mean"] for k, v in agg.items()})
            run.log_metrics({k: v["sd"] for k, v in agg.items()}, prefix="sd/")
            for seed in metrics["seeds"]:
                own = {k: v["per_seed"][str(seed)] for k, v in agg.items() if str(seed) in v["per_seed"]}
                run.log_epoch(own, seed, prefix="per_seed/")
                if (name, seed) in digests:
                    run.link_metrics(digests[(name, seed)], own, f"cnnlab-objects-{name}", VERSION_TAGS)
            diff = metrics["comparison"].get(f"{name}_minus_{BASELINE}", {})
            run.log_metrics({k: v["mean"] for k, v in diff.items()}, prefix=f"minus_{BASELINE}/")
            if name == metrics["comparison"].get("recommended"):
                run.set_tag("cnnlab.recommended", "true")
