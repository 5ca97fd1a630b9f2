"""Stage train_classifier: the 8-class CNN for every strategy and seed, resumed after an interruption,
under torchrun too (`launcher` in params.yaml): cnnlab.objects.train_classifier."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.data.arrays import load_images
from cnnlab.data.sets import load_chain
from cnnlab.objects.decision import read_decision
from cnnlab.objects.seeds import remove_finished
from cnnlab.objects.train_classifier import Settings, tracked_params, train_strategies
from cnnlab.stage import inputs, run_stage, write_figures
from cnnlab.tracking import stage_run
from cnnlab.train import distributed


def main(p, args):
    crops, settings = load_images(args.crops), Settings.of(p)
    chain = load_chain(crops, args.segments, args.backgrounds, args.learned, settings.seeds)
    decision = read_decision(args.shortcut)
    read = inputs(args, "crops", "splits", "segments", "backgrounds", "shortcut", "masked", "learned", "maskers")
    with stage_run("train_classifier", tracked_params(settings, decision.shortcut), data_source=crops.source,
                   inputs=read, system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        trained = train_strategies(settings, crops, chain, splits=args.splits, masked=args.masked, maskers=args.maskers,
                                   checkpoints=args.checkpoints, run=run, decision=decision)  # fmt: skip
        if not distributed.is_main():  # under torchrun, rank 0 writes
            return
        trained.save(models=args.out, metrics=args.metrics, curves=args.curves)
        trained.log(run)
        write_figures(trained.figures(), args.figures, run)
    remove_finished(trained.finished)


if __name__ == "__main__":
    run_stage(main, "crops", "splits", "segments", "backgrounds", "shortcut", "masked", "learned", "checkpoints",
              "figures",
              doc=__doc__, maskers="learned maskers, seed<N>.pt (masker stage)", out="models, <strategy>/seed<N>.pt",
              metrics="metrics JSON: per strategy, mean, sd and per-seed values",
              curves="one curves CSV per strategy (mean over seeds)")  # fmt: skip
