"""What every stage script shares: seeded start, device choice, clean error exits."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Callable

import torch

from cnnlab.config import Params, ParamsError, load_params
from cnnlab.data.objects import DatasetError
from cnnlab.io import OutputError
from cnnlab.models.errors import WeightsError
from cnnlab.tracking import TrackingError
from cnnlab.train import distributed
from cnnlab.train.loop import seed_everything

KNOWN_ERRORS = (
    ParamsError,
    DatasetError,
    TrackingError,
    WeightsError,
    OutputError,
    FileNotFoundError,
    FloatingPointError,
)


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


def _terminated(signum, frame):
    print(
        "error: terminated (SIGTERM); run `dvc repro` again (training resumes after its last finished epoch)",
        file=sys.stderr,
    )
    sys.exit(128 + signum)


def run_stage(
    main: Callable[[Params, argparse.Namespace], None], *paths: str, doc: str = "", names: tuple[str, ...] = ()
) -> None:
    """Parse the stage's name arguments (strings) and path arguments, load and check
    params.yaml, seed, and run `main`.

    A known error (bad params, bad dataset, unreachable tracking store, ...) ends the process
    with exit code 1 and a one-line message instead of a traceback.
    """
    parser = argparse.ArgumentParser(description=doc)
    for n in names:
        parser.add_argument(n)
    for p in paths:
        parser.add_argument(p, type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    args = parser.parse_args()
    # SIGTERM (a `kill`, a scheduler) unwinds like an error: the MLflow run is marked FAILED and
    # nothing half-written stays under its final name; training resumes from its last checkpoint.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        params = load_params(args.params)
        set_deterministic(params.deterministic)
        distributed.init()  # under torchrun: join the other processes
        seed_everything(params.seed)
        main(params, args)
    except KNOWN_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        distributed.shutdown()
