"""The learned foreground masker of the chain (cnnlab.train.masker), one per seed, trained on the
training crops' ring seeds and the background patches (no ground truth, no test crop), then on its
own refined masks of them (masker.rounds), then run on every crop of every split: the masks of the
`*_learned` cures. Mask quality per split and seed: IoU against the ground truth where the folder
has masks/; without it too, the kept fraction, the share of degenerate masks, the projection fill,
the agreement with GrabCut's masks and which fallback gave each mask. On each seed's validation
crops (splits.csv) the learned masks are set against GrabCut's, and where they are worse the run
says so. Each round checkpoints every epoch; an interrupted run resumes where it stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from cnnlab import figures
from cnnlab.data.arrays import ImageSet
from cnnlab.data.split import read_split
from cnnlab.data.strategies import ChainData
from cnnlab.io import atomic_dir, save_array, write_json
from cnnlab.metrics import mask_quality
from cnnlab.objects.seeds import PerSeed, SeedResult, for_each_seed, log_means
from cnnlab.serving import log_model
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.train.distributed import device
from cnnlab.train.loop import fingerprint
from cnnlab.train.masker import FALLBACKS, Masking, learn_masks, predict_masks
from cnnlab.usage import ModelUsage

if TYPE_CHECKING:
    from cnnlab.params.schema import Crop, Masker


def tracked_params(cfg: Masker, seeds: list[int]) -> dict:
    """The settings the stage's MLflow run records (and each round's resume fingerprint holds)."""
    return {"seeds": ",".join(map(str, seeds)), **cfg.flat("masker.")}


def usage(cfg: Masker, crop: Crop) -> ModelUsage:
    """What the masker needs to mask new images (cnnlab.serving.ForegroundMasker): the crop size,
    the context around each box (crop.context), its width and the masking settings (Masking)."""
    masking = {"context": crop.context, "width": cfg.width, **vars(Masking.of(cfg))}
    return ModelUsage("masker", input_size=crop.size, masker=masking)


@dataclass
class Maskers:
    """Each seed's masker and its masks of every split (`masks`: seed -> split -> (N, S, S))."""

    cfg: Masker
    crop: Crop
    crops: ImageSet
    chain: ChainData
    seeds: PerSeed
    masks: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    finished: list[Path] = field(default_factory=list)  # per-epoch checkpoints: nothing to resume

    @property
    def metrics(self) -> dict:
        truth = any(s.truth() is not None for s in self.crops.splits.values())
        return {
            "data_source": self.crops.source,
            "method": f"MaskNet, {self.cfg.rounds} round(s): ring seeds, background patches, colour "
                      "affinity, each crop's colours; degenerate masks fall back",
            "mask_iou": "available" if truth else
                        "not available: the dataset folder has no masks/ (ground truth) for its crops",
            "validation": verdict(self.seeds.over_seeds),
            "over_seeds": self.seeds.over_seeds,
            "per_seed": self.seeds.per_seed,
        }  # fmt: skip

    def save(self, *, masks: Path, models: Path, metrics: Path) -> None:
        """masks/seed<N>/<split>_masks.npy, models/seed<N>.pt, the metrics."""
        with atomic_dir(masks) as tmp:
            for seed, by_split in self.masks.items():
                for split_name, array in by_split.items():
                    save_array(tmp / f"seed{seed}" / f"{split_name}_masks.npy", array)
        with atomic_dir(models) as tmp:
            for seed, model in self.seeds.models.items():
                save_checkpoint(tmp / f"seed{seed}.pt", model, usage=usage(self.cfg, self.crop).as_dict(),
                                training=self.cfg.model_dump())  # fmt: skip
        write_json(metrics, self.metrics)

    def figures(self) -> dict:
        first = next(iter(self.masks.values()))
        return figures.masker_examples(self.crops.splits["test"], self.chain.segments["test"], first["test"])


