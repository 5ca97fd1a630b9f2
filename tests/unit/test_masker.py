"""The learned foreground masker on tiny hand-made crops: its loss terms, its colour refinement,
seeding, and that it beats GrabCut where GrabCut is known to fail (thin strokes on texture)."""

import cv2
import numpy as np
import pytest
import torch

from cnnlab.config import Masker
from cnnlab.data.segment import grabcut_mask
from cnnlab.metrics import mask_quality
from cnnlab.models.mask_net import MaskNet, border_contrast
from cnnlab.train.masker import colour_affinity, colour_refine, foreground, learn_masks, training_data

CPU = torch.device("cpu")


def _cfg(**kw) -> Masker:
    base = dict(width=4, rounds=1, patch_ratio=1.0, affinity=1.0, colour_components=2, colour_prior=0.25,
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


@pytest.mark.slow  # about 10 s: three trainings
def test_learned_masks_beat_grabcut_on_thin_strokes_on_texture():
    images, truth = _thin_strokes(96)
    box = (4, 4, 24, 24)  # every cross lies in the crop's inner 24 px
    grabcut_masks = np.stack([grabcut_mask(image.transpose(1, 2, 0), box, iterations=3, max_side=64, margin=0.15)
                              for image in images])  # fmt: skip
    rng = np.random.default_rng(1)
    patches = np.stack([_texture(rng, 32) for _ in range(64)])  # background only
    torch.manual_seed(0)
    cfg = _cfg(rounds=3, epochs=10, round_epochs=10, width=8, batch_size=32)
    _, learned, _ = learn_masks(cfg, images, grabcut_masks, patches, 0, CPU, _no_checkpoint)
    grabcut_iou = mask_quality(grabcut_masks, truth)["mask_iou"]
    learned_iou = mask_quality(learned, truth)["mask_iou"]
    # measured: GrabCut 0.18, learned 0.44 (0.38 with masker seed 1)
    assert grabcut_iou < 0.3 and learned_iou > grabcut_iou + 0.15, (learned_iou, grabcut_iou)


def test_a_fixed_seed_gives_the_same_masks():
    images, _ = _thin_strokes(24)
    pseudo = np.zeros((24, 32, 32), bool)
    pseudo[:, 8:24, 8:24] = True
    patches = np.zeros((8, 3, 32, 32), np.uint8)
    cfg = _cfg(rounds=2, epochs=1)
    runs = [learn_masks(cfg, images, pseudo, patches, seed, CPU, _no_checkpoint) for seed in (0, 0, 1)]
    (m0, masks0, _), (m1, masks1, _), (m2, _, _) = runs
    assert (masks0 == masks1).all()
    p0, p1, p2 = (foreground(m, images, CPU) for m in (m0, m1, m2))
    assert np.array_equal(p0, p1) and not np.array_equal(p0, p2)
    assert isinstance(m0, MaskNet) and m0.arch == {"family": "mask_net", "width": 4}
