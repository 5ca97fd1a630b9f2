"""The numbers of README.md and docs/*.md, written from the committed metrics (`cnnlab docs`), so
that none drifts from its file; `cnnlab docs --check` (and a test) fails on any difference.

Two kinds of marks, invisible where Markdown is rendered:

- a number: ``<!--m KEY FORMAT-->0.92<!--/m-->``. KEY is a path into the metrics: the file under
  metrics/ without `.json`, then its keys, joined by `.` (``evaluate.strategies.segment.test_accuracy.mean``,
  ``study.cifar10-resnet.metrics.test.accuracy``, ``benchmarks.pipeline.clean_s``); FORMAT a
  Python format spec (``.2f``, ``+.3f``, ``.0%``), or ``pct`` (a fraction as a whole percent,
  without the sign: 79), ``minsec`` (seconds as "5 min 52 s"), ``s`` (as written);
- a table: ``<!--table NAME-->`` ... ``<!--/table-->``, the whole table made by :data:`TABLES`
  (the chain's comparison at 2 or 3 decimals, the study's cells, the benchmark's stages).

Everything else in the docs is prose; the marks are what a rerun changes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

from cnnlab.cures import CURES
from cnnlab.errors import CnnlabError

DOCS = ("README.md", "docs/results.md", "docs/study.md", "docs/benchmarks.md", "docs/manual.md")
NUMBER = re.compile(r"<!--m (?P<key>\S+) (?P<fmt>\S+?)-->(?P<value>.*?)<!--/m-->")
TABLE = re.compile(r"<!--table (?P<name>\S+)-->\n(?P<body>.*?)<!--/table-->", re.S)


class Metrics:
    """Every JSON file under metrics/, read when first asked for."""

    def __init__(self, root: Path):
        self.root = root
        self._files: dict[str, Any] = {}

    def file(self, name: str) -> Any:
        if name not in self._files:
            path = self.root / "metrics" / f"{name}.json"
            if not path.is_file():
                raise KeyError(f"no metrics file {path.relative_to(self.root)}")
            self._files[name] = json.loads(path.read_text())
        return self._files[name]

    def get(self, key: str) -> Any:
        """The value at `key`: the longest prefix of its parts that names a file, then its keys."""
        parts = key.split(".")
        for cut in range(len(parts), 0, -1):
            name = "/".join(parts[:cut])
            if (self.root / "metrics" / f"{name}.json").is_file():
                value = self.file(name)
                for i, part in enumerate(parts[cut:]):
                    if not isinstance(value, dict) or part not in value:
                        raise KeyError(f"{key}: metrics/{name}.json has no {'.'.join(parts[cut:cut + i + 1])!r}")
                    value = value[part]
                return value
        raise KeyError(f"{key}: no metrics file for it under metrics/")


def fmt(value: Any, spec: str) -> str:
    """`value` written as `spec` says (see the module's doc)."""
    if spec == "s":
        return str(value)
    if spec == "pct":
        return f"{round(100 * value)}"
    if spec == "minsec":
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    return format(value, spec)


# ---- the tables


def _num(x: float, digits: int) -> str:
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def _pm(entry: dict, digits: int) -> str:
    return f"{_num(entry['mean'], digits)} ± {_num(entry['sd'], digits)}"


def _pct_pm(entry: dict) -> str:
    return f"{round(100 * entry['mean'])}% ± {round(100 * entry['sd'])}"


README_LABELS = {c.name: c.label for c in CURES}  # cnnlab.cures


def objects_readme(m: Metrics) -> str:
    """The README's table of the chain: 2 decimals, the recommended cure in bold."""
    ev = m.file("evaluate")
    cls, best = ev["shortcut_class"], ev["comparison"].get("recommended")
    rows = [f"| strategy | val acc | test acc | class-{cls} test recall | class-{cls} rate on test (chance 12.5%) "
            "| worst-class test recall | BG-gap | test mask IoU |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in ev["strategies"].items():
        if "skipped" in s:
            continue
        label = README_LABELS.get(name, name)
        label = f"**{name}**{label[len(name):]}" if name == best else label
        test = _pm(s["test_accuracy"], 2)
        iou = f"{s['test_mask_iou']['mean']:.2f}" if "test_mask_iou" in s else ""
        rows.append(f"| {label} | {_pm(s['val_accuracy'], 2)} | {f'**{test}**' if name == best else test} | "
                    f"{_pm(s['shortcut_class_test_recall'], 2)} | {_pct_pm(s['test_shortcut_rate'])} | "
                    f"{_pm(s['test_worst_class_recall'], 2)} | {_pm(s['bg_gap'], 2)} | {iou} |")  # fmt: skip
    return "\n".join(rows) + "\n"


def objects_results(m: Metrics) -> str:
    """docs/results.md's table of the chain: 3 decimals, every column."""
    ev = m.file("evaluate")
    cls, best = ev["shortcut_class"], ev["comparison"].get("recommended")
    columns = [("val_accuracy", "val acc"), ("test_accuracy", "test acc"), ("test_val_ratio", "test / val"),
               ("shortcut_class_test_recall", f"class-{cls} test recall"),
               ("test_shortcut_rate", f"class-{cls} rate on test"),
               ("test_worst_class_recall", "worst-class test recall"), ("bg_gap", "BG-gap"),
               ("background_only_accuracy", "background-only acc"), ("test_mask_iou", "test mask IoU")]  # fmt: skip
    rows = ["| strategy | " + " | ".join(c[1] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, s in ev["strategies"].items():
        if "skipped" in s:
            continue
        cells = [_pm(s[k], 3) if k in s else "" for k, _ in columns]
        if name == best:
            cells[1] = f"**{cells[1]}**"
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def study_cells(m: Metrics) -> str:
    """docs/study.md's table: every study cell of metrics/study/ (from scratch and transfer)."""
    rows = ["| dataset | model | weights | epochs run | train acc | val acc | val macro F1 | test acc |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for folder in sorted((m.root / "metrics/study").iterdir()):
        if not (folder / "metrics.json").is_file():
            continue
        s = m.file(f"study/{folder.name}/metrics")
        weights = s["weights"].split(" (")[0]  # "pretrained on shapes (its source) (why)": the first part
        rows.append(f"| {s['dataset']} | {s['model']} | {weights} | {s['epochs_run']} | "
                    f"{s['train']['accuracy']:.3f} | {s['val']['accuracy']:.3f} | {s['val']['macro_f1']:.3f} | "
                    f"{s['test']['accuracy']:.3f} |")  # fmt: skip
    return "\n".join(rows) + "\n"


def benchmark_stages(m: Metrics) -> str:
    """docs/benchmarks.md's table: each stage's seconds in the clean run of HEAD and of the baseline."""
    p = m.file("benchmarks")["pipeline"]
    base = p.get("baseline") or {}
    head_s, base_s = p["stages_s"], base.get("stages_s", {})
    rows = [f"| stage | {p['commit']} (s) | {base.get('commit', 'baseline')} (s) |", "|---|---|---|"]
    for stage in list(head_s) + [s for s in base_s if s not in head_s]:
        h, b = head_s.get(stage), base_s.get(stage)
        rows.append(f"| {stage} | {'' if h is None else f'{h:.1f}'} | {'' if b is None else f'{b:.1f}'} |")
    rows.append(f"| **the clean `dvc repro`** | **{p['clean_s']:.1f}** | **{base.get('clean_s', 0):.1f}** |")
    return "\n".join(rows) + "\n"


def benchmark_goals(m: Metrics) -> str:
    """docs/benchmarks.md's table: every goal of the benchmark run, what it measured, its verdict."""
    rows = ["| case | goal | measured | verdict |", "|---|---|---|---|"]
    for g in m.file("benchmarks")["goals"]:
        rows.append(f"| {g['case']} | {g['goal']} | {g['measured']} | {g['verdict']} |")
    return "\n".join(rows) + "\n"


def slowest_tests(m: Metrics) -> str:
    """docs/manual.md's table: the slowest tests of the benchmark's `tests` case (pytest --durations)."""
    rows = ["| test | phase | s |", "|---|---|---|"]
    for t in m.file("benchmarks")["tests"]["slowest"][:12]:
        rows.append(f"| {t['test'].removeprefix('tests/')} | {t['phase']} | {t['seconds']:.0f} |")
    return "\n".join(rows) + "\n"


TABLES: dict[str, Callable[[Metrics], str]] = {
    "benchmark-goals": benchmark_goals,
    "slowest-tests": slowest_tests,
    "objects-readme": objects_readme,
    "objects-results": objects_results,
    "study-cells": study_cells,
    "benchmark-stages": benchmark_stages,
}


# ---- rendering and checking


def render(text: str, metrics: Metrics, where: str = "") -> str:
    """`text` with every mark's number and table written from `metrics`."""

    def number(match: re.Match) -> str:
        try:
            value = fmt(metrics.get(match["key"]), match["fmt"])
        except (KeyError, TypeError, ValueError) as e:
            raise CnnlabError(f"{where}: {e.args[0] if e.args else e}") from None
        return f"<!--m {match['key']} {match['fmt']}-->{value}<!--/m-->"

    def table(match: re.Match) -> str:
        if match["name"] not in TABLES:
            raise CnnlabError(f"{where}: no table {match['name']!r} (tables: {', '.join(TABLES)})")
        return f"<!--table {match['name']}-->\n{TABLES[match['name']](metrics)}<!--/table-->"

    return NUMBER.sub(number, TABLE.sub(table, text))


def differences(root: Path) -> list[str]:
    """One line per mark whose number or table differs from what the metrics give."""
    metrics, out = Metrics(root), []
    for name in DOCS:
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text()
        written = render(text, metrics, name)
        if written == text:
            continue
        before = len(out)
        for (line_no, old), new in zip(enumerate(text.splitlines(), 1), written.splitlines()):
            if old != new:
                out.append(f"{name}:{line_no}: {old.strip()[:200]}\n    metrics give: {new.strip()[:200]}")
        if len(out) == before:  # a table with other rows: the lines shift
            out.append(f"{name}: a table has {len(written.splitlines()) - len(text.splitlines()):+d} lines")
    return out


def write(root: Path) -> list[str]:
    """Rewrite the marks of every doc from the metrics; returns the files changed."""
    metrics, changed = Metrics(root), []
    for name in DOCS:
        path = root / name
        if path.is_file():
            text = path.read_text()
            written = render(text, metrics, name)
            if written != text:
                path.write_text(written)
                changed.append(name)
    return changed


def main(argv: list[str] | None = None) -> int:
    """`cnnlab docs`: write the docs' numbers from metrics/ (`--check`: only say what differs)."""
    parser = argparse.ArgumentParser(prog="cnnlab docs", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a number differs")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (default: here)")
    args = parser.parse_args(argv)
    if args.check:
        found = differences(args.root)  # a mark the metrics cannot fill raises CnnlabError (cnnlab's CLI says it)
        for line in found:
            print(line)
        if found:
            print(f"{len(found)} number(s) differ from metrics/: run `cnnlab docs` to write them", file=sys.stderr)
        return 1 if found else 0
    for name in write(args.root):
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
