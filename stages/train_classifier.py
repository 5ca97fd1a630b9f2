"""Stage train_classifier: the report's second CNN (8 classes), trained for every cure strategy
(objects.strategies) and every seed (objects.seeds) with the same settings. One seed gives every
strategy the same train/val split and the same initial weights, so strategies compare in pairs.

The data are read once; each (strategy, seed) checkpoints every epoch and an interrupted run
resumes where it stopped. Runs under torchrun too (README: "Scale out"): `launcher` in params.yaml."""

import json

import numpy as np
import pandas as pd
import torch

from cnnlab.config import to_flat_dict
from cnnlab.data.sets import class_indices, gradcam_crops, load_chain, load_crops
from cnnlab.data.strategies import train_images, unavailable
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.metrics import mean_curves, over_seeds
from cnnlab.models import ObjectsCNN
from cnnlab.stage import device, run_stage
from cnnlab.tracking import stage_run
from cnnlab.train import distributed
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.train.loop import TensorData, fingerprint
from cnnlab.train.split import stratified_split
from cnnlab.train.tracked import fit_tracked


def main(p, args):
    cfg = p.classifier_train()
    info = json.loads((args.crops / "dataset.json").read_text())
    classes = info["classes"]
    crops = load_crops(args.crops)
    chain = load_chain(crops, args.segments, args.backgrounds)
    labels = class_indices(crops["train"].index.label, classes)
    seeds = p.objects.seed_list(p.seed)
    splits = {seed: stratified_split(labels, cfg.val_fraction, seed) for seed in seeds}
    params = {
        "seeds": ",".join(map(str, seeds)),
        "strategies": ",".join(p.objects.strategies),
        "crop.size": p.crop.size,
        "shortcut_class": p.backgrounds.classes[0],
        **to_flat_dict(cfg, "classifier."),
    }
    with stage_run("train_classifier", params, data_source=info["source"]) as run:
        metrics = {"data_source": info["source"], "lr": cfg.lr, "seeds": seeds, "strategies": {}}
        curves, weights, finished = {}, {}, []
        for strategy in p.objects.strategies:
            why = unavailable(strategy, chain)
            if why:
                print(f"note: strategy {strategy!r} skipped: {why}")
                metrics["strategies"][strategy] = {"skipped": why}
                continue
            per_seed, histories = {}, []
            for seed in seeds:
                gradcam = gradcam_crops(args.masked, seed, crops["train"]) if strategy == "report" else None
                data = TensorData.from_numpy(train_images(strategy, chain, seed, gradcam), labels)
                train_idx, val_idx = splits[seed]
                train, val = data.subset(train_idx), data.subset(val_idx)
                torch.manual_seed(seed)  # the same initial weights for every strategy of a seed
                model = ObjectsCNN(len(classes), cfg.hidden, p.crop.size)
                name = f"{strategy}-seed{seed}"
                # an interrupted run resumes from its last epoch if params, seed and data are the same
                settings = {"model": name, "classes": classes, **params}
                checkpoint = args.checkpoints / f"{name}.pt"
                result = fit_tracked(
                    run, name, model, train, val, cfg, seed=seed, device=device(), checkpoint=checkpoint,
                    fingerprint=fingerprint(settings, train, val), log_model=seed == seeds[0],
                )  # fmt: skip
                per_seed[seed] = result.summary()
                histories.append(result.history)
                weights[(strategy, seed)] = model
                finished.append(checkpoint)
            metrics["strategies"][strategy] = over_seeds(per_seed)
            curves[strategy] = pd.DataFrame(mean_curves(histories))
        if distributed.world_size() > 1:
            metrics["processes"] = distributed.world_size()
        if not distributed.is_main():  # under torchrun, rank 0 writes
            return
        with atomic_dir(args.out) as tmp:
            for (strategy, seed), model in weights.items():
                save_checkpoint(tmp / strategy / f"seed{seed}.pt", model, classes=classes)
            split = pd.DataFrame({"path": crops["train"].index.path})
            for seed, (_, val_idx) in splits.items():
                split[f"seed{seed}"] = np.where(np.isin(np.arange(len(split)), val_idx), "val", "train")
            write_csv(tmp / "splits.csv", split)
        run.log_metrics(
            {s: {k: v["mean"] for k, v in m.items() if isinstance(v, dict)} for s, m in metrics["strategies"].items()},
            prefix="mean.",
        )
        if "processes" in metrics:
            run.log_metrics({"processes": metrics["processes"]})
        with atomic_dir(args.curves) as tmp:
            for strategy, frame in curves.items():
                write_csv(tmp / f"{strategy}.csv", frame)
        write_json(args.metrics, metrics)
    for checkpoint in finished:  # finished: nothing to resume
        checkpoint.unlink(missing_ok=True)


if __name__ == "__main__":
    run_stage(
        main, "crops", "segments", "backgrounds", "masked", "out", "checkpoints", "metrics", "curves", doc=__doc__
    )
