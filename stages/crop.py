"""Stage crop: check the dataset folder, cut every image (train, test, paired) to its box and
resize to crop.size."""

import numpy as np

from cnnlab.data.crops import crop_split
from cnnlab.data.objects import read_objects
from cnnlab.io import atomic_dir, write_json
from cnnlab.stage import run_stage
from cnnlab.tracking import stage_run
from cnnlab.viz.plots import image_grid


def main(p, args):
    ds = read_objects(args.root)  # validates everything before any output is written
    with stage_run("crop", {"objects.root": str(args.root), "crop.size": p.crop.size}, data_source=ds.source) as run:
        with atomic_dir(args.out) as tmp:
            splits = ["train", "test"] + (["paired"] if len(ds.split("paired")) else [])
            crops = {split: crop_split(ds, split, p.crop.size) for split in splits}
            for split, crop_set in crops.items():
                crop_set.save(tmp, split)
            write_json(tmp / "dataset.json", {"source": ds.source, "classes": list(ds.classes)})
        run.log_metrics({f"{split}_crops": len(c.index) for split, c in crops.items()})
        first = crops["train"].index.drop_duplicates("label").index.to_numpy()  # one crop per class
        test = np.arange(min(8, len(crops["test"].index)))
        images = np.concatenate([crops["train"].images[first], crops["test"].images[test]])
        titles = [f"train {c}" for c in crops["train"].index.label[first]] + [
            f"test {c}" if c else "test" for c in crops["test"].index.label[test]
        ]
        run.log_figure(image_grid(images, titles, columns=max(len(first), 1), title=ds.source), "crops.png")


if __name__ == "__main__":
    run_stage(main, "root", "out", doc=__doc__)
