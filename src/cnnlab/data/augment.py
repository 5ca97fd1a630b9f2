"""Training augmentation from the `augment` params, built from torchvision.transforms.v2.

Geometric steps and Cutout act on each image with its own random draw; CutMix and MixUp act on
a whole batch and turn the labels into soft targets (rows summing to 1).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F
from torchvision.transforms import v2

from cnnlab.params.schema import Augment as AugmentParams

AugmentFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def per_image_steps(cfg: AugmentParams, size: int) -> tuple[list[v2.Transform], list[v2.Transform]]:
    """(steps on uint8 images, steps on float images) for the steps switched on (p > 0)."""
    geometric, on_float = [], []
    if cfg.rotate90.p:
        quarter = v2.RandomChoice([v2.RandomRotation((a, a)) for a in (90, 180, 270)])
        geometric.append(v2.RandomApply([quarter], p=cfg.rotate90.p))
    if cfg.resized_crop.p:
        crop = v2.RandomResizedCrop(size, scale=cfg.resized_crop.scale, antialias=True)
        geometric.append(v2.RandomApply([crop], p=cfg.resized_crop.p))
    if cfg.translate.p:
        geometric.append(v2.RandomApply([v2.RandomAffine(degrees=0, translate=cfg.translate.max)], p=cfg.translate.p))
    if cfg.hflip.p:
        geometric.append(v2.RandomHorizontalFlip(cfg.hflip.p))
    if cfg.rotate_shift.p:
        shift = (cfg.rotate_shift.shift, cfg.rotate_shift.shift)
        affine = v2.RandomAffine(degrees=cfg.rotate_shift.degrees, translate=shift)
        geometric.append(v2.RandomApply([affine], p=cfg.rotate_shift.p))
    if cfg.cutout.p:
        on_float.append(v2.RandomErasing(p=cfg.cutout.p, scale=cfg.cutout.scale, value=0))
    return geometric, on_float


def build_augment(cfg: AugmentParams, num_classes: int, size: int) -> AugmentFn | None:
    """A function (uint8 images (B, 3, S, S), int labels (B,)) -> (float images in [0, 1],
    targets), or None when every step is off. Targets are soft (B, num_classes) when CutMix or
    MixUp is on, else the int labels. Randomness comes from torch's global generator (seeded)."""
    geometric, on_float = per_image_steps(cfg, size)
    mixes, weights = [], []
    for mix, p in ((v2.CutMix(num_classes=num_classes, alpha=cfg.cutmix.alpha), cfg.cutmix.p),
                   (v2.MixUp(num_classes=num_classes, alpha=cfg.mixup.alpha), cfg.mixup.p)):  # fmt: skip
        if p:
            mixes.append(mix)
            weights.append(p)
    if not (geometric or on_float or mixes):
        return None
    per_image = v2.Compose(geometric + [v2.ToDtype(torch.float32, scale=True)] + on_float)
    batch_mix = None
    if mixes:
        # one of CutMix / MixUp with its probability, or neither: a batch is mixed at most once
        rest = max(0.0, 1.0 - sum(weights))
        batch_mix = v2.RandomChoice([*mixes, v2.Identity()], p=[*weights, rest])

    def augment(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([per_image(img) for img in images])  # (B, 3, S, S) float
        if batch_mix is None:
            return x, labels
        x, y = batch_mix(x, labels)
        if y.ndim == 1:  # not mixed: same target format as the mixed batches
            y = F.one_hot(y, num_classes).float()
        return x, y

    return augment
