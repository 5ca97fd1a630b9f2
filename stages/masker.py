"""Stage masker: the learned foreground masker (cnnlab.train.masker), one per seed, trained on the
training crops' GrabCut masks and the background patches (no ground truth, no test crop), then on
its own refined masks of them (masker.rounds), then run on every crop of every split: the masks of
the `*_learned` cures. Mask quality per split and seed: IoU against the ground truth where the
folder has masks/, kept fraction everywhere.

Each round checkpoints every epoch; an interrupted run resumes where it stopped."""

from cnnlab.warm import handoff

handoff()  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

from cnnlab import figures
from cnnlab.data.arrays import load_images
from cnnlab.data.sets import load_chain
from cnnlab.io import atomic_dir, save_array, write_json
from cnnlab.metrics import mask_quality, over_seeds
from cnnlab.stage import device, log_model, run_stage, write_figures
from cnnlab.tracking import stage_run
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.train.loop import fingerprint
from cnnlab.train.masker import learn_masks, predict_masks


def resumable(checkpoints, run, params: dict, seed: int, finished: list):
    """fit's arguments for each round of a seed's masker: a checkpoint per round (listed in
    `finished`), resumed when params, seed and data are the same; each epoch logged to `run`."""

    def fit_kwargs(round_, data) -> dict:
        name = f"masker-seed{seed}-round{round_}"
        finished.append(checkpoints / f"{name}.pt")
        return dict(checkpoint=finished[-1], name=name, fingerprint=fingerprint({"model": name, **params}, data),
                    on_epoch=run.epoch_logger(f"seed{seed}/round{round_}"))  # fmt: skip

    return fit_kwargs


def usage(p) -> dict:
    """What the logged masker needs to mask new images (cnnlab.serving.ForegroundMasker)."""
    return {"kind": "masker", "input_size": p.crop.size,
            **p.masker.model_dump(include={"width", "colour_components", "colour_prior"})}  # fmt: skip


def main(p, args):
    crops = load_images(args.crops)
    chain = load_chain(crops, args.segments, args.backgrounds)
    seeds = p.objects.seed_list(p.seed)
    params = {"seeds": ",".join(map(str, seeds)), **p.masker.flat("masker.")}
    inputs = {"crops": args.crops, "segments": args.segments, "backgrounds": args.backgrounds}
    with stage_run("masker", params, data_source=crops.source, inputs=inputs,
                   system_metrics=p.tracking.system_metrics) as run:  # fmt: skip
        per_seed, finished, shown = {}, [], {}
        with atomic_dir(args.out) as tmp, atomic_dir(args.models) as models:
            for seed in seeds:
                fit_kwargs = resumable(args.checkpoints, run, params, seed, finished)
                model, train_masks, results = learn_masks(p.masker, chain.images["train"], chain.segments["train"],
                                                          chain.backgrounds, seed, device(), fit_kwargs)  # fmt: skip
                save_checkpoint(models / f"seed{seed}.pt", model, usage={"masker": p.masker.model_dump()})
                log_model(run, model, f"masker-seed{seed}", chain.images["train"], registered="cnnlab-objects-masker",
                          metadata=usage(p), tags={"seed": seed})  # fmt: skip
                model.to(device())
                per_seed[seed] = {"train_loss": results[-1].history[-1]["train_loss"]}
                for split_name, split in crops.splits.items():
                    masks = train_masks if split_name == "train" else predict_masks(model, split.images, p.masker,
                                                                                    device())  # fmt: skip
                    save_array(tmp / f"seed{seed}" / f"{split_name}_masks.npy", masks)
                    quality = mask_quality(masks, split.truth())
                    per_seed[seed] |= {f"{split_name}_{k}": v for k, v in quality.items() if v is not None}
                    # without ground truth too: how far it moved from GrabCut's masks (IoU of the two)
                    agreement = mask_quality(masks, chain.segments[split_name])["mask_iou"]
                    per_seed[seed][f"{split_name}_grabcut_agreement"] = agreement
                    if split_name == "test" and not shown:
                        shown = figures.masker_examples(split, chain.segments["test"], masks)
        metrics = {
            "data_source": crops.source,
            "method": f"MaskNet, {p.masker.rounds} round(s): GrabCut's masks, background patches, colour affinity, "
                      "each crop's colours",
            "mask_iou": "available" if any(s.truth() is not None for s in crops.splits.values()) else
                        "not available: the dataset folder has no masks/ (ground truth) for its crops",
            "over_seeds": over_seeds(per_seed),
            "per_seed": {str(seed): m for seed, m in per_seed.items()},
        }  # fmt: skip
        run.log_metrics({k: v["mean"] for k, v in metrics["over_seeds"].items()}, prefix="mean/")
        write_figures(shown, args.figures, run)
        write_json(args.metrics, metrics)
    for checkpoint in finished:  # finished: nothing to resume
        checkpoint.unlink(missing_ok=True)


if __name__ == "__main__":
    run_stage(main, "crops", "segments", "backgrounds", "out", "models", "checkpoints", "metrics", "figures",
              doc=__doc__)  # fmt: skip
