"""Stage crop: check the dataset folder, cut every image (train, test, paired) to its box and
resize to crop.size, and again with crop.context of the photograph around the box (the context
crops the masker and the GrabCut fallback learn each photograph's background from); draw each
seed's stratified train/val split of the train crops (splits.csv), the one split every step of
the chain validates on."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab import figures
from cnnlab.data.arrays import ImageSet, save_images
from cnnlab.data.crops import context_pad, crops_with_context
from cnnlab.data.objects import read_objects
from cnnlab.data.split import write_splits
from cnnlab.io import atomic_dir
from cnnlab.stage import run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    ds = read_objects(args.root)  # validates everything before any output is written
    params = {"objects.root": str(args.root), "crop.size": p.crop.size, "crop.context": p.crop.context}
    with stage_run("crop", params, data_source=ds.source, inputs={"objects": args.root}) as run:
        splits = ["train", "test"] + (["paired"] if len(ds.split("paired")) else [])
        pad = context_pad(p.crop.size, p.crop.context)
        both = {s: crops_with_context(ds, s, p.crop.size, pad) for s in splits}
        crops = ImageSet("crops", ds.source, list(ds.classes), {s: pair[0] for s, pair in both.items()})
        context = ImageSet("context crops", ds.source, list(ds.classes), {s: pair[1] for s, pair in both.items()})
        with atomic_dir(args.out) as tmp:
            save_images(crops, tmp)
        with atomic_dir(args.context) as tmp:  # masks: which pixels lie inside the photograph
            save_images(context, tmp)
        train = crops.splits["train"]
        write_splits(args.splits, train.index.id, train.labels(crops.classes), p.classifier.val_fraction,
                     p.objects.seed_list(p.seed), crops.classes)  # fmt: skip
        run.log_metrics({f"{name}_crops": len(split) for name, split in crops.splits.items()})
        write_figures(figures.crop_examples(crops), args.figures, run)


if __name__ == "__main__":
    run_stage(main, "root", "context", "splits", "figures", doc=__doc__, out="crops of every split, crop.size px")
