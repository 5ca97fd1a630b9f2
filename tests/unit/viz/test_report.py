"""The HTML report (viz/report.py): pure rendering, then the page as Chromium shows it."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cnnlab.viz.plots import confusion_matrices, training_curves
from cnnlab.viz.report import PageSection, render_report
from tests.helpers.browser import ARTIFACTS, inspect_page


def _sections() -> list[PageSection]:
    table = pd.DataFrame({"cell": ["a-x", "b<y>"], "val acc": [0.5, 0.25]})
    return [
        PageSection("Objects", "objects", "note & more", tables=[("metrics", table)],
                    figures=[("curves", "o/curves.png")]),  # fmt: skip
        PageSection("Study", "study", figures=[("confusion", "s/confusion.png"), ("missing", "s/none.png")]),
    ]


def test_the_page_lists_every_section_table_and_figure_escaped():
    page = render_report("t", "sub", _sections())
    assert page.startswith("<!DOCTYPE html>") and page.count("<section") == 2
    assert '<a href="#objects">Objects</a>' in page and 'id="objects-table-0"' in page
    assert "b&lt;y&gt;" in page and "note &amp; more" in page  # escaped, not markup
    assert page.count("<img ") == 3 and 'src="o/curves.png"' in page
    assert "<script" not in page  # a static page: nothing runs


def _write_figures(folder):
    (folder / "o").mkdir(parents=True)
    (folder / "s").mkdir()
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 0.5, "val_acc": 0.4} for e in (1, 2)]
    fig = training_curves(history, "t")
    fig.savefig(folder / "o" / "curves.png")
    y = np.array([0, 1, 1, 0])
    fig2 = confusion_matrices({"val": (y, y[::-1])}, ["a", "b"])
    fig2.savefig(folder / "s" / "confusion.png")
    plt.close("all")


def test_the_page_in_headless_chromium_shows_every_image_and_table(tmp_path):
    _write_figures(tmp_path)
    sections = _sections()
    sections[1].figures.pop()  # every listed figure exists
    (tmp_path / "index.html").write_text(render_report("cnnlab report", "test", sections))
    seen = inspect_page(tmp_path / "index.html", "unit_report.png")
    assert seen["errors"] == []
    assert [loaded for _, loaded in seen["images"]] == [True, True]
    assert seen["tables"] == {"objects-table-0": 2}
    assert (ARTIFACTS / "unit_report.png").stat().st_size > 10_000


def test_the_browser_check_notices_a_missing_image(tmp_path):
    _write_figures(tmp_path)
    (tmp_path / "index.html").write_text(render_report("cnnlab report", "test", _sections()))
    seen = inspect_page(tmp_path / "index.html", "unit_report_missing.png")
    assert dict(seen["images"]) == {"o/curves.png": True, "s/confusion.png": True, "s/none.png": False}


def test_figures_are_laid_out_once_and_save_the_same_bytes_as_with_their_layout_engine():
    import io

    y = np.array([0, 1, 1, 0, 2, 2])
    figs = [confusion_matrices({"train": (y, y), "val": (y, y[::-1])}, ["a", "b", "c"]) for _ in range(2)]
    assert figs[0].get_layout_engine() is None  # so savefig does not lay it out again
    figs[1].set_layout_engine("none")  # what fig.tight_layout() alone leaves: savefig draws twice
    saved = []
    for fig in figs:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=60, metadata={"Software": None})
        saved.append(buf.getvalue())
    plt.close("all")
    assert saved[0] == saved[1] and len(saved[0]) > 1000
