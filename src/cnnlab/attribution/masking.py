"""Blacking out the shortcut class's background with the background classifier's Grad-CAM."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnnlab.attribution.gradcam import gradcam_masks, threshold_heat
from cnnlab.data.arrays import Split
from cnnlab.data.masks import ellipse
from cnnlab.metrics import DEGENERATE, mask_quality
from cnnlab.params.schema import Gradcam
from cnnlab.tensors import predict, to_float

SHORTCUT_BACKGROUND = 0  # background classifier outputs: 0 = shortcut class's background
NOT_SHORTCUT = 1  # 1 = any other background: the Grad-CAM target


@dataclass
class MaskedCrops:
    images: torch.Tensor  # (N, 3, S, S) uint8, background set to black
    masks: torch.Tensor  # (N, S, S) bool, True = kept
    heat: torch.Tensor  # (N, S, S) float in [0, 1]
    metrics: dict


def never_degenerate(heat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """`masks` (N, S, S) bool of `heat` (N, S, S), each crop's kept fraction held within
    cnnlab.metrics.DEGENERATE: a crop that keeps under 5% keeps its hottest 5%, one that keeps over
    95% its hottest 95% (its own Grad-CAM, a per-crop threshold); a map with no evidence at all
    (one value everywhere) keeps the box's ellipse."""
    n, pixels = len(masks), masks[0].numel() if len(masks) else 0
    kept = masks.flatten(1).float().mean(1)
    low, high = kept < DEGENERATE[0], kept > DEGENERATE[1]
    if not (low | high).any():
        return masks
    out, flat = masks.clone().flatten(1), heat.flatten(1)
    rank = flat.argsort(dim=1, descending=True, stable=True).argsort(dim=1, stable=True)  # 0: the hottest pixel
    for rows, count in ((low, math.ceil(DEGENERATE[0] * pixels)), (high, math.floor(DEGENERATE[1] * pixels))):
        out[rows] = rank[rows] < count
    flat_map = flat.amax(1) == flat.amin(1)
    out[flat_map] = torch.from_numpy(ellipse(masks.shape[-1])).flatten()
    return out.reshape(n, *masks.shape[1:])


def mask_backgrounds(
    model: nn.Module,
    images: torch.Tensor,
    threshold: float,
    *,
    truth: np.ndarray | None = None,
    has_truth: np.ndarray | None = None,
    batch_size: int,
    device: torch.device | str = "cpu",
    heat: torch.Tensor | None = None,
) -> MaskedCrops:
    """Keep what the background classifier calls "not the shortcut background", black out the rest.

    Args:
        model: the two-class background classifier (0 = shortcut background).
        images: (N, 3, S, S) uint8 crops of the shortcut class.
        threshold: Grad-CAM threshold (0..1), see :func:`gradcam_masks`.
        truth: optional (N, S, S) bool ground-truth object masks, for the mask IoU;
        has_truth: optional (N,) bool, which crops have one (default: all, if truth is given).
        batch_size: images per Grad-CAM call.
        heat: the Grad-CAM heat of these images from an earlier call (it does not depend on the
            threshold): only the threshold is applied again.

    Returns:
        MaskedCrops with metrics: kept_fraction, degenerate_fraction (after :func:`never_degenerate`:
        0), degenerate_at_threshold (the share before it), mask_iou (None without truth), empty_maps
        (crops the threshold left empty), and how often the background classifier sees the shortcut
        background before and after masking (a leakage check).
    """
    if heat is None:
        heat, _ = gradcam_masks(
            model, model.last_conv, to_float(images), NOT_SHORTCUT, threshold, batch_size, device
        )  # fmt: skip
    raw = threshold_heat(heat, threshold)
    masks = never_degenerate(heat, raw)
    masked = images * masks[:, None]

    def shortcut_rate(x):
        return float((predict(model, x, device).argmax(1) == SHORTCUT_BACKGROUND).float().mean())

    metrics = mask_quality(masks.numpy())
    if truth is not None:
        keep = np.ones(len(images), bool) if has_truth is None else np.asarray(has_truth, bool)
        metrics["masks_with_truth"] = int(keep.sum())
        if keep.any():  # IoU over the crops that have a ground-truth mask
            metrics["mask_iou"] = mask_quality(masks.numpy()[keep], truth[keep])["mask_iou"]
    metrics |= {
        "empty_maps": int((~raw.flatten(1).any(1)).sum()),  # before never_degenerate
        "degenerate_at_threshold": float(mask_quality(raw.numpy())["degenerate_fraction"]),
        "bg_classifier_shortcut_rate_before": shortcut_rate(images),
        "bg_classifier_shortcut_rate_after": shortcut_rate(masked),
    }
    return MaskedCrops(masked, masks, heat, metrics)


def mask_shortcut_class(
    model: nn.Module, crops: Split, is_val: np.ndarray, cfg: Gradcam, device, where: str
) -> tuple[MaskedCrops, dict]:
    """The shortcut class's crops masked at a threshold chosen on validation crops only.

    With ground-truth masks on some validation crops (`is_val`, the index's has_mask), the
    candidate with the best mask IoU on them is used (Choe et al. 2020: a tuned knob, never on
    test); without, `cfg.threshold`. `where` names those crops in the record of the choice.

    Returns:
        (the masked crops, metrics: threshold, how it was chosen, IoU by candidate, the masking
        metrics, and the mask IoU on the crops with a mask that the threshold was not chosen on).
    """
    images = torch.from_numpy(crops.images)  # (N, 3, S, S) uint8
    out = mask_backgrounds(model, images, cfg.threshold, batch_size=cfg.batch_size, device=device)
    has_truth = crops.index.has_mask.to_numpy()
    chosen_on = is_val & has_truth
    if chosen_on.any():
        threshold, scores = choose_threshold(out.heat.numpy()[chosen_on], crops.masks[chosen_on], cfg.candidates)
        how = f"best mask IoU on the {int(chosen_on.sum())} validation crops of {where}"
    else:
        threshold, scores = cfg.threshold, {}
        how = "params key gradcam.threshold (no ground-truth masks on validation crops to choose with)"
    if threshold != cfg.threshold:
        out = mask_backgrounds(model, images, threshold, batch_size=cfg.batch_size, device=device, heat=out.heat)
    metrics = {"threshold": threshold, "threshold_chosen_by": how, "validation_iou_by_threshold": scores}
    metrics |= {k: v for k, v in out.metrics.items() if k != "mask_iou"}
    held_out = ~is_val & has_truth  # IoU on crops the threshold was not chosen on
    metrics["mask_iou"] = (
        mask_quality(out.masks.numpy()[held_out], crops.masks[held_out])["mask_iou"] if held_out.any() else None
    )
    return out, metrics


def choose_threshold(heat: np.ndarray, truth: np.ndarray, candidates) -> tuple[float, dict]:
    """The Grad-CAM threshold with the highest mean mask IoU against ground-truth masks.

    Pass only validation crops (never test crops): the choice is a tuned knob (Choe et al. 2020).

    Args:
        heat: (N, H, W) normalised heat in [0, 1]; truth: (N, H, W) bool object masks.
        candidates: thresholds to try; ties go to the first.

    Returns:
        (best threshold, {str(threshold): mean IoU}).
    """
    scores = {}
    for t in candidates:
        scores[str(float(t))] = mask_quality(threshold_heat(torch.from_numpy(heat), t).numpy(), truth)["mask_iou"]
    best = max(candidates, key=lambda t: scores[str(float(t))])
    return float(best), scores
