"""cnnlab.data.masks: the ring seeds (each crop's object by its own photograph's colours) and the
rule every mask source obeys (never degenerate), on hand-made context crops."""

import numpy as np
import pytest

from cnnlab.data.crops import context_crop, crop_resize
from cnnlab.data.masks import ellipse, first_sound, ring_seeds, sound


def _rgb(*colour) -> np.ndarray:
    return np.array(colour, np.uint8)[:, None, None]


def _context(n=1, side=16, pad=4):
    """Context crops of a flat blue photograph: (images, valid) with the box in the middle."""
    images = np.zeros((n, 3, side, side), np.uint8)
    images[:, 2] = 200
    return images, np.ones((n, side, side), bool)


def test_ring_seeds_find_an_object_of_colours_the_ring_does_not_have():
    images, valid = _context(2)
    images[0, :, 6:10, 6:10] = _rgb(250, 250, 0)  # a yellow square in the first box (box: 4..12)
    images[1, :, 4:12, 4:12] = _rgb(0, 0, 200)  # the second box: the ring's own blue
    images[1, :, 7:9, 7:9] = _rgb(250, 0, 0)  # with a red dot
    seeds = ring_seeds(images, valid, 4, bins=4, margin=0.75, smooth=1)
    truth = np.zeros((8, 8), bool)
    truth[2:6, 2:6] = True  # the square, in the box's coordinates
    np.testing.assert_array_equal(seeds[0], truth)
    assert seeds[1].sum() == 4 and seeds[1][3:5, 3:5].all()  # the red dot and nothing of the blue


def test_ring_seeds_ignore_the_pixels_outside_the_photograph():
    images, valid = _context(1)
    images[0, :, :, :2] = _rgb(250, 250, 0)  # off the photograph's edge (not valid), in the colour ...
    valid[0, :, :2] = False
    images[0, :, 6:10, 6:10] = _rgb(250, 250, 0)  # ... of the object
    seeds = ring_seeds(images, valid, 4, bins=4, margin=0.75, smooth=1)
    assert seeds[0].sum() == 16  # the object still stands out: invalid pixels are no background sample


def test_sound_keeps_the_bounds_and_first_sound_takes_the_first_sound_source():
    empty, full, half = np.zeros((4, 4), bool), np.ones((4, 4), bool), np.zeros((4, 4), bool)
    half[:2] = True
    assert list(sound(np.stack([empty, full, half]))) == [False, False, True]
    a = np.stack([empty, half, full])  # crop 0 degenerate here ...
    b = np.stack([half, empty, empty])  # ... sound here; crop 2 degenerate in both
    masks, which = first_sound(a, b)
    assert list(which) == [1, 0, 2]
    np.testing.assert_array_equal(masks[0], half)
    np.testing.assert_array_equal(masks[1], half)
    np.testing.assert_array_equal(masks[2], ellipse(4))


def test_the_ellipse_is_inscribed_in_the_crop():
    e = ellipse(32)
    assert e.mean() == pytest.approx(np.pi / 4, abs=0.02)
    assert e[16].all() and e[:, 16].all() and not e[0, 0] and not e[-1, -1]


def test_a_context_crop_holds_the_crop_in_its_middle_and_says_where_the_photograph_ends():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3)).astype(np.uint8)
    box = (20, 10, 16, 16)  # 16 px: no resizing
    context, valid = context_crop(image, box, 16, 4)
    assert context.shape == (3, 24, 24) and valid.all()
    np.testing.assert_array_equal(context[:, 4:20, 4:20], crop_resize(image, box, 16))
    np.testing.assert_array_equal(context[:, :4, :], image[6:10, 16:40].transpose(2, 0, 1))  # the ring above
    context, valid = context_crop(image, (0, 0, 16, 16), 16, 4)  # a box in the corner
    assert not valid[:4].any() and not valid[:, :4].any() and valid[4:, 4:].all()
    assert (context[:, :4] == 0).all()
