"""Augmentation: each step keeps the batch shape; CutMix/MixUp give soft targets summing to 1."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.augment import build_augment
from cnnlab.errors import ParamsError
from cnnlab.params.schema import Augment
from tests.conftest import make_params

STEPS = ["rotate90", "resized_crop", "translate", "hflip", "rotate_shift", "cutout", "cutmix", "mixup"]


def only(step: str, p: float = 1.0) -> Augment:
    off = {name: {"p": 0.0} for name in STEPS}
    off[step]["p"] = p
    return make_params({"augment": off}).augment


def batch(n=6, size=20):
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8), torch.arange(n) % 4


def test_everything_off_means_no_augmentation():
    assert (
        build_augment(make_params({"augment": {"hflip": {"p": 0}, "rotate_shift": {"p": 0}}}).augment, 4, 20) is None
    )


@pytest.mark.parametrize("step", STEPS)
def test_each_step_keeps_the_shape_and_changes_the_images(step):
    images, labels = batch()
    x, y = build_augment(only(step), num_classes=4, size=20)(images, labels)
    assert x.shape == images.shape and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert not torch.allclose(x, images.float() / 255), f"{step} at p=1 left every image unchanged"
    if step in ("cutmix", "mixup"):
        assert y.shape == (6, 4) and torch.allclose(y.sum(1), torch.ones(6))
        assert (y.max(1).values < 1).any()  # labels really mixed
    else:
        assert torch.equal(y, labels)


def test_rotate90_turns_by_quarter_turns_only():
    images, labels = batch(n=12)
    x, _ = build_augment(only("rotate90"), 4, 20)(images, labels)
    ref = images.float() / 255
    for i in range(len(x)):
        assert any(torch.allclose(x[i], torch.rot90(ref[i], k, dims=(1, 2)), atol=1e-6) for k in (1, 2, 3))


def test_soft_targets_when_a_batch_is_not_mixed():
    images, labels = batch()
    cfg = only("cutmix", p=0.0).model_copy(update={"mixup": only("mixup").mixup.model_copy(update={"p": 1e-9})})
    _, y = build_augment(cfg, 4, 20)(images, labels)
    assert y.shape == (6, 4) and torch.equal(y.argmax(1), labels) and torch.allclose(y.sum(1), torch.ones(6))


def test_probabilities_of_cutmix_and_mixup_cannot_exceed_one():
    with pytest.raises(ParamsError, match="augment.cutmix.p"):
        make_params({"augment": {"cutmix": {"p": 0.7}, "mixup": {"p": 0.5}}})
