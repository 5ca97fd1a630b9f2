"""Stage backgrounds: black out the boxes of every training image (background only) and cut
crop-sized patches of them: the background classifier trains on those of backgrounds.classes,
mixed_rand pastes objects on all of them, evaluate checks leakage on them."""

import numpy as np

from cnnlab.config import to_flat_dict
from cnnlab.data.crops import background_patches
from cnnlab.data.objects import DatasetError, read_objects
from cnnlab.io import atomic_dir, save_array, write_csv, write_json
from cnnlab.stage import run_stage
from cnnlab.tracking import stage_run
from cnnlab.viz.plots import image_grid


def main(p, args):
    ds = read_objects(args.root)
    b = p.backgrounds
    for key, name in (("backgrounds.classes[0]", b.classes[0]), ("backgrounds.classes[1]", b.classes[1])):
        if name not in ds.classes:
            raise DatasetError(f"params key '{key}' names class '{name}', not in {args.root}: {', '.join(ds.classes)}")
    with stage_run("backgrounds", to_flat_dict(b, "backgrounds."), data_source=ds.source) as run:
        with atomic_dir(args.out) as tmp:
            patches, index = background_patches(
                ds, ds.classes, p.crop.size, b.patches_per_image, b.max_box_overlap, p.seed
            )
            save_array(tmp / "patches.npy", patches)
            write_csv(tmp / "patches.csv", index)
            write_json(tmp / "dataset.json", {"source": ds.source, "classes": list(ds.classes)})
        show = np.concatenate([np.flatnonzero(index.label == ds.classes.index(c))[:8] for c in b.classes])
        titles = [f"bg {ds.classes[k]}" for k in index.label.to_numpy()[show]]
        run.log_figure(image_grid(patches[show], titles, title="background patches"), "patches.png")
        run.log_metrics({"patches": len(index)})


if __name__ == "__main__":
    run_stage(main, "root", "out", doc=__doc__)
