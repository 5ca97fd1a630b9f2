"""What each stage shows: from its own data and models it computes what is drawn (predictions,
Grad-CAM, filters, ...) and returns named figures. Each figure is drawn once, by the stage that
owns its data; the stage saves them under reports/<stage>/ (:func:`cnnlab.stage.write_figures`)
and the visualize stage puts them on one page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from cnnlab.config import Augment, ClassImages, Params
from cnnlab.data.arrays import ImageSet, Split
from cnnlab.tensors import memory_format, to_float
from cnnlab.viz.plots import (
    confusion_matrices,
    image_grid,
    mask_examples,
    mask_sources,
    prediction_grid,
    strategy_comparison,
    training_curves,
)
from cnnlab.viz.report import Section, render_report

EXAMPLES = 6  # crops per mask or Grad-CAM example figure
GRID = 16  # images per prediction grid
Figures = dict[str, Figure]  # file name under reports/<stage>/ -> figure


def wrong_first(wrong: np.ndarray, n: int) -> np.ndarray:
    """Up to n row indices where `wrong` is True, filled up with right ones when there are fewer."""
    return np.concatenate([np.flatnonzero(wrong), np.flatnonzero(~wrong)])[:n]


def spread(count: int, n: int = EXAMPLES) -> np.ndarray:
    """n row indices spread evenly over `count` rows (all of them when there are fewer)."""
    return np.linspace(0, count - 1, min(n, count)).astype(int)


def confusions(stem: str, panels: dict, classes: list[str], title: str) -> Figures:
    """Confusion matrices as counts and row-normalised (recall on the diagonal)."""
    return {
        f"{stem}.png": confusion_matrices(panels, classes, f"{title} (counts; rows: true class)"),
        f"{stem}_normalized.png": confusion_matrices(
            panels, classes, f"{title} (each row divided by its class count)", normalize="true"
        ),
    }


def curves(history: list[dict], title: str, name: str = "curves.png") -> Figures:
    return {name: training_curves(history, title=title)}


# -- the objects chain ----------------------------------------------------------------------------


def crop_examples(crops: ImageSet) -> Figures:
    """One training crop per class and the first test crops."""
    train, test = crops.splits["train"], crops.splits["test"]
    first = train.index.drop_duplicates("label").index.to_numpy()
    rows = np.arange(min(8, len(test)))
    images = np.concatenate([train.images[first], test.images[rows]])
    titles = [f"train {c}" for c in train.index.label[first]]
    titles += [f"test {c}" if c else "test" for c in test.index.label[rows]]
    return {"crops.png": image_grid(images, titles, columns=max(len(first), 1), title=crops.source)}


def patch_examples(patches: Split, shown: list[str]) -> Figures:
    """Eight background patches of each class in `shown`."""
    rows = np.concatenate([np.flatnonzero(patches.index.label == c)[:8] for c in shown])
    titles = [f"bg {c}" for c in patches.index.label.to_numpy()[rows]]
    return {"patches.png": image_grid(patches.images[rows], titles, title="background patches")}


def segment_examples(train: Split, masks: np.ndarray) -> Figures:
    """GrabCut masks of crops spread over the training set (ground truth as a contour)."""
    rows = spread(len(train))
    shown = masks[rows]
    figure = mask_examples(train.images[rows], shown.astype(np.float32), shown, train.truth(rows), "GrabCut mask")
    return {"segment_masks.png": figure}


def masker_examples(crops: Split, grabcut: np.ndarray, learned: np.ndarray) -> Figures:
    """The same crops (spread over `crops`) with GrabCut's and the learned masker's masks, and the
    ground truth where the folder has it, each mask with its IoU."""
    rows = spread(len(crops))
    shown = {"GrabCut": grabcut[rows], "learned": learned[rows]}
    return {"masker_masks.png": mask_sources(crops.images[rows], shown, crops.truth(rows))}


MASK_SOURCE_CROPS = 4  # crops in the mask-source comparison


def mask_source_examples(train: Split, chain, gradcam: Split, gradcam_rows: np.ndarray, seed: int,
                         source: str) -> tuple[Figures, dict[str, np.ndarray]]:  # fmt: skip
    """The same shortcut-class training crops (the only ones Grad-CAM masks; spread over them) with
    each source's mask: GrabCut (segment), Grad-CAM (report, seed `seed`), learned (the masker of
    `seed`), and the ground truth where the folder has it, each with its IoU. Returns the figure and
    its arrays (images, each source's masks, truth), which `cnnlab mask-figure` sets beside another
    run's.

    gradcam: that seed's Grad-CAM-masked crops (gradcam_mask stage; their masks); gradcam_rows:
    their rows in `train`; chain: cnnlab.data.strategies.ChainData."""
    pick = spread(len(gradcam_rows), MASK_SOURCE_CROPS)
    rows = gradcam_rows[pick]
    arrays = {"images": train.images[rows]}
    if chain.segments is not None:
        arrays["GrabCut"] = chain.segments["train"][rows]
    arrays["Grad-CAM"] = gradcam.masks[pick]
    if chain.learned is not None:
        arrays["learned"] = chain.learned[seed]["train"][rows]
    if chain.truth is not None:
        arrays["truth"] = chain.truth["train"][rows]
    masks = {k: v for k, v in arrays.items() if k not in ("images", "truth")}
    title = f"the same shortcut-class training crops, each mask source (seed {seed}); data: {source}"
    return {"mask_sources.png": mask_sources(arrays["images"], masks, arrays.get("truth"), title=title)}, arrays


def gradcam_examples(crops: Split, heat: np.ndarray, masks: np.ndarray) -> Figures:
    """Grad-CAM heat and masks of shortcut-class crops spread over them (`crops`: those crops)."""
    rows = spread(len(crops))
    return {"gradcam_shortcut_masks.png": mask_examples(crops.images[rows], heat[rows], masks[rows], crops.truth(rows))}


def strategies(ev: dict) -> Figures:
    """The cures compared over seeds (evaluate.json): bars with sd and the seeds' values."""
    ran = {n: m for n, m in ev["strategies"].items() if "skipped" not in m}
    panels = {"test_accuracy": "test accuracy",
              "shortcut_class_test_recall": f"class-{ev['shortcut_class']} test recall",
              "bg_gap": "BG-gap (own - shortcut background)"}  # fmt: skip
    title = f"cures over seeds {ev['seeds']} (bar: mean, line: sd, dots: seeds); data: {ev['data_source']}"
    return {"strategies.png": strategy_comparison(ran, panels, title=title)}


def test_figures(test: Split, classes: list[str], views: dict, logits: dict, models: dict, best: str, seed: int,
                 device) -> Figures:  # fmt: skip
    """The test set through each strategy's model of the first seed: confusion matrices (when
    labelled), Grad-CAM of the baseline against the best strategy on the crops they get wrong
    first, and the best strategy's predictions (wrong first).

    Args:
        views: strategy -> (N, 3, S, S) uint8 test crops as that strategy treats them.
        logits: strategy -> (N, classes) logits; models: strategy -> model.
    """
    from cnnlab.attribution.gradcam import gradcam_masks  # captum: only where Grad-CAM is drawn

    out: Figures = {}
    preds = {name: lg.argmax(1).numpy() for name, lg in logits.items()}
    truth = test.labels(classes)
    if test.labelled:
        panels = {n: (truth, p) for n, p in preds.items()}
        out |= confusions("confusion_test", panels, classes, f"test set, seed {seed}")
    shown = [name for name in dict.fromkeys(["none", best]) if name in models]
    wrong = np.zeros(len(test), bool)
    for name in shown if test.labelled else ():
        wrong |= preds[name] != truth
    pick = wrong_first(wrong, EXAMPLES)
    compare = {}
    for name in shown:
        model = models[name]
        x = to_float(torch.from_numpy(views[name][pick]), memory_format(model, device))
        target = [int(t) for t in preds[name][pick]]
        heat, _ = gradcam_masks(model, model.last_conv, x, target, threshold=0, batch_size=EXAMPLES, device=device)
        compare[name] = (heat.numpy(), [classes[i] for i in preds[name][pick]])
    from cnnlab.viz.features import gradcam_compare

    true_names = [classes[i] for i in truth[pick]] if test.labelled else ["?"] * len(pick)
    out["gradcam_test_baseline_vs_best.png"] = gradcam_compare(test.images[pick], true_names, compare)
    prob = logits[best].softmax(1).numpy()
    pred = preds[best]
    grid = wrong_first(pred != truth if test.labelled else np.zeros(len(test), bool), GRID)
    out["test_predictions_best.png"] = prediction_grid(
        views[best][grid],
        [classes[i] for i in (truth if test.labelled else pred)[grid]],
        [classes[i] for i in pred[grid]],
        prob[grid, pred[grid]],
        title=f"{best} on test crops, seed {seed} (wrong first)",
    )
    return out


# -- the study ------------------------------------------------------------------------------------


def study_cell(cell: str, classes: list[str], history: list[dict], labels: dict, preds: dict, val: Split,
               probabilities: np.ndarray) -> Figures:  # fmt: skip
    """One study cell: its curves, its train/val confusion matrices and validation examples
    (wrong first)."""
    out = curves(history, cell)
    out |= confusions("confusion", {s: (labels[s], preds[s]) for s in ("train", "val")}, classes, cell)
    truth = labels["val"]
    pick = wrong_first(preds["val"] != truth, GRID)
    out["examples.png"] = prediction_grid(
        val.images[pick], [classes[i] for i in truth[pick]], [classes[i] for i in preds["val"][pick]],
        probabilities[pick, preds["val"][pick]], title=f"{cell}: validation examples (wrong first)",
    )  # fmt: skip
    return out


# -- what the networks learned (the visualize stage) -----------------------------------------------


def first_of_each_class(data: ImageSet, count: int) -> tuple[np.ndarray, list[str]]:
    """The first validation image of each of the first `count` classes: (images, class names)."""
    val = data.splits["val"]
    labels = val.labels(data.classes)
    rows = [int(np.flatnonzero(labels == k)[0]) for k in range(len(data.classes)) if (labels == k).any()][:count]
    return val.images[rows], [data.classes[labels[r]] for r in rows]


def filters(model, images: np.ndarray, names: list[str], k: int) -> Figures:
    """Filters with their feature maps for an early, a middle and a deep conv layer."""
    from cnnlab.attribution.features import early_middle_deep, layer_responses, strongest_filters
    from cnnlab.viz.features import filters_and_maps

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
    from cnnlab.attribution.features import deconvnet, early_middle_deep
    from cnnlab.viz.features import deconv_panel

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
    from cnnlab.attribution.features import class_images
    from cnnlab.viz.features import class_image_grid

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
    from torchvision.transforms import v2

    from cnnlab.data.augment import per_image_steps
    from cnnlab.viz.features import augmentation_grid

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


# -- the page (the visualize stage) ---------------------------------------------------------------

CHAIN = ("evaluate", "train_classifier", "background_classifier", "gradcam_mask", "masker", "segment", "backgrounds",
         "crop")  # fmt: skip
HEADLINE = "strategies.png"  # shown first


def listed(reports: Path, folder: str) -> list[tuple[str, str]]:
    """(caption, path relative to reports/) of the figures in reports/<folder>, by name, the
    headline first."""
    files = sorted((reports / folder).glob("*.png"), key=lambda f: (f.name != HEADLINE, f.name))
    return [(f"{folder}/{f.name}", f"{folder}/{f.name}") for f in files]


def objects_table(table: pd.DataFrame) -> pd.DataFrame:
    """The evaluate stage's comparison table (objects_comparison.csv) as "mean ± sd" cells."""
    out = table[["strategy", "note"]].fillna("")
    for column in table.columns:
        if column.endswith("_mean"):
            key = column.removesuffix("_mean")
            sd = table[f"{key}_sd"]
            out[key] = [f"{m:.3f} ± {s:.3f}" if pd.notna(m) else "" for m, s in zip(table[column], sd)]
    return out


def study_table(metrics_dir: Path, cells: list[str]) -> pd.DataFrame:
    """One row per study cell, from its metrics.json."""
    rows = []
    for cell in cells:
        m = json.loads((metrics_dir / cell / "metrics.json").read_text())
        rows.append({
            "cell": cell,
            "source": m["data_source"],
            "weights": m["weights"],
            "train images": m["sizes"]["train"],
            "epochs": m["epochs_run"],
            "train acc": m["train"]["accuracy"],
            "val acc": m["val"]["accuracy"],
            "test acc": (m.get("test") or {}).get("accuracy"),
            "val macro F1": m["val"]["macro_f1"],
        })  # fmt: skip
    return pd.DataFrame(rows)


def page(p: Params, reports: Path, objects: tuple[str, pd.DataFrame], study_metrics: Path, used: dict,
         class_table: pd.DataFrame) -> str:  # fmt: skip
    """reports/index.html: the objects chain (its data source and comparison table, every chain
    stage's figures), the study table and each cell's figures, what the networks learned (`used`:
    the cells of visualize.*, with their notes), augmentation."""
    source, table = objects
    cells = p.cells()
    chain = [figure for stage in CHAIN for figure in listed(reports, stage)]
    learned = "; ".join(f"{key.removesuffix('_cell')}: {cell}" + (f" ({note})" if note else "")
                        for key, (cell, note) in used.items() if key.endswith("_cell"))  # fmt: skip
    sections = [
        Section("Objects chain", "objects", f"data: {source}. Cures of the background shortcut, each trained with "
                f"seeds {p.objects.seed_list(p.seed)}: mean ± sd over seeds. none = crops as they are; report = "
                f"class {p.backgrounds.classes[0]}'s background blacked out by Grad-CAM; segment = every crop's "
                "background blacked out (GrabCut), train and test; mixed_rand = objects on random backgrounds; "
                "*_learned = the same with the learned masker's masks; oracle = ground-truth masks (an upper bound).",
                tables=[("evaluate: cure strategies over seeds", objects_table(table))], figures=chain),
        Section("Study: CIFAR-10 / ImageNet10", "study", "one row per dataset x model cell. The transfer cells ("
                f"{', '.join(p.transfer.models)}) train on the first {p.transfer.train_per_class or 'all'} training "
                f"images per class; a 'pretrained' backbone is {p.transfer.pretrain} trained from scratch on "
                f"{p.transfer.source} by the pretrain stage.",
                tables=[("study metrics", study_table(study_metrics, cells))]),
        *[Section(cell, f"study-{cell}", figures=listed(reports, f"study/{cell}")) for cell in cells],
        Section("What the networks learned", "features", learned,
                tables=[("class images: the model's confidence for the target class", class_table)],
                figures=listed(reports, "features")),
        Section("Augmentation", "augment", used["augment_dataset"][1], figures=listed(reports, "augment")),
    ]  # fmt: skip
    subtitle = f"workspace of this `dvc repro`; data: {source} (objects), {', '.join(p.study.datasets)} (study)"
    return render_report("cnnlab report", subtitle, sections)
