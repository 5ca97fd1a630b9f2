"""Stage train_classifier: the report's second CNN (8 classes), trained twice with the same seed
and settings: on the crops as they are (baseline) and with the shortcut class masked.

Runs under torchrun too (README: "Scale out"): `launcher` in params.yaml."""

import json

import pandas as pd
import torch

from cnnlab.config import to_flat_dict
from cnnlab.data.sets import baseline_and_masked
from cnnlab.data.store import CropSet
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.models import ObjectsCNN
from cnnlab.stage import device, run_stage
from cnnlab.tracking import stage_run
from cnnlab.train import distributed
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.train.loop import fingerprint
from cnnlab.train.split import stratified_split
from cnnlab.train.tracked import fit_tracked

MODELS = ("baseline", "masked")


def main(p, args):
    cfg = p.classifier_train()
    info = json.loads((args.crops / "dataset.json").read_text())
    classes = info["classes"]
    crops = CropSet.load(args.crops, "train")
    sets = dict(zip(MODELS, baseline_and_masked(crops, args.masked, classes)))
    train_idx, val_idx = stratified_split(sets["baseline"].labels.numpy(), cfg.val_fraction, p.seed)
    params = {
        "seed": p.seed,
        "crop.size": p.crop.size,
        "shortcut_class": p.backgrounds.classes[0],
        **to_flat_dict(cfg, "classifier."),
    }
    with stage_run("train_classifier", params, data_source=info["source"]) as run:
        metrics = {"data_source": info["source"], "lr": cfg.lr}
        curves, weights = {}, {}
        for name in MODELS:
            torch.manual_seed(p.seed)  # same initial weights for both models
            model = ObjectsCNN(len(classes), cfg.hidden, p.crop.size)
            data = sets[name]
            train, val = data.subset(train_idx), data.subset(val_idx)
            # an interrupted run resumes from its last epoch if params, seed and data are the same
            settings = {"model": name, "classes": classes, **params}
            result = fit_tracked(
                run,
                name,
                model,
                train,
                val,
                cfg,
                seed=p.seed,
                device=device(),
                checkpoint=args.checkpoints / f"{name}.pt",
                fingerprint=fingerprint(settings, train, val),
            )
            metrics[name] = result.summary()
            curves[name] = pd.DataFrame(result.history)
            weights[name] = model
        if distributed.world_size() > 1:
            metrics["processes"] = distributed.world_size()
        if not distributed.is_main():  # under torchrun, rank 0 writes
            return
        with atomic_dir(args.out) as tmp:
            for name, model in weights.items():
                save_checkpoint(tmp / f"{name}.pt", model, classes=classes)
            split = pd.DataFrame({"path": crops.index.path, "subset": "train"})
            split.loc[val_idx, "subset"] = "val"
            write_csv(tmp / "split.csv", split)
        run.log_metrics(metrics)
        for name, frame in curves.items():
            write_csv(args.curves / f"{name}.csv", frame)
        write_json(args.metrics, metrics)
    for name in MODELS:  # finished: nothing to resume
        (args.checkpoints / f"{name}.pt").unlink(missing_ok=True)


if __name__ == "__main__":
    run_stage(main, "crops", "masked", "out", "checkpoints", "metrics", "curves", doc=__doc__)
