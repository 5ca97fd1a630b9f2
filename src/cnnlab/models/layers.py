"""Layers shared by the study's networks.

:class:`Dropout` is ``nn.Dropout`` with a cheaper mask on the CPU. torch draws a CPU dropout mask
one 64-bit Mersenne-Twister number per element on one thread (``bernoulli_``): in simple_cnn,
with dropout after every convolution, that was 41% of a training step on the 2-core benchmark
machine (torch profiler, 64 images of 48 px). Here one 64-bit draw gives the 16-bit uniform numbers
of four elements, so p is used to 1/65536; the mask still comes from torch's (seeded) generator.
On other devices, in eval mode and for p = 0 it is ``nn.Dropout``; weights and state_dict are
the same, so checkpoints load either way. docs/benchmarks.md, "Dropout on the CPU".
"""

from __future__ import annotations

import torch
from torch import nn

_LEVELS = 1 << 16


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A bool tensor of `shape`, each element True with probability 1 - p (to 1/65536), drawn
    four elements per 64-bit number of torch's global CPU generator."""
    n = shape.numel()
    words = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64)
    draws = words.view(torch.int16)[:n].view(shape)  # uniform on [-32768, 32767]
    return draws >= round(p * _LEVELS) - _LEVELS // 2


class Dropout(nn.Dropout):
    """nn.Dropout (zero each element with probability p in training, scale the rest by 1/(1-p)),
    with the mask of :func:`keep_mask` on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        if self.p == 1:
            return x * 0
        return x * keep_mask(x.shape, self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))  # one float mask, one product
