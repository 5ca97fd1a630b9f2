"""Each stage's code dependency in dvc.yaml is its script's file of data/code/ (written by the
code_digest stage: the script and every cnnlab module it reaches by importing, directly or through
other modules, at the top or inside a function, each with its MD5), and code_digest depends on all
of the code: so editing a module reruns code_digest, then the stages that run that module, and no
other. check_params, which runs before code_digest, lists exactly those files itself. What is left
out on purpose: cnnlab.pipeline.code_digest's docstring."""

from __future__ import annotations

import ast
import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml

from cnnlab.errors import CnnlabError
from cnnlab.pipeline.code_digest import OWN_CODE, closure, code_digest, imported, module_file
from tests.conftest import REPO

SRC = REPO / "src"
CODE = ("src/", "stages/")


def _file(module: str) -> Path | None:
    return module_file(SRC, module)


def _imported(path: Path) -> set[str]:
    return imported(SRC, path)


def stages(dvc: dict) -> dict[str, tuple[Path, list]]:
    """Stage name -> (its script, its deps)."""
    out = {}
    for name, stage in dvc["stages"].items():
        cmd = stage["cmd"] if isinstance(stage["cmd"], str) else " ".join(stage["cmd"])
        script = re.search(r"stages/\w+\.py", cmd)
        assert script, f"stage {name}: no stages/<script>.py in its cmd"
        out[name] = (REPO / script.group(0), stage.get("deps", []))
    return out


def differences(dvc: dict) -> list[str]:
    """One line per stage whose code dependency is not its script's file of data/code/ alone, and
    for code_digest, whose deps are not all the code or whose outs are not one file per script."""
    wrong = []
    scripts = sorted(p.stem for p in (REPO / "stages").glob("*.py") if p.stem not in OWN_CODE)
    for name, (script, deps) in stages(dvc).items():
        code = sorted(str(d) for d in deps if str(d) in ("src", "stages") or str(d).startswith(CODE + ("data/code/",)))
        if name == "check_params":  # (before code_digest: its own files)
            if code != closure(REPO, script):
                wrong.append(f"check_params: code deps {code}; should be {closure(REPO, script)}")
        elif name == "code_digest":
            outs = sorted(next(iter(o)) if isinstance(o, dict) else o for o in dvc["stages"][name]["outs"])
            if code != ["src/cnnlab", "stages"] or outs != [f"data/code/{s}.json" for s in scripts]:
                wrong.append(f"code_digest: deps {code}, outs {outs}; should be ['src/cnnlab', 'stages'] and "
                             f"{[f'data/code/{s}.json' for s in scripts]}")  # fmt: skip
        elif code != [f"data/code/{script.stem}.json"]:
            wrong.append(f"{name}: code deps {code}; should be ['data/code/{script.stem}.json'] alone")
    return wrong


def _dvc() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_every_stage_depends_on_the_code_of_its_script_and_code_digest_on_all_code():
    assert differences(_dvc()) == []


def test_a_code_dependency_listed_again_or_missing_is_named():
    dvc = _dvc()
    listed, missing = copy.deepcopy(dvc), copy.deepcopy(dvc)
    listed["stages"]["crop"]["deps"].append("src/cnnlab/train/loop.py")
    missing["stages"]["masker"]["deps"].remove("data/code/masker.json")
    missing["stages"]["code_digest"]["outs"].pop(0)
    missing["stages"]["check_params"]["deps"].remove("src/cnnlab/params/schema.py")
    assert differences(listed) == ["crop: code deps ['data/code/crop.json', 'src/cnnlab/train/loop.py']; should be "
                                   "['data/code/crop.json'] alone"]  # fmt: skip
    assert [line.split(":")[0] for line in differences(missing)] == ["check_params", "code_digest", "masker"]


def test_the_closure_follows_imports_inside_functions_and_leaves_tracking_out():
    evaluate = closure(REPO, REPO / "stages/evaluate.py")
    assert "src/cnnlab/models/objects_cnn.py" in evaluate  # through the checkpoint loader
    assert "src/cnnlab/train/masker.py" not in evaluate  # only the masker and train_classifier run it
    assert not {"src/cnnlab/tracking/runs.py", "src/cnnlab/errors.py", "src/cnnlab/serving.py"} & set(evaluate)
    assert "src/cnnlab/__init__.py" not in evaluate  # a docstring only
    assert "src/cnnlab/models/zoo.py" not in closure(REPO, REPO / "stages/train_classifier.py")  # no study model


