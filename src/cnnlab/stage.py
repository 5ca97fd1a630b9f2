"""What every stage script shares: params, seeded start, device choice, figures written once,
clean error exits. The stage scripts connect the library (data, models, train, attribution,
figures) with tracking; this module is their common start."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Callable

import torch

from cnnlab import tracking
from cnnlab.config import Params, load_params
from cnnlab.errors import CnnlabError
from cnnlab.io import atomic_dir
from cnnlab.tensors import seed_everything
from cnnlab.train import distributed

KNOWN_ERRORS = (CnnlabError, FileNotFoundError, FloatingPointError)


def device() -> torch.device:
    """The GPU when there is one (this process's own under torchrun), else the CPU."""
    return distributed.device()


def set_deterministic(on: bool) -> None:
    """params `deterministic: true`: deterministic GPU kernels (cuDNN without autotuning, cuBLAS
    with a fixed workspace; an operation without a deterministic kernel fails and names itself).
    CPU runs are deterministic either way."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # torch.use_deterministic_algorithms imports torch._inductor (1-2 s per stage process), so it
    # is called only to change the setting; off is torch's default.
    if torch.are_deterministic_algorithms_enabled() != on:
        torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on and torch.cuda.is_available()


def write_figures(figures: dict, folder: Path, run) -> None:
    """Save a stage's figures (name -> matplotlib Figure) as the PNGs of `folder`, replacing it
    atomically, and log them to the stage's MLflow run under figures/."""
    from cnnlab.viz.plots import save_figure

    with atomic_dir(folder) as tmp:
        for name, figure in figures.items():
            save_figure(figure, tmp / name)
    run.log_artifact(folder, "figures")


def log_model(run, model: torch.nn.Module, name: str, images, *, registered: str, metadata: dict, tags: dict,
              parts: dict | None = None) -> None:  # fmt: skip
    """Log a trained model to its stage's MLflow run and register it as a new version of
    `registered` (every trained model is logged this way: an MLflow pyfunc model that takes image
    files and returns class probabilities, cnnlab.serving; a learned masker, metadata kind
    "masker", returns masks), with two of `images` ((N, 3, H, W) uint8) as its example, `metadata`
    (what `cnnlab predict` and the served model need: kind, classes, input size, preprocessing),
    version `tags` and the other networks it uses (`parts`: a segment_learned model's masker)."""
    from cnnlab import serving

    python_model = serving.MASKER_FILE if metadata["kind"] == "masker" else serving.MODEL_FILE
    parts = {k: v.cpu() for k, v in (parts or {}).items()}
    run.log_model(model.cpu(), name.replace("_", "-"), images[:2], registered=registered, metadata=metadata,
                  tags=tags, python_model=python_model, signature=serving.signature(metadata), parts=parts)  # fmt: skip


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM during a stage: unwinds like an error (the MLflow run is marked
    KILLED, nothing half-written stays under its final name), then the stage ends with one line
    and status 128 + the signal's number, as an interrupted program does."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        how = "Ctrl-C, SIGINT" if self.signum == signal.SIGINT else signal.Signals(self.signum).name
        return (f"interrupted ({how}); run `dvc repro` again: finished work is kept and training resumes after its "
                "last finished epoch")  # fmt: skip


def _interrupted(signum, frame):
    raise Interrupted(signum)


def run_stage(
    main: Callable[[Params, argparse.Namespace], None],
    *paths: str,
    doc: str = "",
    names: tuple[str, ...] = (),
    options: tuple[str, ...] = (),
) -> None:
    """Parse the stage's name arguments (strings), path arguments and optional paths
    (`--<option>`), load and check params.yaml, seed, and run `main`.

    A known error (bad params, bad dataset, unreachable tracking store, ...) ends the process
    with exit code 1 and a one-line message instead of a traceback.
    """
    parser = argparse.ArgumentParser(description=doc)
    for n in names:
        parser.add_argument(n)
    for p in paths:
        parser.add_argument(p, type=Path)
    for o in options:
        parser.add_argument(f"--{o}", type=Path, default=None)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    args = parser.parse_args()
    # Ctrl-C (SIGINT to the terminal's process group: DVC and this stage) and SIGTERM (a `kill`, a
    # scheduler) unwind like an error; training resumes from its last checkpoint.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupted)
    try:
        params = load_params(args.params)
        tracking.use_params(params.flat())  # the DVC experiment's parent run gets all of them
        set_deterministic(params.deterministic)
        distributed.init()  # under torchrun: join the other processes
        seed_everything(params.seed)
        main(params, args)
    except KNOWN_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except Interrupted as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    finally:
        distributed.shutdown()
