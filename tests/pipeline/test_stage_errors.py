"""Stages end bad runs with a one-line error naming the culprit, and leave no output behind."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import yaml

from cnnlab.params.schema import merge
from tests.conftest import REPO
from tests.pipeline.conftest import TINY, sh

pytestmark = pytest.mark.slow


def _crop(tmp_path, root, params=TINY):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = (f"{sys.executable} {REPO / 'stages/crop.py'} --root {root} --out {tmp_path / 'crops'} "
           f"--context {tmp_path / 'context'} --splits {tmp_path / 'splits.csv'} --figures {tmp_path / 'figures'} "
           f"--params {tmp_path / 'params.yaml'}")  # fmt: skip
    return sh(cmd, tmp_path, check=False)


def test_bad_box_stops_the_crop_stage_without_output(tiny_objects, tmp_path):
    rows = pd.read_csv(tiny_objects / "boxes.csv", dtype=str, keep_default_na=False)
    rows.loc[3, "w"] = "500"
    rows.to_csv(tiny_objects / "boxes.csv", index=False)
    out = _crop(tmp_path, tiny_objects)
    assert out.returncode == 1
    assert "error:" in out.stderr and "boxes.csv line 5" in out.stderr and "outside the 64x64 image" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "crops").exists() and not (tmp_path / "context").exists()
    assert not list(tmp_path.glob(".crops*"))


def test_truncated_image_stops_the_crop_stage_without_output(tiny_objects, tmp_path):
    rel = pd.read_csv(tiny_objects / "boxes.csv", dtype=str).path[7]
    data = (tiny_objects / rel).read_bytes()
    (tiny_objects / rel).write_bytes(data[: len(data) // 2])
    out = _crop(tmp_path, tiny_objects)
    assert out.returncode == 1 and rel in out.stderr and "truncated" in out.stderr
    assert not (tmp_path / "crops").exists() and not list(tmp_path.glob(".crops*"))


def test_misspelled_param_stops_the_stage(tiny_objects, tmp_path):
    params = merge(TINY, {"crop": {"sise": 24}})
    out = _crop(tmp_path, tiny_objects, params)
    assert out.returncode == 1 and "'crop.sise'" in out.stderr and "valid keys: size" in out.stderr
    assert not (tmp_path / "crops").exists()


def _stage(tmp_path, args, params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return sh(f"{sys.executable} {REPO / 'stages' / args} --params {tmp_path / 'params.yaml'}", tmp_path, check=False)


def test_unknown_model_name_fails_before_training_with_the_valid_names(tmp_path):
    params = {**TINY, "study": {"datasets": ["cifar10"], "models": ["simple_cnn", "vgg16"]}}
    args = (f"--dataset cifar10 --model vgg16 --prepared {tmp_path}/prep --out {tmp_path}/out "
            f"--checkpoints {tmp_path}/ck --metrics {tmp_path}/m --figures {tmp_path}/fig")  # fmt: skip
    out = _stage(tmp_path, f"study.py {args}", params)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "'study.models[1]': unknown name 'vgg16'; valid names: " in out.stderr  # the declared models
    assert "simple_cnn" in out.stderr.rsplit("valid names: ", 1)[1]
    assert not (tmp_path / "out").exists()


def test_missing_real_dataset_offline_fails_with_how_to_get_it(tmp_path):
    params = merge(TINY, {"datasets": {"cifar10_real": {"root": str(tmp_path / "raw"), "download": False}}})
    out = _stage(tmp_path, f"prepare.py --dataset cifar10_real --out {tmp_path}/prepared", params)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "error: CIFAR-10 not found" in out.stderr and "download: true" in out.stderr
    assert not (tmp_path / "prepared").exists()