def verdict(over: dict) -> dict:
    """Learned against GrabCut on the validation crops (mean over seeds): their IoU where there is
    ground truth, their degenerate share and projection fill everywhere; `says` is the line the
    stage prints (which is better, by IoU)."""
    def mean(key):
        return over[key]["mean"] if key in over else None

    out = {"crops": "each seed's validation rows of the training crops (splits.csv); no mask was fitted to their "
                    "ground truth",
           **{f"{source}_{k}": mean(f"val_{source}_{k}") for source in ("learned", "grabcut")
              for k in ("mask_iou", "degenerate_fraction", "projection_fill")}}  # fmt: skip
    learned, grabcut = out["learned_mask_iou"], out["grabcut_mask_iou"]
    if learned is None:
        out["says"] = ("no ground truth: compare the learned and GrabCut masks by their degenerate share and "
                       "projection fill; evaluate recommends a cure by validation accuracy")
    elif learned < grabcut:
        out["says"] = (f"the learned masks are worse than GrabCut's on the validation crops (IoU {learned:.3f} "
                       f"against {grabcut:.3f}): on this data the GrabCut cures (segment, mixed_rand) may do better; "
                       "evaluate recommends a cure by its validation accuracy")
    else:
        out["says"] = (f"the learned masks beat GrabCut's on the validation crops (IoU {learned:.3f} against "
                       f"{grabcut:.3f})")
    out["learned_better"] = None if learned is None else bool(learned >= grabcut)
    return out


def quality(prefix: str, found: np.ndarray, truth: np.ndarray | None, grabcut: np.ndarray | None = None) -> dict:
    """mask_quality of `found` (IoU where `truth` is given) and, given GrabCut's masks, its IoU with
    them (`grabcut_agreement`), keyed `<prefix>_<metric>`."""
    q = {k: v for k, v in mask_quality(found, truth).items() if v is not None}
    if grabcut is not None:
        q["grabcut_agreement"] = mask_quality(found, grabcut)["mask_iou"]
    return {f"{prefix}_{k}": v for k, v in q.items()}


def train_maskers(cfg: Masker, crop: Crop, seeds: list[int], crops: ImageSet, chain: ChainData, context: ImageSet,
                  splits: Path, *, checkpoints: Path, run) -> Maskers:  # fmt: skip
    """Learn the masker of each of `seeds` (`cfg`: params.yaml's masker; `crop`: its crop section)
    and mask every split with it, each fit and model logged to `run`; `context`: the crop stage's
    context crops (masks: inside the photograph)."""
    params = tracked_params(cfg, seeds)
    masks, finished, masking = {}, [], Masking.of(cfg)
    ctx = {name: (split.images, split.masks) for name, split in context.splits.items()}

    def one_seed(seed: int) -> SeedResult:
        def fit_kwargs(round_, data) -> dict:  # each round: its checkpoint, resumed when params and data match
            name = f"masker-seed{seed}-round{round_}"
            finished.append(checkpoints / f"{name}.pt")
            return dict(checkpoint=finished[-1], name=name, fingerprint=fingerprint({"model": name, **params}, data),
                        on_epoch=run.epoch_logger(f"seed{seed}/round{round_}"))  # fmt: skip

        model, train_masks, results = learn_masks(cfg, chain.images["train"], *ctx["train"], chain.backgrounds,
                                                  seed, device(), fit_kwargs)  # fmt: skip
        first = seed == seeds[0]  # registered: the first seed's (no val accuracy ranks them)
        log_model(run, model, f"masker-seed{seed}", usage=usage(cfg, crop), tags={"seed": seed},
                  registered="cnnlab-objects-masker" if first else None)  # fmt: skip
        model.to(device())
        summary, masks[seed] = {"train_loss": results[-1].history[-1]["train_loss"]}, {}
        for split_name, split in crops.splits.items():
            if split_name == "train":  # the last round's masks
                found, which = train_masks
            else:
                found, which = predict_masks(model, split.images, *ctx[split_name], masking, device())
            masks[seed][split_name] = found
            summary |= quality(split_name, found, split.truth(), chain.segments[split_name])
            summary |= {f"{split_name}_from_{name}": float(np.mean(which == i)) for i, name in enumerate(FALLBACKS)}
        _, val = read_split(splits, seed, crops.splits["train"].index.id)
        train = crops.splits["train"]
        summary |= quality("val_learned", masks[seed]["train"][val], train.truth(val), chain.segments["train"][val])
        summary |= quality("val_grabcut", chain.segments["train"][val], train.truth(val))
        return SeedResult(summary, model)

    out = Maskers(cfg, crop, crops, chain, for_each_seed(seeds, one_seed), masks, finished)
    log_means(run, out.seeds.over_seeds)
    tqdm.write(f"masker: {out.metrics['validation']['says']}")
    return out