def test_an_edited_module_changes_the_files_of_exactly_the_scripts_that_reach_it(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(REPO / "stages", root / "stages")
    shutil.copytree(SRC / "cnnlab", root / "src" / "cnnlab", ignore=shutil.ignore_patterns("__pycache__"))
    written = code_digest(root / "stages", root / "src", root / "data/code", root=root)
    assert sorted(p.stem for p in written) == sorted(p.stem for p in (REPO / "stages").glob("*.py")
                                                     if p.stem not in OWN_CODE)  # fmt: skip
    before = {p.stem: p.read_bytes() for p in written}
    masker = root / "src/cnnlab/train/masker.py"
    masker.write_text(masker.read_text() + "\n# an edit\n")
    (root / "src/cnnlab/errors.py").write_text((root / "src/cnnlab/errors.py").read_text() + "\n# words only\n")
    after = {p.stem: p.read_bytes() for p in code_digest(root / "stages", root / "src", root / "data/code", root=root)}
    changed = sorted(name for name in before if before[name] != after[name])
    reach = sorted(name for name in before if "src/cnnlab/train/masker.py" in closure(root, root / f"stages/{name}.py"))
    assert changed == reach and "masker" in changed and "evaluate" not in changed  # (errors.py: words only)


def test_code_that_does_not_parse_is_named_with_its_line(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "broken.py").write_text("import cnnlab.io\ndef main(:\n")
    with pytest.raises(CnnlabError, match=r"broken\.py:2: .*run `dvc repro` again"):
        code_digest(tmp_path / "stages", SRC, tmp_path / "out", root=tmp_path)


def declared_arguments(script: Path) -> dict[str, str]:
    """The named arguments a stage script declares, name -> kind: its run_stage call's shared
    names (help from cnnlab.arguments) and own keywords (name=help) are "required", `names`
    strings "name", `options` paths "option" (check_params: its ARGS dict)."""
    from cnnlab.arguments import SHARED

    found = {}
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ARGS":
            found |= dict.fromkeys(ast.literal_eval(node.value), "required")
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "run_stage":
            for arg in node.args[1:]:
                assert arg.value in SHARED, f"{script.name}: --{arg.value} has no help in cnnlab.arguments"
                found[arg.value] = "required"
            for kw in (kw for kw in node.keywords if kw.arg != "doc"):
                value = ast.literal_eval(kw.value)
                if kw.arg in ("names", "options"):
                    found |= dict.fromkeys(value, kw.arg[:-1])
                else:
                    assert value.strip(), f"{script.name}: --{kw.arg} has no help"
                    found[kw.arg] = "required"
    return found


def cmd_arguments(cmd: str) -> dict[str, str]:
    """`--name value` pairs of a stage's cmd (every argument of a cnnlab stage is named)."""
    words = cmd.split()
    start = next(i for i, w in enumerate(words) if re.fullmatch(r"stages/\w+\.py", w)) + 1
    rest = words[start:]
    assert len(rest) % 2 == 0 and all(w.startswith("--") for w in rest[::2]), f"positional argument in: {cmd}"
    return {flag[2:]: value for flag, value in zip(rest[::2], rest[1::2])}


def argument_mismatches(dvc: dict) -> list[str]:
    """One line per stage whose cmd's arguments are not the ones its script declares, or whose
    path arguments are neither deps nor outs of the stage."""
    wrong = []
    for name, stage in dvc["stages"].items():
        cmd = stage["cmd"]
        script = REPO / re.search(r"stages/\w+\.py", cmd).group(0)
        declared, given = declared_arguments(script), cmd_arguments(cmd)
        required = {k for k, kind in declared.items() if kind != "option"}
        if not required <= set(given) <= set(declared) | {"params"}:
            wrong.append(f"{name}: cmd gives {sorted(given)}, {script.name} declares {sorted(declared)}")
        outs = [o for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]
        listed = {str(d) for d in stage.get("deps", [])} | {o if isinstance(o, str) else next(iter(o)) for o in outs}
        for arg, value in given.items():
            inside = any(path.startswith(f"{value}/") for path in listed)  # a folder of outputs
            scratch = value.startswith("data/checkpoints/")  # per-epoch checkpoints: neither, on purpose
            if declared.get(arg) != "name" and value not in listed and not inside and not scratch:
                wrong.append(f"{name}: --{arg} {value} is neither a dep nor an out")
    return wrong


def test_every_stage_cmd_names_exactly_the_arguments_its_script_declares():
    assert argument_mismatches(_dvc()) == []


def test_an_argument_missing_from_a_cmd_or_unknown_to_its_script_is_named():
    dvc = _dvc()
    dvc["stages"]["evaluate"]["cmd"] = dvc["stages"]["evaluate"]["cmd"].replace(" --splits data/interim/splits.csv", "")
    dvc["stages"]["crop"]["cmd"] += " --colour red"
    wrong = argument_mismatches(dvc)
    assert [line.split(":")[0] for line in wrong] == ["crop", "crop", "evaluate"], wrong
    assert "--colour red is neither a dep nor an out" in wrong[1]
