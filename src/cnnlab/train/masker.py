"""The learned foreground masker: a small U-Net (cnnlab.models.mask_net) trained, per seed, from
what the objects chain already has and nothing else.

- Pseudo-labels: each training crop's ring seeds (cnnlab.data.masks.ring_seeds: the object by its
  own photograph's colours, the background's learned from the pixels just outside the box).
  Errors of one image's seeds are not those of the next; a network fitted to all of them learns
  what the objects have in common and averages the rest out (the first round of Khoreva et al.
  2017, "Simple Does It"). GrabCut's masks started it before: on textured objects they were empty
  for a third of the crops of one folder and the masks learned from them no better.
- Negatives: background patches (the backgrounds stage: regions of the training images with the
  boxes blacked out) are all background, so the masker also learns what the backgrounds look like.
- A colour-affinity term (the pairwise loss of Tian et al. 2021, BoxInst): two neighbouring pixels
  of like colour should get the same label, which pulls the masks onto colour edges.
- Each crop's own colours (:func:`colour_refine`): the network's mask of a crop seeds two colour
  models of that crop (a Gaussian mixture each, for what it calls object and background), and each
  pixel goes to the likelier one, weighted by the network's own odds. A network fitted to many
  crops learns shapes but fills holes and concavities; the crop's colours put them back.
- Rounds (Simple Does It's recursive training): the refined masks of the training crops are the
  next round's pseudo-labels.
- Never degenerate (cnnlab.data.masks.first_sound): a crop whose refined mask keeps under 5% or
  over 95% of it takes the network's own mask, then its ring seeds, then the box's ellipse.

No ground-truth mask and no test label trains it; ground truth, where the folder has it, only scores
the masks (cnnlab.metrics.mask_quality).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from cnnlab.data.masks import first_sound, ring_seeds, sound
from cnnlab.models.mask_net import MaskNet
from cnnlab.params.schema import Masker
from cnnlab.tensors import TensorData, predict, to_float
from cnnlab.train.loop import FitResult, fit

# the 8-connected neighbour offsets (dy, dx), each pair once
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))


def training_data(crops: np.ndarray, pseudo: np.ndarray, backgrounds: np.ndarray) -> TensorData:
    """Crops (N, 3, S, S) uint8 with their pseudo-label masks (N, S, S), then the background
    patches with all-background labels: the masker's training set (per-pixel labels 0 / 1)."""
    if crops.shape[1:] != backgrounds.shape[1:]:
        raise ValueError(f"crops {crops.shape[1:]} and background patches {backgrounds.shape[1:]} differ in shape")
    images = np.concatenate([crops, backgrounds])
    labels = np.concatenate([np.asarray(pseudo, np.int64), np.zeros((len(backgrounds), *pseudo.shape[1:]), np.int64)])
    return TensorData.from_numpy(images, labels)


def _pairs(t: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel of `t` (..., H, W) and its neighbour at (+dy, +dx), as two aligned tensors."""
    h, w = t.shape[-2:]
    if dx >= 0:
        return t[..., : h - dy, : w - dx], t[..., dy:, dx:]
    return t[..., : h - dy, -dx:], t[..., dy:, : w + dx]


def colour_affinity(logits: torch.Tensor, images: torch.Tensor, theta: float = 0.1, tau: float = 0.3) -> torch.Tensor:
    """BoxInst's pairwise term: over neighbour pairs whose colours are alike (exp(-|c_a - c_b| /
    theta) > tau, RGB in [0, 1]), the mean of -log P(both get the same label).

    logits: (B, 2, H, W); images: (B, 3, H, W) float in [0, 1]."""
    p = logits.float().softmax(1)[:, 1]
    x = images.float()
    total, count = logits.new_zeros(()), logits.new_zeros(())
    for dy, dx in NEIGHBOURS:
        pa, pb = _pairs(p, dy, dx)
        xa, xb = _pairs(x, dy, dx)
        alike = (torch.exp(-(xa - xb).pow(2).sum(1).sqrt() / theta) > tau).float()
        same = pa * pb + (1 - pa) * (1 - pb)
        total = total + (-torch.log(same.clamp_min(1e-6)) * alike).sum()
        count = count + alike.sum()
    return total / count.clamp_min(1)


def flip_augment(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half of the batch (drawn from torch's generator) mirrored left-right, image and mask alike;
    images as floats in [0, 1]."""
    flip = torch.rand(len(images)) < 0.5
    images, masks = images.clone(), masks.clone()
    images[flip], masks[flip] = images[flip].flip(-1), masks[flip].flip(-1)
    return to_float(images), masks


