"""Loading files the user hands us never runs their code: every torch.load passes
weights_only=True, and NumPy arrays are read without pickle."""

import ast

from tests.conftest import REPO

SOURCES = sorted([*(REPO / "src").rglob("*.py"), *(REPO / "stages").glob("*.py")])


def _calls(name: str):
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path.relative_to(REPO), node


def _keyword(node: ast.Call, key: str):
    return next((ast.unparse(k.value) for k in node.keywords if k.arg == key), None)


def test_every_torch_load_is_weights_only():
    calls = list(_calls("torch.load"))
    assert calls, "no torch.load found: the check would pass vacuously"
    unsafe = [f"{path}:{node.lineno}" for path, node in calls if _keyword(node, "weights_only") != "True"]
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"


def test_numpy_never_unpickles_and_nothing_imports_pickle():
    loads = list(_calls("np.load"))
    assert loads and all(_keyword(node, "allow_pickle") == "False" for _, node in loads)
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n and n.split(".")[0] in ("pickle", "dill", "joblib") for n in names), path
