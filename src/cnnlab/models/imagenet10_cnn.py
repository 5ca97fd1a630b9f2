"""The ImageNet10 report's CNN: four conv + ReLU + 2x2 max-pool blocks, then FC 4000 -> 900 -> 90."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.cifar import flat_size
from cnnlab.models.layers import Dropout


class ImageNet10CNN(nn.Module):
    """conv 5x5 -> 32, 3x3 -> 64, 3x3 -> 128, 3x3 -> 256 (no padding, as in the report: 128 px
    inputs give the report's 256 x 6 x 6 = 9216 features), each ReLU + 2x2 max-pool; FC 4000 ->
    900 -> 90 -> classes with ReLU, and dropout between the FC layers when `dropout` > 0."""

    MIN_SIZE = 48  # smaller inputs leave nothing after the fourth pool

    def __init__(self, num_classes: int, in_size: int, dropout: float):
        super().__init__()
        if in_size < self.MIN_SIZE:
            raise ValueError(f"imagenet10_cnn needs inputs of at least {self.MIN_SIZE} px, got {in_size}")
        layers: list[nn.Module] = []
        for cin, cout, k in ((3, 32, 5), (32, 64, 3), (64, 128, 3), (128, 256, 3)):
            layers += [nn.Conv2d(cin, cout, k), nn.ReLU(), nn.MaxPool2d(2, 2)]
        self.features = nn.Sequential(*layers)  # (B, 256, s, s), s = 6 for 128 px inputs
        fc: list[nn.Module] = [nn.Flatten()]
        widths = (flat_size(self.features, in_size), 4000, 900, 90)
        for cin, cout in zip(widths, widths[1:]):
            fc += [nn.Linear(cin, cout), nn.ReLU()]
            if dropout > 0:
                fc.append(Dropout(dropout))
        fc.append(nn.Linear(90, num_classes))
        self.classifier = nn.Sequential(*fc)
        # He initialisation: with PyTorch's default the signal of these eight plain layers fades
        # (logits with a spread of ~1e-4 at the start) and training stalls at chance.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
