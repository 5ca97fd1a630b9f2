"""The evaluate stage's figures of the test set through each cure's model: confusion matrices,
Grad-CAM of the baseline against the best cure, the best cure's predictions."""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.attribution.gradcam import gradcam_masks
from cnnlab.data.arrays import Split
from cnnlab.figures import EXAMPLES, GRID, Figures, confusions, wrong_first
from cnnlab.tensors import memory_format, to_float
from cnnlab.viz.attribution import gradcam_compare
from cnnlab.viz.plots import prediction_grid


def evaluation_figures(test: Split, classes: list[str], views: dict, logits: dict, models: dict, best: str, seed: int,
                       device) -> Figures:  # fmt: skip
    """The test set through each strategy's model of the first seed: confusion matrices (when
    labelled), Grad-CAM of the baseline against the best strategy on the crops they get wrong
    first, and the best strategy's predictions (wrong first).

    Args:
        views: strategy -> (N, 3, S, S) uint8 test crops as that strategy treats them.
        logits: strategy -> (N, classes) logits; models: strategy -> model.
    """
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
