"""The visualize stage's page, reports/index.html: the chain's comparison table and every chain
stage's figures, the study table and each cell's figures, what the networks learned, augmentation.
It reads the stages' outputs (figures under reports/, metrics) and draws nothing itself."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cnnlab.params.schema import Params
from cnnlab.viz.report import PageSection, render_report

CHAIN = ("evaluate", "find_shortcut", "train_classifier", "background_classifier", "gradcam_mask", "masker", "segment",
         "backgrounds", "crop")  # fmt: skip
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


def shortcut_line(found: dict) -> str:
    """What the find_shortcut stage decided (its metrics), in a sentence."""
    detected = found.get("detected") or {}
    if found["shortcut"] is None:
        return f"No shortcut class: {detected.get('reason', '')}; the cures that need one are skipped."
    line = f"Shortcut class {found['shortcut']}, contrast class {found['contrast']}, {found['decided_by']}"
    if detected:
        line += (f"; detected {detected['shortcut'] or 'none'}: the backgrounds of {detected['top_share']:.0%} of the "
                 f"test images go to class {detected['top']} (runner-up {detected['runner_up']}: "
                 f"{detected['runner_up_share']:.0%}; reports/find_shortcut)")  # fmt: skip
    return line + "."


def page(p: Params, reports: Path, objects: tuple[str, pd.DataFrame], study_metrics: Path, used: dict,
         class_table: pd.DataFrame, found: dict) -> str:  # fmt: skip
    """reports/index.html: the objects chain (its data source and comparison table, every chain
    stage's figures), the study table and each cell's figures, what the networks learned (`used`:
    the cells of visualize.*, with their notes), augmentation. `found`: the find_shortcut stage's
    metrics (the decision, said first)."""
    source, table = objects
    cells = p.cells()
    chain = [figure for stage in CHAIN for figure in listed(reports, stage)]
    learned = "; ".join(f"{key.removesuffix('_cell')}: {cell}" + (f" ({note})" if note else "")
                        for key, (cell, note) in used.items() if key.endswith("_cell"))  # fmt: skip
    report = (f"class {found['shortcut']}'s background blacked out by Grad-CAM" if found["shortcut"] else
              "skipped (no shortcut class)")  # fmt: skip
    sections = [
        PageSection("Objects chain", "objects", f"{shortcut_line(found)} data: {source}. Cures of the background "
                f"shortcut, each trained with seeds {p.objects.seed_list(p.seed)}: mean ± sd over seeds. none = crops "
                f"as they are; report = {report}; segment = "
                "every crop's "
                "background blacked out (GrabCut), train and test; mixed_rand = objects on random backgrounds; "
                "*_learned = the same with the learned masker's masks; oracle = ground-truth masks (an upper bound).",
                tables=[("evaluate: cure strategies over seeds", objects_table(table))], figures=chain),
        PageSection("Study: CIFAR-10 / ImageNet10", "study", "one row per dataset x model cell. The transfer cells ("
                f"{', '.join(p.transfer.models)}) train on the first {p.transfer.train_per_class or 'all'} training "
                f"images per class; a 'pretrained' backbone is {p.transfer.pretrain} trained from scratch on "
                f"{p.transfer.source} by the pretrain stage.",
                tables=[("study metrics", study_table(study_metrics, cells))]),
        *[PageSection(cell, f"study-{cell}", figures=listed(reports, f"study/{cell}")) for cell in cells],
        PageSection("What the networks learned", "features", learned,
                tables=[("class images: the model's confidence for the target class", class_table)],
                figures=listed(reports, "features")),
        PageSection("Augmentation", "augment", used["augment_dataset"][1], figures=listed(reports, "augment")),
    ]  # fmt: skip
    subtitle = f"workspace of this `dvc repro`; data: {source} (objects), {', '.join(p.study.datasets)} (study)"
    return render_report("cnnlab report", subtitle, sections)
