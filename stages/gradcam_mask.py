"""Stage gradcam_mask: Grad-CAM of each seed's background classifier ("not shortcut-class
background") on every crop of the shortcut class; pixels below the threshold are set to black.

The threshold is chosen per seed on validation data only: with ground-truth masks, the candidate
with the best mask IoU on the shortcut class's crops of that seed's validation split (the split
train_classifier holds out); without them, `gradcam.threshold`. Test crops are never read."""

import json

import numpy as np
import torch

from cnnlab.attribution.masking import choose_threshold, mask_backgrounds
from cnnlab.data.sets import class_indices
from cnnlab.data.store import CropSet
from cnnlab.io import atomic_dir, save_array, write_csv, write_json
from cnnlab.metrics import mask_quality, over_seeds
from cnnlab.stage import device, run_stage
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import load_model
from cnnlab.train.split import stratified_split
from cnnlab.viz.plots import mask_examples


def select_and_mask(p, crops: CropSet, classes: list[str], model_dir, seed: int):
    """One seed's masks: (MaskedCrops at the chosen threshold, rows, metrics). Reads train crops only."""
    shortcut = p.backgrounds.classes[0]
    labels = class_indices(crops.index.label, classes)
    _, val_idx = stratified_split(labels, p.classifier.val_fraction, seed)
    rows = np.flatnonzero(crops.index.label.to_numpy() == shortcut)
    is_val = np.isin(rows, val_idx)
    has_truth = crops.index.has_mask.to_numpy()[rows]
    model, _ = load_model(model_dir / f"seed{seed}.pt", device())
    images = torch.from_numpy(crops.images[rows])  # (N, 3, S, S) uint8
    out = mask_backgrounds(model, images, p.gradcam.threshold, batch_size=p.gradcam.batch_size, device=device())
    heat = out.heat.numpy()
    chosen_on = is_val & has_truth
    if chosen_on.any():
        threshold, scores = choose_threshold(heat[chosen_on], crops.masks[rows][chosen_on], p.gradcam.candidates)
        how = f"best mask IoU on the {int(chosen_on.sum())} validation crops of class {shortcut} (seed {seed} split)"
    else:
        threshold, scores = p.gradcam.threshold, {}
        how = "params key gradcam.threshold (no ground-truth masks on validation crops to choose with)"
    if threshold != p.gradcam.threshold:
        out = mask_backgrounds(model, images, threshold, batch_size=p.gradcam.batch_size, device=device())
    metrics = {"threshold": threshold, "threshold_chosen_by": how, "validation_iou_by_threshold": scores}
    metrics |= {k: v for k, v in out.metrics.items() if k != "mask_iou"}
    held_out = ~is_val & has_truth  # IoU on crops the threshold was not chosen on
    metrics["mask_iou"] = (
        mask_quality(out.masks.numpy()[held_out], crops.masks[rows][held_out])["mask_iou"] if held_out.any() else None
    )
    return out, rows, metrics


def main(p, args):
    info = json.loads((args.crops / "dataset.json").read_text())
    crops = CropSet.load(args.crops, "train")
    seeds = p.objects.seed_list(p.seed)
    params = {"gradcam.candidates": list(p.gradcam.candidates), "gradcam.threshold": p.gradcam.threshold}
    with stage_run(
        "gradcam_mask", {**params, "shortcut_class": p.backgrounds.classes[0]}, data_source=info["source"]
    ) as run:
        per_seed, details = {}, {}
        with atomic_dir(args.out) as tmp:
            for seed in seeds:
                out, rows, m = select_and_mask(p, crops, info["classes"], args.model, seed)
                per_seed[seed], details[str(seed)] = m, m
                folder = tmp / f"seed{seed}"
                save_array(folder / "masked_images.npy", out.images.numpy())
                save_array(folder / "masks.npy", out.masks.numpy())
                save_array(folder / "heat.npy", out.heat.numpy().astype(np.float16))
                write_csv(folder / "index.csv", crops.index.iloc[rows][["path", "label"]])
                if seed == seeds[0]:
                    show = np.linspace(0, len(rows) - 1, min(6, len(rows))).astype(int)
                    truth = crops.masks[rows][show] if crops.index.has_mask.to_numpy()[rows][show].all() else None
                    figure = mask_examples(
                        crops.images[rows][show], out.heat[show].numpy(), out.masks[show].numpy(), truth
                    )
                    run.log_figure(figure, "gradcam_masks.png")
        metrics = {
            "data_source": info["source"],
            "shortcut_class": p.backgrounds.classes[0],
            "crops": len(rows),
            "over_seeds": over_seeds(per_seed),
            "per_seed": details,
        }
        run.log_metrics({k: v["mean"] for k, v in metrics["over_seeds"].items()}, prefix="mean.")
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "crops", "model", "out", "metrics", doc=__doc__)
