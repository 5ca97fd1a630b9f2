"""Blacking out the shortcut class's background with the background classifier's Grad-CAM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnnlab.attribution.gradcam import gradcam_masks
from cnnlab.metrics import mask_quality
from cnnlab.train.loop import predict, to_float

SHORTCUT_BACKGROUND = 0  # background classifier outputs: 0 = shortcut class's background
NOT_SHORTCUT = 1  # 1 = any other background: the Grad-CAM target


@dataclass
class MaskedCrops:
    images: torch.Tensor  # (N, 3, S, S) uint8, background set to black
    masks: torch.Tensor  # (N, S, S) bool, True = kept
    heat: torch.Tensor  # (N, S, S) float in [0, 1]
    metrics: dict


def mask_backgrounds(
    model: nn.Module,
    images: torch.Tensor,
    threshold: float,
    *,
    truth: np.ndarray | None = None,
    has_truth: np.ndarray | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> MaskedCrops:
    """Keep what the background classifier calls "not the shortcut background", black out the rest.

    Args:
        model: the two-class background classifier (0 = shortcut background).
        images: (N, 3, S, S) uint8 crops of the shortcut class.
        threshold: Grad-CAM threshold (0..1), see :func:`gradcam_masks`.
        truth: optional (N, S, S) bool ground-truth object masks, for the mask IoU;
        has_truth: optional (N,) bool, which crops have one (default: all, if truth is given).

    Returns:
        MaskedCrops with metrics: kept_fraction, mask_iou (None without truth), empty_maps (crops
        with no evidence at all, which go wholly black), and how often the background classifier
        sees the shortcut background before and after masking (a leakage check).
    """
    heat, masks = gradcam_masks(
        model, model.last_conv, to_float(images), NOT_SHORTCUT, threshold, batch_size, device
    )  # fmt: skip
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
        "empty_maps": int((~masks.flatten(1).any(1)).sum()),
        "bg_classifier_shortcut_rate_before": shortcut_rate(images),
        "bg_classifier_shortcut_rate_after": shortcut_rate(masked),
    }
    return MaskedCrops(masked, masks, heat, metrics)


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
        scores[str(float(t))] = mask_quality(heat >= t if t > 0 else np.ones_like(heat, bool), truth)["mask_iou"]
    best = max(candidates, key=lambda t: scores[str(float(t))])
    return float(best), scores
