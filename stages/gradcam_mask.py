"""Stage gradcam_mask: Grad-CAM of the background classifier's "not shortcut-class background"
output on every crop of the shortcut class; pixels below the threshold are set to black."""

import json

import numpy as np
import torch

from cnnlab.attribution.masking import mask_backgrounds
from cnnlab.data.store import CropSet
from cnnlab.io import atomic_dir, save_array, write_csv, write_json
from cnnlab.stage import device, run_stage
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import load_model
from cnnlab.viz.plots import mask_examples


def main(p, args):
    shortcut = p.backgrounds.classes[0]
    source = json.loads((args.crops / "dataset.json").read_text())["source"]
    crops = CropSet.load(args.crops, "train")
    rows = np.flatnonzero(crops.index.label.to_numpy() == shortcut)
    has_truth = crops.index.has_mask.to_numpy()[rows]
    images = torch.from_numpy(crops.images[rows])  # (N, 3, S, S) uint8
    model, _ = load_model(args.model / "model.pt", device())
    params = {"gradcam.threshold": p.gradcam.threshold, "gradcam.batch_size": p.gradcam.batch_size}
    with stage_run("gradcam_mask", {**params, "shortcut_class": shortcut}, data_source=source) as run:
        out = mask_backgrounds(
            model, images, p.gradcam.threshold, batch_size=p.gradcam.batch_size, device=device(),
            truth=crops.masks[rows], has_truth=has_truth,
        )  # fmt: skip
        metrics = {
            "data_source": source,
            "shortcut_class": shortcut,
            "crops": len(rows),
            "threshold": p.gradcam.threshold,
        }
        metrics |= out.metrics
        run.log_metrics(metrics)
        show = np.linspace(0, len(rows) - 1, min(6, len(rows))).astype(int)
        truth = crops.masks[rows][show] if has_truth[show].all() else None
        figure = mask_examples(images[show].numpy(), out.heat[show].numpy(), out.masks[show].numpy(), truth)
        run.log_figure(figure, "gradcam_masks.png")
        with atomic_dir(args.out) as tmp:
            save_array(tmp / "masked_images.npy", out.images.numpy())
            save_array(tmp / "masks.npy", out.masks.numpy())
            save_array(tmp / "heat.npy", out.heat.numpy().astype(np.float16))
            write_csv(tmp / "index.csv", crops.index.iloc[rows][["path", "label"]])
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "crops", "model", "out", "metrics", doc=__doc__)
