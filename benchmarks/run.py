"""cnnlab's benchmark suite: each hot path against what a user would otherwise run, side by side,
in one run on one machine. Prints a table and writes metrics/benchmarks.json.

    python benchmarks/run.py --baseline c0b1045   # everything (26 min on a 2-core AMD EPYC VM)
    python benchmarks/run.py --skip pipeline tests   # the in-process cases only (~2 min)
    python benchmarks/run.py --quick           # tiny sizes: checks that the suite runs
    python benchmarks/run.py --skip training gradcam flops data pipeline pull tests --baseline 61ab966
                                               # the masker stage: HEAD against commit 61ab966
    python benchmarks/run.py --skip training gradcam flops data tests masker --baseline c0b1045
                                               # the clean run: HEAD against the run before the masker

Cases (docs/benchmarks.md):
  training   cnnlab's train_one_epoch vs a bare PyTorch loop: same model, data, batch, order
  gradcam    cnnlab's batched captum masks vs the pytorch-grad-cam package, same masks (IoU)
  flops      the 8-class CNN's training FLOP/s as a fraction of this machine's float32 matmul peak
  data       one epoch of crops from the DVC outputs vs decoded from PNG files
  pipeline   `dvc repro` from a clean clone, stage by stage, then a no-op `dvc repro` and
             `dvc exp run -S lr=0.05`; with --baseline REV the same clean run of REV first, and
             the ratio; the study cells' test accuracies, what pretraining gains in transfer
  pull       (with pipeline) that run pushed to a folder remote, a fresh clone's `dvc pull` and
             no-op `dvc repro`, as a share of the clean run
  tests      the README's `pytest` in a fresh clone
  masker     the masker stage (`dvc repro -f -s masker`) in a fresh clone of HEAD and, with
             --baseline REV, of REV, side by side (each clone runs its own code); the ratio
  gpu_epoch  (GPU only) a CIFAR-10-shaped simple_cnn epoch with the data on the GPU vs a DataLoader

Inputs: the pipeline's crops and background classifier when `dvc repro` has made them (the
table says so); otherwise generated stand-ins of the same shape.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: no progress bars in the timings

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from goals import summary_rows  # noqa: E402 (benchmarks/goals.py, beside this file)
from torch import nn  # noqa: E402

from cnnlab.data.arrays import load_images  # noqa: E402
from cnnlab.io import write_json  # noqa: E402
from cnnlab.models import ObjectsCNN  # noqa: E402
from cnnlab.tensors import TensorData, memory_format, to_float  # noqa: E402
from cnnlab.train.loop import train_one_epoch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def head_commit() -> str:
    """The commit measured (HEAD; `+changes` where the work tree differs from it)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + ("+changes" if changed else "")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )  # fmt: skip
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters over all CPUs (the first line of /proc/stat: user nice
    system idle iowait irq softirq steal ...), or None off Linux."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None


