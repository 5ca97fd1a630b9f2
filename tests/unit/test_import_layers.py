"""The import graph points down: each module of cnnlab imports only from its own package or from
lower layers, only the tracking package talks to MLflow (and serving.py, the model class MLflow loads),
only the plotting layer imports matplotlib."""

import ast
import subprocess
import sys

from tests.conftest import REPO

SRC = REPO / "src" / "cnnlab"
# lowest first; a module may import its own package and lower layers, never a neighbour on its layer
LAYERS = [
    {"errors", "arguments", "tensors", "cures"},  # shared: errors and wording, arguments' help,
    # tensors, what each cure of the objects chain is
    {"io", "metrics", "viz", "docs", "usage"},  # files, metric definitions, pure plotting, the docs'
    # numbers, what a model's usage record holds
    {"params", "pipeline"},  # params.yaml: the schema, its messages, check_params; the code each stage runs
    {"data"},
    {"models"},
    {"attribution", "train"},
    {"figures", "tracking"},  # a stage's figures of its results
    {"figures_gradcam", "figures_learned", "predict", "warm"},  # figures from models; new images; start-up
    {"serving"},  # the MLflow model: predict's preprocessing around a network; logging a model
    {"objects", "study", "report"},  # one module per stage: the objects chain, the study, the report
    {"stage", "serving_model", "serving_masker"},  # what the stage scripts start from; MLflow's model files
    {"cli"},  # the command line
]
LAYER = {package: i for i, layer in enumerate(LAYERS) for package in layer}


def _package(module: str) -> str:
    """cnnlab.data.sets -> data; cnnlab.params.schema -> config."""
    return module.split(".")[1]


def imports() -> dict[str, set[str]]:
    """Module (cnnlab.x.y) -> every module it imports, at the top or inside a function."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        out[module] = found
    return out


def test_every_module_has_a_layer():
    assert {_package(m) for m in imports() if m != "cnnlab"} <= set(LAYER)


def test_imports_point_down():
    wrong = []
    for module, found in imports().items():
        if module == "cnnlab":
            continue
        mine = _package(module)
        for target in found:
            if target.startswith("cnnlab.") and target.split(".")[1] in LAYER:
                theirs = _package(target)
                if theirs != mine and LAYER[theirs] >= LAYER[mine]:
                    wrong.append(f"{module} imports {target}")
    assert sorted(set(wrong)) == []


def test_the_rules_of_the_issue_by_name():
    graph = imports()
    for module, found in graph.items():
        if module.startswith(("cnnlab.data", "cnnlab.attribution")):
            assert not any(t.startswith("cnnlab.train") for t in found), module
        if (module.split(".") + [""])[1] not in ("tracking", "serving", "serving_model", "serving_masker"):
            assert not any(t.split(".")[0] == "mlflow" for t in found), module
        if module.startswith("cnnlab.train"):
            assert not any(t.split(".")[0] == "matplotlib" or t.startswith("cnnlab.viz") for t in found), module


def test_the_training_layer_loads_neither_mlflow_nor_matplotlib():
    """Transitively too: importing every module of train/ and data/ loads neither."""
    modules = [m for m in imports() if m.startswith(("cnnlab.train", "cnnlab.data", "cnnlab.models"))]
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('mlflow', 'matplotlib')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_function_in_the_library_is_over_60_lines():
    """A function of src/ reads on one screen: at most 60 lines, its docstring left out."""
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                start = node.body[1].lineno if docstring and len(node.body) > 1 else first.lineno
                lines = node.end_lineno - start + 1
                if lines > 60:
                    long.append(f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name}, {lines} lines")
    assert long == []
