import errno
import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from cnnlab.io import OutputError, atomic_dir, load_array, save_array, write_csv, write_json
from tests.conftest import REPO


def test_atomic_dir_replaces_on_success(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
        assert not (out / "new.txt").exists()  # nothing visible until the end
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.npy").write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_write_json_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_keeps_the_old_file_and_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"a": 1})
    monkeypatch.setattr(os, "fsync", _disk_full)  # the disk fills while the new version is written
    with pytest.raises(OutputError, match=r"cannot write .*metrics.json: the disk is full .* run `dvc repro` again"):
        write_json(path, {"a": 2})
    assert path.read_text() == '{\n  "a": 1\n}\n'  # nothing already written is lost
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no partial file left


def test_a_full_disk_inside_an_output_folder_keeps_the_old_folder(tmp_path, monkeypatch):
    out = tmp_path / "models"
    with atomic_dir(out) as tmp:
        save_array(tmp / "a.npy", np.zeros(3))
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OutputError, match="models"):
        with atomic_dir(out) as tmp:
            save_array(tmp / "a.npy", np.ones(3))
    assert load_array(out / "a.npy").tolist() == [0, 0, 0]
    assert [p.name for p in tmp_path.iterdir()] == ["models"]


def test_a_stage_that_hits_a_full_disk_ends_with_one_clear_line(tmp_path, monkeypatch, capsys):
    from cnnlab.stage import run_stage

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    argv = ["stage", "--out", str(tmp_path / "out.json"), "--params", str(tmp_path / "params.yaml")]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(SystemExit) as exit_:
        run_stage(lambda p, args: write_json(args.out, {"x": 1}), out="a JSON file")
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write") and "disk is full" in err and "\n" not in err


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_get_the_modes_of_any_new_file_not_private_ones(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_csv(tmp_path / "p.csv", pd.DataFrame({"a": [1]}))
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "p.csv").stat().st_mode & 0o777 == 0o666 & ~mask  # mkstemp alone gives 0600
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~mask  # mkdtemp alone gives 0700