def steal_fraction(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of the CPU time between two :func:`cpu_times` that the hypervisor gave to other
    machines (steal): on a shared VM a timing at 50% steal takes about twice as long."""
    if not before or not after or len(before) < 8:
        return None
    spent = [a - b for a, b in zip(after[:8], before[:8])]
    return spent[7] / sum(spent) if sum(spent) else None


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` calls (after one warm-up call), in seconds."""
    return best_times([fn], repeats)[0]


def best_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """The fastest of `repeats` calls of each function (after one warm-up call each), in seconds.

    The calls alternate (a, b, a, b, ...), so that a slow spell of a shared VM hits both sides of
    a comparison instead of one of them."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, kept in zip(fns, times):
            start = time.perf_counter()
            fn()
            kept.append(time.perf_counter() - start)
    return [min(kept) for kept in times]


def crops(quick: bool) -> tuple[TensorData, str]:
    """The objects chain's training crops, or a generated stand-in of their shape."""
    folder = REPO / "data/interim/crops"
    if not quick and (folder / "train_images.npy").is_file():
        c = load_images(folder, ["train"])
        train = c.splits["train"]
        data = TensorData.from_numpy(train.images, train.labels(c.classes))
        return data, f"pipeline crops ({folder.relative_to(REPO)})"
    n, size = (64, 32) if quick else (1280, 117)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return TensorData(images, torch.arange(n) % 8), f"random uint8 stand-in {n}x3x{size}x{size}"


# --- 1. training loop vs a bare loop -------------------------------------------------------------


def bare_epoch(model, optimizer, images, labels, batch_size, order) -> None:
    """What a user writes: float conversion per batch, default memory format, no extras."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x = images[idx].float() / 255
        optimizer.zero_grad()
        loss = criterion(model(x), labels[idx])
        loss.backward()
        optimizer.step()


def bench_training(data: TensorData, repeats: int, batch_size: int = 32) -> dict:
    size = data.images.shape[-1]
    torch.manual_seed(0)
    template = ObjectsCNN(8, 1012, size)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))

    def cnnlab_epoch(model=copy.deepcopy(template)):
        model.to(memory_format=memory_format(model))  # as fit() does
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        generator = torch.Generator().manual_seed(0)
        train_one_epoch(model, nn.CrossEntropyLoss(), opt, data, batch_size, torch.device("cpu"), generator)

    def bare(model=copy.deepcopy(template)):
        bare_epoch(model, torch.optim.SGD(model.parameters(), lr=0.01), data.images, data.labels, batch_size, order)

    ours, theirs = best_times([cnnlab_epoch, bare], repeats)
    n = len(data)
    return {
        "cnnlab_images_per_s": n / ours,
        "bare_images_per_s": n / theirs,
        "ratio": theirs / ours,
        "batch_size": batch_size,
        "images": n,
    }


# --- 2. Grad-CAM masking vs pytorch-grad-cam -----------------------------------------------------


def background_model(size: int, quick: bool) -> tuple[nn.Module, str]:
    path = REPO / "data/models/background_classifier/seed0.pt"  # the first seed's
    if not quick and path.is_file():
        from cnnlab.train.checkpoint import load_model

        model, _ = load_model(path)
        if model.arch["in_size"] == size:
            return model, f"trained background classifier ({path.relative_to(REPO)})"
    torch.manual_seed(0)
    return ObjectsCNN(2, 64 if quick else 512, size).eval(), "untrained ObjectsCNN(2)"


def bench_gradcam(data: TensorData, quick: bool, repeats: int, threshold: float = 0.2, batch: int = 64) -> dict:
    from cnnlab.attribution.gradcam import gradcam_masks
    from cnnlab.attribution.masking import NOT_SHORTCUT

    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return {"skipped": "pytorch-grad-cam is not installed: pip install -e '.[bench]'"}
    images = to_float(data.images[: 64 if quick else 256], torch.contiguous_format)
    model, which = background_model(images.shape[-1], quick)
    their_model = copy.deepcopy(model)  # as loaded: ours switches its copy to channels-last in place
    ours_masks = {}

    def ours():
        ours_masks["m"] = gradcam_masks(model, model.last_conv, images, NOT_SHORTCUT, threshold, batch)[1]

    theirs_masks = {}

    def theirs():
        with GradCAM(model=their_model, target_layers=[their_model.last_conv]) as cam:
            maps = [
                cam(
                    input_tensor=images[i : i + batch],
                    targets=[ClassifierOutputTarget(NOT_SHORTCUT)] * len(images[i : i + batch]),
                )
                for i in range(0, len(images), batch)
            ]
        theirs_masks["m"] = torch.from_numpy(np.concatenate(maps)) >= threshold

    t_ours, t_theirs = best_times([ours, theirs], repeats)
    a, b = ours_masks["m"], theirs_masks["m"]
    iou = float((a & b).sum()) / max(float((a | b).sum()), 1.0)
    n = len(images)
    return {
        "cnnlab_images_per_s": n / t_ours,
        "pytorch_grad_cam_images_per_s": n / t_theirs,
        "ratio": t_theirs / t_ours,
        "mask_iou": iou,
        "images": n,
        "model": which,
    }


# --- 3. compute efficiency -----------------------------------------------------------------------


def matmul_peak(n: int, repeats: int) -> float:
    """float32 FLOP/s of an n x n matmul, the best of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: a @ b, repeats)


