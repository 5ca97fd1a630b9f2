"""The learned foreground masker on tiny hand-made crops: its loss terms, its colour refinement,
its fallbacks, seeding, and that it beats GrabCut where GrabCut is known to fail (thin strokes on
texture)."""

import cv2
import numpy as np
import pytest
import torch

from cnnlab.data.crops import crop_mask
from cnnlab.data.segment import grabcut_mask
from cnnlab.metrics import mask_quality
from cnnlab.models.mask_net import MaskNet, border_contrast
from cnnlab.params.schema import Masker
from cnnlab.train.masker import (
    FALLBACKS,
    Masking,
    colour_affinity,
    colour_refine,
    foreground,
    learn_masks,
    predict_masks,  # fmt: skip
    training_data,
)

CPU = torch.device("cpu")


def _cfg(**kw) -> Masker:
    base = dict(width=4, seed_bins=8, seed_margin=0.75, rounds=1, patch_ratio=1.0, affinity=1.0, colour_components=2,
                colour_prior=0.25,
                optimizer="adam", lr=0.01, momentum=0.9, weight_decay=0.0, batch_size=16, epochs=2, round_epochs=1,
                schedule="onecycle")  # fmt: skip
    return Masker(**(base | kw))


def _no_checkpoint(round_, data):
    return {"name": f"round{round_}"}


def test_colour_affinity_asks_like_colours_for_like_labels():
    x = torch.zeros(1, 3, 8, 8)
    x[..., 4:] = 1.0  # two flat halves: left black, right white
    halves = torch.full((1, 2, 8, 8), -5.0)
    halves[:, 1, :, 4:] = halves[:, 0, :, :4] = 5.0  # labels that follow the colour edge
    across = torch.full((1, 2, 8, 8), -5.0)
    across[:, 1, :4] = across[:, 0, 4:] = 5.0  # labels that cut both flat halves in two
    assert colour_affinity(halves, x) < 0.01 < 0.1 < colour_affinity(across, x)


def test_training_data_puts_every_patch_pixel_in_the_background():
    crops, patches = np.zeros((3, 3, 8, 8), np.uint8), np.full((2, 3, 8, 8), 9, np.uint8)
    pseudo = np.zeros((3, 8, 8), bool)
    pseudo[:, 2:6, 2:6] = True
    data = training_data(crops, pseudo, patches)
    assert len(data) == 5 and data.labels.shape == (5, 8, 8)
    assert data.labels[:3].sum() == 3 * 16 and data.labels[3:].sum() == 0
    with pytest.raises(ValueError, match="differ in shape"):
        training_data(crops, pseudo, np.zeros((2, 3, 4, 4), np.uint8))


def test_border_contrast_is_zero_on_the_ring_of_a_flat_crop():
    x = torch.full((1, 3, 8, 8), 0.3)
    x[..., 3:5, 3:5] = 0.9
    out = border_contrast(x)
    assert torch.allclose(out[..., 0, :], torch.zeros(1, 3, 8))
    assert torch.allclose(out[..., 3, 3], torch.full((1, 3), 0.6))


def test_colour_refine_cuts_a_blob_down_to_the_object_s_colour():
    """The network's blob covers a ring of background; the crop's colours give the object back."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, (2, 3, 16, 16)).astype(np.uint8)  # dark, noisy background
    truth = np.zeros((2, 16, 16), bool)
    truth[:, 3:13, 3:13] = True
    truth[:, 6:10, 6:10] = False  # a frame: the network fills its hole
    images[:, 0][truth] = 230  # a red object
    blob = np.zeros((2, 16, 16), np.float32)
    blob[:, 2:14, 2:14] = 0.8  # the network: the object, its hole and a ring around it
    assert mask_quality(blob >= 0.5, truth)["mask_iou"] < 0.6
    assert mask_quality(colour_refine(images, blob, components=2, prior=0.25), truth)["mask_iou"] > 0.95
    # with too few pixels on one side, the network's own mask stays
    assert (colour_refine(images, np.ones((2, 16, 16), np.float32), components=2, prior=0.25)).all()


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """(3, size, size) uint8: 4 px blocks of random dark colours, plus noise."""
    blocks = rng.integers(0, 120, (3, size // 4, size // 4)).repeat(4, 1).repeat(4, 2)
    return np.clip(blocks + rng.integers(0, 60, (3, size, size)), 0, 255).astype(np.uint8)


def _thin_strokes(n: int, size: int = 32, seed: int = 0):
    """Crops of a soft-edged cross (strokes 2 to 6 px wide, one light colour) on a texture, the
    box's margin around it. GrabCut's smoothness term wipes out most of the thin ones: it keeps
    the wider crosses only."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, size, size), np.uint8)
    truth = np.zeros((n, size, size), bool)
    for i in range(n):
        alpha = np.zeros((size, size), np.float32)
        cy, cx = rng.integers(12, size - 12, 2)
        w = int(rng.integers(1, 4))
        alpha[cy - 8 : cy + 8, cx - w : cx + w] = alpha[cy - w : cy + w, cx - 8 : cx + 8] = 1
        alpha = cv2.GaussianBlur(alpha, (5, 5), 1.0)
        alpha /= alpha.max()
        colour = rng.integers(150, 256, 3).astype(np.float32)[:, None, None]
        images[i] = np.clip(alpha * colour + (1 - alpha) * _texture(rng, size), 0, 255).astype(np.uint8)
        truth[i] = alpha > 0.35
    return images, truth


