"""Stage visualize: the figures that no other stage owns (what the study's networks learned:
filters with their feature maps, deconvnet, class images; the augmentations) and
reports/index.html, one static page with every stage's metrics tables and figures. The other
figures are drawn once, by the stages that own their data, under reports/<stage>/."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cnnlab import figures_learned
from cnnlab.data.arrays import load_images
from cnnlab.params.schema import Params
from cnnlab.train.cell import load_study_model


@dataclass
class Drawn:
    """What visualize drew: the study cells used (with a note where it is not the one set), the
    figures of what the networks learned and of the augmentations, the class images' table and
    metrics."""

    used: dict
    learned: dict
    augment: dict
    class_table: pd.DataFrame
    class_metrics: dict

    def metrics(self, figures: int) -> dict:
        """visualize's metrics JSON: how many figures the page shows, the cells used, the class images'."""
        return {"figures": figures, "used": {key: cell for key, (cell, _) in self.used.items()},
                "class_images": self.class_metrics}  # fmt: skip


def draw(p: Params, study: Path, prepared: Path) -> Drawn:
    """The figures of the study cells' models (`study`/<cell>/model.pt) on their prepared datasets."""
    used = {key: p.cell(key) for key in ("features_cell", "deconv_cell", "class_images_cell")}
    used["augment_dataset"] = p.augment_dataset()
    for _, note in used.values():
        if note:
            print(f"note: {note}", file=sys.stderr)
    cell = {key: cell for key, (cell, _) in used.items()}

    def model_and_data(key):
        dataset = cell[key].split("-")[0]
        return load_study_model(study / cell[key] / "model.pt", "cpu")[0], load_images(prepared / dataset)

    v = p.visualize
    model, data = model_and_data("features_cell")
    learned = figures_learned.filters(model, *figures_learned.first_of_each_class(data, v.images), v.filters)
    model, data = model_and_data("deconv_cell")
    learned |= figures_learned.deconvolutions(model, figures_learned.first_of_each_class(data, v.images)[0])
    model, data = model_and_data("class_images_cell")
    shown, table, metrics = figures_learned.class_image_figure(model, data.classes, data.image_size, v.class_images,
                                                               p.seed, cell["class_images_cell"])  # fmt: skip
    augment = figures_learned.augmentations(p.augment, load_images(prepared / cell["augment_dataset"]), p.seed)
    return Drawn(used, learned | shown, augment, table, metrics)


def count_figures(reports: Path) -> int:
    """The PNGs the page shows: reports/<stage>/*.png and reports/study/<cell>/*.png."""
    return len(list(reports.glob("*/*.png"))) + len(list(reports.glob("study/*/*.png")))
