"""What the visualize stage shows, gathered from the pipeline's outputs: each function reads
models and data, computes what is drawn, and returns figures (name -> Figure), tables and
metrics. Nothing is written here; the stage saves the figures and the page."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torchvision.transforms import v2

from cnnlab.attribution.features import class_images, deconvnet, early_middle_deep, layer_responses, strongest_filters
from cnnlab.attribution.gradcam import gradcam_masks
from cnnlab.config import Params
from cnnlab.data.augment import per_image_steps
from cnnlab.data.sets import class_indices, load_chain, load_crops
from cnnlab.data.sources import load_prepared
from cnnlab.data.strategies import eval_images
from cnnlab.io import load_array
from cnnlab.train.checkpoint import load_model
from cnnlab.train.loop import memory_format, predict, to_float
from cnnlab.viz.features import (
    augmentation_grid,
    class_image_grid,
    deconv_panel,
    filters_and_maps,
    gradcam_compare,
)
from cnnlab.viz.plots import confusion_matrices, mask_examples, prediction_grid, strategy_comparison, training_curves


@dataclass
class Gathered:
    figures: dict[str, Figure] = field(default_factory=dict)  # path under reports/ -> figure
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


def _history(csv: Path) -> list[dict]:
    return pd.read_csv(csv).to_dict("records")


def _confusions(out: Gathered, stem: str, panels: dict, classes: list[str], title: str) -> None:
    out.figures[f"{stem}.png"] = confusion_matrices(panels, classes, f"{title} (counts; rows: true class)")
    out.figures[f"{stem}_normalized.png"] = confusion_matrices(
        panels, classes, f"{title} (each row divided by its class count)", normalize="true"
    )


def _misclassified_first(wrong: np.ndarray, n: int) -> np.ndarray:
    """Up to n row indices where `wrong` is True; right ones fill up when there are fewer."""
    order = np.concatenate([np.flatnonzero(wrong), np.flatnonzero(~wrong)])
    return order[:n]


def objects_chain(p: Params, crops_dir: Path, segments_dir: Path, backgrounds_dir: Path, masked_dir: Path,
                  models_dir: Path, metrics_dir: Path, device) -> Gathered:  # fmt: skip
    """The cure strategies compared over seeds (bars with sd and seeds), the curves of every
    training, test confusion matrices of every strategy (first seed), Grad-CAM masks of the
    shortcut class and GrabCut masks, Grad-CAM of the baseline vs the best strategy on test crops
    (misclassified first), and example test predictions of the best strategy."""
    out = Gathered()
    info = json.loads((crops_dir / "dataset.json").read_text())
    classes = info["classes"]
    ev = json.loads((metrics_dir / "evaluate.json").read_text())
    ran = {n: m for n, m in ev["strategies"].items() if "skipped" not in m}
    seed = ev["seeds"][0]
    out.figures["strategies.png"] = strategy_comparison(
        ran,
        {"test_accuracy": "test accuracy", "shortcut_class_test_recall": f"class-{ev['shortcut_class']} test recall",
         "bg_gap": "BG-gap (own - shortcut background)"},
        title=f"cures over seeds {ev['seeds']} (bar: mean, line: sd, dots: seeds); data: {ev['data_source']}",
    )  # fmt: skip
    out.figures["curves_background_classifier.png"] = training_curves(
        _history(metrics_dir / "curves" / "background_classifier.csv"), title="background classifier (mean over seeds)"
    )
    for name in ran:
        out.figures[f"curves_{name}.png"] = training_curves(
            _history(metrics_dir / "curves" / "classifier" / f"{name}.csv"),
            title=f"8-class CNN, {name} (mean over seeds)",
        )

    crops = load_crops(crops_dir)
    chain = load_chain(crops, segments_dir, backgrounds_dir)
    test = crops["test"]
    labelled = len(test.index) > 0 and bool((test.index.label != "").all())
    models = {name: load_model(models_dir / name / f"seed{seed}.pt", device)[0] for name in ran}
    views = {name: torch.from_numpy(np.ascontiguousarray(eval_images(name, chain, "test"))) for name in ran}
    logits = {name: predict(m, views[name], device) for name, m in models.items()}
    preds = {name: lg.argmax(1).numpy() for name, lg in logits.items()}
    if labelled:
        truth_idx = class_indices(test.index.label, classes)
        _confusions(out, "confusion_test", {n: (truth_idx, pr) for n, pr in preds.items()}, classes,
                    f"test set, seed {seed}")  # fmt: skip

    n = p.visualize.gradcam_examples
    train = crops["train"]
    if (masked_dir / f"seed{seed}").is_dir():  # Grad-CAM masks of the shortcut class (report strategy)
        index = pd.read_csv(masked_dir / f"seed{seed}" / "index.csv", dtype=str, keep_default_na=False)
        position = {path: i for i, path in enumerate(train.index.path)}
        rows = np.array([position[path] for path in index.path[:n]], np.int64)
        truth = train.masks[rows] if train.index.has_mask.to_numpy()[rows].all() else None
        heat = load_array(masked_dir / f"seed{seed}" / "heat.npy")[:n]
        masks = load_array(masked_dir / f"seed{seed}" / "masks.npy")[:n]
        out.figures["gradcam_shortcut_masks.png"] = mask_examples(train.images[rows], heat, masks, truth)
    rows = np.linspace(0, len(train.index) - 1, min(n, len(train.index))).astype(int)
    seg = chain.segments["train"][rows]
    truth = train.masks[rows] if train.index.has_mask.to_numpy()[rows].all() else None
    out.figures["segment_masks.png"] = mask_examples(
        train.images[rows], seg.astype(np.float32), seg, truth, "GrabCut mask"
    )

    best = ev["comparison"].get("best", next(iter(ran)))
    shown = [name for name in dict.fromkeys(["none", best]) if name in models]
    if labelled:
        wrong = np.zeros(len(truth_idx), bool)
        for name in shown:
            wrong |= preds[name] != truth_idx
        pick = _misclassified_first(wrong, n)
        true_names = [classes[i] for i in truth_idx[pick]]
    else:
        pick, true_names = np.arange(min(n, len(test.images))), ["?"] * min(n, len(test.images))
    compare = {}
    for name in shown:
        model = models[name]
        x = to_float(views[name][pick], memory_format(model, device))
        target = [int(t) for t in preds[name][pick]]
        heat, _ = gradcam_masks(model, model.last_conv, x, target, threshold=0, device=device)
        compare[name] = (heat.numpy(), [classes[i] for i in preds[name][pick]])
    out.figures["gradcam_test_baseline_vs_best.png"] = gradcam_compare(test.images[pick], true_names, compare)

    prob = logits[best].softmax(1).numpy()
    grid = np.arange(min(len(test.images), 16)) if not labelled else _misclassified_first(preds[best] != truth_idx, 16)
    out.figures["test_predictions_best.png"] = prediction_grid(
        views[best].numpy()[grid],
        [classes[i] for i in truth_idx[grid]] if labelled else [classes[i] for i in preds[best][grid]],
        [classes[i] for i in preds[best][grid]],
        prob[grid, preds[best][grid]],
        title=f"{best} on test crops, seed {seed} (wrong first)",
    )
    return out


def study_cell(cell: str, prepared_dir: Path, metrics_dir: Path) -> Gathered:
    """One study cell: its curves and its train/val confusion matrices (counts and normalised)."""
    out = Gathered()
    classes = json.loads((prepared_dir / "dataset.json").read_text())["classes"]
    out.figures["curves.png"] = training_curves(_history(metrics_dir / "curves.csv"), title=cell)
    panels = {}
    for split in ("train", "val"):
        frame = pd.read_csv(metrics_dir / f"confusion_{split}.csv", dtype=str, keep_default_na=False)
        panels[split] = (class_indices(frame.actual, classes), class_indices(frame.predicted, classes))
    _confusions(out, "confusion", panels, classes, cell)
    return out


def _inputs(prepared_dir: Path, count: int) -> tuple[np.ndarray, list[str], list[str]]:
    """The first validation image of each of the first `count` classes: (images, names, classes)."""
    data = load_prepared(prepared_dir)
    val = data.splits["val"]
    rows = [int(np.flatnonzero(val.labels == k)[0]) for k in range(len(data.classes)) if (val.labels == k).any()]
    rows = rows[:count]
    return val.images[rows], [data.classes[val.labels[r]] for r in rows], data.classes


def filters(model, prepared_dir: Path, count: int, k: int) -> Gathered:
    """Filters with their feature maps for an early, a middle and a deep conv layer."""
    out = Gathered()
    images, names, _ = _inputs(prepared_dir, count)
    layers = early_middle_deep(model)
    x = to_float(torch.from_numpy(images), torch.contiguous_format)
    for depth, response in zip(("early", "middle", "deep"), layer_responses(model, layers, x)):
        chosen = strongest_filters(response, k)
        out.figures[f"filters_{depth}.png"] = filters_and_maps(
            response.name, response.weight, response.maps, chosen, images, names
        )
    return out


def deconvolutions(model, prepared_dir: Path, count: int) -> Gathered:
    """Deconvnet reconstructions of each input image's strongest activation in three layers."""
    out = Gathered()
    images, _, _ = _inputs(prepared_dir, count)
    x = to_float(torch.from_numpy(images), torch.contiguous_format)
    recon, positions = {}, {}
    for name, layer in early_middle_deep(model):
        r, pos = deconvnet(model, layer, x)
        recon[name], positions[name] = r.numpy(), pos
    out.figures["deconvnet.png"] = deconv_panel(images, recon, positions)
    return out


