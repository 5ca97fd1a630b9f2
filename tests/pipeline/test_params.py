"""params.yaml is the one source of truth, under DVC: a deleted key stops `dvc repro` before any
stage does work, naming the key; a dataset of your own, named as you like, runs through the study
with params.yaml edits only."""

from __future__ import annotations

import copy
import json

import pytest
from PIL import Image

from cnnlab.params.schema import merge
from tests.pipeline.conftest import TINY, make_repo, sh
from tests.unit.data.test_sources import write_tree

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("path", [("models", "resnet", "width"), ("objects", "root"), ("visualize", "images")])
def test_deleting_a_key_stops_dvc_repro_naming_it_before_any_stage_works(tmp_path, path):
    params = copy.deepcopy(TINY)
    node = params
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    repo = make_repo(tmp_path / "repo", params)
    out = sh("dvc repro", repo, check=False)
    assert out.returncode != 0 and ".".join(path) in out.stdout + out.stderr, out.stdout + out.stderr
    assert not (repo / "data/raw/objects.zip").exists() and not (repo / "dvc.lock").exists()  # nothing was made


def test_a_folder_dataset_named_by_the_user_runs_through_the_study(tmp_path):
    flowers = {"source": "folder", "root": "data/raw/flowers", "image_size": 24, "val_fraction": 0.25,
               "limit_per_class": 0}  # fmt: skip
    # only params.yaml changes; visualize's cells (cifar10-resnet, ...) are not in this matrix, and
    # nothing fails for it
    params = merge(TINY, {"datasets": {"my_flowers": flowers}, "study": {"datasets": ["my_flowers"]}})
    repo = make_repo(tmp_path / "repo", params)
    write_tree(repo / "data/raw/flowers/train", ["daisy", "rose", "tulip"], 4)
    (repo / "data/raw/flowers/test").mkdir()
    for i in range(3):
        Image.new("RGB", (30, 20), (40 * i, 90, 160)).save(repo / f"data/raw/flowers/test/img{i}.png")
    out = sh("dvc repro study transfer", repo)
    assert "Running stage 'prepare@my_flowers'" in out.stdout and "Running stage 'pretrain'" in out.stdout
    for model in ("simple_cnn", "resnet", "mobilenet_v3"):  # the transfer cell: 2 images per class
        cell = f"my_flowers-{model}"
        m = json.loads((repo / f"metrics/study/{cell}/metrics.json").read_text())
        assert m["dataset"] == "my_flowers" and m["data_source"].startswith("folder data/raw/flowers")
        train = 6 if model == "mobilenet_v3" else 9
        assert m["sizes"] == {"train": train, "val": 3, "test": 3} and "test" not in m  # an unlabelled test set
        preds = (repo / f"data/study/{cell}/test_predictions.csv").read_text().splitlines()
        assert preds[0] == "id,label" and preds[1].split(",")[0] == "test/img0.png"
        assert preds[1].split(",")[1] in ("daisy", "rose", "tulip")
        assert (repo / f"reports/study/{cell}/examples.png").stat().st_size > 1000
