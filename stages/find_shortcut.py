"""Stage find_shortcut: which training class shares the test images' background, and the
contrast class for the report's background classifier (cnnlab.objects.find_shortcut). With
backgrounds.classes: auto its decision is what every later stage uses; an explicit pair is kept,
and the detection reported beside it."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.data.arrays import load_images
from cnnlab.data.objects import read_objects
from cnnlab.io import write_json
from cnnlab.objects.decision import write_decision
from cnnlab.objects.find_shortcut import find_shortcut
from cnnlab.stage import inputs, run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    ds = read_objects(args.root)
    backgrounds = load_images(args.backgrounds)
    with stage_run("find_shortcut", p.backgrounds.flat("backgrounds."), data_source=ds.source,
                   inputs=inputs(args, "root", "backgrounds")) as run:  # fmt: skip
        found = find_shortcut(p.backgrounds, p.crop.size, p.seed, ds, backgrounds.splits["patches"])
        d, detected = found.decision, found.metrics["detected"]
        if detected:
            print(f"find_shortcut: detected {detected['shortcut'] or 'no shortcut class'}: {detected['reason']}")
        print(f"find_shortcut: shortcut class {d.shortcut}, contrast class {d.contrast}, {found.metrics['decided_by']}"
              if d.shortcut else f"find_shortcut: no shortcut class ({d.reason}); the cures that need one are skipped")
        write_decision(args.out, d)
        write_json(args.metrics, found.metrics)
        run.set_tag("shortcut.class", d.shortcut or "none")
        if detected:
            run.log_metrics({k: detected[k] for k in ("top_share", "runner_up_share", "typical_share", "val_accuracy")})
        write_figures(found.figures(), args.figures, run)


if __name__ == "__main__":
    run_stage(main, "root", "backgrounds", "metrics", "figures", doc=__doc__,
              out="JSON: the shortcut and contrast classes (null: none), which later stages read")  # fmt: skip
