"""The benchmark suite runs (tiny sizes; its timings are not checked here) and its Grad-CAM
comparison is between equal masks."""

import importlib.util
import json
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import run as bench
    finally:
        sys.path.pop(0)
    out = tmp_path_factory.mktemp("bench") / "benchmarks.json"
    bench.main(["--quick", "--out", str(out)])
    return json.loads(out.read_text())


def test_every_case_measures_both_sides(results):
    for case, ours, theirs in (
        ("training", "cnnlab_images_per_s", "bare_images_per_s"),
        ("data", "dvc_images_per_s", "png_dataloader_images_per_s"),
    ):
        assert results[case][ours] > 0 and results[case][theirs] > 0
        assert results[case]["ratio"] == pytest.approx(results[case][ours] / results[case][theirs])
    assert 0 < results["flops"]["fraction"] < 1.5
    assert results["machine"]["cores"] >= 1 and "stand-in" in results["inputs"]
    assert {g["case"] for g in results["goals"]} == {
        "training", "gradcam", "flops", "pipeline", "pipeline_noop", "tests", "study"
    }  # fmt: skip
    for case in ("pipeline", "tests", "study"):  # --quick leaves out the clean repro and the suite
        assert next(g for g in results["goals"] if g["case"] == case)["verdict"] == "not run"


def test_gradcam_is_compared_at_equal_masks(results):
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        assert "pip install" in results["gradcam"]["skipped"]
        pytest.skip("pytorch-grad-cam is a benchmark-only dependency (.[bench]), not installed here")
    assert results["gradcam"]["mask_iou"] >= 0.99
