"""The one training loop: in-memory uint8 tensors, SGD, per-epoch validation, checkpoints,
optional early stopping with best-weights restore."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cnnlab.config import ParamsError
from cnnlab.train import distributed
from cnnlab.train.checkpoint import save_checkpoint

if TYPE_CHECKING:  # torchvision (1-2 s to import) only where augmentation is used
    from cnnlab.data.augment import Augment


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch: first thing in every stage."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# oneDNN's CPU 1x1-convolution weight gradient writes past its buffer for channels-last input
# when the convolution has a stride and fewer input channels than its 16-channel block
# (uxlfoundation/oneDNN#6035: heap corruption, then SIGSEGV/SIGABRT; a narrow ResNet hits it).
ONEDNN_MIN_STRIDED_1X1_CHANNELS = 16


def memory_format(model: nn.Module, device: torch.device | str = "cpu") -> torch.memory_format:
    """channels-last (measured faster for these convolutions on CPU, the usual choice on GPU),
    except on CPU for a model with a convolution that triggers oneDNN#6035."""
    if torch.device(device).type == "cpu":
        for m in model.modules():
            if (
                isinstance(m, nn.Conv2d)
                and m.kernel_size == (1, 1)
                and m.stride != (1, 1)
                and m.in_channels < ONEDNN_MIN_STRIDED_1X1_CHANNELS
            ):
                return torch.contiguous_format
    return torch.channels_last


def autocast(device: torch.device | str):
    """bf16 autocast on a GPU that has bf16 (the loop's default there), a no-op on CPU, where it
    would change the numbers from machine to machine."""
    device = torch.device(device)
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def to_float(images: torch.Tensor, fmt: torch.memory_format = torch.channels_last) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float in [0, 1]: the models' input, in memory format `fmt`
    (see :func:`memory_format`)."""
    return images.float().div_(255).contiguous(memory_format=fmt)


@dataclass
class TensorData:
    """Images (N, 3, H, W) uint8 and integer labels (N,), kept decoded in memory."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "TensorData":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return TensorData(self.images[idx], self.labels[idx])

    @classmethod
    def from_numpy(cls, images: np.ndarray, labels: np.ndarray) -> "TensorData":
        return cls(
            torch.from_numpy(np.require(images, requirements=["C", "W"])), torch.from_numpy(np.array(labels, np.int64))
        )


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    stopped_early: bool = False

    def summary(self) -> dict:
        """The metrics of the weights the model ends with (the best epoch's, with early stopping)."""
        best = self.history[self.best_epoch - 1]
        return {
            "val_accuracy": best["val_acc"],
            "val_loss": best["val_loss"],
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "stopped_early": self.stopped_early,
        }


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int | None = None
) -> torch.Tensor:
    """Logits (N, classes) for uint8 images (N, 3, H, W), in eval mode.

    Default batch: 64 on CPU, where batches that fit the caches measured 1.6x faster than 256
    (the 8-class CNN on 117 px crops, 2-core Xeon), 512 on a GPU. oneDNN may pick another kernel
    for another batch size, so logits can differ in their last float bits between batch sizes."""
    batch_size = batch_size or (64 if torch.device(device).type == "cpu" else 512)
    model.eval()
    fmt = memory_format(model, device)
    starts = range(0, max(len(images), 1), batch_size)  # an empty set still gives (0, classes)
    with autocast(device):
        return torch.cat([model(to_float(images[i : i + batch_size].to(device), fmt)).float().cpu() for i in starts])


