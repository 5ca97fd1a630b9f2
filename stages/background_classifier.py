"""Stage background_classifier: train the report's first CNN to tell the shortcut class's
background (label 0) from the contrast class's background (label 1), on crop-sized patches,
once per seed (objects.seeds): each seed has its own split and initial weights."""

from cnnlab.warm import handoff

handoff()  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import pandas as pd
import torch

from cnnlab import figures
from cnnlab.data.arrays import load_images
from cnnlab.data.split import stratified_split
from cnnlab.io import atomic_dir, write_csv, write_json
from cnnlab.metrics import mean_curves, over_seeds
from cnnlab.models import ObjectsCNN
from cnnlab.stage import device, log_model, run_stage, write_figures
from cnnlab.tensors import TensorData
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.train.loop import fit


def main(p, args):
    cfg = p.background_classifier
    backgrounds = load_images(args.backgrounds)
    patches = backgrounds.splits["patches"]
    keep = patches.index.label.isin(p.backgrounds.classes).to_numpy()
    labels = (patches.index.label[keep] == p.backgrounds.classes[1]).astype(int).to_numpy()  # 0: shortcut class's
    data = TensorData.from_numpy(patches.images[keep], labels)
    seeds = p.objects.seed_list(p.seed)
    params = {"seeds": ",".join(map(str, seeds)), "crop.size": p.crop.size, **cfg.flat("background_classifier.")}
    # label 0: the shortcut class's background; cnnlab predict needs no more than this
    usage = {"kind": "objects", "classes": [f"background {c}" for c in p.backgrounds.classes],
             "input_size": p.crop.size, "strategy": "none"}  # fmt: skip
    inputs = {"backgrounds": args.backgrounds}
    with stage_run("background_classifier", params, data_source=backgrounds.source, inputs=inputs,
                   system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        per_seed, histories, models = {}, [], {}
        for seed in seeds:
            train_idx, val_idx = stratified_split(labels, cfg.val_fraction, seed)
            torch.manual_seed(seed)
            model = ObjectsCNN(2, cfg.hidden, p.crop.size)
            name = f"seed{seed}"
            train, val = data.subset(train_idx), data.subset(val_idx)
            result = fit(model, train, val, cfg, seed=seed, device=device(), name=name,
                         on_epoch=run.epoch_logger(name))  # fmt: skip
            log_model(run, model, name, val.images, registered="cnnlab-objects-background", metadata=usage,
                      tags={"seed": seed})  # fmt: skip
            per_seed[seed] = result.summary()
            histories.append(result.history)
            models[seed] = model
        metrics = {
            "data_source": backgrounds.source,
            "classes": list(p.backgrounds.classes),
            "train_patches": len(train_idx),
            "val_patches": len(val_idx),
            "over_seeds": over_seeds(per_seed),
        }
        run.log_metrics({k: v["mean"] for k, v in metrics["over_seeds"].items()}, prefix="mean/")
        with atomic_dir(args.out) as tmp:
            for seed, model in models.items():
                save_checkpoint(tmp / f"seed{seed}.pt", model, classes=list(p.backgrounds.classes), usage=usage)
        curves = mean_curves(histories)
        write_csv(args.curves, pd.DataFrame(curves))
        write_figures(figures.curves(curves, "background classifier (mean over seeds)"), args.figures, run)
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "backgrounds", "out", "metrics", "curves", "figures", doc=__doc__)
