"""Stage masker: the learned foreground masker, one per seed, trained on the training crops' ring
seeds (their context crops) and the background patches, then run on every crop of every split (the
masks of the `*_learned` cures), set against GrabCut's masks on the validation crops, resumed after
an interruption: cnnlab.objects.masker."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.data.arrays import load_images
from cnnlab.data.sets import load_chain
from cnnlab.objects.masker import tracked_params, train_maskers
from cnnlab.objects.seeds import remove_finished
from cnnlab.stage import inputs, run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    crops, context = load_images(args.crops), load_images(args.context)
    chain = load_chain(crops, args.segments, args.backgrounds)
    read = inputs(args, "crops", "context", "splits", "segments", "backgrounds")
    seeds = p.objects.seed_list(p.seed)
    with stage_run("masker", tracked_params(p.masker, seeds), data_source=crops.source, inputs=read,
                   system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        maskers = train_maskers(p.masker, p.crop, seeds, crops, chain, context, args.splits,
                                checkpoints=args.checkpoints, run=run)  # fmt: skip
        maskers.save(masks=args.out, models=args.models, metrics=args.metrics)
        write_figures(maskers.figures(), args.figures, run)
    remove_finished(maskers.finished)


if __name__ == "__main__":
    run_stage(main, "crops", "context", "splits", "segments", "backgrounds", "checkpoints", "figures", doc=__doc__,
              out="masks of every split, seed<N>/<split>_masks.npy", models="the maskers, seed<N>.pt",
              metrics="metrics JSON: mask quality per split, per seed and over seeds")  # fmt: skip
