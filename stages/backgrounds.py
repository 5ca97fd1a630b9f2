"""Stage backgrounds: black out the boxes of every training image (background only) and cut
crop-sized patches of them: find_shortcut learns each class's background from them, the background
classifier trains on those of the shortcut and contrast classes, mixed_rand pastes objects on all
of them, evaluate checks leakage on them."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab import figures
from cnnlab.data.arrays import ImageSet, save_images
from cnnlab.data.crops import background_patches
from cnnlab.data.objects import read_objects
from cnnlab.io import atomic_dir
from cnnlab.stage import run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    ds = read_objects(args.root)
    b = p.backgrounds
    with stage_run("backgrounds", b.flat("backgrounds."), data_source=ds.source, inputs={"objects": args.root}) as run:
        patches = background_patches(ds, ds.classes, p.crop.size, b.patches_per_image, b.max_box_overlap, p.seed)
        with atomic_dir(args.out) as tmp:
            save_images(ImageSet("background patches", ds.source, list(ds.classes), {"patches": patches}), tmp)
        run.log_metrics({"patches": len(patches)})
        write_figures(figures.patch_examples(patches, list(ds.classes)), args.figures, run)


if __name__ == "__main__":
    run_stage(main, "root", "figures", doc=__doc__, out="background patches, crop.size px, with their class")
