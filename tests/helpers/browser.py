"""Open a page of cnnlab's in headless Chromium (Debian's package, driven by Playwright) and
report what a reader would see: which images loaded, which tables have how many rows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO

ARTIFACTS = Path(os.environ.get("CNNLAB_TEST_ARTIFACTS", REPO / "test-artifacts"))


def find_chromium() -> str | None:
    """Path of Debian's Chromium binary, or None."""
    return next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)


def chromium() -> str:
    """Path of the Chromium binary, or skip the test with the reason."""
    found = find_chromium()
    if found is None:
        pytest.skip(
            "Debian's chromium is not installed and could not be (.ci/run installs it: apt-get install chromium)"
        )
    return found


def inspect_page(page_path: Path, screenshot: str) -> dict:
    """Load `page_path` from the file system and return {images: [(src, loaded)], tables: {id: rows},
    errors: [...]}; the full-page screenshot goes to ARTIFACTS/`screenshot`."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])"
            )
            tables = page.eval_on_selector_all(
                "table", "els => Object.fromEntries(els.map(t => [t.id, t.tBodies[0] ? t.tBodies[0].rows.length : 0]))"
            )
            page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        finally:
            browser.close()
    return {"images": images, "tables": tables, "errors": errors}


def draw_plots(page_path: Path, screenshot: str) -> dict:
    """Load a page of `dvc plots show`/`diff` with every request off this machine refused (a lab
    without internet) and wait for its vega plots. Returns {plots: how many vega plots the page
    holds, drawn: how many of them drew (a canvas or svg with a size), offsite: the refused
    requests, errors: script errors}; the screenshot goes to ARTIFACTS/`screenshot`."""
    import re

    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ids = re.findall(r"vegaEmbed\('#([^']+)'", page_path.read_text())  # each plot's container
    drawn = """ids => ids.filter(id => {
        const box = document.getElementById(id);
        return box && [...box.querySelectorAll('canvas, svg')].some(
            e => e.getBoundingClientRect().width > 50 && e.getBoundingClientRect().height > 50);
    }).length"""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            offsite: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            def refuse(route):
                offsite.append(route.request.url)
                route.abort()

            page.route("http*://**/*", refuse)
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            try:  # vegaEmbed draws asynchronously
                page.wait_for_function(f"ids => ({drawn})(ids) === ids.length", arg=ids, timeout=30_000)
            except Exception:  # not every plot drew: the count below says how many did
                pass
            count = page.evaluate(drawn, ids)
            page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        finally:
            browser.close()
    return {"plots": len(ids), "drawn": count, "offsite": offsite, "errors": errors}
