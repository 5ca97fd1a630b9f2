"""What every layer shares: images as uint8 tensors in memory, the models' input format, batched
prediction, seeding. Imports only torch and numpy."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch: first thing in every stage."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TensorData:
    """Images (N, 3, H, W) uint8 and integer labels (N,) (or per-pixel labels (N, H, W)), kept
    decoded in memory."""

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


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device, chunk: int | None = None) -> torch.Tensor:
    """Logits (N, classes) for uint8 images (N, 3, H, W), in eval mode, `chunk` images at a time.

    Default chunk: 64 on CPU, where batches that fit the caches measured 1.6x faster than 256
    (the 8-class CNN on 117 px crops, 2-core Xeon), 512 on a GPU. oneDNN may pick another kernel
    for another batch size, so logits can differ in their last float bits between chunk sizes."""
    chunk = chunk or (64 if torch.device(device).type == "cpu" else 512)
    model.eval()
    fmt = memory_format(model, device)
    starts = range(0, max(len(images), 1), chunk)  # an empty set still gives (0, classes)
    with autocast(device):
        return torch.cat([model(to_float(images[i : i + chunk].to(device), fmt)).float().cpu() for i in starts])


def loss_and_accuracy(model: nn.Module, data: TensorData, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of the model on the data; for per-pixel labels
    (N, H, W) the accuracy is the mean over images of their pixel accuracy."""
    logits = predict(model, data.images, device)
    loss = nn.functional.cross_entropy(logits, data.labels).item()
    acc = (logits.argmax(1) == data.labels).float().mean().item()
    return loss, acc


def frozen(graph: nn.Module) -> nn.Module:
    """An exported graph (torch.export) as a module in eval mode for good: it was traced in eval
    mode and cannot switch, so train()/eval() leave it as it is."""

    class Exported(nn.Module):
        def __init__(self):
            super().__init__()
            self.graph = graph

        def forward(self, x):
            return self.graph(x)

        def train(self, mode: bool = True):
            return self

    return Exported()
