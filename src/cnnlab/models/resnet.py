"""The ResNet report's network: residual blocks in four stages, global average pool, FC."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BatchNorm with ReLU; the input is added back, through a 1x1 conv +
    BatchNorm when the stride or the channel count changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()  # separate ReLU modules: captum's Deconvolution hooks each one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + identity)


class ResNet(nn.Module):
    """conv 3x3 -> BatchNorm -> ReLU -> 2x2 max-pool, then four stages of two residual blocks
    (width, 2x, 4x, 8x channels; stride 2 from the second stage on), global average pool, FC.
    With width 64 the stages are ResNet-18's."""

    def __init__(self, num_classes: int, width: int, blocks: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)
        )  # (B, width, S/2, S/2)
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            stages.append(nn.Sequential(*[ResidualBlock(cin if j == 0 else cout, cout, 2 if (i and j == 0) else 1)
                                          for j in range(n)]))  # fmt: skip
            cin = cout
        self.stages = nn.Sequential(*stages)  # (B, 8 width, S/16, S/16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))
