"""The learned foreground masker's network: a small U-Net (Ronneberger et al. 2015) that gives
every pixel of a crop two logits, background and foreground."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
    )  # fmt: skip


BORDER = 2  # px: the crop's outer ring, mostly background (a box holds its object with a margin)


def border_contrast(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's colour minus the mean colour of its crop's outer ring (BORDER px): how unlike the
    crop's own background a pixel is, whatever that background is. (B, 3, H, W) -> (B, 3, H, W)."""
    b = BORDER
    ring = torch.cat([x[..., :b, :].flatten(2), x[..., -b:, :].flatten(2), x[..., b:-b, :b].flatten(2),
                      x[..., b:-b, -b:].flatten(2)], 2)  # fmt: skip
    return x - ring.mean(2)[..., None, None]


class MaskNet(nn.Module):
    """Three levels (width, 2 x width, 4 x width channels; two 2x2 max-pools), skip connections,
    nearest-neighbour upsampling to the skip's size (so any crop size works). It sees each crop
    twice: as it is, and as its contrast with the crop's outer ring (:func:`border_contrast`).

    Input: (B, 3, H, W) float in [0, 1]. Output: (B, 2, H, W) logits (background, foreground).
    """

    def __init__(self, width: int):
        super().__init__()
        self.arch = {"family": "mask_net", "width": width}
        w = width
        self.down1, self.down2, self.bottom = _block(6, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.up2, self.up1 = _block(6 * w, 2 * w), _block(3 * w, w)
        self.head = nn.Conv2d(w, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.down1(torch.cat([x, border_contrast(x)], 1))
        b = self.down2(F.max_pool2d(a, 2))
        c = self.bottom(F.max_pool2d(b, 2))
        b = self.up2(torch.cat([F.interpolate(c, size=b.shape[-2:]), b], 1))
        a = self.up1(torch.cat([F.interpolate(b, size=a.shape[-2:]), a], 1))
        return self.head(a)
