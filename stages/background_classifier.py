"""Stage background_classifier: train the report's first CNN to tell the shortcut class's
background from the contrast class's, on crop-sized patches, once per seed (objects.seeds):
cnnlab.chain.background."""

from cnnlab.warm import handoff

handoff()  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.chain.background import tracked_params, train_background_classifiers
from cnnlab.data.arrays import load_images
from cnnlab.stage import inputs, run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    backgrounds = load_images(args.backgrounds)
    with stage_run("background_classifier", tracked_params(p), data_source=backgrounds.source,
                   inputs=inputs(args, "backgrounds"), system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        classifiers = train_background_classifiers(p, backgrounds, run)
        classifiers.save(models=args.out, metrics=args.metrics, curves=args.curves)
        write_figures(classifiers.figures(), args.figures, run)


if __name__ == "__main__":
    run_stage(main, "backgrounds", "figures", doc=__doc__, out="one checkpoint per seed, seed<N>.pt",
              metrics="metrics JSON: mean, sd and per-seed values over the seeds",
              curves="CSV: per-epoch training curves, mean over the seeds")  # fmt: skip
