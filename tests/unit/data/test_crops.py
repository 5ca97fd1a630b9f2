import numpy as np
import pytest

from cnnlab.data.crops import _overlap, background_patches, black_out, crop_mask, crop_resize, place_patch
from cnnlab.data.objects import read_objects


def _image():
    img = np.zeros((40, 50, 3), np.uint8)
    img[10:20, 5:25] = (200, 100, 50)  # a 20x10 (w x h) box at x=5, y=10
    return img


def test_crop_without_resize_is_the_box_exactly():
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    out = crop_resize(img, (5, 10, 16, 16), 16)
    assert out.shape == (3, 16, 16)
    np.testing.assert_array_equal(out, img[10:26, 5:21].transpose(2, 0, 1))


def test_crop_of_a_uniform_box_resizes_to_its_colour():
    out = crop_resize(_image(), (5, 10, 20, 10), 8)
    assert out.shape == (3, 8, 8)
    assert (out[0] == 200).all() and (out[1] == 100).all() and (out[2] == 50).all()


def test_crop_mask_is_nearest_and_boolean():
    mask = np.zeros((40, 50), bool)
    mask[10:20, 5:15] = True  # left half of the box
    out = crop_mask(mask, (5, 10, 20, 10), 8)
    assert out.dtype == bool
    assert out[:, :4].all() and not out[:, 4:].any()


def test_black_out_only_touches_the_box():
    img = _image() + 1
    out = black_out(img, (5, 10, 20, 10))
    assert (out[10:20, 5:25] == 0).all()
    np.testing.assert_array_equal(out[:10], img[:10])
    np.testing.assert_array_equal(out[20:], img[20:])
    assert (img[10:20, 5:25] != 0).any()  # the input is not modified


def test_overlap_by_hand():
    assert _overlap((0, 0, 10, 10), (5, 5, 10, 10)) == pytest.approx(25 / 100)
    assert _overlap((0, 0, 10, 10), (20, 20, 5, 5)) == 0


def test_patches_avoid_the_box_when_they_can():
    rng = np.random.default_rng(0)
    box = (40, 40, 20, 20)
    for _ in range(50):
        patch = place_patch(rng, (100, 100), box, max_overlap=0.1)
        assert patch[2:] == (20, 20)  # the box's own size: the crops' scale
        assert _overlap(patch, box) <= 0.1
        assert 0 <= patch[0] <= 80 and 0 <= patch[1] <= 80


def test_background_patches_of_two_classes(tiny_objects):
    ds = read_objects(tiny_objects)
    patches = background_patches(ds, ("00", "04"), size=16, patches_per_image=2, max_overlap=0.25, seed=0)
    assert patches.images.shape == (12, 3, 16, 16) and patches.images.dtype == np.uint8
    assert sorted(patches.index.label.unique()) == ["00", "04"]
    assert (patches.labels(["00", "04"]) == 0).sum() == 6
    assert list(patches.index.columns) == ["id", "label", "x", "y", "w", "h"]
    index = patches.index
    assert index.id[index.label == "00"].str.startswith("train/00/").all()
    again = background_patches(ds, ("00", "04"), size=16, patches_per_image=2, max_overlap=0.25, seed=0)
    np.testing.assert_array_equal(patches.images, again.images)
