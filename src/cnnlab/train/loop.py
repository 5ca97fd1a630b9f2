"""The one training loop: in-memory uint8 tensors, Adam or SGD, per-epoch validation, resumable
checkpoints, optional early stopping with best-weights restore, DistributedDataParallel under
torchrun. :func:`fit` puts together pieces that each do one thing."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn
from tqdm import tqdm

from cnnlab.errors import ParamsError
from cnnlab.params.schema import Training
from cnnlab.tensors import TensorData, autocast, loss_and_accuracy, memory_format, to_float
from cnnlab.train import distributed
from cnnlab.train.checkpoint import save_checkpoint

if TYPE_CHECKING:  # torchvision (1-2 s to import) only where augmentation is used
    from cnnlab.data.augment import AugmentFn

ADAM_BETA2 = 0.999  # torch's default; `momentum` is Adam's beta1


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


def make_optimizer(model: nn.Module, cfg: Training) -> torch.optim.Optimizer:
    """Adam (beta1 = momentum) or SGD with momentum over the trainable parameters, with weight
    decay (L2).

    Adam runs torch's fused kernel (CPU and GPU): one pass over all parameters instead of a loop
    over them in Python, 7x faster a step on CPU (the ImageNet10 CNN's 5.1 M parameters: 2.1 ms
    against 15.6 ms) and the same update but for the last float bits. SGD's loop is as fast as
    its multi-tensor form on CPU, so it stays torch's default."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.momentum, ADAM_BETA2), weight_decay=cfg.weight_decay,
                                fused=fused or None)  # fmt: skip
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Training, steps_per_epoch: int):
    """The per-batch learning-rate schedule `cfg.schedule` names, or None for a constant lr.

    onecycle: torch's OneCycleLR over all `epochs` x `steps_per_epoch` steps, peaking at `cfg.lr`
    (cosine warm-up over the first 30%, then cosine annealing); the momentum is left at
    `cfg.momentum` (cycle_momentum off), so the params mean what they say."""
    if cfg.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, cycle_momentum=False
    )


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TensorData,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
    desc: str = "train",
    augment: AugmentFn | None = None,
    shuffle: bool = True,
    order: torch.Tensor | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    regularizer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """One pass over the data (in a seeded random order when `shuffle`); returns (mean loss, accuracy).

    `augment` maps a uint8 batch and its labels to float images and targets (soft targets from
    CutMix/MixUp count as their largest class for the accuracy). `order`: the indices to train on,
    in order (this process's share under torchrun); loss and accuracy are then over all processes.
    `scheduler` steps after every batch. `regularizer(logits, inputs)` is added to the loss (a term
    that reads the images, as the masker's colour affinity does). Per-pixel targets (N, H, W) of
    an integer type are a segmentation: the accuracy is then the mean over images of their pixel
    accuracy.
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
            if regularizer is not None:
                loss = loss + regularizer(logits, x)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += correct_count(logits, y)
    if distributed.is_distributed():
        total_loss, correct, seen = distributed.all_sum([total_loss, correct, len(order)])
        return total_loss / seen, correct / seen
    return total_loss / len(data), correct / len(data)


def correct_count(logits: torch.Tensor, y: torch.Tensor) -> float:
    """How many of the batch's images are right: class labels (N,), soft targets (N, C) counted as
    their largest class, or integer per-pixel targets (N, H, W), each image counting its fraction
    of right pixels."""
    if y.ndim > 1 and not y.is_floating_point():
        return (logits.argmax(1) == y).flatten(1).float().mean(1).sum().item()
    hard = y if y.ndim == 1 else y.argmax(1)
    return (logits.argmax(1) == hard).sum().item()


def fingerprint(settings: dict, *data: TensorData) -> str:
    """What a resumable checkpoint must match: the settings (params, seed, names) and every
    image and label of the data, hashed."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for d in data:
        h.update(d.labels.numpy().tobytes())
        h.update(d.images.numpy().tobytes())
    return h.hexdigest()


@dataclass
class EarlyStopping:
    """The lowest validation loss so far; with `patience` > 0 it keeps that epoch's weights and
    says to stop after `patience` epochs without a lower one."""

    patience: int
    best_loss: float = math.inf
    best_epoch: int = 0
    since_best: int = 0
    best_state: dict | None = None

    def step(self, epoch: int, val_loss: float, model: nn.Module) -> bool:
        """Record an epoch's validation loss; True when training should stop."""
        if val_loss < self.best_loss:
            self.best_loss, self.since_best, self.best_epoch = val_loss, 0, epoch
            if self.patience:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.since_best += 1
        return bool(self.patience and self.since_best >= self.patience)

    def state(self) -> dict:
        extra = {"best_model": self.best_state} if self.best_state is not None else {}
        return {"best_epoch": self.best_epoch, "since_best": self.since_best, "best_loss": self.best_loss, **extra}

    def load(self, saved: dict) -> None:
        self.best_epoch, self.since_best = saved["best_epoch"], saved["since_best"]
        self.best_loss, self.best_state = saved["best_loss"], saved.get("best_model")


def _per_process_batch(batch_size: int, name: str) -> int:
    """The batch each process takes: under torchrun `batch_size` is the global batch."""
    world = distributed.world_size()
    if batch_size % world:
        raise ParamsError(
            f"{name}: batch_size {batch_size} must be a multiple of the {world} torchrun processes "
            "(it is the global batch; each process takes batch_size / processes)"
        )
    return batch_size // world


