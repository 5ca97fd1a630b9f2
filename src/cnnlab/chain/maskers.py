"""The learned foreground masker of the chain (cnnlab.train.masker), one per seed, trained on the
training crops' GrabCut masks and the background patches (no ground truth, no test crop), then on
its own refined masks of them (masker.rounds), then run on every crop of every split: the masks of
the `*_learned` cures. Mask quality per split and seed: IoU against the ground truth where the
folder has masks/, kept fraction everywhere. Each round checkpoints every epoch; an interrupted
run resumes where it stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab import figures
from cnnlab.chain.seeds import PerSeed, SeedResult, for_each_seed, log_means
from cnnlab.data.arrays import ImageSet
from cnnlab.data.strategies import ChainData
from cnnlab.io import atomic_dir, save_array, write_json
from cnnlab.metrics import mask_quality
from cnnlab.serving import log_model
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.train.distributed import device
from cnnlab.train.loop import fingerprint
from cnnlab.train.masker import learn_masks, predict_masks


def tracked_params(p) -> dict:
    """The settings the stage's MLflow run records (and each round's resume fingerprint holds)."""
    return {"seeds": ",".join(map(str, p.objects.seed_list(p.seed))), **p.masker.flat("masker.")}


def usage(p) -> dict:
    """What the logged masker needs to mask new images (cnnlab.serving.ForegroundMasker)."""
    return {"kind": "masker", "input_size": p.crop.size,
            **p.masker.model_dump(include={"width", "colour_components", "colour_prior"})}  # fmt: skip


@dataclass
class Maskers:
    """Each seed's masker and its masks of every split (`masks`: seed -> split -> (N, S, S))."""

    p: object
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
            "method": f"MaskNet, {self.p.masker.rounds} round(s): GrabCut's masks, background patches, colour "
                      "affinity, each crop's colours",
            "mask_iou": "available" if truth else
                        "not available: the dataset folder has no masks/ (ground truth) for its crops",
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
                save_checkpoint(tmp / f"seed{seed}.pt", model, usage={"masker": self.p.masker.model_dump()})
        write_json(metrics, self.metrics)

    def figures(self) -> dict:
        first = next(iter(self.masks.values()))
        return figures.masker_examples(self.crops.splits["test"], self.chain.segments["test"], first["test"])


def train_maskers(p, crops: ImageSet, chain: ChainData, *, checkpoints: Path, run) -> Maskers:
    """Learn every seed's masker and mask every split with it, each fit and model logged to `run`."""
    params = tracked_params(p)
    masks, finished = {}, []

    def one_seed(seed: int) -> SeedResult:
        def fit_kwargs(round_, data) -> dict:  # each round: its checkpoint, resumed when params and data match
            name = f"masker-seed{seed}-round{round_}"
            finished.append(checkpoints / f"{name}.pt")
            return dict(checkpoint=finished[-1], name=name, fingerprint=fingerprint({"model": name, **params}, data),
                        on_epoch=run.epoch_logger(f"seed{seed}/round{round_}"))  # fmt: skip

        model, train_masks, results = learn_masks(p.masker, chain.images["train"], chain.segments["train"],
                                                  chain.backgrounds, seed, device(), fit_kwargs)  # fmt: skip
        log_model(run, model, f"masker-seed{seed}", chain.images["train"], registered="cnnlab-objects-masker",
                  metadata=usage(p), tags={"seed": seed})  # fmt: skip
        model.to(device())
        summary, masks[seed] = {"train_loss": results[-1].history[-1]["train_loss"]}, {}
        for split_name, split in crops.splits.items():
            found = train_masks if split_name == "train" else predict_masks(model, split.images, p.masker, device())
            masks[seed][split_name] = found
            quality = mask_quality(found, split.truth())
            summary |= {f"{split_name}_{k}": v for k, v in quality.items() if v is not None}
            # without ground truth too: how far it moved from GrabCut's masks (IoU of the two)
            summary[f"{split_name}_grabcut_agreement"] = mask_quality(found, chain.segments[split_name])["mask_iou"]
        return SeedResult(summary, model)

    out = Maskers(p, crops, chain, for_each_seed(p.objects.seed_list(p.seed), one_seed), masks, finished)
    log_means(run, out.seeds.over_seeds)
    return out
