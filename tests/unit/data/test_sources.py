"""The study's dataset sources, on small files written in the real on-disk formats."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import CIFAR10

from cnnlab.data.arrays import load_images, save_images
from cnnlab.data.sources import load_dataset
from cnnlab.errors import DatasetError
from tests.conftest import make_params

REAL = {"root": "", "image_size": 32, "val_fraction": 0.1, "limit_per_class": 0}


def cfg(source: str, **kw):
    """A dataset's params as params.yaml would hold them (validated)."""
    if source == "synthetic":
        base = {"stream": 10, "image_size": 32, "val_fraction": 0.1, "train_per_class": 10, "test_per_class": 2}
    else:
        base = {**REAL, **({"download": False} if source != "folder" else {})}
    return make_params({"datasets": {"mine": {"source": source, **base, **kw}}}).datasets["mine"]


def write_cifar10(root, per_batch=20):
    """The python version of CIFAR-10 as torchvision downloads it: pickled dicts of uint8 rows."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    md5 = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(v) for v in np.arange(per_batch) % 10]
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        data[:, 0] = labels  # red channel of the top-left pixel = label: lets the test check the layout
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    md5["batches.meta"] = hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest()
    return md5


def test_cifar10_from_torchvisions_on_disk_format(tmp_path, monkeypatch):
    md5 = write_cifar10(tmp_path / "cifar")
    # torchvision checks the real files' MD5 sums; point it at the small files' sums
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    data = load_dataset("cifar", cfg("cifar10", root=str(tmp_path / "cifar")), seed=0)
    assert data.classes[0] == "airplane" and len(data.classes) == 10
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 90, "val": 10, "test": 20}
    for split in data.splits.values():
        assert split.images.shape[1:] == (3, 32, 32) and split.images.dtype == np.uint8
        assert np.array_equal(split.images[:, 0, 0, 0], split.labels(data.classes))  # channel-first, labels aligned
    assert sorted(set(data.splits["val"].labels(data.classes))) == list(range(10))  # stratified hold-out
    assert "torchvision CIFAR-10" in data.source and data.name == "cifar"


def test_missing_cifar10_offline_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match=r"cifar-10-python.tar.gz.*download: true|download: true.*cifar-10"):
        load_dataset("cifar", cfg("cifar10", root=str(tmp_path / "nothing")), seed=0)


def write_tree(folder, classes, per_class, size=(40, 30), fmt="JPEG", ext=".jpg"):
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour = (c * 60 % 256, 100, 200)
            Image.new("RGB", size, colour).save(folder / name / f"{name}_{i}{ext}", fmt)


def test_image_folder_tree_with_val_and_labelled_test(tmp_path):
    root = tmp_path / "imagenet10"
    write_tree(root / "train", ["cat", "dog", "fox"], 4)
    write_tree(root / "val", ["cat", "dog", "fox"], 2, fmt="PNG", ext=".png")
    write_tree(root / "test", ["cat", "dog", "fox"], 1)
    data = load_dataset("my_animals", cfg("folder", root=str(root), image_size=24), seed=0)
    assert data.classes == ["cat", "dog", "fox"]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 12, "val": 6, "test": 3}
    assert data.splits["train"].images.shape == (12, 3, 24, 24)
    assert data.splits["val"].index.id[0] == "val/cat/cat_0.png" and data.name == "my_animals"
    # each class's colour survives decoding and resizing
    assert np.allclose(data.splits["test"].images[:, 0, 12, 12], [0, 60, 120], atol=2)  # JPEG rounding


def test_image_folder_unlabelled_test_and_held_out_val(tmp_path):
    root = tmp_path / "tree"
    write_tree(root / "train", ["a", "b"], 5)
    (root / "test").mkdir()
    Image.new("RGB", (30, 30)).save(root / "test" / "x.png")
    data = load_dataset("tree", cfg("folder", root=str(root), image_size=16, val_fraction=0.2), 0)
    assert len(data.splits["val"]) == 2 and len(data.splits["train"]) == 8
    test = data.splits["test"]
    assert test.labels(data.classes).tolist() == [-1] and test.index.id.tolist() == ["test/x.png"]
    assert not test.labelled


def test_image_folder_errors_name_the_file_or_folder(tmp_path):
    root = tmp_path / "tree"
    with pytest.raises(DatasetError, match=r"train not found.*datasets.tree.root"):
        load_dataset("tree", cfg("folder", root=str(root)), 0)
    write_tree(root / "train", ["a", "b"], 3)
    write_tree(root / "val", ["a", "c"], 1)
    with pytest.raises(DatasetError, match=r"class folders \['a', 'c'\] differ"):
        load_dataset("tree", cfg("folder", root=str(root)), 0)
    (root / "val" / "c").rename(root / "val" / "b")
    (root / "train" / "a" / "a_1.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DatasetError, match=r"a_1.jpg: unreadable or truncated image"):
        load_dataset("tree", cfg("folder", root=str(root)), 0)


def test_imagenette_on_disk_layout(tmp_path):
    """imagenette2-160/{train,val}/<wnid>/*.JPEG, as torchvision extracts it."""
    root = tmp_path / "imagenette"
    wnids = ["n01440764", "n02102040", "n02979186"]
    write_tree(root / "imagenette2-160" / "train", wnids, 4, size=(160, 213), ext=".JPEG")
    write_tree(root / "imagenette2-160" / "val", wnids, 1, size=(213, 160), ext=".JPEG")
    data = load_dataset("imagenette", cfg("imagenette", root=str(root), image_size=32, val_fraction=0.25), 0)
    assert data.classes == ["tench", "English springer", "cassette player"]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 9, "val": 3, "test": 3}  # 25% of 12 held out
    assert data.splits["test"].images.shape == (3, 3, 32, 32)
    assert data.splits["test"].index.id[0] == "imagenette2-160/val/n01440764/n01440764_0.JPEG"


def test_missing_imagenette_offline_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match=r"imagenette2-160.tgz.*download: true|download: true.*imagenette2-160"):
        load_dataset("imagenette", cfg("imagenette", root=str(tmp_path)), 0)


def test_synthetic_sources_are_deterministic_and_round_trip(tmp_path):
    a = load_dataset("a", cfg("synthetic", test_per_class=1), seed=3)
    b = load_dataset("b", cfg("synthetic", test_per_class=1), seed=3)
    c = load_dataset("c", cfg("synthetic", test_per_class=1, image_size=48, stream=20), seed=3)
    assert np.array_equal(a.splits["train"].images, b.splits["train"].images)  # same seed and stream
    assert c.splits["train"].images.shape[1:] == (3, 48, 48) and len(c.classes) == 10
    assert "synthetic" in a.source and "seed 3" in a.source
    save_images(a, tmp_path / "p")
    back = load_images(tmp_path / "p")
    for split in ("train", "val", "test"):
        assert np.array_equal(back.splits[split].images, a.splits[split].images)
        assert back.splits[split].index.equals(a.splits[split].index)
    assert (back.name, back.source, back.classes, back.image_size) == ("a", a.source, a.classes, 32)
