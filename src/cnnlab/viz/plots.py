"""Figures: arrays in, matplotlib Figure out; :func:`save_figure` writes one to a file."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def tight(fig: Figure) -> Figure:
    """`fig.tight_layout()`, applied once. The figure keeps no layout engine afterwards, so
    `savefig` does not lay it out a second time: the same PNG bytes, about 30% less time per saved
    figure (the visualize stage saves 46)."""
    fig.tight_layout()
    fig.set_layout_engine(None)
    return fig


DPI = 100


def save_figure(fig: Figure, path) -> None:
    """Write `fig` as a PNG (the same bytes on every run: no software version in it) and close it."""
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def training_curves(history: list[dict], title: str = "") -> Figure:
    """Train/val loss and accuracy per epoch, from rows with epoch, train_loss, val_loss, train_acc, val_acc."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    for split in ("train", "val"):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], marker="o", label=split)
        ax_acc.plot(epochs, [r[f"{split}_acc"] for r in history], marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return tight(fig)


def mask_examples(
    images: np.ndarray, heat: np.ndarray, masks: np.ndarray, truth: np.ndarray | None = None, heat_title="Grad-CAM"
) -> Figure:
    """For a few crops: the image, the heat overlay (Grad-CAM, or the mask itself), the mask and
    the masked image.

    Args:
        images: (N, 3, H, W) uint8. heat: (N, H, W) float in [0, 1]. masks: (N, H, W) bool.
        truth: optional (N, H, W) bool ground-truth masks, drawn as a contour on the mask column.
        heat_title: the title of the overlay column.
    """
    n = len(images)
    fig, axes = plt.subplots(n, 4, figsize=(8, 2 * n), squeeze=False)
    for i in range(n):
        rgb = images[i].transpose(1, 2, 0)
        panels = [
            (rgb, "crop"),
            (rgb, heat_title),
            (masks[i], "mask"),
            (rgb * masks[i][..., None], "masked"),
        ]
        for j, (panel, name) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1 if panel.ndim == 2 else None)
            if j == 1:
                ax.imshow(heat[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if j == 2 and truth is not None:
                ax.contour(truth[i], levels=[0.5], colors="red", linewidths=1)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name + (" (red: truth)" if j == 2 and truth is not None else ""), fontsize=9)
    return tight(fig)


def mask_sources(images, masks: dict, truth=None, row_labels: list[str] | None = None, title: str = "") -> Figure:
    """For a few crops: the image, then each source's mask (e.g. GrabCut, Grad-CAM, learned), then
    the ground truth; with truth, each mask's IoU against it in its panel's title.

    Args:
        images: N (3, H, W) uint8 crops (an array or a list; crops of one row may differ in size
            from another's). masks: source name -> N (H, W) bool masks.
        truth: optional N (H, W) bool ground-truth masks (an entry None: that crop has none).
        row_labels: optional, one per crop, written left of its row (e.g. which folder).
    """
    n, names = len(images), list(masks)
    truth = [None] * n if truth is None else list(truth)
    columns = 1 + len(names) + any(t is not None for t in truth)
    fig, axes = plt.subplots(n, columns, figsize=(1.9 * columns, 2 * n + 0.3 * bool(title)), squeeze=False)
    for i in range(n):
        panels = [(np.asarray(images[i]).transpose(1, 2, 0), "crop")]
        for name in names:
            label = name
            if truth[i] is not None:
                union = (masks[name][i] | truth[i]).sum()
                label += f"\nIoU {(masks[name][i] & truth[i]).sum() / union if union else 1.0:.2f}"
            panels.append((masks[name][i], label))
        if columns > 1 + len(names):
            panels.append((truth[i], "truth") if truth[i] is not None else (None, "no truth"))
        for ax, (panel, label) in zip(axes[i], panels):
            if panel is not None:
                ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0,
                          vmax=1 if panel.ndim == 2 else None)  # fmt: skip
            ax.set_title(label, fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        if row_labels:
            axes[i][0].set_ylabel(row_labels[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return tight(fig)


def confusion_matrices(
    results: dict[str, tuple[np.ndarray, np.ndarray]], labels: list[str], title: str = "", normalize: str | None = None
) -> Figure:
    """Side-by-side confusion matrices with counts in the cells (or, with `normalize="true"`,
    each row divided by its class's count: the recall on the diagonal).

    Args:
        results: {panel name: (y_true, y_pred)} with integer class indices.
        labels: class names, in index order.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 4.2), squeeze=False)
    for ax, (name, (y_true, y_pred)) in zip(axes[0], results.items()):
        ConfusionMatrixDisplay.from_predictions(
            y_true,
            y_pred,
            labels=list(range(len(labels))),
            display_labels=labels,
            ax=ax,
            colorbar=False,
            xticks_rotation=45 if max(map(len, labels)) > 3 else "horizontal",
            normalize=normalize,
            values_format=".2f" if normalize else "d",
        )
        ax.set_title(name)
    fig.suptitle(title)
    return tight(fig)


def image_grid(images: np.ndarray, titles: list[str], columns: int = 8, title: str = "") -> Figure:
    """A grid of (N, 3, H, W) or (N, H, W, 3) uint8 images with a title under each."""
    if images.ndim == 4 and images.shape[1] == 3:
        images = images.transpose(0, 2, 3, 1)
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, name in zip(axes.flat, images, titles):
        ax.imshow(image)
        ax.set_title(name, fontsize=8)
    fig.suptitle(title)
    return tight(fig)


def prediction_grid(
    images: np.ndarray, true: list[str], pred: list[str], prob: np.ndarray, columns: int = 8, title: str = ""
) -> Figure:
    """Example predictions: each (N, 3, H, W) uint8 image titled with the predicted class and its
    probability, and the true class when wrong; green when right, red when wrong."""
    images = images.transpose(0, 2, 3, 1)
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, t, p, q in zip(axes.flat, images, true, pred, prob):
        ax.imshow(image)
        right = t == p
        label = f"{p} {q:.2f}" if right else f"{p} {q:.2f}\n(true: {t})"
        ax.set_title(label, fontsize=7, color="green" if right else "red")
    fig.suptitle(title)
    return tight(fig)


def strategy_comparison(table: dict[str, dict], metrics: dict[str, str], title: str = "") -> Figure:
    """One panel per metric: each strategy's mean over seeds (bar), sd (error bar) and seeds (dots).

    Args:
        table: strategy -> metric -> {"mean", "sd", "per_seed": {seed: value}} (cnnlab.metrics.over_seeds).
        metrics: metric key -> axis label; strategies lacking a metric get no bar.
    """
    names = list(table)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], metrics.items()):
        for i, name in enumerate(names):
            m = table[name].get(key)
            if not m:
                ax.text(i, 0.02, "n/a", ha="center", fontsize=8)
                continue
            ax.bar(i, m["mean"], yerr=m["sd"], capsize=4, color=f"C{i}", alpha=0.75)
            seeds = list(m["per_seed"].values())
            ax.plot([i] * len(seeds), seeds, "k.", markersize=5)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", rotation_mode="anchor", fontsize=9)
        ax.set(ylabel=label, title=label)
        ax.axhline(0, color="k", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return tight(fig)


def labelled_rows(rows: list[tuple[str, np.ndarray]], marked: int | None = None, columns: int = 8,
                  title: str = "") -> Figure:  # fmt: skip
    """One row of up to `columns` (N, 3, H, W) uint8 images per (label, images), the label at the
    row's left; the row `marked` (if any) framed and labelled in red."""
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.2 * columns + 1.8, 1.25 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c].transpose(1, 2, 0))
            else:
                ax.set_axis_off()
            if r == marked and c < len(images):
                for side in ax.spines.values():
                    side.set_edgecolor("red")
                    side.set_linewidth(2.5)
        red = r == marked
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9,
                              color="red" if red else "black", fontweight="bold" if red else "normal")  # fmt: skip
    fig.suptitle(title)
    return tight(fig)
