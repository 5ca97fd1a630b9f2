"""Cure strategies, seed aggregation, threshold selection and GrabCut, on tiny arrays."""

import numpy as np
import pytest
import torch

from cnnlab.attribution.masking import choose_threshold
from cnnlab.data.objects import read_objects
from cnnlab.data.segment import grabcut_mask, segment_split
from cnnlab.data.strategies import STRATEGIES, ChainData, eval_images, train_images, unavailable
from cnnlab.io import pack_folder
from cnnlab.metrics import mean_curves, over_seeds, paired_difference
from cnnlab.train.loop import TensorData
from cnnlab.train.scoring import score_classifier


def _chain(truth=True):
    images = {s: np.full((n, 3, 2, 2), 200, np.uint8) for s, n in (("train", 3), ("test", 2), ("paired", 2))}
    masks = {s: np.zeros((len(im), 2, 2), bool) for s, im in images.items()}
    for m in masks.values():
        m[:, 0, 0] = True  # object: the top-left pixel
    backgrounds = np.stack([np.full((3, 2, 2), 7, np.uint8), np.full((3, 2, 2), 9, np.uint8)])
    truth_masks = {s: ~m for s, m in masks.items()} if truth else None  # differs from the GrabCut ones
    learned = {}  # seed 0: the bottom-right pixel; seed 1: the top-right one
    for seed, (y, x) in ((0, (1, 1)), (1, (0, 1))):
        learned[seed] = {s: np.zeros_like(m) for s, m in masks.items()}
        for m in learned[seed].values():
            m[:, y, x] = True
    return ChainData(images=images, segments=masks, truth=truth_masks, backgrounds=backgrounds, learned=learned)


def test_every_strategy_on_tiny_data():
    data = _chain()
    gradcam = (np.array([1]), np.zeros((1, 3, 2, 2), np.uint8))
    out = {s: train_images(s, data, seed=0, gradcam=gradcam if s == "report" else None) for s in STRATEGIES}
    assert (out["none"] == 200).all()
    assert (out["report"][1] == 0).all() and (out["report"][[0, 2]] == 200).all()  # only the shortcut rows
    seg = out["segment"][:, 0]  # (N, 2, 2): object kept, rest black, every crop alike
    assert (seg[:, 0, 0] == 200).all() and (seg[:, 1, 1] == 0).all()
    mixed = out["mixed_rand"][:, 0]
    assert (mixed[:, 0, 0] == 200).all() and set(np.unique(mixed[:, 1, 1])) <= {7, 9}
    assert (train_images("mixed_rand", data, seed=0) == out["mixed_rand"]).all()  # seeded
    assert (out["oracle"][:, 0, 0, 0] == 0).all() and (out["oracle"][:, 0, 1, 1] == 200).all()  # ground truth
    # the learned cures: the same with the seed's learned masks
    learned = out["segment_learned"][:, 0]
    assert (learned[:, 1, 1] == 200).all() and (learned[:, 0, 0] == 0).all() and (learned[:, 0, 1] == 0).all()
    seed1 = train_images("segment_learned", data, seed=1)[:, 0]
    assert (seed1[:, 0, 1] == 200).all() and (seed1[:, 1, 1] == 0).all()
    mixed_learned = out["mixed_rand_learned"][:, 0]
    assert (mixed_learned[:, 1, 1] == 200).all() and set(np.unique(mixed_learned[:, 0, 0])) <= {7, 9}
    # test time: segment, segment_learned and oracle mask test crops; the others leave them as they are
    assert (eval_images("none", data, "test", 0) == 200).all()
    assert (eval_images("mixed_rand", data, "paired", 0) == 200).all()
    assert (eval_images("mixed_rand_learned", data, "test", 0) == 200).all()
    assert (eval_images("segment", data, "test", 0)[:, :, 1, 1] == 0).all()
    assert (eval_images("segment_learned", data, "test", 0)[:, :, 0, 0] == 0).all()
    assert (eval_images("segment_learned", data, "test", 1)[:, :, 0, 1] == 200).all()
    assert (eval_images("oracle", data, "paired", 0)[:, :, 0, 0] == 0).all()
    with pytest.raises(ValueError, match="report"):
        train_images("report", data, seed=0)


def test_oracle_is_unavailable_without_ground_truth_masks():
    assert unavailable("oracle", _chain(truth=False)).startswith("the dataset folder has no ground-truth mask")
    assert unavailable("segment", _chain(truth=False)) is None and unavailable("oracle", _chain()) is None
    no_masker = ChainData(**{**_chain().__dict__, "learned": None})
    assert unavailable("segment_learned", no_masker) == "no learned masks (the masker stage's output)"


def test_over_seeds_by_hand():
    agg = over_seeds({0: {"acc": 0.5, "gap": None, "name": "x"}, 1: {"acc": 0.7, "gap": 0.1}, 2: {"acc": 0.9}})
    assert agg["acc"]["mean"] == pytest.approx(0.7)
    assert agg["acc"]["sd"] == pytest.approx(0.2)  # sqrt(((-.2)^2 + 0 + .2^2) / (3 - 1))
    assert agg["acc"]["per_seed"] == {"0": 0.5, "1": 0.7, "2": 0.9}
    assert agg["gap"] == {"mean": 0.1, "sd": 0.0, "per_seed": {"1": 0.1}} and "name" not in agg


