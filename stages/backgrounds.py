"""Stage backgrounds: crop-sized patches of every training image with its box blacked out
(background only): cnnlab.objects.backgrounds."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab import figures
from cnnlab.data.arrays import save_images
from cnnlab.data.objects import read_objects
from cnnlab.io import atomic_dir
from cnnlab.objects.backgrounds import cut_backgrounds
from cnnlab.stage import run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    ds = read_objects(args.root)
    b = p.backgrounds
    with stage_run("backgrounds", b.flat("backgrounds."), data_source=ds.source, inputs={"objects": args.root}) as run:
        found = cut_backgrounds(ds, b, p.crop.size, p.seed)
        patches = found.splits["patches"]
        with atomic_dir(args.out) as tmp:
            save_images(found, tmp)
        run.log_metrics({"patches": len(patches)})
        write_figures(figures.patch_examples(patches, list(ds.classes)), args.figures, run)


if __name__ == "__main__":
    run_stage(main, "root", "figures", doc=__doc__, out="background patches, crop.size px, with their class")
