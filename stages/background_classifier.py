"""Stage background_classifier: train the report's first CNN to tell the shortcut class's
background (label 0) from the contrast class's background (label 1), on crop-sized patches."""

import json

import pandas as pd

from cnnlab.config import to_flat_dict
from cnnlab.io import atomic_dir, load_array, write_csv, write_json
from cnnlab.models import ObjectsCNN
from cnnlab.stage import device, run_stage
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.train.loop import TensorData
from cnnlab.train.split import stratified_split
from cnnlab.train.tracked import fit_tracked


def main(p, args):
    cfg = p.background_classifier
    source = json.loads((args.backgrounds / "dataset.json").read_text())["source"]
    index = pd.read_csv(args.backgrounds / "patches.csv")
    data = TensorData.from_numpy(load_array(args.backgrounds / "patches.npy"), index.label.to_numpy())
    train_idx, val_idx = stratified_split(index.label, cfg.val_fraction, p.seed)
    params = {"seed": p.seed, "crop.size": p.crop.size, **to_flat_dict(cfg, "background_classifier.")}
    with stage_run("background_classifier", params, data_source=source) as run:
        model = ObjectsCNN(2, cfg.hidden, p.crop.size)
        result = fit_tracked(
            run, "background", model, data.subset(train_idx), data.subset(val_idx), cfg, seed=p.seed, device=device()
        )
        metrics = {"data_source": source, **result.summary()}
        metrics |= {"train_patches": len(train_idx), "val_patches": len(val_idx)}
        run.log_metrics(metrics)
        with atomic_dir(args.out) as tmp:
            save_checkpoint(tmp / "model.pt", model, classes=list(p.backgrounds.classes))
        write_csv(args.curves, pd.DataFrame(result.history))
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "backgrounds", "out", "metrics", "curves", doc=__doc__)