def training_flops(data: TensorData, batch_size: int = 32) -> float:
    """FLOPs of one training step (forward and backward) of the 8-class CNN on one batch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = ObjectsCNN(8, 1012, data.images.shape[-1])
    x, y = to_float(data.images[:batch_size]), data.labels[:batch_size]
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops()


def bench_flops(data: TensorData, training: dict, quick: bool, batch_size: int = 32) -> dict:
    per_image = training_flops(data, batch_size) / batch_size
    achieved = per_image * training["cnnlab_images_per_s"]
    peak = matmul_peak(512 if quick else 2048, 3 if quick else 10)
    return {"training_flop_per_s": achieved, "matmul_peak_flop_per_s": peak, "fraction": achieved / peak}


# --- 5. data loading -----------------------------------------------------------------------------


def bench_data(data: TensorData, quick: bool, batch_size: int = 32) -> dict:
    """One epoch of batches: from the DVC output (.npy, decoded once) vs PNG files decoded per
    epoch by a standard torchvision DataLoader with 2 workers."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2
    from torchvision.utils import save_image

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        npy = tmp / "train_images.npy"
        np.save(npy, data.images.numpy())
        for i, (image, label) in enumerate(zip(data.images, data.labels)):
            folder = tmp / "png" / f"{int(label):02d}"
            folder.mkdir(parents=True, exist_ok=True)
            save_image(image.float() / 255, folder / f"{i:05d}.png")

        def from_dvc():
            images = torch.from_numpy(np.load(npy, allow_pickle=False))
            for start in range(0, len(images), batch_size):
                to_float(images[start : start + batch_size])

        dataset = ImageFolder(
            tmp / "png", transform=v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
        )
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2)

        def from_png():
            for _ in loader:
                pass

        repeats = 1 if quick else 3
        t_dvc, t_png = best_times([from_dvc, from_png], repeats)
    n = len(data)
    return {"dvc_images_per_s": n / t_dvc, "png_dataloader_images_per_s": n / t_png, "ratio": t_png / t_dvc}


# --- 4. the pipeline -----------------------------------------------------------------------------


def clean_env() -> dict:
    """This environment without MLflow's and DVC's variables, with this interpreter's `dvc` and
    `python` first on PATH (the stages run `python`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def clone_at(rev: str, tmp: Path) -> tuple[Path, dict, str]:
    """A fresh clone of this repository under `tmp` at commit `rev`, the environment that runs its
    own code (PYTHONPATH, no progress bars) and the commit's short hash."""
    clone = tmp / rev.replace("/", "_")
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=clone, check=True)
    env = clean_env() | {"TQDM_DISABLE": "1", "PYTHONPATH": str(clone / "src")}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    return clone, env, commit