def test_paired_difference_calls_better_only_beyond_the_spread():
    d = paired_difference({"0": 0.8, "1": 0.9, "2": 0.7}, {"0": 0.5, "1": 0.5, "2": 0.5})
    assert d["per_seed"] == pytest.approx({"0": 0.3, "1": 0.4, "2": 0.2})
    assert d["mean"] == pytest.approx(0.3) and d["sd"] == pytest.approx(0.1) and d["better"]
    noisy = paired_difference({"0": 0.9, "1": 0.4}, {"0": 0.5, "1": 0.5})  # +0.4, -0.1: mean 0.15, sd 0.354
    assert not noisy["better"]
    assert not paired_difference({"0": 0.9}, {"0": 0.1})["better"]  # one seed proves nothing


def test_mean_curves_average_epochs_over_the_runs_that_reached_them():
    rows = mean_curves([[{"epoch": 1, "val_acc": 0.2}, {"epoch": 2, "val_acc": 0.4}], [{"epoch": 1, "val_acc": 0.4}]])
    assert rows == [{"epoch": 1, "val_acc": pytest.approx(0.3), "runs": 2}, {"epoch": 2, "val_acc": 0.4, "runs": 1}]


def test_choose_threshold_picks_the_best_iou():
    heat = np.array([[[0.9, 0.35], [0.2, 0.05]]])  # (1, 2, 2)
    truth = np.array([[[True, True], [False, False]]])
    best, scores = choose_threshold(heat, truth, [0.1, 0.3, 0.5])
    # 0.1 keeps 3 pixels (IoU 2/3), 0.3 keeps the two object pixels (1.0), 0.5 keeps one (0.5)
    assert best == 0.3 and scores == {"0.1": pytest.approx(2 / 3), "0.3": 1.0, "0.5": 0.5}


def test_grabcut_finds_a_square_on_a_textured_background():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (80, 80, 3)).astype(np.uint8)
    image[..., 1] += 60  # a noisy green background
    image[30:50, 30:50] = (220, 40, 40)  # a red square
    mask = grabcut_mask(image, (24, 24, 32, 32), iterations=3, max_side=64, margin=0.25)
    truth = np.zeros((80, 80), bool)
    truth[30:50, 30:50] = True
    assert (mask & truth).sum() / (mask | truth).sum() > 0.9
    assert not mask[:24].any() and not mask[:, 56:].any()  # nothing outside the box


def test_segment_split_gives_the_same_masks_with_any_number_of_workers(tiny_objects):
    ds = read_objects(tiny_objects)
    settings = dict(iterations=2, max_side=48, margin=0.25)
    settings["fallback"] = {"context": 0.25, "bins": 8, "margin": 0.75}
    one, which = segment_split(ds, "train", 16, workers=1, **settings)
    assert one.shape == (len(ds.split("train")), 16, 16) and one.any() and which.shape == (len(one),)
    for workers, folder in ((3, ds), (3, read_objects(pack_folder(tiny_objects, tiny_objects.with_suffix(".zip"))))):
        again, again_which = segment_split(folder, "train", 16, workers=workers, **settings)  # a zip: one ZipFile
        np.testing.assert_array_equal(again, one)
        np.testing.assert_array_equal(again_which, which)


def test_a_degenerate_grabcut_mask_gives_way_to_the_ring_seeds_then_the_ellipse():
    from cnnlab.data.segment import SOURCES, grabcut_crop

    image = np.full((64, 64, 3), 90, np.uint8)  # one flat grey: GrabCut has nothing to go by
    image[24:40, 24:40] = (230, 30, 30)  # a red square in the box...
    box = (20, 20, 24, 24)
    fallback = {"context": 0.25, "bins": 8, "margin": 0.75}
    mask, source = grabcut_crop(image, box, 24, iterations=1, max_side=64, margin=0.25, fallback=fallback)
    assert SOURCES[source] in ("grabcut", "ring_seeds") and 0.05 <= mask.mean() <= 0.95
    flat = np.full((64, 64, 3), 90, np.uint8)  # ...and no object at all: nothing but the box's ellipse is sound
    mask, source = grabcut_crop(flat, box, 24, iterations=1, max_side=64, margin=0.25, fallback=fallback)
    assert SOURCES[source] == "ellipse" and 0.7 < mask.mean() < 0.85
    mask, source = grabcut_crop(flat, box, 24, iterations=1, max_side=64, margin=0.25)  # no fallback: as it is
    assert source == 0


class BrightnessNet(torch.nn.Module):
    def forward(self, x):  # dark -> class 0, bright -> class 1
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([1 - m, m], 1)


def _data(values, labels):
    images = torch.tensor(values, dtype=torch.uint8)[:, None, None, None].expand(-1, 3, 2, 2).contiguous()
    return TensorData(images, torch.tensor(labels))


def test_bg_gap_pairs_each_paired_image_with_its_test_image():
    val = _data([10, 250], [0, 1])
    test = _data([10, 10, 10], [0, 1, 1])  # shortcut background: everything looks dark, predicted 0
    paired = _data([250, 250], [1, 1])  # the objects of test rows 2 and 1 on their own backgrounds
    m, _ = score_classifier(BrightnessNet(), val, test.images, test.labels.numpy(), val, shortcut=0, num_classes=2,
                            device="cpu", paired_images=paired.images, paired_rows=np.array([2, 1]))  # fmt: skip
    assert m["own_background_accuracy"] == 1.0 and m["shortcut_background_accuracy"] == 0.0
    assert m["bg_gap"] == 1.0 and m["shortcut_class_test_recall"] == 1.0
    assert m["test_accuracy"] == pytest.approx(1 / 3)


def test_paired_difference_of_a_lower_is_better_metric():
    gap = paired_difference({"0": 0.05, "1": 0.03}, {"0": 0.6, "1": 0.5}, higher_is_better=False)
    assert gap["mean"] == pytest.approx(-0.51) and gap["better"]
    assert not paired_difference({"0": 0.05, "1": 0.03}, {"0": 0.6, "1": 0.5})["better"]