PAD = 4  # context pixels around the 24 px crops of the 32 px images below


def _crops(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images[..., PAD:-PAD, PAD:-PAD])


def _all_valid(images: np.ndarray) -> np.ndarray:
    return np.ones((len(images), *images.shape[-2:]), bool)


@pytest.mark.slow  # about 10 s: three trainings
def test_learned_masks_beat_grabcut_on_thin_strokes_on_texture():
    images, truth = _thin_strokes(96)  # 32 px: each box's 24 px crop and its 4 px context
    box = (PAD, PAD, 24, 24)  # every cross lies in the image's inner 24 px
    grabcut_masks = np.stack([crop_mask(grabcut_mask(image.transpose(1, 2, 0), box, iterations=3, max_side=64,
                                                     margin=0.15), box, 24) for image in images])  # fmt: skip
    rng = np.random.default_rng(1)
    patches = np.stack([_texture(rng, 24) for _ in range(64)])  # background only
    torch.manual_seed(0)
    cfg = _cfg(rounds=3, epochs=10, round_epochs=10, width=8, batch_size=32)
    _, (learned, _), _ = learn_masks(cfg, _crops(images), images, _all_valid(images), patches, 0, CPU, _no_checkpoint)
    truth = truth[:, PAD:-PAD, PAD:-PAD]
    grabcut_iou = mask_quality(grabcut_masks, truth)["mask_iou"]
    learned_iou = mask_quality(learned, truth)["mask_iou"]
    # measured: GrabCut 0.18, learned 0.79 (0.78 with masker seed 1); 0.44 when the masker started from GrabCut's
    assert grabcut_iou < 0.3 and learned_iou > 0.7, (learned_iou, grabcut_iou)


def test_a_fixed_seed_gives_the_same_masks():
    images, _ = _thin_strokes(24)
    patches = np.zeros((8, 3, 24, 24), np.uint8)
    cfg = _cfg(rounds=2, epochs=1)
    crops, valid = _crops(images), _all_valid(images)
    runs = [learn_masks(cfg, crops, images, valid, patches, seed, CPU, _no_checkpoint) for seed in (0, 0, 1)]
    (m0, (masks0, _), _), (m1, (masks1, _), _), (m2, _, _) = runs
    assert (masks0 == masks1).all()
    p0, p1, p2 = (foreground(m, crops, CPU) for m in (m0, m1, m2))
    assert np.array_equal(p0, p1) and not np.array_equal(p0, p2)
    assert isinstance(m0, MaskNet) and m0.arch == {"family": "mask_net", "width": 4}


class _Constant(torch.nn.Module):
    """A 'masker' whose foreground probability is `p` everywhere."""

    def __init__(self, p: float):
        super().__init__()
        self.logit = torch.nn.Parameter(torch.tensor(float(np.log(p / (1 - p)))))

    def forward(self, x):
        fg = self.logit.expand(len(x), 1, *x.shape[-2:])
        return torch.cat([torch.zeros_like(fg), fg], 1)


def test_a_degenerate_mask_falls_back_to_the_network_then_the_ring_seeds_then_the_ellipse():
    images = np.zeros((2, 3, 32, 32), np.uint8)  # a flat black background...
    images[0, 0, 12:20, 12:20] = 250  # ...with a red square in the first box, nothing in the second
    crops, valid = _crops(images), _all_valid(images)
    masking = Masking(colour_components=0, colour_prior=0.25, seed_bins=8, seed_margin=0.75)
    # a network that keeps nothing (p = 0.1) and one that keeps everything (0.9): both degenerate
    for p in (0.1, 0.9):
        masks, which = predict_masks(_Constant(p), crops, images, valid, masking, CPU)
        assert [FALLBACKS[w] for w in which] == ["ring_seeds", "ellipse"]
        square = np.zeros((24, 24), bool)
        square[8:16, 8:16] = True  # the red square, from its own colours (its 4 corners smoothed away)
        assert not masks[0][~square].any() and masks[0][9:15, 9:15].all() and masks[0].sum() >= 60
        assert 0.7 < masks[1].mean() < 0.85  # the box's ellipse
