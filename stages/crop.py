"""Stage crop: check the dataset folder, cut every image to its box and resize to crop.size."""

from cnnlab.data.crops import crop_split
from cnnlab.data.objects import read_objects
from cnnlab.io import atomic_dir, write_json
from cnnlab.stage import run_stage
from cnnlab.tracking import stage_run


def main(p, args):
    ds = read_objects(args.root)  # validates everything before any output is written
    with stage_run("crop", {"objects.root": str(args.root), "crop.size": p.crop.size}, data_source=ds.source):
        with atomic_dir(args.out) as tmp:
            for split in ("train", "test"):
                crop_split(ds, split, p.crop.size).save(tmp, split)
            write_json(tmp / "dataset.json", {"source": ds.source, "classes": list(ds.classes)})


if __name__ == "__main__":
    run_stage(main, "root", "out", doc=__doc__)
