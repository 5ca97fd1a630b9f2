"""Stage segment: a GrabCut foreground mask, from its box alone, for every crop of every split
(train, test, paired): what the `segment` and `mixed_rand` cures use, alike for every class."""

from cnnlab.warm import handoff

handoff()  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab import figures
from cnnlab.data.arrays import load_images
from cnnlab.data.objects import read_objects
from cnnlab.data.segment import segment_split
from cnnlab.io import atomic_dir, save_array, write_json
from cnnlab.metrics import mask_quality
from cnnlab.stage import run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    ds = read_objects(args.root)
    crops = load_images(args.crops)
    s = p.segment
    inputs = {"objects": args.root, "crops": args.crops}
    with stage_run("segment", s.flat("segment."), data_source=crops.source, inputs=inputs) as run:
        metrics = {"data_source": crops.source, "method": "GrabCut initialised with the box (no training, no labels)"}
        masks = {}
        with atomic_dir(args.out) as tmp:
            for name, split in crops.splits.items():
                masks[name] = segment_split(
                    ds, name, p.crop.size, iterations=s.iterations, max_side=s.max_side, margin=s.margin
                )
                save_array(tmp / f"{name}_masks.npy", masks[name])
                has = split.index.has_mask.to_numpy()
                truth = split.masks[has] if has.any() else None
                scored = masks[name][has] if has.any() else masks[name]
                metrics[name] = {"crops": len(has), **mask_quality(scored, truth)}
        run.log_metrics(metrics)
        write_figures(figures.segment_examples(crops.splits["train"], masks["train"]), args.figures, run)
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "root", "crops", "figures", doc=__doc__, out="GrabCut masks of every split, <split>_masks.npy",
              metrics="metrics JSON: mask quality per split")  # fmt: skip
