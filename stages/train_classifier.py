"""Stage train_classifier: the report's second CNN (8 classes), trained for every cure strategy
(objects.strategies) and every seed (objects.seeds) with the same settings. One seed gives every
strategy the same train/val split and the same initial weights, so strategies compare in pairs.

The data are read once; each (strategy, seed) checkpoints every epoch and an interrupted run
resumes where it stopped. Runs under torchrun too (docs/reproducibility.md, "Scale out"):
`launcher` in params.yaml."""

from cnnlab.warm import handoff

handoff()  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import numpy as np
import pandas as pd
import torch

from cnnlab import figures
from cnnlab.data.arrays import load_images
from cnnlab.data.sets import gradcam_crops, load_chain
from cnnlab.data.split import stratified_split
from cnnlab.data.strategies import MASK_SOURCE, TEST_TIME_MASKS, train_images, unavailable
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.metrics import mean_curves, over_seeds
from cnnlab.models import ObjectsCNN
from cnnlab.stage import device, log_model, run_stage, write_figures
from cnnlab.tensors import TensorData
from cnnlab.tracking import stage_run
from cnnlab.train import distributed
from cnnlab.train.checkpoint import load_model, save_checkpoint
from cnnlab.train.loop import fingerprint, fit


def fit_one(p, args, run, data: TensorData, split, seed: int, name: str, settings: dict):
    """One (strategy, seed): the seed's split and initial weights (the same for every strategy),
    a fit that resumes from its checkpoint if params, seed and data are the same, logged to `run`."""
    train, val = data.subset(split[0]), data.subset(split[1])
    torch.manual_seed(seed)
    model = ObjectsCNN(len(settings["classes"]), p.classifier.hidden, p.crop.size)
    checkpoint = args.checkpoints / f"{name}.pt"
    result = fit(
        model, train, val, p.classifier, seed=seed, device=device(), checkpoint=checkpoint,
        fingerprint=fingerprint({"model": name, **settings}, train, val), name=name,
        on_epoch=run.epoch_logger(name.replace("-seed", "/seed")),
    )  # fmt: skip
    strategy = name.split("-seed")[0]
    masker = test_time_masker(args.maskers, strategy, seed)
    log_model(run, model, name, val.images, registered=f"cnnlab-objects-{strategy}",
              metadata=usage(p, strategy, settings["classes"]), tags={"strategy": strategy, "seed": seed},
              parts={"masker": masker} if masker else None)  # fmt: skip
    return model, result, checkpoint


def test_time_masker(maskers, strategy: str, seed: int):
    """The learned masker that masks a `strategy` model's test crops (segment_learned), or None."""
    if strategy in TEST_TIME_MASKS and MASK_SOURCE[strategy] == "learned":
        return load_model(maskers / f"seed{seed}.pt")[0]
    return None


def usage(p, strategy: str, classes: list[str]) -> dict:
    """What it takes to use a model of `strategy` on new images (cnnlab predict): crops of
    crop.size px, and the settings that mask them at test time: GrabCut's for `segment`, the
    learned masker's colour refinement for `segment_learned` (the masker itself goes with the model)."""
    learned = strategy in TEST_TIME_MASKS and MASK_SOURCE[strategy] == "learned"
    masker = p.masker.model_dump(include={"width", "colour_components", "colour_prior"})
    return {"kind": "objects", "classes": classes, "input_size": p.crop.size, "strategy": strategy,
            "segment": p.segment.model_dump() if strategy == "segment" else None,
            "masker": masker if learned else None}  # fmt: skip