def _mixture_loglik(x: torch.Tensor, member: torch.Tensor, components: int, iterations: int) -> torch.Tensor:
    """Per crop, a `components`-Gaussian mixture (diagonal covariances) fitted by EM to the pixels
    with member = 1; returns every pixel's log-likelihood under its crop's mixture.

    x: (N, P, 3) colours in [0, 1]; member: (N, P) 0/1. Batched over crops (one crop at a time
    with scikit-learn took 10 times as long for the same masks' IoU). Starts from the members split
    into `components` equal groups by brightness, so it is deterministic."""
    brightness = x.mean(2).masked_fill(member == 0, float("inf"))
    rank = brightness.argsort(1).argsort(1).float()
    group = (rank * components / member.sum(1, keepdim=True).clamp_min(1)).floor().clamp_max(components - 1)
    resp = F.one_hot(group.long(), components).float() * member[..., None]  # (N, P, K)
    x2 = x * x
    features = torch.cat([x2, x, torch.ones_like(x[..., :1])], 2)  # (N, P, 7)
    for step in range(iterations + 1):
        # from sufficient statistics, each pixel's log-likelihood under each Gaussian is one batched
        # product: -(x^2) / 2var + x mean / var + (constant per component); no (N, P, K, 3) tensor
        weight = resp.sum(1) + 1e-6  # (N, K)
        mean = torch.einsum("npk,npc->nkc", resp, x) / weight[..., None]
        var = (torch.einsum("npk,npc->nkc", resp, x2) / weight[..., None] - mean**2).clamp_min(0)
        var = var + COLOUR_VARIANCE_FLOOR
        inv = 1 / var
        constant = -0.5 * ((mean**2 * inv).sum(2) + var.log().sum(2) + 3 * math.log(2 * math.pi))
        constant = constant + (weight / weight.sum(1, keepdim=True)).log()  # (N, K)
        coef = torch.cat([-0.5 * inv, mean * inv, constant[..., None]], 2).transpose(1, 2)  # (N, 7, K)
        loglik = torch.bmm(features, coef)  # (N, P, K)
        if step < iterations:  # softmax over the K components, by hand: torch's is slow for a last dim of 3
            resp = (loglik - loglik.amax(2, keepdim=True)).exp_()
            resp = resp * (member / resp.sum(2))[..., None]
    return loglik.logsumexp(2)


COLOUR_VARIANCE_FLOOR = 1e-3  # per channel, colours in [0, 1]: a flat region's Gaussian stays finite
COLOUR_ITERATIONS = 5  # EM steps per mixture (10: digits IoU 0.810 instead of 0.803, 1.5x the time)


def colour_refine(images: np.ndarray, foreground_p: np.ndarray, components: int, prior: float) -> np.ndarray:
    """bool masks (N, H, W): each crop's pixels relabelled by its own colours. Two mixtures of
    `components` Gaussians per crop, fitted to the pixels the masker calls object (probability
    >= 0.5) and background; a pixel is object where log p/(1-p) x `prior` + log L_object - log
    L_background > 0. A crop with fewer than 2 x components pixels on either side keeps p >= 0.5.

    images: (N, 3, H, W) uint8; foreground_p: (N, H, W) the masker's probabilities."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div(255).flatten(2).transpose(1, 2)
    p = torch.from_numpy(np.ascontiguousarray(foreground_p)).float().flatten(1).clamp(1e-4, 1 - 1e-4)
    member = (p >= 0.5).float()
    score = prior * (p / (1 - p)).log()
    score = score + _mixture_loglik(x, member, components, COLOUR_ITERATIONS)
    score = score - _mixture_loglik(x, 1 - member, components, COLOUR_ITERATIONS)
    enough = (member.sum(1) >= 2 * components) & ((1 - member).sum(1) >= 2 * components)
    return torch.where(enough[:, None], score > 0, member > 0).reshape(foreground_p.shape).numpy()


def train_masker(
    cfg: Masker, data: TensorData, seed: int, device: torch.device, model: MaskNet | None = None, **fit_kwargs
) -> tuple[MaskNet, FitResult]:
    """One masker fitted to `data` (:func:`training_data`) with cross-entropy plus cfg.affinity x
    :func:`colour_affinity`: `model` trained further, or a new MaskNet(cfg.width) from seed
    `seed`. `fit_kwargs` go to cnnlab.train.loop.fit (checkpoint, fingerprint, name, on_epoch)."""
    torch.manual_seed(seed)
    model = model or MaskNet(cfg.width)
    regularizer = None
    if cfg.affinity > 0:

        def regularizer(logits, x):
            return cfg.affinity * colour_affinity(logits, x)

    result = fit(model, data, None, cfg.training(), seed=seed, device=device, augment=flip_augment,
                 regularizer=regularizer, **fit_kwargs)  # fmt: skip
    return model.eval(), result


def foreground(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    """The masker's foreground probability (N, H, W) float32 of uint8 crops (N, 3, H, W)."""
    logits = predict(model, torch.from_numpy(np.ascontiguousarray(images)), device)
    return F.softmax(logits, 1)[:, 1].numpy()


