"""Stage visualize: every figure of the pipeline's trained models (curves, confusion matrices,
Grad-CAM, filters with feature maps, deconvnet, class images, predictions, augmentations) as
PNGs under reports/, and reports/index.html, one static page with the metrics tables. Each
figure is also attached to the MLflow run that made its model."""

import json
import sys

import matplotlib.pyplot as plt
import pandas as pd

from cnnlab.config import to_flat_dict
from cnnlab.io import atomic_dir, write_json
from cnnlab.stage import device, run_stage
from cnnlab.tracking import EXPERIMENT, REPORTS_EXPERIMENT, STUDY_EXPERIMENT, attach_to_stage_run, stage_run
from cnnlab.train.checkpoint import load_model
from cnnlab.viz import gather
from cnnlab.viz.report import Section, render_report

DPI = 100
plt.rcParams["figure.max_open_warning"] = 0  # all figures are drawn first, then saved and closed


def _metrics_table(metrics_dir, cells) -> pd.DataFrame:
    rows = []
    for cell in cells:
        m = json.loads((metrics_dir / cell / "metrics.json").read_text())
        rows.append({
            "cell": cell,
            "source": m.get("data_source", ""),
            "weights": m.get("weights", ""),
            "epochs": m.get("epochs_run", ""),
            "train acc": m["train"]["accuracy"],
            "val acc": m["val"]["accuracy"],
            "test acc": (m.get("test") or {}).get("accuracy"),
            "val macro F1": m["val"].get("macro_f1"),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _objects_table(metrics_dir) -> pd.DataFrame:
    """The comparison table of the evaluate stage: mean ± sd over seeds per strategy."""
    ev = json.loads((metrics_dir / "evaluate.json").read_text())
    rows = []
    for name, m in ev["strategies"].items():
        row = {"strategy": name}
        if "skipped" in m:
            row["note"] = f"skipped: {m['skipped']}"
        for key in ("val_accuracy", "test_accuracy", "test_val_ratio", "shortcut_class_test_recall",
                    "test_shortcut_rate", "test_worst_class_recall", "bg_gap"):  # fmt: skip
            if key in m:
                row[key] = f"{m[key]['mean']:.3f} ± {m[key]['sd']:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def main(p, args):
    dev = device()
    cells = [f"{d}-{m}" for d in p.study.datasets for m in p.study.models]
    source = json.loads((args.crops / "dataset.json").read_text())["source"]
    parts: dict[str, gather.Gathered] = {}  # folder under reports/ -> what goes there
    parts["objects"] = gather.objects_chain(
        p, args.crops, args.segments, args.backgrounds, args.masked, args.classifier, args.metrics, dev
    )
    for cell in cells:
        parts[f"study/{cell}"] = gather.study_cell(
            cell, args.prepared / cell.split("-")[0], args.metrics / "study" / cell
        )

    v = p.visualize
    features = gather.Gathered()
    for cell, build in ((v.features_cell, "filters"), (v.deconv_cell, "deconv"), (v.class_images_cell, "class")):
        model, _ = load_model(args.study / cell / "model.pt", "cpu")
        prepared = args.prepared / cell.split("-")[0]
        if build == "filters":
            got = gather.filters(model, prepared, v.images, v.filters)
        elif build == "deconv":
            got = gather.deconvolutions(model, prepared, v.images)
        else:
            info = json.loads((prepared / "dataset.json").read_text())
            got = gather.class_image_figure(model, info["classes"], info["image_size"], p, cell)
            features.metrics["class_images"] = got.metrics
            features.tables.update(got.tables)
        features.figures.update(got.figures)
    parts["features"] = features
    parts["augment"] = gather.augmentations(p, args.prepared / v.augment_dataset)

    sections = [
        Section("Objects chain", "objects", f"data: {source}. Cures of the background shortcut, each trained "
                f"with seeds {p.objects.seed_list(p.seed)}: mean ± sd over seeds. none = crops as they are; "
                f"report = class {p.backgrounds.classes[0]}'s background blacked out by Grad-CAM; segment = every "
                "crop's background blacked out (GrabCut), train and test; mixed_rand = objects on random "
                "backgrounds; oracle = ground-truth masks (an upper bound).",
                tables=[("evaluate: cure strategies over seeds", _objects_table(args.metrics))],
                figures=[(name, f"objects/{name}") for name in parts["objects"].figures]),
        Section("Study: CIFAR-10 / ImageNet10", "study", "one row per dataset x model cell",
                tables=[("study metrics", _metrics_table(args.metrics / "study", cells))]),
    ]  # fmt: skip
    for cell in cells:
        sections.append(
            Section(cell, f"study-{cell}", figures=[(n, f"study/{cell}/{n}") for n in parts[f"study/{cell}"].figures])
        )
    sections.append(
        Section(
            "What the networks learned",
            "features",
            f"filters: {v.features_cell}; deconvnet: {v.deconv_cell}; class images: {v.class_images_cell}",
            tables=[("class images: the model's confidence for the target class", features.tables["class_images"])],
            figures=[(n, f"features/{n}") for n in features.figures],
        )  # fmt: skip
    )
    sections.append(Section("Augmentation", "augment", figures=[(n, f"augment/{n}") for n in parts["augment"].figures]))
    page = render_report("cnnlab report", f"workspace of this `dvc repro`; data: {source} (objects), "
                         + ", ".join(f"{d}" for d in p.study.datasets) + " (study)", sections)  # fmt: skip

    params = {"cells": ",".join(cells), **to_flat_dict(v, "visualize.")}
    with stage_run("visualize", params, data_source=source, experiment=REPORTS_EXPERIMENT) as run:
        with atomic_dir(args.out) as tmp:
            for folder, got in parts.items():
                (tmp / folder).mkdir(parents=True, exist_ok=True)
                for name, fig in got.figures.items():
                    fig.savefig(tmp / folder / name, dpi=DPI, metadata={"Software": None})
                    plt.close(fig)
            (tmp / "index.html").write_text(page)
        run.log_artifact(args.out / "index.html")
        for folder in parts:
            run.log_artifact(args.out / folder, folder)
        metrics = {"figures": sum(len(g.figures) for g in parts.values()), **features.metrics}
        run.log_metrics(
            {"class_images": {k: metrics["class_images"][k] for k in ("mean_confidence", "min_confidence")}}
        )
        write_json(args.metrics_out, metrics)

    # each figure also goes to the run that made its model
    objects = sorted((args.out / "objects").glob("*.png"))
    targets = [
        ("train_classifier", EXPERIMENT, [f for f in objects if "shortcut" not in f.name]),
        ("segment", EXPERIMENT, [f for f in objects if f.name == "segment_masks.png"]),
        ("gradcam_mask", EXPERIMENT, [f for f in objects if "shortcut" in f.name]),
        *[(f"study@{cell}", STUDY_EXPERIMENT, sorted((args.out / "study" / cell).glob("*.png"))) for cell in cells],
        *[(f"study@{cell}", STUDY_EXPERIMENT, sorted((args.out / "features").glob(names)))
          for cell, names in ((v.features_cell, "filters_*.png"), (v.deconv_cell, "deconvnet.png"),
                              (v.class_images_cell, "class_images.png"))],
    ]  # fmt: skip
    missing = sorted(
        {stage for stage, experiment, files in targets if not attach_to_stage_run(stage, experiment, files)}
    )
    if missing:
        print(
            f"note: figures not attached to {', '.join(missing)}: no finished MLflow run in this DVC experiment "
            "(restored from the DVC cache, not trained here) or a store failure (above); they are in the "
            "visualize run",
            file=sys.stderr,
        )


if __name__ == "__main__":
    run_stage(main, "crops", "segments", "backgrounds", "masked", "classifier", "study", "prepared", "metrics", "out",
              "metrics_out", doc=__doc__)  # fmt: skip
