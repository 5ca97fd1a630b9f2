"""Stage crop: check the dataset folder, crop every image to its box, with and without its
context (cnnlab.objects.crop); draw each seed's stratified train/val split of the train crops
(splits.csv), the one split every step of the chain validates on."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab import figures
from cnnlab.data.arrays import save_images
from cnnlab.data.objects import read_objects
from cnnlab.data.split import write_splits
from cnnlab.io import atomic_dir
from cnnlab.objects.crop import cut_crops
from cnnlab.stage import run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    ds = read_objects(args.root)  # validates everything before any output is written
    params = {"objects.root": str(args.root), "crop.size": p.crop.size, "crop.context": p.crop.context}
    with stage_run("crop", params, data_source=ds.source, inputs={"objects": args.root}) as run:
        cut = cut_crops(ds, p.crop)
        crops = cut.crops
        with atomic_dir(args.out) as tmp:
            save_images(crops, tmp)
        with atomic_dir(args.context) as tmp:  # masks: which pixels lie inside the photograph
            save_images(cut.context, tmp)
        train = crops.splits["train"]
        write_splits(args.splits, train.index.id, train.labels(crops.classes), p.classifier.val_fraction,
                     p.objects.seed_list(p.seed), crops.classes)  # fmt: skip
        run.log_metrics(cut.counts())
        write_figures(figures.crop_examples(crops), args.figures, run)


if __name__ == "__main__":
    run_stage(main, "root", "context", "splits", "figures", doc=__doc__, out="crops of every split, crop.size px")
