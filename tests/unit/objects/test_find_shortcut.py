"""find_shortcut: which training class's background the test images share, from background
patches only (cnnlab.objects.find_shortcut), and the decision every later stage reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnnlab.data.arrays import Split
from cnnlab.data.crops import background_patches
from cnnlab.data.objects import read_objects
from cnnlab.data.synthetic import background
from cnnlab.errors import DatasetError
from cnnlab.objects.decision import Decision, read_decision, write_decision
from cnnlab.objects.find_shortcut import decide, find_shortcut, fit_backgrounds, patch_features
from tests.conftest import make_params

CLASSES = ["00", "01", "02"]


def _patches(family: int, images: int, per_image: int, seed: int) -> np.ndarray:
    """(images * per_image, 3, 24, 24) patches of a background family, a corner blacked out (the box)."""
    rng = np.random.default_rng([seed, family])
    out = []
    for _ in range(images * per_image):
        patch = background(rng, family, 24).transpose(2, 0, 1).copy()
        patch[:, :8, :8] = 0
        out.append(patch)
    return np.stack(out)


@pytest.fixture(scope="module")
def model():
    """The classifier of backgrounds on 20 images of each of three families (family k: class k)."""
    patches = np.concatenate([_patches(f, 20, 1, seed=0) for f in range(3)])
    labels = np.repeat(np.arange(3), 20)
    return fit_backgrounds(patch_features(patches), labels, np.arange(60), CLASSES, seed=0)


def _test_images(families: list[int], per_image: int = 4) -> tuple[np.ndarray, np.ndarray]:
    patches = np.concatenate([_patches(f, 1, per_image, seed=10 + i) for i, f in enumerate(families)])
    return patch_features(patches), np.repeat([f"test/{i:03d}.jpg" for i in range(len(families))], per_image)


def test_the_class_whose_background_every_test_image_shares_is_the_shortcut(model):
    assert model.val_accuracy > 0.9  # the three families are told apart on held-out images
    found = decide(model, *_test_images([1] * 15))
    assert found["shortcut"] == "01" and found["share"]["01"] == 1.0 and found["test_images"] == 15
    assert found["p_value"] < 1e-6 and found["typical_share"] >= 0.5
    assert found["contrast"] in ("00", "02") and set(found["contrast_scores"]) == {"00", "02"}
    assert "01 has 100% of the test images" in found["reason"]


def test_no_class_stands_out_when_the_test_backgrounds_are_spread_over_the_classes(model):
    found = decide(model, *_test_images([0, 1, 2] * 5))
    assert found["shortcut"] is None and found["contrast"] is None
    assert "under 50% of the test images" in found["reason"] or "under 2x the runner-up" in found["reason"]


def test_a_background_no_training_class_has_is_no_shortcut(model):
    found = decide(model, *_test_images([5] * 15))  # a family none of the three classes lies on
    assert found["shortcut"] is None, found["reason"]


def test_features_read_only_the_pixels_outside_the_box():
    patch = np.zeros((1, 3, 16, 16), np.uint8)
    patch[0, 0], patch[0, 1], patch[0, 2] = 200, 40, 90  # one colour...
    boxed = patch.copy()
    boxed[:, :, :, :6] = 0  # ... and the same with the box's side blacked out
    a, b = patch_features(patch), patch_features(boxed)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a[0, :3], np.array([200, 40, 90]) / 255, atol=1e-6)


def test_the_decision_file_holds_only_the_pair(tmp_path):
    write_decision(tmp_path / "auto.json", Decision("00", "04"))
    write_decision(tmp_path / "explicit.json", Decision("00", "04"))
    assert (tmp_path / "auto.json").read_bytes() == (tmp_path / "explicit.json").read_bytes()
    assert read_decision(tmp_path / "auto.json") == Decision("00", "04", "")
    none = Decision(None, None, "nothing stands out")
    write_decision(tmp_path / "none.json", none)
    assert read_decision(tmp_path / "none.json") == none and "nothing stands out" in none.skipped("the cure")
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(DatasetError, match=r"bad.json: not the find_shortcut stage's decision.*dvc repro"):
        read_decision(tmp_path / "bad.json")


def _train_patches(root, p) -> Split:
    ds = read_objects(root)
    return background_patches(ds, ds.classes, p.crop.size, 1, p.backgrounds.max_box_overlap, p.seed)


def _find(p, folder, patches_of=None):
    """find_shortcut with the settings of `p` on `folder`, its training patches drawn as `patches_of`'s."""
    train = _train_patches(folder, patches_of or p)
    return find_shortcut(p.backgrounds, p.crop.size, p.seed, read_objects(folder), train)


def test_an_explicit_pair_is_kept_and_checked(tiny_objects):
    p = make_params({"backgrounds": {"classes": ["00", "03"]}, "crop": {"size": 16}})
    found = _find(p, tiny_objects)
    assert found.decision == Decision("00", "03") and found.metrics["decided_by"].startswith("explicit")
    assert "shortcut.png" in found.figures()
    wrong = make_params({"backgrounds": {"classes": ["00", "99"]}, "crop": {"size": 16}})
    with pytest.raises(DatasetError, match=r"'backgrounds.classes\[1\]' names class '99'"):
        _find(wrong, tiny_objects, patches_of=p)


def test_test_boxes_that_leave_no_background_are_named_with_what_to_do(tiny_objects):
    boxes = pd.read_csv(tiny_objects / "boxes.csv", dtype={"path": str, "label": str}, keep_default_na=False)
    test = boxes.path.str.startswith("test/")
    boxes.loc[test, ["x", "y"]] = 0
    boxes.loc[test, ["w", "h"]] = 64  # every test box is its whole image
    boxes.to_csv(tiny_objects / "boxes.csv", index=False)
    p = make_params({"crop": {"size": 16}})
    with pytest.raises(DatasetError, match=r"test/img_\d+\.jpg: its box leaves too little background.*"
                                           r"set params key backgrounds.classes"):  # fmt: skip
        _find(p, tiny_objects)
