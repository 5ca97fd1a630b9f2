"""Grad-CAM masks on tiny nets whose expected maps are computed by hand."""

import pytest
import torch
from torch import nn

from cnnlab.attribution.gradcam import gradcam_masks
from cnnlab.models import ObjectsCNN


def _identity_net(w0: float, w1: float) -> tuple[nn.Module, nn.Module]:
    """x (1,1,4,4) -> layer A = x (1x1 conv, weight 1) -> logits_t = sum(w_t * A)."""
    layer = nn.Conv2d(1, 1, 1, bias=False)
    head = nn.Linear(16, 2, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        head.weight[0].fill_(w0)
        head.weight[1].fill_(w1)
    return nn.Sequential(layer, nn.Flatten(), head), layer


X = (torch.arange(16, dtype=torch.float32) - 4).reshape(1, 1, 4, 4)  # values -4 .. 11


def test_positive_evidence_by_hand():
    # d logit_1 / dA = 0.5 everywhere, so alpha = 0.5 and the map is ReLU(0.5 x) = max(0, x) / 2.
    # Its maximum is 5.5 (x = 11): normalised heat = max(0, x) / 11.
    model, layer = _identity_net(-0.25, 0.5)
    heat, mask = gradcam_masks(model, layer, X, target=1, threshold=0.5, batch_size=64)
    expected = X.clamp(min=0)[0, 0] / 11
    torch.testing.assert_close(heat[0], expected)
    # kept: heat >= 0.5  <=>  x >= 5.5  <=>  x in 6..11, the last six pixels in raster order
    assert mask[0].flatten().tolist() == [False] * 10 + [True] * 6


def test_relu_keeps_only_positive_evidence_by_hand():
    # target 0: alpha = -0.25, map = ReLU(-0.25 x): 1, .75, .5, .25 at x = -4..-1, zero elsewhere.
    model, layer = _identity_net(-0.25, 0.5)
    heat, mask = gradcam_masks(model, layer, X, target=0, threshold=0.5, batch_size=64)
    assert heat[0].flatten().tolist() == [1.0, 0.75, 0.5, 0.25] + [0.0] * 12
    assert mask[0].flatten().tolist() == [True, True, True] + [False] * 13


def test_bilinear_upsampling_by_hand():
    # A 2x2 stride-2 averaging conv gives the layer map [[1, 2], [3, 4]]; with every head
    # weight 1, alpha = 1 and Grad-CAM is that map. Bilinear upsampling 2 -> 4
    # (align_corners=False) maps output pixel i to input coordinate (i + .5) / 2 - .5, i.e.
    # weights [1, 0], [.75, .25], [.25, .75], [0, 1]: a row [a, b] becomes [a, .75a+.25b, .25a+.75b, b].
    layer = nn.Conv2d(1, 1, 2, stride=2, bias=False)
    head = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.25)
        head.weight.fill_(1.0)
    model = nn.Sequential(layer, nn.Flatten(), head)
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)[None, None]
    heat, _ = gradcam_masks(model, layer, x, target=0, threshold=0.5, batch_size=64)

    def up(a, b):
        return [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b]

    cols = [up(1, 2), up(3, 4)]  # the two layer rows, upsampled along x
    expected = torch.tensor([up(cols[0][j], cols[1][j]) for j in range(4)]).T / 4  # then along y; / max
    torch.testing.assert_close(heat[0], expected)


def test_all_zero_map_gives_empty_mask_and_zero_threshold_keeps_all():
    model, layer = _identity_net(0.0, 0.0)
    heat, mask = gradcam_masks(model, layer, X, target=1, threshold=0.2, batch_size=64)
    assert heat.abs().sum() == 0 and not mask.any()
    _, mask0 = gradcam_masks(model, layer, X, target=1, threshold=0.0, batch_size=64)
    assert mask0.all()


def test_maps_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    model = ObjectsCNN(2, 8, 16)
    model.train()  # gradcam_masks must switch BatchNorm to eval mode itself
    images = torch.rand(5, 3, 16, 16)
    heat_batch, _ = gradcam_masks(model, model.last_conv, images, target=1, threshold=0.2, batch_size=5)
    heat_one, _ = gradcam_masks(model, model.last_conv, images[2:3], target=1, threshold=0.2, batch_size=64)
    torch.testing.assert_close(heat_batch[2], heat_one[0])
    assert heat_batch.shape == (5, 16, 16)
    assert float(heat_batch.amin()) >= 0 and float(heat_batch.amax()) <= 1


