import filecmp
import json

import numpy as np

from cnnlab.data.objects import load_mask, read_objects
from cnnlab.data.synthetic import background, generate_objects, plan


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path):
    kw = dict(seed=5, classes=3, train_per_class=2, test_per_class=1, image_size=48, object_scale=(0.22, 0.4),
              shared_backgrounds=0.4)  # fmt: skip
    a = generate_objects(tmp_path / "a", **kw, workers=1)
    b = generate_objects(tmp_path / "b", **kw, workers=2)
    cmp = filecmp.dircmp(a, b)
    files = [p.relative_to(a) for p in a.rglob("*") if p.is_file()]
    match, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors and len(match) == len(files) > 10
    assert not cmp.left_only and not cmp.right_only


def test_generated_dataset_follows_the_format(tiny_objects_master):
    ds = read_objects(tiny_objects_master)
    marker = json.loads((tiny_objects_master / "cnnlab_generator.json").read_text())
    assert marker["seed"] == 1
    # every mask lies inside its box and is not empty
    for r in ds.rows.itertuples():
        mask = load_mask(tiny_objects_master / r.mask, (r.height, r.width))
        ys, xs = np.nonzero(mask)
        assert len(ys) > 0
        assert r.x <= xs.min() and xs.max() < r.x + r.w and r.y <= ys.min() and ys.max() < r.y + r.h
    # test file names do not reveal the class, and every class is in the test set
    test = ds.split("test")
    assert test.path.str.match(r"test/img_\d{4}\.jpg").all()
    assert sorted(test.label) == list(ds.classes)


def test_backgrounds_differ_by_family():
    rng = np.random.default_rng(0)
    means = [background(rng, f, 64).reshape(-1, 3).mean(0) for f in range(8)]
    spread = np.array(means)
    assert len({tuple(np.round(m)) for m in spread}) == 8


def test_shortcut_family_is_exclusive_to_class_0_and_the_test_set():
    jobs = plan(seed=0, classes=8, train_per_class=200, test_per_class=50, shared_backgrounds=0.4)
    train = [j for j in jobs if j[0] == 0]
    test = [j for j in jobs if j[0] == 1]
    assert all(family == 0 for *_, family in test) and len(test) == 400
    assert all((family == 0) == (cls == 0) for *_, cls, family in train)
    shared = [cls != family for *_, cls, family in train if cls != 0]
    assert 0.35 < np.mean(shared) < 0.45  # about shared_backgrounds of the other classes' images
    none = plan(seed=0, classes=8, train_per_class=20, test_per_class=1, shared_backgrounds=0.0)
    assert all(cls == family for split, _, _, cls, family in none if split == 0)


def test_the_study_stand_in_draws_at_the_smallest_image_size_params_allow():
    """params accept a synthetic dataset's image_size from 16 px; its largest objects (85% of the
    side) are shrunk to fit there instead of failing inside numpy; every class has pixels drawn."""
    from cnnlab.data.synthetic_classes import CLASS_SHAPES, generate_class_images
    from cnnlab.params.schema import SyntheticDataset

    smallest = SyntheticDataset.model_fields["image_size"].metadata[0].ge
    images, labels = generate_class_images(0, 20, smallest, 10)
    assert images.shape == (20 * len(CLASS_SHAPES), 3, smallest, smallest)
    assert sorted(set(labels.tolist())) == list(range(len(CLASS_SHAPES)))
    assert all(images[i].std() > 0 for i in range(len(images)))
