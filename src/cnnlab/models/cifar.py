"""The CIFAR-10 reports' CNNs built from scratch: simple_cnn (augmentation report) and mish_cnn
(Mish report). Both take (B, 3, S, S) floats in [0, 1] and return (B, classes) logits; the
flatten size follows from the input size."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.layers import Dropout


def flat_size(features: nn.Module, in_size: int) -> int:
    """Number of features `features` makes of one (3, in_size, in_size) image."""
    was_training = features.training
    features.eval()
    with torch.no_grad():
        n = features(torch.zeros(1, 3, in_size, in_size)).numel()
    features.train(was_training)
    return n


class SimpleCNN(nn.Module):
    """Four blocks of two 3x3 convs (16, 32, 64, 128 channels), each conv followed by ReLU,
    dropout and BatchNorm, each block by a 2x2 max-pool; then FC 128 -> ReLU -> dropout -> FC."""

    def __init__(self, num_classes: int, in_size: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in (16, 32, 64, 128):
            for _ in range(2):
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), Dropout(dropout), nn.BatchNorm2d(cout)]
                cin = cout
            layers.append(nn.MaxPool2d(2, 2))  # (B, cout, S/2^k, S/2^k)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat_size(self.features, in_size), 128),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MishCNN(nn.Module):
    """conv 32, 32 | pool | 64, 64 | pool | 128 | pool, every conv with Mish and BatchNorm, dropout
    rising by 0.1 per block from `dropout` (0.2/0.3/0.4/0.5 in the report); dense 128 with Mish,
    BatchNorm and dropout; he-uniform initialisation. The report's L2 1e-3 (Keras) is the
    optimizer's weight_decay 2e-3 (the gradient of 1e-3 * w^2)."""

    def __init__(self, num_classes: int, in_size: int, dropout: float):
        super().__init__()

        def conv(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.Mish(), nn.BatchNorm2d(cout)]

        self.features = nn.Sequential(
            *conv(3, 32), *conv(32, 32), nn.MaxPool2d(2), Dropout(dropout),  # (B, 32, S/2, S/2)
            *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2), Dropout(dropout + 0.1),  # (B, 64, S/4, S/4)
            *conv(64, 128), nn.MaxPool2d(2), Dropout(dropout + 0.2),  # (B, 128, S/8, S/8)
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat_size(self.features, in_size), 128),
            nn.Mish(),
            nn.BatchNorm1d(128),
            Dropout(min(dropout + 0.3, 0.9)),
            nn.Linear(128, num_classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")  # Keras' he_uniform
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
