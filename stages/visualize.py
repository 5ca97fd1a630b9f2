"""Stage visualize: the figures that no other stage owns (what the study's networks learned:
filters with their feature maps, deconvnet, class images; the augmentations) and
reports/index.html, one static page with every stage's metrics tables and figures. The other
figures are drawn once, by the stages that own their data, under reports/<stage>/."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import json
import sys

import pandas as pd

from cnnlab import figures_learned, page
from cnnlab.data.arrays import load_images
from cnnlab.io import atomic_file, write_json
from cnnlab.stage import run_stage, write_figures
from cnnlab.tracking import stage_run
from cnnlab.train.cell import load_study_model


def draw(p, args) -> tuple[dict, dict, dict, pd.DataFrame, dict]:
    """(the study cells used (with a note where it is not the one set), figures of what the
    networks learned, of the augmentations, the class images' table and metrics)."""
    used = {key: p.cell(key) for key in ("features_cell", "deconv_cell", "class_images_cell")}
    used["augment_dataset"] = p.augment_dataset()
    for _, note in used.values():
        if note:
            print(f"note: {note}", file=sys.stderr)
    cell = {key: cell for key, (cell, _) in used.items()}

    def model_and_data(key):
        dataset = cell[key].split("-")[0]
        return load_study_model(args.study / cell[key] / "model.pt", "cpu")[0], load_images(args.prepared / dataset)

    v = p.visualize
    model, data = model_and_data("features_cell")
    learned = figures_learned.filters(model, *figures_learned.first_of_each_class(data, v.images), v.filters)
    model, data = model_and_data("deconv_cell")
    learned |= figures_learned.deconvolutions(model, figures_learned.first_of_each_class(data, v.images)[0])
    model, data = model_and_data("class_images_cell")
    shown, table, metrics = figures_learned.class_image_figure(model, data.classes, data.image_size, v.class_images,
                                                               p.seed, cell["class_images_cell"])  # fmt: skip
    augment = figures_learned.augmentations(p.augment, load_images(args.prepared / cell["augment_dataset"]), p.seed)
    return used, learned | shown, augment, table, metrics


def main(p, args):
    params = {"cells": ",".join(p.cells()), **p.visualize.flat("visualize.")}
    source = json.loads(args.evaluation.read_text())["data_source"]
    inputs = {"study": args.study, "prepared": args.prepared}
    with stage_run("visualize", params, data_source=source, inputs=inputs) as run:
        used, learned, augment, class_table, class_metrics = draw(p, args)
        write_figures(learned, args.reports / "features", run)
        write_figures(augment, args.reports / "augment", run)
        objects = (source, pd.read_csv(args.table))
        with atomic_file(args.reports / "index.html") as f:
            f.write(page.page(p, args.reports, objects, args.study_metrics, used, class_table,
                              json.loads(args.shortcut.read_text())))  # fmt: skip
        run.log_artifact(args.reports / "index.html")
        shown = len(list(args.reports.glob("*/*.png"))) + len(list(args.reports.glob("study/*/*.png")))
        metrics = {"figures": shown, "used": {key: cell for key, (cell, _) in used.items()},
                   "class_images": class_metrics}  # fmt: skip
        run.log_metrics({"class_images": {k: class_metrics[k] for k in ("mean_confidence", "min_confidence")}})
        write_json(args.metrics_out, metrics)


if __name__ == "__main__":
    run_stage(main, doc=__doc__, prepared="folder of the prepared datasets", evaluation="the evaluate stage's metrics",
              study="folder of the study cells' models", study_metrics="folder of the study cells' metrics",
              table="the objects comparison CSV (evaluate stage)",
              shortcut="the find_shortcut stage's metrics JSON (the decision and the detection)",
              reports="the reports folder: its figures and the HTML page",
              metrics_out="metrics JSON: what the page shows")  # fmt: skip
