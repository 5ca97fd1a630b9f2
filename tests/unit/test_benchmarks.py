"""The benchmark suite runs (tiny sizes; its timings are not checked here) and its Grad-CAM
comparison is between equal masks."""

import importlib.util
import json
import sys

import pytest

from tests.conftest import REPO


def benchmarks(name: str = "run"):
    """benchmarks/<name>.py as a module (run: the cases; goals: their verdicts)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    bench = benchmarks()
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
    assert results["commit"] and results["date"]  # what was measured, and when
    assert {g["case"] for g in results["goals"]} == {
        "training", "gradcam", "flops", "pipeline", "masker_share", "exp_run", "pipeline_noop", "pull", "tests",
        "masker", "study", "transfer"}  # fmt: skip
    # --quick leaves out the clean repro, the suite and the masker's clones
    for case in ("pipeline", "masker_share", "exp_run", "pull", "tests", "masker", "study", "transfer"):
        assert next(g for g in results["goals"] if g["case"] == case)["verdict"] == "not run"


def test_gradcam_is_compared_at_equal_masks(results):
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        assert "pip install" in results["gradcam"]["skipped"]
        pytest.skip("pytorch-grad-cam is a benchmark-only dependency (.[bench]), not installed here")
    assert results["gradcam"]["mask_iou"] >= 0.99


def test_the_transfer_goal_pairs_each_pretrained_cell_with_its_random_twin():
    goals = benchmarks("goals")

    def cell(dataset, weights, frozen, acc, family="mobilenet_v3"):
        return {"matrix": "transfer", "dataset": dataset, "family": family, "frozen": frozen,
                "weights": weights, "test_accuracy": acc}  # fmt: skip

    cells = {
        "a-frozen": cell("a", "pretrained on shapes", True, 0.65),
        "a-frozen-random": cell("a", "random", True, 0.10),
        "a-tuned": cell("a", "imagenet", False, 0.56),
        "a-tuned-random": cell("a", "random", False, 0.50),
        "b-frozen": cell("b", "pretrained on shapes", True, 0.72),
        "b-frozen-random": cell("b", "random", True, 0.12),
        "b-simple": {"matrix": "study", "weights": "random", "test_accuracy": 0.01},  # not a transfer cell
        # weights: imagenet that fell back to random is a random backbone, not a pretrained one
        "b-fallback": cell("b", "random (ImageNet weights unavailable; fallback: random)", True, 0.11),
    }
    gains = goals.transfer_gains(cells)
    assert gains == pytest.approx({"a-frozen - a-frozen-random": 0.55, "a-tuned - a-tuned-random": 0.06,
                                   "b-frozen - b-frozen-random": 0.60, "b-frozen - b-fallback": 0.61})  # fmt: skip
    row = next(r for r in goals.summary_rows({"pipeline": {"study": cells}}) if r[0] == "transfer")
    assert row[1] == "0.06" and row[3] == "NOT met"
    cells["a-tuned"]["test_accuracy"] = 0.70
    row = next(r for r in goals.summary_rows({"pipeline": {"study": cells}}) if r[0] == "transfer")
    assert row[1] == "0.2" and row[3] == "met"


def test_a_suite_that_failed_meets_no_time_goal():
    goals = benchmarks("goals")
    passed = {"seconds": 300.0, "returncode": 0, "summary": "551 passed in 300s", "failed": []}
    failed = {"seconds": 300.0, "returncode": 1, "summary": "1 failed, 550 passed in 300s",
              "failed": ["FAILED tests/unit/test_x.py::test_y - AssertionError"]}  # fmt: skip
    for tests, verdict in ((passed, "met"), (failed, "NOT met: the suite failed (1 failed, 550 passed in 300s)")):
        (row,) = [r for r in goals.summary_rows({"tests": tests}) if r[0] == "tests"]
        assert row == ("tests", "300", "pytest, s <= 360", verdict)


def test_cpu_steal_is_the_stolen_share_of_the_time_and_stands_beside_the_pipeline_time():
    bench, goals = benchmarks(), benchmarks("goals")
    before = [100, 0, 50, 800, 0, 0, 0, 50, 0, 0]
    after = [250, 0, 100, 850, 0, 0, 0, 250, 0, 0]  # 450 ticks spent, 200 of them stolen
    assert bench.steal_fraction(before, after) == pytest.approx(200 / 450)
    assert bench.steal_fraction(None, after) is None and bench.steal_fraction(before, before) is None
    (row,) = [r for r in goals.summary_rows({"pipeline": {"ratio": 0.9, "cpu_steal": 0.25}}) if r[0] == "pipeline"]
    assert row[1] == "0.9 (25% of the CPU time stolen by the hypervisor)" and row[3] == "NOT met"
    (row,) = [r for r in goals.summary_rows({"tests": {"seconds": 300.0, "cpu_steal": 0.002}}) if r[0] == "tests"]
    assert row[1] == "300"  # under 1%: not worth a word
    times = bench.cpu_times()
    assert times is None or (len(times) >= 8 and all(t >= 0 for t in times))


def test_the_batched_ensemble_trains_exactly_the_separate_models():
    """benchmarks/ensemble.py compares sequential training with a grouped ensemble: the two must be
    the same computation, or the timing compares different work."""
    import torch
    from torch import nn

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import ensemble
    finally:
        sys.path.pop(0)
    models = ensemble.make_models(3, classes=4, hidden=8, size=16)
    grouped = ensemble.GroupedEnsemble(models)
    x, y = torch.rand(5, 9, 16, 16), torch.randint(0, 4, (3, 5))
    loss_fn = nn.CrossEntropyLoss()
    for step in range(2):  # a step, then the outputs after it
        out = grouped(x)
        separate = torch.stack([m(x[:, 3 * i : 3 * i + 3]) for i, m in enumerate(models)])
        assert torch.allclose(out, separate, atol=1e-5), f"step {step}"
        for m, xi, yi in zip(models, x.split(3, dim=1), y):
            m.zero_grad()
            loss_fn(m(xi), yi).backward()
            torch.optim.SGD(m.parameters(), lr=0.5).step()
        grouped.zero_grad()
        loss_fn(grouped(x).reshape(-1, 4), y.reshape(-1)).mul(3).backward()
        torch.optim.SGD(grouped.parameters(), lr=0.5).step()


@pytest.mark.slow
def test_the_pull_case_times_a_fresh_clone_that_pulls_and_reruns_nothing(tmp_path):
    import subprocess

    bench, goals = benchmarks(), benchmarks("goals")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = bench.clean_env()

    def run(cmd: str, cwd=repo) -> str:
        return subprocess.run(cmd, shell=True, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout

    (repo / "in.txt").write_text("x")
    run("git init -q && dvc init -q && dvc stage add -q -n copy -d in.txt -o out.txt 'cp in.txt out.txt'")
    run("dvc repro -q")
    pulled = bench.bench_pull(repo, tmp_path, env)
    assert pulled["pull_s"] > 0 and pulled["pulled_noop_s"] > 0
    assert (tmp_path / "fresh" / "out.txt").read_text() == "x"  # restored, not recomputed
    (row,) = [r for r in goals.summary_rows({"pipeline": {"clean_s": 100.0, **pulled}}) if r[0] == "pull"]
    assert float(row[1]) == pytest.approx((pulled["pull_s"] + pulled["pulled_noop_s"]) / 100, rel=0.01)


@pytest.mark.slow
def test_the_pipeline_case_times_a_commit_in_its_own_clone_stage_by_stage(tmp_path, monkeypatch):
    import subprocess

    bench = benchmarks()
    repo = tmp_path / "repo"
    repo.mkdir()
    env = bench.clean_env() | {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}  # fmt: skip

    def run(cmd: str) -> str:
        return subprocess.run(cmd, shell=True, cwd=repo, env=env, check=True, capture_output=True, text=True).stdout

    (repo / "in.txt").write_text("x")
    run("git init -q && dvc init -q && dvc stage add -q -n slow -d in.txt -o mid.txt 'sleep 1 && cp in.txt mid.txt'")
    run("dvc stage add -q -n masker -d mid.txt -o out.txt 'cp mid.txt out.txt' && git add -A && git commit -qm one")
    old = run("git rev-parse --short HEAD").strip()
    (repo / "in.txt").write_text("y")
    run("git commit -qam two")
    monkeypatch.setattr(bench, "REPO", repo)
    clone, timed = bench.time_pipeline(old, tmp_path / "clones")
    assert timed["commit"] == old and (clone / "in.txt").read_text() == "x"  # that commit, not HEAD
    assert set(timed["stages_s"]) == {"slow", "masker"} and timed["stages_s"]["slow"] >= 1
    assert timed["clean_s"] >= sum(timed["stages_s"].values()) - 0.2 and timed["noop_s"] > 0
    assert timed["masker_share"] == pytest.approx(timed["stages_s"]["masker"] / timed["clean_s"])
