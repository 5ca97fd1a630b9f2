"""`cnnlab overrides`: a params delta as `dvc exp run -S` arguments that DVC itself applies."""

import copy
import os
import shutil
import subprocess
import sys

import yaml

from cnnlab.cli import overrides
from cnnlab.params.schema import merge, parse_params
from tests.conftest import REPO, REPO_PARAMS

FLOWERS = {"source": "folder", "root": "data/my flowers", "image_size": 32, "val_fraction": 0.2, "limit_per_class": 0}


def _applied_by_dvc(tmp_path, delta: dict) -> dict:
    from dvc.utils.hydra import apply_overrides  # what `dvc exp run -S` does to params.yaml

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    apply_overrides(tmp_path / "params.yaml", overrides(delta, REPO_PARAMS))
    return yaml.safe_load((tmp_path / "params.yaml").read_text())


def test_the_real_data_delta_applied_by_dvc_gives_the_merged_params(tmp_path):
    delta = yaml.safe_load((REPO / "configs/real.yaml").read_text())
    assert _applied_by_dvc(tmp_path, delta) == merge(REPO_PARAMS, delta)


def test_the_full_stand_in_delta_applied_by_dvc_gives_the_merged_params(tmp_path):
    delta = yaml.safe_load((REPO / "configs/full.yaml").read_text())
    applied = _applied_by_dvc(tmp_path, delta)
    assert applied == merge(REPO_PARAMS, delta) and applied["study"]["datasets"] == ["cifar10", "imagenet10"]


def test_a_new_dataset_is_added_whole_and_strings_keep_their_spaces(tmp_path):
    delta = {"datasets": {"my_flowers": FLOWERS}, "study": {"datasets": ["my_flowers"]}}
    assert overrides(delta, REPO_PARAMS)[0].startswith("+datasets.my_flowers={source:")
    applied = _applied_by_dvc(tmp_path, delta)
    assert applied == merge(REPO_PARAMS, delta) and applied["datasets"]["my_flowers"]["root"] == "data/my flowers"
    parse_params(applied)


def test_the_command_prints_arguments_that_xargs_passes_intact(tmp_path):
    (tmp_path / "delta.yaml").write_text(yaml.safe_dump({"datasets": {"my_flowers": FLOWERS}, "lr": 0.05}))
    listed = subprocess.run(
        f"{sys.executable} -m cnnlab.cli overrides {tmp_path / 'delta.yaml'} | xargs {sys.executable} -c "
        "'import sys, json; print(json.dumps(sys.argv[1:]))'",
        shell=True, cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    args = yaml.safe_load(listed.stdout)
    assert args[0::2] == ["-S", "-S"] and args[3] == "lr=0.05" and "root:\"data/my flowers\"" in args[1]


def test_a_bad_delta_fails_before_any_experiment_naming_the_key(tmp_path):
    bad = copy.deepcopy({"models": {"resnet": {"widht": 8}}})
    (tmp_path / "delta.yaml").write_text(yaml.safe_dump(bad))
    out = subprocess.run([sys.executable, "-m", "cnnlab.cli", "overrides", str(tmp_path / "delta.yaml")], cwd=REPO,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 1 and "'models.resnet.widht'" in out.stderr and out.stdout == ""


def test_a_reader_that_stops_early_gets_no_traceback():
    read, write = os.pipe()
    os.close(read)  # like `| head` that has already exited: every write fails with EPIPE
    try:
        out = subprocess.run([sys.executable, "-m", "cnnlab.cli", "overrides", "configs/real.yaml"], cwd=REPO,
                             stdout=write, stderr=subprocess.PIPE, text=True)  # fmt: skip
    finally:
        os.close(write)
    assert out.returncode == 1 and out.stderr == ""


def test_mask_figure_sets_two_runs_side_by_side_and_names_a_run_without_crops(tmp_path, capsys):
    import numpy as np
    import pytest
    from PIL import Image

    from cnnlab.cli import MASK_EXAMPLES, main
    from cnnlab.io import save_array

    rng = np.random.default_rng(0)
    for run, size, has_truth in (("builtin", 16, True), ("photos", 24, False)):  # crops of two sizes
        folder = tmp_path / run / MASK_EXAMPLES
        save_array(folder / "images.npy", rng.integers(0, 256, (2, 3, size, size), dtype=np.uint8))
        for source in ("GrabCut", "Grad-CAM", "learned") + (("truth",) if has_truth else ()):
            save_array(folder / f"{source}.npy", rng.random((2, size, size)) > 0.5)
    out = tmp_path / "both.png"
    main(["mask-figure", str(tmp_path / "builtin"), str(tmp_path / "photos"), "--out", str(out)])
    assert "4 crops of 2 runs" in capsys.readouterr().out
    with Image.open(out) as image:
        # four rows, five columns (crop, three sources, truth: one run has it); four columns would be narrower than tall
        assert 1.0 < image.width / image.height < 1.4
    with pytest.raises(SystemExit):
        main(["mask-figure", str(tmp_path / "builtin"), str(tmp_path / "nothing"), "--out", str(out)])
    assert "nothing/data/evaluation/mask_sources: no mask-source crops here; run `dvc repro evaluate`" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["mask-figure", str(tmp_path / "builtin"), "--names", "a", "b"])
    assert "--names: 2 names for 1 runs" in capsys.readouterr().err
