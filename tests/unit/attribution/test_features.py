"""Filters with feature maps, deconvnet and class images (attribution/features.py)."""

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.attribution.features import (
    class_images,
    conv_layers,
    deconvnet,
    early_middle_deep,
    layer_responses,
    strongest_filters,
)
from cnnlab.models.resnet import ResNet
from cnnlab.tensors import TensorData, to_float
from cnnlab.train.loop import fit
from tests.conftest import training


def _cnn(classes: int = 2) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes),
    )  # fmt: skip


def _correlate(image: np.ndarray, kernel: np.ndarray, bias: float, pad: int) -> np.ndarray:
    """Cross-correlation of a (C, H, W) image with a (C, k, k) kernel, by explicit sums."""
    c, h, w = image.shape
    k = kernel.shape[-1]
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    out = np.empty((h + 2 * pad - k + 1, w + 2 * pad - k + 1))
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            out[y, x] = (padded[:, y : y + k, x : x + k] * kernel).sum() + bias
    return out


def test_a_shown_feature_map_is_the_input_convolved_with_the_shown_filter():
    model = _cnn().eval()
    images = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    x = to_float(images, torch.contiguous_format)
    layers = early_middle_deep(model)
    assert [name for name, _ in layers] == ["0", "3", "6"]
    responses = layer_responses(model, layers, x)
    first = responses[0]
    np.testing.assert_array_equal(first.inputs, x.numpy())  # the first layer convolves the image itself
    for r in responses:
        for c in strongest_filters(r, 2):
            for i in range(len(images)):
                expected = _correlate(r.inputs[i].astype(np.float64), r.weight[c], r.bias[c], pad=1)
                np.testing.assert_allclose(r.maps[i, c], expected, rtol=1e-4, atol=1e-5)


def test_strongest_filters_ranks_by_mean_positive_response():
    maps = np.zeros((2, 4, 3, 3), np.float32)
    maps[:, 2] = 5
    maps[:, 0] = 1
    maps[:, 1] = -9  # negative responses count as zero
    from cnnlab.attribution.features import LayerResponse

    r = LayerResponse("x", np.zeros((4, 3, 3, 3)), None, np.zeros((2, 3, 3, 3)), maps)
    assert strongest_filters(r, 2).tolist() == [2, 0]


def test_conv_layers_leave_out_resnet_shortcuts():
    names = [n for n, _ in conv_layers(ResNet(10, width=4))]
    assert names[0] == "stem.0" and not any("downsample" in n for n in names)


def test_deconvnet_has_the_input_shape_and_is_zero_outside_the_receptive_field():
    model = _cnn().eval()
    x = to_float(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8), torch.contiguous_format)
    early = early_middle_deep(model)[0][1]  # 3x3 conv, padding 1: each activation sees a 3x3 patch
    recon, pos = deconvnet(model, early, x)
    assert recon.shape == x.shape
    for i, (c, y, xx) in enumerate(pos):
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[max(0, y - 1) : y + 2, max(0, xx - 1) : xx + 2] = True
        assert (recon[i][:, ~inside] == 0).all()  # no path from those pixels to the activation
        assert recon[i][:, inside].abs().sum() > 0
        assert 1 <= y <= 14 and 1 <= xx <= 14  # not on the map's edge (the map is 16 x 16)
    # a deeper layer reaches further: more non-zero pixels than the first layer's 3x3 patch
    deep, _ = deconvnet(model, early_middle_deep(model)[-1][1], x)
    assert deep.shape == x.shape and (deep[0] != 0).any(0).sum() > 9


def _two_shapes(n: int = 64, size: int = 16) -> TensorData:
    """Class 0: a bright square in the middle; class 1: a bright horizontal bar; dark noise around."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 60, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    for i in range(n):
        if labels[i] == 0:
            images[i, :, 5:11, 5:11] = 220
        else:
            images[i, :, 7:9, 1:15] = 220
    return TensorData(images, labels)


@pytest.mark.parametrize("floor", [0.9])
def test_class_images_of_a_small_trained_model_score_high_on_their_class(floor):
    data = _two_shapes()
    model = _cnn(2)
    cfg = training(optimizer="adam", momentum=0.9, epochs=10, batch_size=16, lr=0.01)
    result = fit(model, data, data, cfg, seed=0, device=torch.device("cpu"))
    assert result.history[-1]["val_acc"] == 1.0  # the model tells the two shapes apart
    made = class_images(model, 2, 16, steps=128, lr=0.05, seed=0, scale=0.1, degrees=5.0, decay=1.0)
    assert made.images.shape == (2, 3, 16, 16) and made.images.dtype == np.uint8
    assert (made.confidence > floor).all(), made.confidence
    # the model's own view: each generated image is classified as its target class
    logits = model.eval()(to_float(torch.from_numpy(made.images), torch.contiguous_format))
    assert logits.argmax(1).tolist() == [0, 1]
    assert all(p.requires_grad for p in model.parameters())  # left trainable, as it was
    model[0].weight.requires_grad_(False)  # a frozen layer stays frozen
    class_images(model, 2, 16, steps=2, lr=0.05, seed=0, scale=0.1, degrees=5.0, decay=1.0)
    assert [p.requires_grad for p in model.parameters()] == [False] + [True] * (len(list(model.parameters())) - 1)
