"""The one training loop: in-memory uint8 tensors, SGD, per-epoch validation, checkpoints,
optional early stopping with best-weights restore."""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cnnlab.config import TrainParams
from cnnlab.train.checkpoint import save_checkpoint


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch: first thing in every stage."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float in [0, 1]: the models' input, channels-last (measured
    faster for these convolutions on CPU)."""
    return images.float().div_(255).contiguous(memory_format=torch.channels_last)


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
def predict(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Logits (N, classes) for uint8 images (N, 3, H, W), in eval mode."""
    model.eval()
    starts = range(0, max(len(images), 1), batch_size)  # an empty set still gives (0, classes)
    return torch.cat([model(to_float(images[i : i + batch_size].to(device))).cpu() for i in starts])


def evaluate(model: nn.Module, data: TensorData, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of the model on the data."""
    logits = predict(model, data.images, device)
    loss = nn.functional.cross_entropy(logits, data.labels).item()
    acc = (logits.argmax(1) == data.labels).float().mean().item()
    return loss, acc


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TensorData,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
    desc: str = "train",
) -> tuple[float, float]:
    """One pass over the data in a seeded random order; returns (mean loss, accuracy)."""
    model.train()
    order = torch.randperm(len(data), generator=generator)
    total_loss, correct = 0.0, 0
    steps = math.ceil(len(data) / batch_size)
    for step in tqdm(range(steps), desc=desc, unit="batch", leave=False):
        idx = order[step * batch_size : (step + 1) * batch_size]
        x = to_float(data.images[idx].to(device, non_blocking=True))
        y = data.labels[idx].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == y).sum().item()
    return total_loss / len(data), correct / len(data)


def fit(
    model: nn.Module,
    train: TensorData,
    val: TensorData,
    cfg: TrainParams,
    *,
    seed: int,
    device: torch.device,
    checkpoint: str | Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    name: str = "model",
) -> FitResult:
    """Train `model` with SGD on `train`, validating on `val` after every epoch.

    Args:
        cfg: lr, momentum, batch_size, epochs, patience (0 = no early stopping; otherwise stop
            after `patience` epochs without a lower val loss and restore the best weights).
        seed: seeds the batch order, so two fits with the same seed see the same batches.
        checkpoint: if given, the model/optimizer state is written there after every epoch.
        on_epoch: called with each epoch's row (epoch, train_loss, train_acc, val_loss, val_acc).

    Returns:
        FitResult with the per-epoch history; the model holds the final (or best) weights.
    """
    model.to(device, memory_format=torch.channels_last)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    generator = torch.Generator().manual_seed(seed)
    result = FitResult()
    best_loss, best_state, since_best = math.inf, None, 0
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"fit {name}", unit="epoch")
    for epoch in bar:
        train_loss, train_acc = train_one_epoch(
            model, criterion, optimizer, train, cfg.batch_size, device, generator, desc=f"{name} epoch {epoch}"
        )
        val_loss, val_acc = evaluate(model, val, device)
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"{name}: training loss became {train_loss} in epoch {epoch}; lower the learning rate (lr={cfg.lr})"
            )
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc)
        result.history.append(row)
        bar.set_postfix(loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_acc:.3f}")
        if on_epoch is not None:
            on_epoch(row)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer=optimizer, epoch=epoch, history=result.history)
        if val_loss < best_loss:
            best_loss, since_best, result.best_epoch = val_loss, 0, epoch
            if cfg.patience:
                best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
            if cfg.patience and since_best >= cfg.patience:
                result.stopped_early = True
                break
    if cfg.patience and best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = len(result.history)
    return result
