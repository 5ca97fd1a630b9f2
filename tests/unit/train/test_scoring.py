import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.train.loop import TensorData
from cnnlab.train.scoring import score_classifier


class BrightnessNet(nn.Module):
    """Predicts class 0 for dark images, class 1 for bright ones (3 classes)."""

    def forward(self, x):  # (B, 3, H, W) -> (B, 3)
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([1 - m, m, torch.zeros_like(m)], 1)


def _data(values, labels):
    images = torch.tensor(values, dtype=torch.uint8)[:, None, None, None].expand(-1, 3, 4, 4).contiguous()
    return TensorData(images, torch.tensor(labels))


def test_score_classifier_by_hand():
    val = _data([10, 250, 250, 10], [0, 1, 1, 2])  # predictions 0, 1, 1, 0: 3 of 4 right
    test = _data([10, 10, 10, 250, 10, 10], [0, 1, 2, 1, 2, 1])  # predictions 0, 0, 0, 1, 0, 0
    bg = _data([10, 10, 250, 250], [0, 0, 0, 2])  # predictions 0, 0, 1, 1: 2 of 4 "right"
    m, pred = score_classifier(
        BrightnessNet(), val, test.images, test.labels.numpy(), bg, shortcut=0, num_classes=3, device="cpu"
    )
    assert pred.tolist() == [0, 0, 0, 1, 0, 0]
    assert m["val_accuracy"] == pytest.approx(3 / 4)
    assert m["test_accuracy"] == pytest.approx(2 / 6)
    assert m["test_val_ratio"] == pytest.approx((2 / 6) / (3 / 4))
    assert m["test_shortcut_rate"] == pytest.approx(5 / 6)
    assert m["test_recall"] == [1.0, pytest.approx(1 / 3), 0.0] and m["test_worst_class_recall"] == 0.0
    assert m["background_only_accuracy"] == pytest.approx(2 / 4)


def test_unlabelled_test_set_has_no_test_accuracy():
    val = _data([10, 250], [0, 1])
    m, pred = score_classifier(BrightnessNet(), val, val.images, None, val, shortcut=0, num_classes=3, device="cpu")
    assert "test_accuracy" not in m and m["test_shortcut_rate"] == 0.5
    assert isinstance(pred, np.ndarray)


def _agg(val, test):
    return {"val_accuracy": {"mean": val, "sd": 0.0, "per_seed": {"0": val}},
            "test_accuracy": {"mean": test, "sd": 0.0, "per_seed": {"0": test}}}  # fmt: skip


def test_the_recommended_cure_is_chosen_on_validation_among_the_masking_cures_only():
    from cnnlab.train.scoring import comparison

    results = {"none": _agg(0.95, 0.2),  # the shortcut: high on validation, useless on the test images
               "report": _agg(0.97, 0.3), "segment": _agg(0.78, 0.77), "segment_learned": _agg(0.76, 0.79),
               "mixed_rand": _agg(0.60, 0.5), "oracle": _agg(0.99, 0.99), "mixed_rand_learned": {"skipped": "why"}}
    out = comparison(results)
    assert out["recommended"] == "segment"  # by validation; the test set would have said segment_learned
    assert out["best_on_test"] == "segment_learned"
    assert "segment, segment_learned, mixed_rand" in out["recommended_chosen_by"]
    only_unmasked = comparison({"none": _agg(0.9, 0.2), "report": _agg(0.8, 0.4), "oracle": _agg(0.99, 0.99)})
    assert only_unmasked["recommended"] == "none" and "none of" in only_unmasked["recommended_chosen_by"]
