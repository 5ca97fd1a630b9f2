"""Stage segment: a GrabCut mask from its box for every crop of every split, degenerate ones
replaced (cnnlab.objects.segment)."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab import figures
from cnnlab.data.arrays import load_images
from cnnlab.data.objects import read_objects
from cnnlab.io import atomic_dir, save_array, write_json
from cnnlab.objects.segment import segment_crops
from cnnlab.stage import run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    ds = read_objects(args.root)
    crops = load_images(args.crops)
    s, settings = p.segment, p.segment_settings()
    inputs = {"objects": args.root, "crops": args.crops}
    with stage_run("segment", s.flat("segment."), data_source=crops.source, inputs=inputs) as run:
        masks, metrics = segment_crops(ds, crops, p.crop.size, settings)
        with atomic_dir(args.out) as tmp:
            for name, split_masks in masks.items():
                save_array(tmp / f"{name}_masks.npy", split_masks)
        run.log_metrics(metrics)
        write_figures(figures.segment_examples(crops.splits["train"], masks["train"]), args.figures, run)
        write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "root", "crops", "figures", doc=__doc__, out="GrabCut masks of every split, <split>_masks.npy",
              metrics="metrics JSON: mask quality per split")  # fmt: skip
