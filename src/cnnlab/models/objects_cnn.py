"""The objects report's CNN: three conv+BatchNorm+ReLU layers, two max-pools, two FC layers."""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1), nn.ReLU()]


class ObjectsCNN(nn.Module):
    """conv5x5->8, conv3x3->16, maxpool, conv3x3->32, maxpool, FC hidden, FC classes.

    The background classifier is ObjectsCNN(2, hidden=512, ...), the 8-class classifier
    ObjectsCNN(8, hidden=1012, ...). The flatten size follows from `in_size`.

    Input: (B, 3, in_size, in_size) float in [0, 1]. Output: (B, num_classes) logits.
    """

    def __init__(self, num_classes: int, hidden: int, in_size: int):
        super().__init__()
        self.arch = {"num_classes": num_classes, "hidden": hidden, "in_size": in_size}
        self.features = nn.Sequential(
            *_conv(3, 8, 5),  # (B, 8, S, S)
            *_conv(8, 16, 3),  # (B, 16, S, S)
            nn.MaxPool2d(2, 2),  # (B, 16, S/2, S/2)
            *_conv(16, 32, 3),  # (B, 32, S/2, S/2)
            nn.MaxPool2d(2, 2),  # (B, 32, S/4, S/4)
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 3, in_size, in_size)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    @property
    def last_conv(self) -> nn.Conv2d:
        """The last convolution: the layer Grad-CAM attributes to."""
        return [m for m in self.features if isinstance(m, nn.Conv2d)][-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
