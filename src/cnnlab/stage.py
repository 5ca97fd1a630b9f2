"""What every stage script shares: params, seeded start, figures written once,
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
from cnnlab.errors import CnnlabError
from cnnlab.io import atomic_dir
from cnnlab.params.schema import Params, load_params
from cnnlab.tensors import seed_everything
from cnnlab.train import distributed

KNOWN_ERRORS = (CnnlabError, FileNotFoundError, FloatingPointError)


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


def inputs(args, *names: str) -> dict[str, Path]:
    """The stage's input paths by argument name: its MLflow run's lineage (tracking.stage_run)."""
    return {name: getattr(args, name) for name in names}


def write_figures(figures: dict, folder: Path, run) -> None:
    """Save a stage's figures (name -> matplotlib Figure) as the PNGs of `folder`, replacing it
    atomically, and log them to the stage's MLflow run under figures/."""
    from cnnlab.viz.plots import save_figure

    with atomic_dir(folder) as tmp:
        for name, figure in figures.items():
            save_figure(figure, tmp / name)
    if run is not None:  # (None: a stage that skipped its work writes an empty folder)
        run.log_artifact(folder, "figures")


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
    *shared: str,
    doc: str = "",
    names: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
    **own: str,
) -> None:
    """Parse the stage's arguments, all named as in dvc.yaml's `cmd` (`--crops data/interim/crops`):
    required paths, `shared` (help from cnnlab.arguments) and `own` (name=help); `names`
    (name -> help: required strings); `options` (optional paths); load and check params.yaml,
    seed, and run `main`.

    A known error (bad params, bad dataset, unreachable tracking store, ...) ends the process
    with exit code 1 and a one-line message instead of a traceback.
    """
    from cnnlab.arguments import SHARED

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, text in (names or {}).items():
        parser.add_argument(f"--{name}", required=True, help=text)
    for name, text in {**{name: SHARED[name] for name in shared}, **own}.items():
        parser.add_argument(f"--{name}", type=Path, required=True, help=text)
    for name, text in (options or {}).items():
        parser.add_argument(f"--{name}", type=Path, default=None, help=text)
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
