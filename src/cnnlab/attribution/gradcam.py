"""Grad-CAM masks with captum."""

from __future__ import annotations

import contextlib

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn
from tqdm import tqdm

from cnnlab.tensors import memory_format


def gradcam_masks(
    model: nn.Module,
    layer: nn.Module,
    images: torch.Tensor,
    target: int,
    threshold: float,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM heat maps of `target` and the thresholded masks, for a batch of images.

    For every image: captum's LayerGradCam on `layer` (ReLU applied, as in the original
    Grad-CAM), upsampled bilinearly to the image size, divided by its own maximum so it spans
    [0, 1], then thresholded. The model is put in eval mode so that BatchNorm does not make one
    image's map depend on the others in its batch.

    Speed (benchmarks/run.py, case gradcam): the model runs channels-last where that is the
    faster layout (see cnnlab.train.loop.memory_format), and its weights are frozen for the call,
    so autograd records only what lies after `layer` (captum makes the layer's output require
    grad). Both leave the maps as they are; the weights' requires_grad flags are restored.

    Args:
        model: a classifier taking (N, C, H, W) float images.
        layer: the module of `model` whose output is attributed (e.g. the last conv layer).
        images: (N, C, H, W) float inputs, already in the model's input scale.
        target: class index whose evidence is mapped (for the objects chain: the index of the
            "not class-00 background" class).
        threshold: keep pixels whose normalised heat is >= threshold (0..1).
        batch_size: images per captum call.
        device: where the model runs.

    Returns:
        heat: (N, H, W) float in [0, 1]; all zeros where the layer shows no evidence for `target`.
        masks: (N, H, W) bool, True = kept (object). An all-zero map gives an empty mask.

    Example::

        >>> heat, masks = gradcam_masks(model, model.last_conv, crops, target=1, threshold=0.2, batch_size=64)
        >>> masked = crops * masks[:, None]  # background set to black
    """
    fmt = memory_format(model, device)
    model = model.to(device, memory_format=fmt).eval()
    cam = LayerGradCam(model, layer)
    height, width = images.shape[-2:]
    heats = []
    with gradients_off(model):
        for start in tqdm(range(0, len(images), batch_size), desc="grad-cam", unit="batch", leave=False):
            x = images[start : start + batch_size].to(device).contiguous(memory_format=fmt)
            attr = cam.attribute(x, target=target, relu_attributions=True)  # (B, 1, h, w) at the layer's size
            attr = LayerAttribution.interpolate(attr, (height, width), interpolate_mode="bilinear")[:, 0]
            peak = attr.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]  # (B, H, W) / per-image max
            heats.append((attr / peak).clamp_(0, 1).detach().cpu().contiguous())
    heat = torch.cat(heats) if heats else torch.zeros(0, height, width)
    return heat, threshold_heat(heat, threshold)


def threshold_heat(heat: torch.Tensor, threshold: float) -> torch.Tensor:
    """Masks of normalised heat maps: True where heat >= threshold (threshold 0 keeps everything)."""
    return heat >= threshold if threshold > 0 else torch.ones_like(heat, dtype=torch.bool)


@contextlib.contextmanager
def gradients_off(model: nn.Module):
    """requires_grad off on every parameter of `model` inside the block, restored after it."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
