"""Stage gradcam_mask: Grad-CAM of the background classifier's "not shortcut-class background"
output on every crop of the shortcut class; pixels below the threshold are set to black."""

import json

import numpy as np
import torch

from cnnlab.attribution.gradcam import gradcam_masks
from cnnlab.data.store import CropSet
from cnnlab.io import atomic_dir, save_array, write_csv, write_json
from cnnlab.metrics import mask_quality
from cnnlab.stage import device, run_stage
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import load_model
from cnnlab.train.loop import predict, to_float
from cnnlab.viz.plots import mask_examples

NOT_SHORTCUT = 1  # background classifier output: 0 = shortcut-class background, 1 = the other


def main(p, args):
    shortcut = p.backgrounds.classes[0]
    source = json.loads((args.crops / "dataset.json").read_text())["source"]
    crops = CropSet.load(args.crops, "train")
    rows = np.flatnonzero(crops.index.label.to_numpy() == shortcut)
    images = torch.from_numpy(crops.images[rows])  # (N, 3, S, S) uint8
    model, _ = load_model(args.model / "model.pt", device())
    params = {
        "gradcam.threshold": p.gradcam.threshold,
        "gradcam.batch_size": p.gradcam.batch_size,
        "shortcut_class": shortcut,
    }
    with stage_run("gradcam_mask", params, data_source=source) as run:
        heat, masks = gradcam_masks(
            model, model.last_conv, to_float(images), NOT_SHORTCUT, p.gradcam.threshold, p.gradcam.batch_size, device()
        )
        empty = ~masks.flatten(1).any(1)  # no evidence anywhere: the whole crop goes black
        masked = images * masks[:, None]
        has_truth = crops.index.has_mask.to_numpy()[rows]
        quality = mask_quality(masks.numpy())
        if has_truth.any():  # IoU only over crops that have a ground-truth mask
            quality["mask_iou"] = mask_quality(masks.numpy()[has_truth], crops.masks[rows][has_truth])["mask_iou"]
        # Leakage check: how often the background classifier still sees the shortcut background.
        rate = lambda x: float((predict(model, x, device()).argmax(1) == 0).float().mean())  # noqa: E731
        metrics = {
            "data_source": source,
            "shortcut_class": shortcut,
            "crops": len(rows),
            "threshold": p.gradcam.threshold,
            **quality,
            "masks_with_truth": int(has_truth.sum()),
            "empty_maps": int(empty.sum()),
            "bg_classifier_shortcut_rate_before": rate(images),
            "bg_classifier_shortcut_rate_after": rate(masked),
        }
        run.log_metrics(metrics)
        show = np.linspace(0, len(rows) - 1, min(6, len(rows))).astype(int)
        truth = crops.masks[rows][show] if has_truth[show].all() else None
        run.log_figure(
            mask_examples(images[show].numpy(), heat[show].numpy(), masks[show].numpy(), truth), "gradcam_masks.png"
        )
        with atomic_dir(args.out) as tmp:
            save_array(tmp / "masked_images.npy", masked.numpy())
            save_array(tmp / "masks.npy", masks.numpy())
            save_array(tmp / "heat.npy", heat.numpy().astype(np.float16))
            write_csv(tmp / "index.csv", crops.index.iloc[rows][["path", "label"]])
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "crops", "model", "out", "metrics", doc=__doc__)
