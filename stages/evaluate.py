"""Stage evaluate: every strategy's classifiers on validation, test and paired images, compared over
seeds against the baseline; predictions, figures, a run per strategy: cnnlab.objects.evaluate."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import json

from cnnlab.data.arrays import load_images
from cnnlab.data.sets import load_chain
from cnnlab.objects.decision import read_decision
from cnnlab.objects.evaluate import evaluate_strategies, log_strategies, tracked_params
from cnnlab.stage import inputs, run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    crops, seeds = load_images(args.crops), p.objects.seed_list(p.seed)
    chain = load_chain(crops, args.segments, args.backgrounds, args.learned, seeds)
    shortcut = read_decision(args.shortcut).shortcut
    read = inputs(args, "crops", "splits", "segments", "backgrounds", "shortcut", "masked", "learned", "models")
    with stage_run("evaluate", tracked_params(seeds, shortcut), data_source=crops.source, inputs=read) as run:
        result = evaluate_strategies(seeds, crops, chain, splits=args.splits, masked=args.masked, models=args.models,
                                     trained=json.loads(args.trained.read_text())["strategies"],
                                     background_patches=load_images(args.backgrounds),
                                     shortcut_class=shortcut)  # fmt: skip
        result.save(out=args.out, metrics=args.metrics, table=args.table, confusion=args.confusion, run=run)
        write_figures(result.figures(), args.figures, run)
    log_strategies(result.metrics, result.digests)


if __name__ == "__main__":
    run_stage(main, "crops", "splits", "segments", "backgrounds", "shortcut", "masked", "learned", "figures",
              doc=__doc__,
              models="models, <strategy>/seed<N>.pt (train_classifier stage)",
              trained="train_classifier's metrics JSON (which strategies were trained or skipped)",
              out="test predictions per strategy and seed, the best's, mask-source arrays",
              metrics="metrics JSON: the comparison over seeds", table="CSV: the comparison table",
              confusion="one confusion CSV per strategy (DVC plots)")  # fmt: skip