def _epoch_order(size: int, epoch: int, seed: int, shuffle: bool) -> torch.Tensor | None:
    """This process's share of an epoch under torchrun (DistributedSampler); None outside it,
    where train_one_epoch draws the order from the fit's generator."""
    if not distributed.is_distributed():
        return None
    sampler = torch.utils.data.DistributedSampler(range(size), shuffle=shuffle, seed=seed)
    sampler.set_epoch(epoch)
    torch.manual_seed(seed + 100_003 * epoch + distributed.rank())  # dropout/augmentation differ per rank
    return torch.tensor(list(sampler))


def _resume_state(checkpoint: Path | None, fingerprint: str | None) -> dict | None:
    """The state saved by an interrupted fit with the same fingerprint, or None."""
    if checkpoint is None or fingerprint is None or not Path(checkpoint).is_file():
        return None
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # a damaged checkpoint: start over
        return None
    return state if state.get("fingerprint") == fingerprint else None


def _resume(checkpoint, fingerprint, model, optimizer, scheduler, generator, stopper: EarlyStopping) -> list[dict]:
    """Load an interrupted fit's state into the objects given; returns its history ([] if none).
    Under torchrun rank 0 holds the checkpoints and every rank resumes from its state."""
    saved = distributed.from_main(lambda: _resume_state(checkpoint, fingerprint))
    if saved is None:
        return []
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(saved["scheduler"])
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    stopper.load(saved)
    return saved["history"]


def fit(
    model: nn.Module,
    train: TensorData,
    val: TensorData | None,
    cfg: Training,
    *,
    seed: int,
    device: torch.device,
    checkpoint: str | Path | None = None,
    fingerprint: str | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    augment: AugmentFn | None = None,
    name: str = "model",
    shuffle: bool = True,
    regularizer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> FitResult:
    """Train `model` on `train` as `cfg` says, validating on `val` (if given) after every epoch.

    Args:
        cfg: optimizer, lr, momentum, weight_decay, batch_size, epochs, patience (0 = no early
            stopping; otherwise stop after `patience` epochs without a lower val loss and restore
            the best weights), schedule (constant | onecycle, see :func:`make_scheduler`) and
            label_smoothing of the training loss (the validation loss is plain cross-entropy).
        seed: seeds the batch order, so two fits with the same seed see the same batches.
        checkpoint: if given, the whole training state is written there after every epoch.
        fingerprint: what the checkpoint must have been written for (params, data, seed): a
            fit that finds a checkpoint with the same fingerprint resumes after its last epoch
            instead of starting over. Delete the checkpoint once the model is saved.
        on_epoch: called with each epoch's row (epoch, train_loss, train_acc, val_loss, val_acc).
        augment: see :func:`train_one_epoch`.
        shuffle: False trains in data order (a test of the distributed loop needs it).
        regularizer: see :func:`train_one_epoch`.

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
    batch_size = _per_process_batch(cfg.batch_size, name)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    optimizer = make_optimizer(model, cfg)
    per_process = math.ceil(len(train) / distributed.world_size())  # a DistributedSampler pads to this
    scheduler = make_scheduler(optimizer, cfg, math.ceil(per_process / batch_size))
    generator = torch.Generator().manual_seed(seed)
    stopper = EarlyStopping(cfg.patience if val is not None else 0)
    result = FitResult(history=_resume(checkpoint, fingerprint, model, optimizer, scheduler, generator, stopper))
    start = len(result.history) + 1
    if result.history:
        tqdm.write(f"{name}: resuming from {checkpoint} after epoch {start - 1}")
        for row in result.history if on_epoch else ():  # this run's records get the earlier epochs too
            on_epoch(row)
    net: nn.Module = model
    if distributed.is_distributed():  # after any resume: DDP starts every rank from rank 0's weights and buffers
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    bar = tqdm(range(start, cfg.epochs + 1), desc=f"fit {name}", unit="epoch", initial=start - 1, total=cfg.epochs)
    for epoch in bar:
        train_loss, train_acc = train_one_epoch(
            net, criterion, optimizer, train, batch_size, device, generator, desc=f"{name} epoch {epoch}",
            augment=augment, shuffle=shuffle, order=_epoch_order(len(train), epoch, seed, shuffle),
            scheduler=scheduler, regularizer=regularizer,
        )  # fmt: skip
        distributed.sync_buffers(model)
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"{name}: training loss became {train_loss} in epoch {epoch}; lower the learning rate (lr={cfg.lr})"
            )
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc)
        if val is not None:
            row["val_loss"], row["val_acc"] = loss_and_accuracy(model, val, device)
        result.history.append(row)
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k != "epoch"})
        if on_epoch is not None:
            on_epoch(row)
        stop = val is not None and stopper.step(epoch, row["val_loss"], model)
        if checkpoint is not None and distributed.is_main():
            schedule = {"scheduler": scheduler.state_dict()} if scheduler else {}
            save_checkpoint(checkpoint, model, optimizer=optimizer, epoch=epoch, history=result.history,
                            fingerprint=fingerprint, generator=generator.get_state(), torch_rng=torch.get_rng_state(),
                            **schedule, **stopper.state())  # fmt: skip
        if stop:
            result.stopped_early = True
            break
    result.best_epoch = len(result.history)
    if stopper.patience and stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
        result.best_epoch = stopper.best_epoch
    return result