def time_pipeline(rev: str, tmp: Path) -> tuple[Path, dict]:
    """A clean `dvc repro` in a fresh clone of commit `rev` with its own code (PYTHONPATH) and an
    empty cache; per-stage times from the stage start lines; then a no-op `dvc repro`. Returns
    the clone and {commit, clean_s, noop_s, stages_s, masker_share, cpu_steal}."""
    clone, env, commit = clone_at(rev, tmp)
    cpu = cpu_times()
    start = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    marks, lines = [], []
    for line in proc.stdout:
        lines.append(line)
        found = re.match(r"Running stage '([^']+)'", line)
        if found:
            marks.append((found.group(1), time.perf_counter() - start))
    if proc.wait() != 0:
        raise RuntimeError(f"dvc repro failed in the benchmark's clone of {rev}:\n{''.join(lines[-30:])}")
    total = time.perf_counter() - start
    steal = steal_fraction(cpu, cpu_times())
    ends = [t for _, t in marks[1:]] + [total]
    stages = {name: round(end - begin, 1) for (name, begin), end in zip(marks, ends)}
    noop = best_time(lambda: subprocess.run(["dvc", "repro"], cwd=clone, env=env, capture_output=True), 2)
    return clone, {"commit": commit, "clean_s": total, "noop_s": noop, "stages_s": stages,
                   "masker_share": stages.get("masker", 0.0) / total, "cpu_steal": steal}  # fmt: skip


def study_cells(clone: Path) -> dict:
    """Each study and transfer cell's test accuracy, matrix, weights and data source in `clone`."""
    params = yaml.safe_load((clone / "params.yaml").read_text())
    study, transfer = {}, set(params["transfer"]["models"])
    for path in sorted((clone / "metrics" / "study").glob("*/metrics.json")):
        cell = json.loads(path.read_text())
        study[path.parent.name] = {"test_accuracy": cell.get("test", {}).get("accuracy"),
                                   "matrix": "transfer" if cell["model"] in transfer else "study",
                                   "weights": cell["weights"], "data_source": cell["data_source"]}  # fmt: skip
        if cell["model"] in transfer:
            study[path.parent.name].update(dataset=cell["dataset"], family=cell["family"],
                                           frozen=params["models"][cell["model"]]["freeze_backbone"])  # fmt: skip
    return study


def bench_pipeline(baseline: str | None = None, pull: bool = True) -> dict:
    """`dvc repro` in a fresh clone of HEAD (:func:`time_pipeline`), then `dvc exp run -S lr=0.05`
    there (the README's one experiment) and, with `pull`, the pull case; the study cells of that
    run and which committed metrics it does not reproduce byte for byte. With `baseline`, the same
    clean run for that commit first, on this machine, and `ratio` = HEAD's seconds / its."""
    with tempfile.TemporaryDirectory() as tmp:
        out = {}
        if baseline:
            out["baseline"] = time_pipeline(baseline, Path(tmp))[1]
        clone, head = time_pipeline("HEAD", Path(tmp))
        env = clean_env() | {"TQDM_DISABLE": "1", "PYTHONPATH": str(clone / "src")}  # as clone_at's

        # the committed metrics are what this machine's clean run gives (the same machine: byte for byte)
        def same(f: Path) -> bool:
            ours = REPO / f.relative_to(clone)
            return ours.is_file() and ours.read_bytes() == f.read_bytes()

        files = [f for f in (clone / "metrics").rglob("*") if f.is_file() and not f.name.startswith("benchmarks")]
        head["metrics_differing"] = sorted(str(f.relative_to(clone)) for f in files if not same(f))
        head["study"] = study_cells(clone)
        start = time.perf_counter()
        subprocess.run(["dvc", "exp", "run", "-S", "lr=0.05"], cwd=clone, env=env, check=True, capture_output=True)
        head["exp_run_s"] = time.perf_counter() - start
        if pull:
            head.update(bench_pull(clone, Path(tmp), env))
        out.update(head)
        if baseline:
            out["ratio"] = head["clean_s"] / out["baseline"]["clean_s"]
    return out


