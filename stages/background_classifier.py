"""Stage background_classifier: train the report's first CNN to tell the shortcut class's
background (label 0) from the contrast class's background (label 1), on crop-sized patches,
once per seed (objects.seeds): each seed has its own split and initial weights."""

import json

import pandas as pd

from cnnlab.config import to_flat_dict
from cnnlab.io import atomic_dir, load_array, write_csv, write_json
from cnnlab.metrics import mean_curves, over_seeds
from cnnlab.models import ObjectsCNN
from cnnlab.stage import device, run_stage
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.train.loop import TensorData
from cnnlab.train.split import stratified_split
from cnnlab.train.tracked import fit_tracked


def main(p, args):
    import torch

    cfg = p.background_classifier
    info = json.loads((args.backgrounds / "dataset.json").read_text())
    index = pd.read_csv(args.backgrounds / "patches.csv")
    names = index.label.map(lambda k: info["classes"][k])
    keep = names.isin(p.backgrounds.classes).to_numpy()
    labels = (names[keep] == p.backgrounds.classes[1]).astype(int).to_numpy()  # 0 = shortcut class's background
    data = TensorData.from_numpy(load_array(args.backgrounds / "patches.npy")[keep], labels)
    seeds = p.objects.seed_list(p.seed)
    params = {
        "seeds": ",".join(map(str, seeds)),
        "crop.size": p.crop.size,
        **to_flat_dict(cfg, "background_classifier."),
    }
    with stage_run("background_classifier", params, data_source=info["source"]) as run:
        per_seed, histories, models = {}, [], {}
        for seed in seeds:
            train_idx, val_idx = stratified_split(labels, cfg.val_fraction, seed)
            torch.manual_seed(seed)
            model = ObjectsCNN(2, cfg.hidden, p.crop.size)
            result = fit_tracked(
                run, f"seed{seed}", model, data.subset(train_idx), data.subset(val_idx), cfg, seed=seed,
                device=device(), log_model=seed == seeds[0],
            )  # fmt: skip
            per_seed[seed] = result.summary()
            histories.append(result.history)
            models[seed] = model
        metrics = {
            "data_source": info["source"],
            "classes": list(p.backgrounds.classes),
            "train_patches": len(train_idx),
            "val_patches": len(val_idx),
            "over_seeds": over_seeds(per_seed),
        }
        run.log_metrics({k: v["mean"] for k, v in metrics["over_seeds"].items()}, prefix="mean.")
        with atomic_dir(args.out) as tmp:
            for seed, model in models.items():
                save_checkpoint(tmp / f"seed{seed}.pt", model, classes=list(p.backgrounds.classes))
        write_csv(args.curves, pd.DataFrame(mean_curves(histories)))
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "backgrounds", "out", "metrics", "curves", doc=__doc__)
