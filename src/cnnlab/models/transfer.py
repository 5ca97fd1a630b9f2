"""Transfer learning: a torchvision ImageNet backbone (MobileNetV3-Large, Inception v3) with a
new head, inputs resized to the backbone's size and normalised as for ImageNet."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.transforms import v2

from cnnlab.errors import WeightsError
from cnnlab.models.layers import Dropout

BACKBONES = {
    # family: (torchvision builder, its weights enum, name of the layer the new head replaces)
    "mobilenet_v3": (
        torchvision.models.mobilenet_v3_large,
        torchvision.models.MobileNet_V3_Large_Weights,
        "classifier",
    ),
    # torchvision's stand-in for the report's InceptionResNetV2 (which torchvision does not have)
    "inception_v3": (torchvision.models.inception_v3, torchvision.models.Inception_V3_Weights, "fc"),
}
MIN_SIZE = {"mobilenet_v3": 32, "inception_v3": 75}


def backbone_state_dict(model: "TransferNet") -> dict:
    """The backbone's weights (the head left out), as :class:`TransferNet` loads them."""
    return {k: v for k, v in model.net.state_dict().items() if not k.startswith(f"{model.head_name}.")}


def imagenet_state_dict(family: str, timeout: float = 30.0) -> dict:
    """torchvision's ImageNet weights of `family`, from the torch hub cache or downloaded into it.

    Raises:
        WeightsError: saying where the file is expected and how to get it there.
    """
    builder, weights = BACKBONES[family][0].__name__, BACKBONES[family][1].DEFAULT
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # no network, DNS, HTTP or hash errors
        raise WeightsError(
            f"ImageNet weights for {family} are not in the torch cache ({target}) and could not be downloaded "
            f"({type(e).__name__}: {str(e)[:120]}). On a machine with internet run "
            f"`python -c \"import torchvision; torchvision.models.{builder}(weights='DEFAULT')\"` "
            f"and copy {target.name} to {target.parent}, or set the model's fallback: pretrained (the "
            f"pretrain stage's backbone) or random (or its weights: none)."
        ) from None
    finally:
        socket.setdefaulttimeout(old)


class TransferNet(nn.Module):
    """Backbone + new head (Linear -> ReLU -> Dropout -> Linear).

    Input: (B, 3, H, W) floats in [0, 1] of any size; they are resized to `input_size` and
    ImageNet-normalised inside the model. With `freeze_backbone` only the head trains and the
    backbone (BatchNorm statistics included) stays as loaded.
    """

    def __init__(
        self,
        family: str,
        num_classes: int,
        *,
        input_size: int,
        head_hidden: int,
        dropout: float,
        freeze_backbone: bool,
        state_dict: dict | None = None,
    ):
        super().__init__()
        if input_size < MIN_SIZE[family]:
            raise ValueError(f"{family} needs an input_size of at least {MIN_SIZE[family]} px, got {input_size}")
        builder, _, head_name = BACKBONES[family]
        if family == "inception_v3":
            # transform_input: the ImageNet weights expect torchvision's re-normalisation
            net = builder(weights=None, aux_logits=False, transform_input=True, init_weights=state_dict is None)
        else:
            net = builder(weights=None)
        if state_dict is not None:  # ImageNet's (with its 1000-class head) or a pretrained backbone (without)
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("AuxLogits.")}
            missing, unexpected = net.load_state_dict(state_dict, strict=False)
            wrong = [k for k in missing if not k.startswith(f"{head_name}.")] + list(unexpected)
            if wrong:
                raise WeightsError(f"the weights do not fit {family}'s backbone: {', '.join(wrong[:4])} ...")
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                # torchvision's MobileNetV3 keeps 1% of each batch's statistics (momentum 0.01): over the
                # few hundred steps of a fine-tuning or a from-scratch run here the running statistics stay
                # far from the batch ones and evaluation sits at chance. 0.1 is torch's default.
                m.momentum = 0.1
        old_head = getattr(net, head_name)
        features = (old_head[0] if isinstance(old_head, nn.Sequential) else old_head).in_features
        setattr(
            net,
            head_name,
            nn.Sequential(
                nn.Linear(features, head_hidden), nn.ReLU(), Dropout(dropout), nn.Linear(head_hidden, num_classes)
            ),
        )
        self.head_name = head_name
        self.frozen = freeze_backbone
        if freeze_backbone:
            for name, p in net.named_parameters():
                p.requires_grad_(name.startswith(f"{head_name}."))
        self.pre = nn.Sequential(
            v2.Resize((input_size, input_size), antialias=True),
            v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        )
        self.net = net

    def train(self, mode: bool = True) -> "TransferNet":
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its BatchNorm statistics and has no dropout
            self.net.eval()
            getattr(self.net, self.head_name).train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.pre(x))
