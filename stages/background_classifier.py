"""Stage background_classifier: train the report's first CNN to tell the shortcut class's
background from the contrast class's, on crop-sized patches, once per seed (objects.seeds):
cnnlab.objects.background_classifier."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.data.arrays import load_images
from cnnlab.objects.background_classifier import save_skipped, tracked_params, train_background_classifiers
from cnnlab.objects.decision import read_decision
from cnnlab.stage import inputs, run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    backgrounds, decision = load_images(args.backgrounds), read_decision(args.shortcut)
    outputs = dict(models=args.out, metrics=args.metrics, curves=args.curves)
    if why := decision.skipped("the background classifier"):
        print(f"note: {why}")
        save_skipped(why, **outputs)
        write_figures({}, args.figures, None)
        return
    cfg, seeds, size = p.background_classifier, p.objects.seed_list(p.seed), p.crop.size
    with stage_run("background_classifier", tracked_params(cfg, seeds, size) | {"classes": ",".join(decision.pair)},
                   data_source=backgrounds.source, inputs=inputs(args, "backgrounds", "shortcut"),
                   system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        classifiers = train_background_classifiers(cfg, seeds, size, backgrounds, run, decision.pair)
        classifiers.save(**outputs)
        write_figures(classifiers.figures(), args.figures, run)


if __name__ == "__main__":
    run_stage(main, "backgrounds", "shortcut", "figures", doc=__doc__, out="one checkpoint per seed, seed<N>.pt",
              metrics="metrics JSON: mean, sd and per-seed values over the seeds",
              curves="CSV: per-epoch training curves, mean over the seeds")  # fmt: skip
