"""Stage segment: a GrabCut foreground mask, from its box alone, for every crop of every split
(train, test, paired): what the `segment` and `mixed_rand` cures use, alike for every class."""

import json

import numpy as np

from cnnlab.config import to_flat_dict
from cnnlab.data.objects import read_objects
from cnnlab.data.segment import segment_split
from cnnlab.data.sets import load_crops
from cnnlab.io import atomic_dir, save_array, write_json
from cnnlab.metrics import mask_quality
from cnnlab.stage import run_stage
from cnnlab.tracking import stage_run
from cnnlab.viz.plots import mask_examples


def main(p, args):
    ds = read_objects(args.root)
    crops = load_crops(args.crops)
    s = p.segment
    source = json.loads((args.crops / "dataset.json").read_text())["source"]
    with stage_run("segment", to_flat_dict(s, "segment."), data_source=source) as run:
        metrics = {"data_source": source, "method": "GrabCut initialised with the box (no training, no labels)"}
        masks = {}
        with atomic_dir(args.out) as tmp:
            for split, crop_set in crops.items():
                masks[split] = segment_split(
                    ds, split, p.crop.size, iterations=s.iterations, max_side=s.max_side, margin=s.margin
                )
                save_array(tmp / f"{split}_masks.npy", masks[split])
                has = crop_set.index.has_mask.to_numpy()
                truth = crop_set.masks[has] if has.any() else None
                metrics[split] = {
                    "crops": len(has),
                    **mask_quality(masks[split][has] if has.any() else masks[split], truth),
                }
        run.log_metrics(metrics)
        train = crops["train"]
        show = np.linspace(0, len(train.index) - 1, min(6, len(train.index))).astype(int)
        truth = train.masks[show] if train.index.has_mask.to_numpy()[show].all() else None
        run.log_figure(
            mask_examples(
                train.images[show], masks["train"][show].astype(np.float32), masks["train"][show], truth, "GrabCut mask"
            ),
            "segments.png",
        )
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "root", "crops", "out", "metrics", doc=__doc__)