def time_masker(rev: str, tmp: Path) -> dict:
    """The masker stage of commit `rev` in a fresh clone with its own code (PYTHONPATH): its
    inputs made first (untimed), then `dvc repro -f -s masker` timed; the masks' IoU it reports."""
    clone, env, commit = clone_at(rev, tmp)
    subprocess.run(["dvc", "repro", "segment", "backgrounds"], cwd=clone, env=env, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run(["dvc", "repro", "-f", "-s", "masker"], cwd=clone, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    over = json.loads((clone / "metrics/masker.json").read_text())["over_seeds"]
    return {"commit": commit, "seconds": seconds,
            **{k: over[k]["mean"] for k in ("train_mask_iou", "test_mask_iou") if k in over}}  # fmt: skip


def bench_masker(baseline: str | None) -> dict:
    """The masker stage of HEAD and, with `baseline`, of that commit, one after the other on this
    machine (:func:`time_masker`); `ratio` = HEAD's seconds / the baseline's."""
    with tempfile.TemporaryDirectory() as tmp:
        cpu = cpu_times()
        out = {"head": time_masker("HEAD", Path(tmp))}
        stages = baseline and subprocess.run(["git", "show", f"{baseline}:dvc.yaml"], cwd=REPO, capture_output=True,
                                             text=True).stdout  # fmt: skip
        if baseline and not re.search(r"^  masker:", stages, flags=re.M):
            out["baseline"] = f"{baseline} has no masker stage"  # c0b1045, the pipeline case's baseline
        elif baseline:
            out["baseline"] = time_masker(baseline, Path(tmp))
            out["ratio"] = out["head"]["seconds"] / out["baseline"]["seconds"]
        out["cpu_steal"] = steal_fraction(cpu, cpu_times())
    return out


def bench_pull(clone: Path, tmp: Path, env: dict) -> dict:
    """What a newcomer pays instead of a clean `dvc repro` (docs/team.md): the run in `clone` is
    committed and pushed to a DVC remote (a folder here: it times DVC's restore, not a network),
    then a fresh clone of it runs `dvc pull` and `dvc repro`, which must run nothing."""
    env = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@localhost", **env}  # a commit needs a name; the user's wins  # fmt: skip

    def run(cmd: str, cwd: Path) -> str:
        return subprocess.run(cmd, shell=True, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout

    run(f"git add -A && git commit -qm run && dvc remote add -d team {tmp / 'remote'} && git commit -qam remote", clone)
    run("dvc push -q", clone)
    fresh = tmp / "fresh"
    run(f"git clone -q {clone} {fresh}", tmp)
    start = time.perf_counter()
    run("dvc pull -q", fresh)
    pull = time.perf_counter() - start
    start = time.perf_counter()
    out = run("dvc repro", fresh)
    noop = time.perf_counter() - start
    if "Running stage" in out:
        raise RuntimeError(f"dvc repro after dvc pull ran stages:\n{out[-2000:]}")
    return {"pull_s": pull, "pulled_noop_s": noop}


def bench_tests() -> dict:
    """The README's test command (`pytest`) in a fresh clone of HEAD, with this environment's
    packages; the seconds, pytest's last line and its 20 slowest test phases (`--durations`)."""
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "cnnlab"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        env = clean_env()
        cpu = cpu_times()
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=20"],
                              cwd=clone, env=env, capture_output=True, text=True)  # fmt: skip
        seconds = time.perf_counter() - start
        steal = steal_fraction(cpu, cpu_times())
    lines = proc.stdout.strip().splitlines() or [""]
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]  # pytest's -ra summary
    slowest = [found.groups() for found in map(re.compile(r"([\d.]+)s (setup|call|teardown) +(\S+)").match, lines)
               if found]  # fmt: skip
    return {
        "slowest": [{"seconds": float(sec), "phase": phase, "test": test} for sec, phase, test in slowest],
        "seconds": seconds,
        "cpu_steal": steal,
        "returncode": proc.returncode,
        "summary": lines[-1].strip("= "),
        "failed": failed,
    }


# --- 6. GPU: data resident on the GPU vs a DataLoader -------------------------------------------


def bench_gpu_epoch(quick: bool) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": "no GPU on this machine"}
    from torch.utils.data import DataLoader, TensorDataset

    from cnnlab.models.cifar import SimpleCNN

    n = 2048 if quick else 50_000
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 10
    device = torch.device("cuda")
    model = SimpleCNN(10, 32, dropout=0.2).to(device, memory_format=torch.channels_last)
    resident = TensorData(images.to(device), labels.to(device))

    def on_gpu():
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        train_one_epoch(model, nn.CrossEntropyLoss(), opt, resident, 128, device, torch.Generator().manual_seed(0))
        torch.cuda.synchronize()

    loader = DataLoader(TensorDataset(images, labels), batch_size=128, shuffle=True, num_workers=2, pin_memory=True)

    def dataloader():
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        model.train()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True).float() / 255, y.to(device, non_blocking=True)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        torch.cuda.synchronize()

    t_gpu, t_loader = best_times([on_gpu, dataloader], 2)
    return {"resident_images_per_s": n / t_gpu, "dataloader_images_per_s": n / t_loader, "ratio": t_loader / t_gpu}