def evaluate(model: nn.Module, data: TensorData, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of the model on the data."""
    logits = predict(model, data.images, device)
    loss = nn.functional.cross_entropy(logits, data.labels).item()
    acc = (logits.argmax(1) == data.labels).float().mean().item()
    return loss, acc


def make_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """Adam or SGD (with momentum) over the trainable parameters, with weight decay (L2)."""
    params = [p for p in model.parameters() if p.requires_grad]
    name = getattr(cfg, "optimizer", "sgd")
    decay = getattr(cfg, "weight_decay", 0.0)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=decay)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TensorData,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
    desc: str = "train",
    augment: Augment | None = None,
    shuffle: bool = True,
    order: torch.Tensor | None = None,
) -> tuple[float, float]:
    """One pass over the data (in a seeded random order when `shuffle`); returns (mean loss, accuracy).

    `augment` maps a uint8 batch and its labels to float images and targets (soft targets from
    CutMix/MixUp count as their largest class for the accuracy). `order`: the indices to train on,
    in order (this process's share under torchrun); loss and accuracy are then over all processes.
    """
    model.train()
    fmt = memory_format(model, device)
    if order is None:
        order = torch.randperm(len(data), generator=generator) if shuffle else torch.arange(len(data))
    total_loss, correct = 0.0, 0
    amp = autocast(device)  # decided once, entered per step
    steps = math.ceil(len(order) / batch_size)
    for step in tqdm(range(steps), desc=desc, unit="batch", leave=False):
        idx = order[step * batch_size : (step + 1) * batch_size]
        images, y = data.images[idx].to(device, non_blocking=True), data.labels[idx].to(device, non_blocking=True)
        if augment is None:
            x = to_float(images, fmt)
        else:
            x, y = augment(images, y)
            x = x.contiguous(memory_format=fmt)
        optimizer.zero_grad(set_to_none=True)
        with amp:
            logits = model(x)
            loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(idx)
        hard = y if y.ndim == 1 else y.argmax(1)
        correct += (logits.argmax(1) == hard).sum().item()
    if distributed.is_distributed():
        total_loss, correct, seen = distributed.all_sum([total_loss, correct, len(order)])
        return total_loss / seen, correct / seen
    return total_loss / len(data), correct / len(data)


def fingerprint(settings: dict, *data: TensorData) -> str:
    """What a resumable checkpoint must match: the settings (params, seed, names) and every
    image and label of the data, hashed."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for d in data:
        h.update(d.labels.numpy().tobytes())
        h.update(d.images.numpy().tobytes())
    return h.hexdigest()


def _resume_state(checkpoint: Path | None, fingerprint: str | None) -> dict | None:
    """The state saved by an interrupted fit with the same fingerprint, or None."""
    if checkpoint is None or fingerprint is None or not Path(checkpoint).is_file():
        return None
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # a damaged checkpoint: start over
        return None
    return state if state.get("fingerprint") == fingerprint else None


def fit(
    model: nn.Module,
    train: TensorData,
    val: TensorData | None,
    cfg,
    *,
    seed: int,
    device: torch.device,
    checkpoint: str | Path | None = None,
    fingerprint: str | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    augment: Augment | None = None,
    name: str = "model",
) -> FitResult:
    """Train `model` on `train`, validating on `val` (if given) after every epoch.

    Args:
        cfg: lr, batch_size, epochs, patience (0 = no early stopping; otherwise stop after
            `patience` epochs without a lower val loss and restore the best weights), and
            optionally optimizer ("sgd" or "adam"), momentum, weight_decay, shuffle.
        seed: seeds the batch order, so two fits with the same seed see the same batches.
        checkpoint: if given, the whole training state is written there after every epoch.
        fingerprint: what the checkpoint must have been written for (params, data, seed): a
            fit that finds a checkpoint with the same fingerprint resumes after its last epoch
            instead of starting over. Delete the checkpoint once the model is saved.
        on_epoch: called with each epoch's row (epoch, train_loss, train_acc, val_loss, val_acc).
        augment: see :func:`train_one_epoch`.

    Under torchrun (see :mod:`cnnlab.train.distributed`) the model is wrapped in
    DistributedDataParallel, each epoch is shared out by a DistributedSampler, `cfg.batch_size` is
    the global batch (each of N processes takes batch_size / N), every process validates on the
    whole validation set with the same weights, and only rank 0 writes the checkpoint.

    Returns:
        FitResult with the per-epoch history; the model holds the final (or best) weights.
    """
    model.to(device, memory_format=memory_format(model, device))
    if device.type == "cuda":  # page-locked host memory: asynchronous copies to the GPU
        train = TensorData(train.images.pin_memory(), train.labels.pin_memory())
    ddp = distributed.is_distributed()
    world = distributed.world_size()
    batch_size = cfg.batch_size
    if ddp:
        if cfg.batch_size % world:
            raise ParamsError(
                f"{name}: batch_size {cfg.batch_size} must be a multiple of the {world} torchrun processes "
                "(it is the global batch; each process takes batch_size / processes)"
            )
        batch_size = cfg.batch_size // world
    criterion = nn.CrossEntropyLoss()
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(seed)
    patience = cfg.patience if val is not None else 0
    result = FitResult()
    best_loss, best_state, since_best, start = math.inf, None, 0, 1
    # under torchrun rank 0 holds the checkpoints; every rank resumes from its state
    saved = distributed.from_main(lambda: _resume_state(checkpoint, fingerprint))
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        result.history = saved["history"]
        result.best_epoch, since_best = saved["best_epoch"], saved["since_best"]
        best_loss, best_state = saved["best_loss"], saved.get("best_model")
        start = len(result.history) + 1
        tqdm.write(f"{name}: resuming from {checkpoint} after epoch {start - 1}")
        if on_epoch is not None:  # this run's records get the epochs trained before the interruption too
            for row in result.history:
                on_epoch(row)
    net: nn.Module = model
    if ddp:  # after any resume: DDP starts every rank from rank 0's weights and buffers
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    bar = tqdm(range(start, cfg.epochs + 1), desc=f"fit {name}", unit="epoch", initial=start - 1, total=cfg.epochs)
    shuffle = getattr(cfg, "shuffle", True)
    for epoch in bar:
        order = None
        if ddp:
            sampler = torch.utils.data.DistributedSampler(range(len(train)), shuffle=shuffle, seed=seed)
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler))
            torch.manual_seed(seed + 100_003 * epoch + distributed.rank())  # dropout/augmentation differ per rank
        train_loss, train_acc = train_one_epoch(
            net, criterion, optimizer, train, batch_size, device, generator,
            desc=f"{name} epoch {epoch}", augment=augment, shuffle=shuffle, order=order,
        )  # fmt: skip
        distributed.sync_buffers(model)
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"{name}: training loss became {train_loss} in epoch {epoch}; lower the learning rate (lr={cfg.lr})"
            )
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc)
        if val is not None:
            row["val_loss"], row["val_acc"] = evaluate(model, val, device)
        result.history.append(row)
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k != "epoch"})
        if on_epoch is not None:
            on_epoch(row)
        stop = False
        if val is not None and row["val_loss"] < best_loss:
            best_loss, since_best, result.best_epoch = row["val_loss"], 0, epoch
            if patience:
                best_state = copy.deepcopy(model.state_dict())
        elif val is not None:
            since_best += 1
            stop = bool(patience and since_best >= patience)
        if checkpoint is not None and distributed.is_main():
            extra = dict(best_model=best_state) if best_state is not None else {}
            save_checkpoint(
                checkpoint, model, optimizer=optimizer, epoch=epoch, history=result.history, fingerprint=fingerprint,
                generator=generator.get_state(), torch_rng=torch.get_rng_state(), best_epoch=result.best_epoch,
                since_best=since_best, best_loss=best_loss, **extra,
            )  # fmt: skip
        if stop:
            result.stopped_early = True
            break
    if patience and best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = len(result.history)
    return result
