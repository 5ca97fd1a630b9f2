import numpy as np
import pytest

from cnnlab.metrics import mask_quality, shortcut_metrics


def test_shortcut_metrics_by_hand():
    y_true = [0, 0, 1, 1, 2, 2, 3, 3]
    y_pred = [0, 0, 0, 1, 0, 2, 0, 0]  # six 0s; class 3 never right
    m = shortcut_metrics(y_true, y_pred, shortcut_class=0, num_classes=4)
    assert m["accuracy"] == pytest.approx(4 / 8)
    assert m["shortcut_rate"] == pytest.approx(6 / 8)
    assert m["recall"] == [1.0, 0.5, 0.5, 0.0]
    assert m["worst_class_recall"] == 0.0


def test_worst_recall_ignores_classes_absent_from_the_truth():
    m = shortcut_metrics([1, 1, 2], [1, 1, 1], shortcut_class=0, num_classes=3)
    assert m["recall"] == [None, 1.0, 0.0]
    assert m["worst_class_recall"] == 0.0
    assert m["shortcut_rate"] == 0.0


def test_mask_quality_by_hand():
    pred = np.zeros((2, 2, 2), bool)
    truth = np.zeros((2, 2, 2), bool)
    pred[0, 0, :] = True  # 2 pixels
    truth[0, :, 0] = True  # 2 pixels, 1 shared -> IoU 1/3
    pred[1] = True  # all 4
    truth[1, 0, 0] = True  # IoU 1/4
    q = mask_quality(pred, truth)
    assert q["kept_fraction"] == pytest.approx((2 + 4) / 8)
    assert q["mask_iou"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    assert mask_quality(pred)["mask_iou"] is None


def test_degenerate_fraction_and_projection_fill_by_hand():
    pred = np.zeros((3, 4, 5), bool)  # 20 px a crop
    pred[0, 0, 0] = True  # 1/20 = 5%: not degenerate (the bound is kept)
    pred[1] = True  # 100%: degenerate
    pred[1, 0, 0] = False  # 95%: still not degenerate
    pred[2, 1:3, 1:4] = True  # 6 px in rows 1-2, columns 1-3
    q = mask_quality(pred)
    assert q["degenerate_fraction"] == 0.0
    pred[0, 0, 0] = False  # an empty mask: degenerate
    assert mask_quality(pred)["degenerate_fraction"] == pytest.approx(1 / 3)
    # rows and columns reached: crop 0 1/4 and 1/5, crop 1 all, crop 2 2/4 and 3/5
    assert q["projection_fill"] == pytest.approx(((1 / 4 + 1 / 5) / 2 + 1 + (2 / 4 + 3 / 5) / 2) / 3)


def test_mask_ious_are_scikit_learn_s_jaccard_per_crop():
    from sklearn.metrics import jaccard_score

    from cnnlab.metrics import mask_ious

    rng = np.random.default_rng(0)
    pred, truth = rng.random((20, 6, 6)) < 0.4, rng.random((20, 6, 6)) < 0.4
    pred[0] = truth[0] = False  # both empty: 1, as zero_division=1.0 says
    expected = [jaccard_score(t.ravel(), p.ravel(), zero_division=1.0) for p, t in zip(pred, truth)]
    np.testing.assert_allclose(mask_ious(pred, truth), expected)
    assert mask_ious(pred, truth)[0] == 1.0
