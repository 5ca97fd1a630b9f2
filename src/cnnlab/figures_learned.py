"""The visualize stage's figures of what the study's networks learned: filters with their feature
maps, deconvnet reconstructions, class images, and the augmentations they trained under."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cnnlab.attribution.features import class_images, deconvnet, early_middle_deep, layer_responses, strongest_filters
from cnnlab.data.arrays import ImageSet
from cnnlab.data.augment import per_image_steps
from cnnlab.figures import Figures
from cnnlab.params.schema import Augment, ClassImages
from cnnlab.tensors import to_float
from cnnlab.viz.attribution import augmentation_grid, class_image_grid, deconv_panel, filters_and_maps


def first_of_each_class(data: ImageSet, count: int) -> tuple[np.ndarray, list[str]]:
    """The first validation image of each of the first `count` classes: (images, class names)."""
    val = data.splits["val"]
    labels = val.labels(data.classes)
    rows = [int(np.flatnonzero(labels == k)[0]) for k in range(len(data.classes)) if (labels == k).any()][:count]
    return val.images[rows], [data.classes[labels[r]] for r in rows]


def filters(model, images: np.ndarray, names: list[str], k: int) -> Figures:
    """Filters with their feature maps for an early, a middle and a deep conv layer."""
    x = to_float(torch.from_numpy(images), torch.contiguous_format)
    out = {}
    for depth, response in zip(("early", "middle", "deep"), layer_responses(model, early_middle_deep(model), x)):
        chosen = strongest_filters(response, k)
        out[f"filters_{depth}.png"] = filters_and_maps(
            response.name, response.weight, response.maps, chosen, images, names
        )
    return out


def deconvolutions(model, images: np.ndarray) -> Figures:
    """Deconvnet reconstructions of each input image's strongest activation in three layers."""
    x = to_float(torch.from_numpy(images), torch.contiguous_format)
    recon, positions = {}, {}
    for name, layer in early_middle_deep(model):
        r, pos = deconvnet(model, layer, x)
        recon[name], positions[name] = r.numpy(), pos
    return {"deconvnet.png": deconv_panel(images, recon, positions)}


def class_image_figure(model, classes: list[str], size: int, c: ClassImages, seed: int,
                       cell: str) -> tuple[Figures, pd.DataFrame, dict]:  # fmt: skip
    """One generated image per class; returns (figures, a table of each class's confidence and
    logit, metrics)."""
    made = class_images(model, len(classes), size, steps=c.steps, lr=c.lr, seed=seed, scale=c.scale,
                        degrees=c.degrees, decay=c.decay)  # fmt: skip
    title = f"{cell}: images that maximise each class's log-softmax"
    figure = class_image_grid(made.images, classes, made.confidence, title=title)
    table = pd.DataFrame({"class": classes, "confidence": made.confidence, "logit": made.logit})
    metrics = {
        "cell": cell,
        "confidence": {name: round(float(v), 6) for name, v in zip(classes, made.confidence)},
        "mean_confidence": round(float(made.confidence.mean()), 6),
        "min_confidence": round(float(made.confidence.min()), 6),
    }
    return {"class_images.png": figure}, table, metrics


def augmentations(cfg: Augment, data: ImageSet, seed: int, count: int = 8) -> Figures:
    """A fixed batch of training images under each augmentation of the `augment` section, each
    alone and always applied (p = 1) with its configured strength; the random draws start from
    `seed`, whatever ran before."""
    from torchvision.transforms import v2  # torchvision: only where the augmentations are drawn

    torch.manual_seed(seed)  # transforms.v2 draws from torch's global generator
    train = data.splits["train"]
    images = torch.from_numpy(train.images[:count])
    labels = torch.from_numpy(train.labels(data.classes)[:count])
    rows = {"original": images.numpy()}
    to_uint8 = v2.ToDtype(torch.uint8, scale=True)
    off = {name: step.model_copy(update={"p": 0.0}) for name, step in cfg}
    for name, step in cfg:
        if name in ("cutmix", "mixup"):
            continue
        alone = cfg.model_copy(update={**off, name: step.model_copy(update={"p": 1.0})})
        geometric, on_float = per_image_steps(alone, data.image_size)
        transform = v2.Compose(geometric + [v2.ToDtype(torch.float32, scale=True)] + on_float)
        rows[name] = torch.stack([to_uint8(transform(img)) for img in images]).numpy()
    floats = images.float() / 255
    for name, mix in (("cutmix", v2.CutMix(num_classes=len(data.classes), alpha=cfg.cutmix.alpha)),
                      ("mixup", v2.MixUp(num_classes=len(data.classes), alpha=cfg.mixup.alpha))):  # fmt: skip
        mixed, _ = mix(floats, labels)
        rows[name] = to_uint8(mixed).numpy()
    title = f"{data.name}: each augmentation alone, always applied (strengths from params.yaml)"
    return {"augmentations.png": augmentation_grid(rows, title=title)}