def print_table(results: dict) -> None:
    print(f"\nmachine: {results['machine']}, commit {results.get('commit')}, {results.get('date')}")
    print(f"inputs: {results['inputs']}\n")
    for case, value in results.items():
        if case in ("machine", "commit", "date", "inputs", "goals"):
            continue
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in value.items()}
        print(f"{case:10s} {shown}")
    print("\n| case | measured | goal | |\n|---|---|---|---|")
    for row in summary_rows(results):
        print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> dict:
    cases = ["training", "gradcam", "flops", "data", "pipeline", "pull", "tests", "masker", "gpu_epoch"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", nargs="*", default=[], choices=cases, help="cases to leave out")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the suite runs")
    parser.add_argument("--out", type=Path, default=REPO / "metrics/benchmarks.json")
    also = "the pipeline and masker cases: also time commit REV (c0b1045, 61ab966) in the same run"
    parser.add_argument("--baseline", metavar="REV", help=also)
    args = parser.parse_args(argv)
    run = [c for c in cases if c not in args.skip and not (args.quick and c in ("pipeline", "pull", "tests", "masker"))]
    repeats = 1 if args.quick else 3
    data, source = crops(args.quick)
    results: dict = {"machine": machine(), "commit": head_commit(), "date": time.strftime("%Y-%m-%d"),
                     "inputs": source}  # fmt: skip
    if "training" in run or "flops" in run:
        print("training ...", file=sys.stderr)
        results["training"] = bench_training(data, repeats)
    if "gradcam" in run:
        print("gradcam ...", file=sys.stderr)
        results["gradcam"] = bench_gradcam(data, args.quick, repeats)
    if "flops" in run:
        print("flops ...", file=sys.stderr)
        results["flops"] = bench_flops(data, results["training"], args.quick)
    if "data" in run:
        print("data ...", file=sys.stderr)
        results["data"] = bench_data(data, args.quick)
    if "pipeline" in run:
        also = f" and of {args.baseline}" if args.baseline else ""
        print(f"pipeline (dvc repro in a fresh clone of HEAD{also}) ...", file=sys.stderr)
        results["pipeline"] = bench_pipeline(args.baseline, pull="pull" in run)
    if "tests" in run:
        print("tests (pytest in a fresh clone) ...", file=sys.stderr)
        results["tests"] = bench_tests()
    if "masker" in run:
        print(f"masker (HEAD{' and ' + args.baseline if args.baseline else ''}, fresh clones) ...", file=sys.stderr)
        results["masker"] = bench_masker(args.baseline)
    if "gpu_epoch" in run:
        results["gpu_epoch"] = bench_gpu_epoch(args.quick)
    results["goals"] = [dict(zip(("case", "measured", "goal", "verdict"), row)) for row in summary_rows(results)]
    print_table(results)
    write_json(args.out, results)
    print(f"\nwritten: {args.out}")
    return results


if __name__ == "__main__":
    main()