def test_mask_backgrounds_blacks_out_what_is_not_kept():
    from cnnlab.attribution.masking import mask_backgrounds

    torch.manual_seed(0)
    model = ObjectsCNN(2, 8, 16)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    truth = torch.zeros(6, 16, 16, dtype=torch.bool)
    truth[:, 4:12, 4:12] = True
    has_truth = torch.tensor([True, True, True, True, False, False])
    out = mask_backgrounds(model, images, 0.3, truth=truth.numpy(), has_truth=has_truth.numpy(), batch_size=64)
    assert out.images.dtype == torch.uint8 and out.images.shape == images.shape
    assert torch.equal(out.images, images * out.masks[:, None])  # kept pixels unchanged, the rest black
    assert out.masks.shape == (6, 16, 16) and out.heat.shape == (6, 16, 16)
    m = out.metrics
    assert m["masks_with_truth"] == 4
    assert m["kept_fraction"] == pytest.approx(out.masks.float().mean().item())
    assert 0 <= m["mask_iou"] <= 1 and 0 <= m["bg_classifier_shortcut_rate_after"] <= 1
    raw = out.heat >= 0.3  # before the degenerate masks were mended
    assert m["empty_maps"] == int((~raw.flatten(1).any(1)).sum())
    assert m["degenerate_fraction"] == 0 and out.masks.flatten(1).float().mean(1).min() >= 0.05
    assert mask_backgrounds(model, images, 0.3, batch_size=64).metrics["mask_iou"] is None


def test_a_degenerate_grad_cam_mask_keeps_its_hottest_pixels_or_the_ellipse():
    from cnnlab.attribution.masking import never_degenerate
    from cnnlab.data.masks import ellipse

    heat = torch.zeros(4, 5, 5)  # 25 px a crop
    heat[0, 0, :3] = torch.tensor([0.9, 0.8, 0.7])  # three warm pixels, the threshold keeps none
    heat[1] = torch.linspace(0, 1, 25).reshape(5, 5)  # the threshold keeps all 25 (> 95%)
    heat[3] = heat[1]
    masks = torch.stack([heat[0] >= 0.95, torch.ones(5, 5, dtype=torch.bool), heat[2] >= 0.5, heat[3] >= 0.5])
    out = never_degenerate(heat, masks)
    assert out[0].sum() == 2 and out[0, 0, :2].all()  # ceil(5% of 25) = 2: the two hottest pixels
    assert out[1].sum() == 23 and not out[1, 0, :2].any()  # floor(95% of 25) = 23: all but the two coldest
    assert torch.equal(out[2], torch.from_numpy(ellipse(5)))  # no evidence at all: the box's ellipse
    assert torch.equal(out[3], masks[3])  # a sound mask is left as it is


def test_fast_path_gives_captums_plain_maps_and_restores_the_weights():
    """The channels-last, frozen-weights path equals captum's LayerGradCam on the model as given
    (contiguous, weights requiring grad), and leaves requires_grad as it found it."""
    from captum.attr import LayerAttribution, LayerGradCam

    torch.manual_seed(0)
    model = ObjectsCNN(2, 8, 24).eval()
    model.classifier[1].weight.requires_grad_(False)  # a partly frozen model: flags must come back as they were
    flags = [p.requires_grad for p in model.parameters()]
    images = torch.rand(6, 3, 24, 24)
    plain = LayerGradCam(model, model.last_conv).attribute(images, target=1, relu_attributions=True)
    plain = LayerAttribution.interpolate(plain, (24, 24), interpolate_mode="bilinear")[:, 0].detach()
    plain = (plain / plain.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]).clamp(0, 1)
    heat, _ = gradcam_masks(model, model.last_conv, images, target=1, threshold=0.2, batch_size=64)
    torch.testing.assert_close(heat, plain, atol=1e-6, rtol=1e-5)
    assert [p.requires_grad for p in model.parameters()] == flags


def test_rethresholding_the_heat_equals_a_fresh_masking_at_that_threshold():
    """The gradcam_mask stage applies a threshold chosen on validation crops to the heat it has."""
    from cnnlab.attribution.masking import mask_backgrounds

    torch.manual_seed(0)
    model = ObjectsCNN(2, 8, 16)
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    first = mask_backgrounds(model, images, 0.2, batch_size=64)
    again = mask_backgrounds(model, images, 0.5, batch_size=64, heat=first.heat)
    fresh = mask_backgrounds(model, images, 0.5, batch_size=64)
    assert torch.equal(again.images, fresh.images) and torch.equal(again.masks, fresh.masks)
    assert again.metrics == fresh.metrics and not torch.equal(again.masks, first.masks)