def class_image_figure(model, classes: list[str], size: int, p: Params, cell: str) -> Gathered:
    """One generated image per class, and the model's confidence for its class on each."""
    c = p.visualize.class_images
    made = class_images(model, len(classes), size, steps=c.steps, lr=c.lr, seed=p.seed, scale=c.scale,
                        degrees=c.degrees, decay=c.decay)  # fmt: skip
    out = Gathered()
    out.figures["class_images.png"] = class_image_grid(
        made.images, classes, made.confidence, title=f"{cell}: images that maximise each class logit"
    )
    out.tables["class_images"] = pd.DataFrame({"class": classes, "confidence": made.confidence, "logit": made.logit})
    out.metrics = {
        "cell": cell,
        "confidence": {name: round(float(v), 6) for name, v in zip(classes, made.confidence)},
        "mean_confidence": round(float(made.confidence.mean()), 6),
        "min_confidence": round(float(made.confidence.min()), 6),
    }
    return out


def augmentations(p: Params, prepared_dir: Path, count: int = 8) -> Gathered:
    """A fixed batch of training images under each augmentation of params.yaml's `augment`
    section, each alone and always applied (p = 1) with its configured strength."""
    data = load_prepared(prepared_dir)
    train = data.splits["train"]
    images = torch.from_numpy(train.images[:count])
    labels = torch.from_numpy(train.labels[:count]).long()
    rows = {"original": images.numpy()}
    to_uint8 = v2.ToDtype(torch.uint8, scale=True)
    for f in dataclasses.fields(p.augment):
        if f.name in ("cutmix", "mixup"):
            continue
        alone = dataclasses.replace(
            p.augment,
            **{g.name: dataclasses.replace(getattr(p.augment, g.name), p=0.0) for g in dataclasses.fields(p.augment)},
        )
        alone = dataclasses.replace(alone, **{f.name: dataclasses.replace(getattr(p.augment, f.name), p=1.0)})
        geometric, on_float = per_image_steps(alone, data.image_size)
        step = v2.Compose(geometric + [v2.ToDtype(torch.float32, scale=True)] + on_float)
        rows[f.name] = torch.stack([to_uint8(step(img)) for img in images]).numpy()
    floats = images.float() / 255
    for name, mix in (("cutmix", v2.CutMix(num_classes=len(data.classes), alpha=p.augment.cutmix.alpha)),
                      ("mixup", v2.MixUp(num_classes=len(data.classes), alpha=p.augment.mixup.alpha))):  # fmt: skip
        mixed, _ = mix(floats, labels)
        rows[name] = to_uint8(mixed).numpy()
    out = Gathered()
    out.figures["augmentations.png"] = augmentation_grid(
        rows, title=f"{data.name}: each augmentation alone, always applied (strengths from params.yaml)"
    )
    return out
