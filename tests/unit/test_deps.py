"""Each stage's code dependencies in dvc.yaml are exactly its script and the cnnlab modules that
script reaches by importing, directly or through other modules, at the top or inside a function:
so editing a module reruns the stages that run it, and no other.

Left out on purpose (they change no output of a stage): the modules that only word errors, help
or logs (errors, params_messages, arguments, the tracking package), the MLflow model's serving code (serving,
serving_model, serving_masker: they shape the logged model, not a file DVC tracks) and the warm
start-up server (warm); and package `__init__.py` files that hold nothing but a docstring.

On a failure the message gives each stage's exact list to put in dvc.yaml."""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import yaml

from tests.conftest import REPO

SRC = REPO / "src"
LEFT_OUT = ("cnnlab.errors", "cnnlab.params.messages", "cnnlab.arguments", "cnnlab.tracking", "cnnlab.serving",
            "cnnlab.warm")  # prefixes  # fmt: skip
CODE = ("src/", "stages/")


def _file(module: str) -> Path | None:
    """The source file of a cnnlab module or package (None for a name that is not a module)."""
    path = SRC.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imported(path: Path) -> set[str]:
    """The cnnlab modules a file imports (the parent packages too: importing runs their __init__)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if parts[0] == "cnnlab"}
    return {m for m in found if _file(m) is not None}


def _only_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def closure(script: Path) -> set[str]:
    """The script and every cnnlab module it reaches, as paths relative to the repository."""
    seen, todo = set(), _imported(script)
    while todo:
        module = todo.pop()
        if module in seen or module.startswith(LEFT_OUT):
            continue
        seen.add(module)
        todo |= _imported(_file(module))
    files = {_file(m) for m in seen}
    return {script.relative_to(REPO).as_posix()} | {
        f.relative_to(REPO).as_posix() for f in files if not (f.name == "__init__.py" and _only_docstring(f))
    }


def stages(dvc: dict) -> dict[str, tuple[Path, set[str]]]:
    """Stage name -> (its script, the code files listed in its deps)."""
    out = {}
    for name, stage in dvc["stages"].items():
        cmd = stage["cmd"] if isinstance(stage["cmd"], str) else " ".join(stage["cmd"])
        script = re.search(r"stages/\w+\.py", cmd)
        assert script, f"stage {name}: no stages/<script>.py in its cmd"
        listed = {d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith(CODE)}
        out[name] = (REPO / script.group(0), listed)
    return out


def differences(dvc: dict) -> list[str]:
    """One line per stage whose listed code deps are not its script's import closure."""
    wrong = []
    for name, (script, listed) in stages(dvc).items():
        want = closure(script)
        if listed != want:
            wrong.append(f"{name}: missing {sorted(want - listed)}, not imported {sorted(listed - want)}; "
                         f"should be {sorted(want)}")  # fmt: skip
    return wrong


def _dvc() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_every_stage_depends_on_exactly_the_code_it_runs():
    assert differences(_dvc()) == []


def test_a_dependency_taken_out_of_or_added_to_dvc_yaml_is_named():
    dvc = _dvc()
    removed, added = copy.deepcopy(dvc), copy.deepcopy(dvc)
    removed["stages"]["masker"]["deps"].remove("src/cnnlab/train/masker.py")
    added["stages"]["crop"]["deps"].append("src/cnnlab/train/loop.py")
    assert [line.split(":")[0] for line in differences(removed)] == ["masker"]
    assert "missing ['src/cnnlab/train/masker.py']" in differences(removed)[0]
    assert "not imported ['src/cnnlab/train/loop.py']" in differences(added)[0]


def test_the_closure_follows_imports_inside_functions_and_leaves_tracking_out():
    evaluate = closure(REPO / "stages/evaluate.py")
    assert "src/cnnlab/models/objects_cnn.py" in evaluate  # through the checkpoint loader
    assert "src/cnnlab/train/masker.py" not in evaluate  # only the masker and train_classifier run it
    assert not {"src/cnnlab/tracking/runs.py", "src/cnnlab/errors.py", "src/cnnlab/serving.py"} & evaluate
    assert "src/cnnlab/models/zoo.py" not in closure(REPO / "stages/train_classifier.py")  # no study model


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
