"""Multi-process training under torchrun: DistributedDataParallel with one process per GPU
(NCCL) or per CPU slot (gloo). Outside torchrun (WORLD_SIZE unset or 1) every function here is a
no-op and training is the plain single-process loop.

    torchrun --standalone --nproc_per_node 2 stages/train_classifier.py ...

Only rank 0 writes outputs, checkpoints and MLflow records; the others train and stay silent.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def env_world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True in the process that writes outputs: rank 0, or the only process."""
    return rank() == 0


def device() -> torch.device:
    """This process's device: its own GPU (LOCAL_RANK) when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init() -> bool:
    """Join the process group that torchrun set up (NCCL on GPUs, gloo on CPUs); silence progress
    bars on all but rank 0. Returns True when training is distributed."""
    if env_world_size() <= 1 or is_distributed():
        return is_distributed()
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
    if int(os.environ.get("RANK", "0")) != 0:
        os.environ["TQDM_DISABLE"] = "1"
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum of `values` over all processes (the values themselves outside torchrun)."""
    if not is_distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device() if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def sync_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process, so all ranks
    validate, early-stop and save the same model."""
    if is_distributed():
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def from_main(load: Callable[[], T]) -> T:
    """`load()` run by rank 0 and its result sent to every rank (which then all act the same);
    just `load()` outside torchrun. Used for the resume state: checkpoints are rank 0's."""
    if not is_distributed():
        return load()
    box = [load() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)  # between this job's own processes only
    return box[0]
