"""Each dvc.yaml stage's logic is in one library module named after it, in the package of its
pipeline (cnnlab.objects, cnnlab.study, cnnlab.report; check_params in cnnlab.params, code_digest
in cnnlab.pipeline), and its
script imports that module; the stage packages hold no other module but their named helpers."""

from __future__ import annotations

import yaml

from tests.conftest import REPO
from tests.unit.test_deps import _file, _imported, stages

PIPELINES = {
    "params": ["check_params"],
    "pipeline": ["code_digest"],
    "objects": ["generate", "crop", "backgrounds", "find_shortcut", "segment", "masker", "background_classifier",
                "gradcam_mask", "train_classifier", "evaluate"],  # fmt: skip
    "study": ["prepare", "study", "pretrain", "transfer"],
    "report": ["visualize", "summary"],
}
# modules of those packages that serve several stages: the per-seed loop, the shortcut decision,
# the HTML page, the params schema and its messages
HELPERS = {"objects": {"seeds", "decision"}, "study": set(), "report": {"page"}, "params": {"schema", "messages"},
           "pipeline": set()}  # fmt: skip
PACKAGE = {stage: package for package, names in PIPELINES.items() for stage in names}


def _dvc() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_every_stage_has_a_package_and_every_listed_stage_is_in_dvc_yaml():
    assert sorted(PACKAGE) == sorted(_dvc()["stages"])


def test_each_stage_script_imports_the_module_of_its_name():
    wrong = []
    for name, (script, _) in stages(_dvc()).items():
        module = f"cnnlab.{PACKAGE[name]}.{name}"
        if _file(module) is None:
            wrong.append(f"{name}: no module {module}")
        elif module not in _imported(script):
            wrong.append(f"{name}: {script.relative_to(REPO)} does not import {module}")
    assert wrong == []


def test_the_stage_packages_hold_stage_modules_and_their_helpers_only():
    for package, names in PIPELINES.items():
        found = {p.stem for p in (REPO / "src" / "cnnlab" / package).glob("*.py")} - {"__init__"}
        assert found == set(names) | HELPERS[package], package
