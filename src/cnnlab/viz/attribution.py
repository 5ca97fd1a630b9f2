"""Figures of what a CNN learned: filters with their feature maps, deconvnet reconstructions,
class images, Grad-CAM comparisons, augmentation examples. Arrays in, Figure out."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from cnnlab.viz.plots import plt, tight


def _rgb(images: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) -> (N, H, W, 3)."""
    return images.transpose(0, 2, 3, 1)


def _signed(x: np.ndarray) -> np.ndarray:
    """Map a signed array to [0, 1] with 0 at 0.5 (one scale for the whole array)."""
    peak = float(np.abs(x).max()) or 1.0
    return 0.5 + x / (2 * peak)


def filters_and_maps(
    layer: str,
    weight: np.ndarray,
    maps: np.ndarray,
    filters: np.ndarray,
    images: np.ndarray,
    labels: list[str],
) -> Figure:
    """Rows: the chosen filters of one conv layer; first column the filter, then its feature map
    (the layer's output channel for that filter) for each input image.

    Args:
        weight: (C_out, C_in, k, k) the layer's filters. A 3-channel filter is drawn in RGB,
            a deeper one as its mean over input channels (blue negative, red positive).
        maps: (N, C_out, H', W') the layer's output for the N images, drawn on one colour scale
            per filter so that the images' responses compare.
        filters: indices of the filters to show. images: (N, 3, H, W) uint8. labels: N names.
    """
    n = len(images)
    rows = len(filters) + 1
    fig, axes = plt.subplots(rows, n + 1, figsize=(1.7 * (n + 1), 1.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0, 0].text(0.5, 0.5, f"{layer}\n{weight.shape[1]}->{weight.shape[0]}\n{weight.shape[2]}x{weight.shape[3]}",
                    ha="center", va="center", fontsize=8)  # fmt: skip
    for j, (image, name) in enumerate(zip(_rgb(images), labels)):
        axes[0, j + 1].imshow(image)
        axes[0, j + 1].set_title(name, fontsize=8)
    for i, c in enumerate(filters):
        w = weight[c]
        ax = axes[i + 1, 0]
        if w.shape[0] == 3:
            ax.imshow(_signed(w).transpose(1, 2, 0))
            ax.set_title(f"filter {c} (RGB)", fontsize=7)
        else:
            mean = w.mean(0)
            peak = float(np.abs(mean).max()) or 1.0
            ax.imshow(mean, cmap="coolwarm", vmin=-peak, vmax=peak)
            ax.set_title(f"filter {c} (mean of {w.shape[0]})", fontsize=7)
        low, high = float(maps[:, c].min()), float(maps[:, c].max())  # one scale per filter: images compare
        for j in range(n):
            axes[i + 1, j + 1].imshow(maps[j, c], cmap="viridis", vmin=low, vmax=high)
            axes[i + 1, j + 1].set_title(f"map {c} (max {float(maps[j, c].max()):.2g})", fontsize=7)
    return tight(fig)


def deconv_panel(images: np.ndarray, recon: dict[str, np.ndarray], positions: dict[str, np.ndarray]) -> Figure:
    """Rows: input images; columns: the image, then per layer the deconvnet reconstruction of the
    image's strongest activation in that layer (grey = 0, scaled per image).

    Args:
        images: (N, 3, H, W) uint8. recon: {layer: (N, 3, H, W) float}. positions: {layer: (N, 3)
            channel, row, column of the reconstructed activation}.
    """
    n, layers = len(images), list(recon)
    fig, axes = plt.subplots(n, len(layers) + 1, figsize=(2.0 * (len(layers) + 1), 2.0 * n), squeeze=False)
    for i, image in enumerate(_rgb(images)):
        axes[i, 0].imshow(image)
        axes[i, 0].set_title("input", fontsize=8)
        for j, layer in enumerate(layers):
            r = recon[layer][i]
            axes[i, j + 1].imshow(np.clip(_signed(r).transpose(1, 2, 0), 0, 1))
            c, y, x = positions[layer][i]
            axes[i, j + 1].set_title(f"{layer}\nch {c} at ({y},{x})", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    return tight(fig)


def class_image_grid(images: np.ndarray, classes: list[str], confidence: np.ndarray, title: str = "") -> Figure:
    """One generated image per class, titled with the model's confidence for that class."""
    columns = min(len(images), 10)
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, name, p in zip(axes.flat, _rgb(images), classes, confidence):
        ax.imshow(image)
        ax.set_title(f"{name}\np={p:.2f}", fontsize=8)
    fig.suptitle(title)
    return tight(fig)


def gradcam_compare(images: np.ndarray, true: list[str], models: dict[str, tuple[np.ndarray, list[str]]]) -> Figure:
    """Rows: images; columns: the image, then per model its Grad-CAM heat map (of its predicted
    class) over the image, titled with the prediction.

    Args:
        images: (N, 3, H, W) uint8. true: N class names.
        models: {model name: (heat (N, H, W) in [0, 1], predicted class names)}.
    """
    n, names = len(images), list(models)
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(2.0 * (len(names) + 1), 2.0 * n), squeeze=False)
    for i, image in enumerate(_rgb(images)):
        axes[i, 0].imshow(image)
        axes[i, 0].set_title(f"true {true[i]}", fontsize=8)
        for j, name in enumerate(names):
            heat, pred = models[name]
            ax = axes[i, j + 1]
            ax.imshow(image)
            ax.imshow(heat[i], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(f"{name}: {pred[i]}", fontsize=8, color="green" if pred[i] == true[i] else "red")
    for ax in axes.flat:
        ax.set_axis_off()
    return tight(fig)


def augmentation_grid(rows: dict[str, np.ndarray], title: str = "") -> Figure:
    """Rows of (N, 3, H, W) uint8 images, one row per augmentation, the same batch in every row."""
    names = list(rows)
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(names), n, figsize=(1.5 * n, 1.6 * len(names)), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i, name in enumerate(names):
        for j, image in enumerate(_rgb(rows[name])):
            axes[i, j].imshow(image)
        axes[i, 0].set_title(name, fontsize=8, loc="left")
    fig.suptitle(title)
    return tight(fig)
