"""Stage gradcam_mask: Grad-CAM of each seed's background classifier ("not shortcut-class
background") on every crop of the shortcut class; pixels below the threshold are set to black.

The threshold is chosen per seed on validation data only: with ground-truth masks, the candidate
with the best mask IoU on the shortcut class's crops of that seed's validation split (the split
train_classifier holds out); without them, `gradcam.threshold`. Test crops are never read."""

from cnnlab.warm import handoff

handoff()  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import numpy as np

from cnnlab import figures
from cnnlab.attribution.masking import mask_shortcut_class
from cnnlab.data.arrays import ImageSet, Split, load_images, save_images
from cnnlab.data.split import stratified_split
from cnnlab.io import atomic_dir, save_array, write_json
from cnnlab.metrics import over_seeds
from cnnlab.stage import device, run_stage, write_figures
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import load_model


def main(p, args):
    crops = load_images(args.crops, ["train"])
    train, shortcut = crops.splits["train"], p.backgrounds.classes[0]
    labels = train.labels(crops.classes)
    rows = np.flatnonzero(train.index.label.to_numpy() == shortcut)
    shortcut_crops = train.subset(rows)
    seeds = p.objects.seed_list(p.seed)
    params = {"gradcam.candidates": list(p.gradcam.candidates), "gradcam.threshold": p.gradcam.threshold,
              "shortcut_class": shortcut}  # fmt: skip
    inputs = {"crops": args.crops, "background_classifier": args.model}
    with stage_run("gradcam_mask", params, data_source=crops.source, inputs=inputs) as run:
        per_seed, shown = {}, {}
        with atomic_dir(args.out) as tmp:
            for seed in seeds:
                _, val_idx = stratified_split(labels, p.classifier.val_fraction, seed)  # train_classifier's split
                model, _ = load_model(args.model / f"seed{seed}.pt", device())
                where = f"class {shortcut} (seed {seed} split)"
                out, per_seed[seed] = mask_shortcut_class(model, shortcut_crops, np.isin(rows, val_idx), p.gradcam,
                                                          device(), where)  # fmt: skip
                index = shortcut_crops.index[["id", "label"]].assign(has_mask=True)
                masked = Split(out.images.numpy(), index, out.masks.numpy())
                save_images(ImageSet("Grad-CAM masked crops", crops.source, crops.classes, {"shortcut": masked}),
                            tmp / f"seed{seed}")  # fmt: skip
                save_array(tmp / f"seed{seed}" / "heat.npy", out.heat.numpy().astype(np.float16))
                shown = shown or figures.gradcam_examples(shortcut_crops, out.heat.numpy(), out.masks.numpy())
        metrics = {
            "data_source": crops.source,
            "shortcut_class": shortcut,
            "crops": len(rows),
            "over_seeds": over_seeds(per_seed),
            "per_seed": {str(seed): m for seed, m in per_seed.items()},
        }
        run.log_metrics({k: v["mean"] for k, v in metrics["over_seeds"].items()}, prefix="mean/")
        write_figures(shown, args.figures, run)
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "crops", "model", "out", "metrics", "figures", doc=__doc__)
