"""What each stage shows of its own results: from its data, masks and metrics it picks what is
drawn and returns named figures (drawn by cnnlab.viz.plots). Each figure is drawn once, by the
stage that owns its data; the stage saves them under reports/<stage>/
(:func:`cnnlab.stage.write_figures`) and the visualize stage puts them on one page
(cnnlab.report.page). Figures that compute from models (Grad-CAM, filters, deconvnet, class images) are
in cnnlab.figures_gradcam and cnnlab.figures_learned."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from cnnlab.data.arrays import ImageSet, Split
from cnnlab.viz.plots import (
    confusion_matrices,
    image_grid,
    mask_examples,
    mask_sources,
    prediction_grid,
    strategy_comparison,
    training_curves,
)

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
    """Eight background patches of each class in `shown` (four each beyond two classes)."""
    each = 8 if len(shown) <= 2 else 4
    rows = np.concatenate([np.flatnonzero(patches.index.label == c)[:each] for c in shown])
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


def mask_source_examples(train: Split, chain, gradcam: Split | None, gradcam_rows: np.ndarray | None, seed: int,
                         source: str) -> tuple[Figures, dict[str, np.ndarray]]:  # fmt: skip
    """The same shortcut-class training crops (the only ones Grad-CAM masks; spread over them) with
    each source's mask: GrabCut (segment), Grad-CAM (report, seed `seed`), learned (the masker of
    `seed`), and the ground truth where the folder has it, each with its IoU. Returns the figure and
    its arrays (images, each source's masks, truth), which `cnnlab mask-figure` sets beside another
    run's.

    gradcam: that seed's Grad-CAM-masked crops (gradcam_mask stage; their masks); gradcam_rows:
    their rows in `train`; chain: cnnlab.data.strategies.ChainData. Without a shortcut class
    (gradcam None) the crops are spread over the whole training split, without Grad-CAM."""
    pick = spread(len(gradcam_rows) if gradcam is not None else len(train), MASK_SOURCE_CROPS)
    rows = gradcam_rows[pick] if gradcam is not None else pick
    arrays = {"images": train.images[rows]}
    if chain.segments is not None:
        arrays["GrabCut"] = chain.segments["train"][rows]
    if gradcam is not None:
        arrays["Grad-CAM"] = gradcam.masks[pick]
    if chain.learned is not None:
        arrays["learned"] = chain.learned[seed]["train"][rows]
    if chain.truth is not None:
        arrays["truth"] = chain.truth["train"][rows]
    masks = {k: v for k, v in arrays.items() if k not in ("images", "truth")}
    which = "shortcut-class training crops" if gradcam is not None else "training crops"
    title = f"the same {which}, each mask source (seed {seed}); data: {source}"
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
    if ev["shortcut_class"] is None:
        del panels["shortcut_class_test_recall"]
    title = f"cures over seeds {ev['seeds']} (bar: mean, line: sd, dots: seeds); data: {ev['data_source']}"
    return {"strategies.png": strategy_comparison(ran, panels, title=title)}


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
