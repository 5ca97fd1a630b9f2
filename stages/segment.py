"""Stage segment: a GrabCut foreground mask, from its box alone, for every crop of every split
(train, test, paired): what the `segment` and `mixed_rand` cures use, alike for every class. A
degenerate GrabCut mask (under 5% or over 95% of its crop) gives way to the crop's ring seeds,
then to the box's ellipse; the metrics say how often, per split."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import numpy as np

from cnnlab import figures
from cnnlab.data.arrays import load_images
from cnnlab.data.objects import read_objects
from cnnlab.data.segment import SOURCES, segment_split
from cnnlab.io import atomic_dir, save_array, write_json
from cnnlab.metrics import mask_quality
from cnnlab.stage import run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    ds = read_objects(args.root)
    crops = load_images(args.crops)
    s, settings = p.segment, p.segment_settings()
    inputs = {"objects": args.root, "crops": args.crops}
    with stage_run("segment", s.flat("segment."), data_source=crops.source, inputs=inputs) as run:
        metrics = {"data_source": crops.source, "method": "GrabCut initialised with the box (no training, no "
                   "labels); degenerate masks: the ring seeds, then the box's ellipse"}  # fmt: skip
        masks = {}
        with atomic_dir(args.out) as tmp:
            for name, split in crops.splits.items():
                masks[name], which = segment_split(ds, name, p.crop.size, **settings)
                save_array(tmp / f"{name}_masks.npy", masks[name])
                has = split.index.has_mask.to_numpy()
                truth = split.masks[has] if has.any() else None
                scored = masks[name][has] if has.any() else masks[name]
                shares = {f"from_{k}": float(np.mean(which == i)) for i, k in enumerate(SOURCES)}
                metrics[name] = {"crops": len(has), **mask_quality(scored, truth), **shares}
        run.log_metrics(metrics)
        write_figures(figures.segment_examples(crops.splits["train"], masks["train"]), args.figures, run)
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "root", "crops", "figures", doc=__doc__, out="GrabCut masks of every split, <split>_masks.npy",
              metrics="metrics JSON: mask quality per split")  # fmt: skip
