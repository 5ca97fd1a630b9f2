"""The report's cure of the chain: Grad-CAM of each seed's background classifier ("not the
shortcut class's background") on every crop of the shortcut class, pixels below a threshold set
to black. The threshold is chosen per seed on validation data only: with ground-truth masks, the
candidate with the best mask IoU on the shortcut class's crops of that seed's validation split
(splits.csv); without, `gradcam.threshold`. Test crops are never read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnlab import figures
from cnnlab.attribution.masking import MaskedCrops, mask_shortcut_class
from cnnlab.data.arrays import ImageSet, Split, save_images
from cnnlab.data.split import read_split
from cnnlab.io import atomic_dir, save_array, write_json
from cnnlab.objects.seeds import PerSeed, SeedResult, for_each_seed, log_means
from cnnlab.train.checkpoint import load_model
from cnnlab.train.distributed import device

if TYPE_CHECKING:
    from cnnlab.params.schema import Gradcam


def tracked_params(cfg: Gradcam, shortcut: str) -> dict:
    """The settings the stage's MLflow run records (`cfg`: params.yaml's gradcam)."""
    return {"gradcam.candidates": list(cfg.candidates), "gradcam.threshold": cfg.threshold, "shortcut_class": shortcut}


def save_skipped(why: str, *, masked: Path, metrics: Path) -> None:
    """No shortcut class, nothing to mask: an empty masked folder and the reason as the metrics."""
    with atomic_dir(masked):
        pass
    write_json(metrics, {"skipped": why})


@dataclass
class ShortcutMasks:
    """Each seed's Grad-CAM-masked crops of the shortcut class (`masked`: seed -> MaskedCrops)."""

    crops: ImageSet  # the train split's crops
    shortcut: str  # the shortcut class
    shortcut_crops: Split
    seeds: PerSeed
    masked: dict[int, MaskedCrops]

    @property
    def metrics(self) -> dict:
        return {"data_source": self.crops.source, "shortcut_class": self.shortcut,
                "crops": len(self.shortcut_crops), "over_seeds": self.seeds.over_seeds,
                "per_seed": self.seeds.per_seed}  # fmt: skip

    def save(self, *, masked: Path, metrics: Path) -> None:
        """masked/seed<N>/: the masked crops (an image folder with split `shortcut`) and heat.npy."""
        with atomic_dir(masked) as tmp:
            for seed, out in self.masked.items():
                index = self.shortcut_crops.index[["id", "label"]].assign(has_mask=True)
                split = Split(out.images.numpy(), index, out.masks.numpy())
                save_images(ImageSet("Grad-CAM masked crops", self.crops.source, self.crops.classes,
                                     {"shortcut": split}), tmp / f"seed{seed}")  # fmt: skip
                save_array(tmp / f"seed{seed}" / "heat.npy", out.heat.numpy().astype(np.float16))
        write_json(metrics, self.metrics)

    def figures(self) -> dict:
        first = next(iter(self.masked.values()))
        return figures.gradcam_examples(self.shortcut_crops, first.heat.numpy(), first.masks.numpy())


def mask_shortcut(cfg: Gradcam, seeds: list[int], crops: ImageSet, splits: Path, classifiers: Path, run,
                  shortcut: str) -> ShortcutMasks:  # fmt: skip
    """Mask the training crops of class `shortcut` (the find_shortcut stage's) with the background
    classifier of each of `seeds` (`classifiers`/seed<N>.pt), Grad-CAM as `cfg` (params.yaml's
    gradcam) says, the threshold chosen on that seed's validation rows of `splits`."""
    train = crops.splits["train"]
    rows = np.flatnonzero(train.index.label.to_numpy() == shortcut)
    shortcut_crops = train.subset(rows)
    masked = {}

    def one_seed(seed: int) -> SeedResult:
        _, val_idx = read_split(splits, seed, train.index.id)
        model, _ = load_model(classifiers / f"seed{seed}.pt", device())
        where = f"class {shortcut} (seed {seed} split)"
        masked[seed], summary = mask_shortcut_class(model, shortcut_crops, np.isin(rows, val_idx), cfg, device(),
                                                    where)  # fmt: skip
        return SeedResult(summary)

    out = ShortcutMasks(crops, shortcut, shortcut_crops, for_each_seed(seeds, one_seed), masked)
    log_means(run, out.seeds.over_seeds)
    return out
