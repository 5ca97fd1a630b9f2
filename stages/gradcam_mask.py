"""Stage gradcam_mask: Grad-CAM of each seed's background classifier on every crop of the shortcut
class, the background below a threshold chosen on validation crops set to black (test crops are
never read): cnnlab.objects.gradcam_mask."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab.data.arrays import load_images
from cnnlab.objects.decision import read_decision
from cnnlab.objects.gradcam_mask import mask_shortcut, save_skipped, tracked_params
from cnnlab.stage import inputs, run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    decision = read_decision(args.shortcut)
    if why := decision.skipped("Grad-CAM masking"):
        print(f"note: {why}")
        save_skipped(why, masked=args.out, metrics=args.metrics)
        write_figures({}, args.figures, None)
        return
    crops = load_images(args.crops, ["train"])
    read = inputs(args, "crops", "splits", "shortcut") | {"background_classifier": args.model}
    cfg = p.gradcam
    with stage_run("gradcam_mask", tracked_params(cfg, decision.shortcut), data_source=crops.source,
                   inputs=read) as run:  # fmt: skip
        masks = mask_shortcut(cfg, p.objects.seed_list(p.seed), crops, args.splits, args.model, run, decision.shortcut)
        masks.save(masked=args.out, metrics=args.metrics)
        write_figures(masks.figures(), args.figures, run)


if __name__ == "__main__":
    run_stage(main, "crops", "splits", "shortcut", "figures", doc=__doc__,
              model="background classifiers, seed<N>.pt (background_classifier stage)",
              out="masked crops and Grad-CAM heat of each seed, seed<N>/",
              metrics="metrics JSON: chosen threshold, mask IoU, per seed and over seeds")  # fmt: skip
