"""Stage visualize: the figures of what the study's networks learned, the augmentations, and
reports/index.html, one page with every stage's tables and figures: cnnlab.report.visualize."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import json

import pandas as pd

from cnnlab.io import atomic_file, write_json
from cnnlab.report.page import page
from cnnlab.report.visualize import count_figures, draw
from cnnlab.stage import run_stage, write_figures
from cnnlab.tracking import stage_run


def main(p, args):
    params = {"cells": ",".join(p.cells()), **p.visualize.flat("visualize.")}
    source = json.loads(args.evaluation.read_text())["data_source"]
    inputs = {"study": args.study, "prepared": args.prepared}
    with stage_run("visualize", params, data_source=source, inputs=inputs) as run:
        drawn = draw(p, args.study, args.prepared)
        write_figures(drawn.learned, args.reports / "features", run)
        write_figures(drawn.augment, args.reports / "augment", run)
        objects = (source, pd.read_csv(args.table))
        with atomic_file(args.reports / "index.html") as f:
            f.write(page(p, args.reports, objects, args.study_metrics, drawn.used, drawn.class_table,
                         json.loads(args.shortcut.read_text())))  # fmt: skip
        run.log_artifact(args.reports / "index.html")
        metrics = drawn.metrics(count_figures(args.reports))
        run.log_metrics({"class_images": {k: drawn.class_metrics[k] for k in ("mean_confidence", "min_confidence")}})
        write_json(args.metrics_out, metrics)


if __name__ == "__main__":
    run_stage(main, doc=__doc__, prepared="folder of the prepared datasets", evaluation="the evaluate stage's metrics",
              study="folder of the study cells' models", study_metrics="folder of the study cells' metrics",
              table="the objects comparison CSV (evaluate stage)",
              shortcut="the find_shortcut stage's metrics JSON (the decision and the detection)",
              reports="the reports folder: its figures and the HTML page",
              metrics_out="metrics JSON: what the page shows")  # fmt: skip