def save_models(p, folder, maskers, weights: dict, splits: dict, train_ids, classes: list[str]) -> None:
    """Every (strategy, seed)'s model (with the masker of its test crops, if learned), and
    splits.csv: which rows each seed validated on."""
    with atomic_dir(folder) as tmp:
        for (strategy, seed), model in weights.items():
            checkpoint = tmp / strategy / f"seed{seed}.pt"
            extra = {}
            if masker := test_time_masker(maskers, strategy, seed):
                extra["masker"] = {"arch": dict(masker.arch), "model": masker.state_dict()}
            save_checkpoint(checkpoint, model, classes=classes, usage=usage(p, strategy, classes), **extra)
        split = pd.DataFrame({"id": train_ids})
        for seed, (_, val_idx) in splits.items():
            split[f"seed{seed}"] = np.where(np.isin(np.arange(len(split)), val_idx), "val", "train")
        write_csv(tmp / "splits.csv", split)


def main(p, args):
    crops = load_images(args.crops)
    seeds = p.objects.seed_list(p.seed)
    chain = load_chain(crops, args.segments, args.backgrounds, args.learned, seeds)
    train_crops = crops.splits["train"]
    labels = train_crops.labels(crops.classes)
    splits = {seed: stratified_split(labels, p.classifier.val_fraction, seed) for seed in seeds}
    params = {"seeds": ",".join(map(str, seeds)), "strategies": ",".join(p.objects.strategies),
              "crop.size": p.crop.size, "shortcut_class": p.backgrounds.classes[0], **p.classifier.flat("classifier.")}
    inputs = {"crops": args.crops, "segments": args.segments, "backgrounds": args.backgrounds, "masked": args.masked,
              "learned": args.learned, "maskers": args.maskers}  # fmt: skip
    with stage_run("train_classifier", params, data_source=crops.source, inputs=inputs,
                   system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        metrics = {"data_source": crops.source, "lr": p.classifier.lr, "seeds": seeds, "strategies": {}}
        curves, weights, finished = {}, {}, []
        for strategy in p.objects.strategies:
            if why := unavailable(strategy, chain):
                print(f"note: strategy {strategy!r} skipped: {why}")
                metrics["strategies"][strategy] = {"skipped": why}
                continue
            per_seed, histories = {}, []
            for seed in seeds:
                gradcam = gradcam_crops(args.masked, seed, train_crops) if strategy == "report" else None
                data = TensorData.from_numpy(train_images(strategy, chain, seed, gradcam), labels)
                settings = {"classes": crops.classes, **params}
                model, result, checkpoint = fit_one(p, args, run, data, splits[seed], seed, f"{strategy}-seed{seed}",
                                                    settings)  # fmt: skip
                per_seed[seed], weights[(strategy, seed)] = result.summary(), model
                histories.append(result.history)
                finished.append(checkpoint)
            metrics["strategies"][strategy] = over_seeds(per_seed)
            curves[strategy] = mean_curves(histories)
        if distributed.world_size() > 1:
            metrics["processes"] = distributed.world_size()
        if not distributed.is_main():  # under torchrun, rank 0 writes
            return
        save_models(p, args.out, args.maskers, weights, splits, train_crops.index.id, crops.classes)
        run.log_metrics({s: {k: v["mean"] for k, v in m.items() if isinstance(v, dict)}
                         for s, m in metrics["strategies"].items()}, prefix="mean/")  # fmt: skip
        if "processes" in metrics:
            run.log_metrics({"processes": metrics["processes"]})
        with atomic_dir(args.curves) as tmp:
            for strategy, rows in curves.items():
                write_csv(tmp / f"{strategy}.csv", pd.DataFrame(rows))
        shown = {}
        for strategy, rows in curves.items():
            shown |= figures.curves(rows, f"8-class CNN, {strategy} (mean over seeds)", f"curves_{strategy}.png")
        write_figures(shown, args.figures, run)
        write_json(args.metrics, metrics)
    for checkpoint in finished:  # finished: nothing to resume
        checkpoint.unlink(missing_ok=True)


if __name__ == "__main__":
    run_stage(main, "crops", "segments", "backgrounds", "masked", "learned", "maskers", "out", "checkpoints", "metrics",
              "curves", "figures", doc=__doc__)  # fmt: skip
