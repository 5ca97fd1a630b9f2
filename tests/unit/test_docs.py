"""`cnnlab docs`: the numbers and tables of README.md and docs/ are the committed metrics', and a
number that drifts from its file fails the check."""

import json
import shutil

import pytest

from cnnlab import docs
from cnnlab.errors import CnnlabError
from tests.conftest import REPO


def test_every_marked_number_and_table_of_the_docs_is_what_the_committed_metrics_give():
    assert docs.differences(REPO) == [], "run `cnnlab docs` and commit the docs"
    marked = {name: len(docs.NUMBER.findall((REPO / name).read_text())) + len(docs.TABLE.findall(
        (REPO / name).read_text())) for name in docs.DOCS}  # fmt: skip
    assert marked["README.md"] >= 20 and marked["docs/results.md"] >= 15, marked


def _copy(tmp_path):
    for name in docs.DOCS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "metrics", tmp_path / "metrics")
    return tmp_path


def test_a_number_edited_by_hand_or_a_metric_that_changed_fails_the_check_until_docs_rewrites_it(tmp_path, capsys):
    root = _copy(tmp_path)
    readme = root / "README.md"
    text = readme.read_text()
    mark = docs.NUMBER.search(text)
    readme.write_text(text.replace(mark.group(0), mark.group(0).replace(f"-->{mark['value']}<", "-->9.99<"), 1))
    found = docs.differences(root)
    assert len(found) == 1 and found[0].startswith(f"README.md:{text[: mark.start()].count(chr(10)) + 1}:"), found
    assert "9.99" in found[0] and mark["value"] in found[0]  # what is written, what the metrics give
    assert docs.main(["--check", "--root", str(root)]) == 1
    assert "run `cnnlab docs`" in capsys.readouterr().err

    # a rerun changed a metric: the table that shows it is stale
    path = root / "metrics/evaluate.json"
    ev = json.loads(path.read_text())
    ev["strategies"]["segment"]["test_accuracy"]["mean"] = 0.123
    path.write_text(json.dumps(ev))
    assert any("0.123" in line for line in docs.differences(root))
    assert docs.write(root) == ["README.md", "docs/results.md"]
    assert docs.differences(root) == [] and docs.main(["--check", "--root", str(root)]) == 0
    assert "0.12 ± " in readme.read_text() and "0.123 ± " in (root / "docs/results.md").read_text()


def test_a_mark_with_an_unknown_key_names_the_file_and_the_key(tmp_path):
    root = _copy(tmp_path)
    (root / "docs/study.md").write_text("x <!--m evaluate.strategies.nope.test_accuracy.mean .2f-->1<!--/m-->\n")
    with pytest.raises(CnnlabError, match=r"docs/study.md: evaluate.strategies.nope.test_accuracy.mean: "
                                       r"metrics/evaluate.json has no 'strategies.nope'"):  # fmt: skip
        docs.differences(root)
    (root / "docs/study.md").write_text("<!--table nope-->\n<!--/table-->\n")
    with pytest.raises(CnnlabError, match="no table 'nope'"):
        docs.differences(root)


@pytest.mark.parametrize(("value", "spec", "text"), [
    (351.7, "minsec", "5 min 52 s"), (42.0, "minsec", "42 s"), (0.793, "pct", "79"), (0.0, ".0%", "0%"),
    (0.3258, "+.2f", "+0.33"), ("AMD EPYC", "s", "AMD EPYC")])  # fmt: skip
def test_formats(value, spec, text):
    assert docs.fmt(value, spec) == text


def test_a_mean_that_rounds_to_zero_has_no_sign():
    assert docs._pm({"mean": -0.0004, "sd": 0.004}, 3) == "0.000 ± 0.004"