@dataclass(frozen=True)
class Masking:
    """How a trained masker's probabilities become masks: the settings the pipeline masks its crops
    with, which a logged masker carries (its usage record) so that new images get the same masks."""

    colour_components: int  # Gaussians per colour model of a crop (0: no refinement)
    colour_prior: float  # weight of the network's log-odds against the crop's colours
    seed_bins: int  # ring seeds' colour histogram bins per channel
    seed_margin: float  # ring seeds' log-likelihood ratio margin (nats)

    @classmethod
    def of(cls, cfg: Masker | dict) -> "Masking":
        """The masking settings of params' `masker` section (or a dict holding them, e.g. a usage record)."""
        get = cfg.get if isinstance(cfg, dict) else lambda k: getattr(cfg, k)
        return cls(**{f.name: get(f.name) for f in fields(cls)})


def seeds_of(context: np.ndarray, valid: np.ndarray, size: int, masking: Masking) -> np.ndarray:
    """The ring seeds (cnnlab.data.masks.ring_seeds) of crops of `size` px in their context crops."""
    pad = (context.shape[-1] - size) // 2
    return ring_seeds(context, valid, pad, bins=masking.seed_bins, margin=masking.seed_margin)


def predict_masks(model: torch.nn.Module, images: np.ndarray, context: np.ndarray, valid: np.ndarray,
                  masking: Masking, device: torch.device) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """bool masks (N, H, W) of uint8 crops (N, 3, H, W) with their context crops and validity
    (cnnlab.data.crops.context_crop): the masker's probability refined by each crop's colours
    (:func:`colour_refine`; colour_components 0: the probability >= 0.5 alone), and where that is
    degenerate the probability >= 0.5, the ring seeds, the box's ellipse (the first that is not).
    Every crop is masked on its own (no statistic is shared across the batch), so new images
    (cnnlab predict, the served model) get the masks their crops would get in the pipeline.

    Returns (masks, which (N,): 0 refined, 1 the network's own, 2 ring seeds, 3 ellipse)."""
    p = foreground(model, images, device)
    own, m = p >= 0.5, masking
    refined = own if m.colour_components == 0 else colour_refine(images, p, m.colour_components, m.colour_prior)
    seeds = np.zeros_like(own)
    need = ~sound(refined) & ~sound(own)  # the ring seeds of the crops that fall back that far only
    if need.any():
        seeds[need] = seeds_of(context[need], valid[need], images.shape[-1], m)
    return first_sound(refined, own, seeds)


FALLBACKS = ("refined", "network", "ring_seeds", "ellipse")  # predict_masks' `which`, by position


def learn_masks(
    cfg: Masker, crops: np.ndarray, context: np.ndarray, valid: np.ndarray, backgrounds: np.ndarray, seed: int,
    device: torch.device, fit_kwargs: Callable[[int, TensorData], dict],
) -> tuple[MaskNet, tuple[np.ndarray, np.ndarray], list[FitResult]]:  # fmt: skip
    """The masker of one seed: cfg.rounds rounds, the first (cfg.epochs) on the training crops'
    ring seeds (:func:`seeds_of`, from their context crops and validity), each next one
    (cfg.round_epochs, from the last round's weights) on the previous round's masks of them
    (:func:`predict_masks`); beside them, cfg.patch_ratio background patches per crop, drawn by
    the seed.

    fit_kwargs(round, data): the round's arguments for cnnlab.train.loop.fit (checkpoint, name, ...).
    Returns (the last round's network, its (masks, which) of the training crops as predict_masks
    gives them, each round's FitResult)."""
    count = min(len(backgrounds), round(cfg.patch_ratio * len(crops)))
    patches = backgrounds[np.sort(np.random.default_rng([seed, 11]).choice(len(backgrounds), count, replace=False))]
    masking = Masking.of(cfg)
    labels, results, model = seeds_of(context, valid, crops.shape[-1], masking), [], None
    for round_ in range(cfg.rounds):
        data = training_data(crops, labels, patches)
        this = cfg if round_ == 0 else cfg.model_copy(update={"epochs": cfg.round_epochs})
        model, result = train_masker(this, data, seed, device, model, **fit_kwargs(round_, data))
        results.append(result)
        labels, which = predict_masks(model, crops, context, valid, masking, device)
    return model, (labels, which), results
