"""Stage code_digest: the code each stage script runs, one small file per script.

A stage's outputs change with its code: its script and every cnnlab module the script reaches by
importing, directly or through other modules, at the top or inside a function. This stage reads
the imports (no module is run), and writes `<out>/<script>.json` for each script of `stages/`
but OWN_CODE's: the script and those modules, each with the MD5 of its bytes. Each later stage of dvc.yaml
depends on its script's file, and this stage on the whole of `src/cnnlab` and `stages/`: an edit reruns
this stage (well under a second), changes the files of exactly the scripts that reach the edited
module, and DVC reruns those stages and no other. (Listing every module as a dependency of every
stage did the same with some 430 entries in dvc.lock, which DVC reads and writes again after
each stage: 0.4 s a stage.)

Left out on purpose, as they change no output of a stage: the modules that only word errors,
help or logs (errors, params.messages, arguments, the tracking package), the MLflow model's
serving code (serving, serving_model, serving_masker: they shape the logged model, not a file DVC
tracks), the warm start-up server (warm), and package `__init__.py` files that hold nothing but a
docstring."""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.io import write_json

LEFT_OUT = ("cnnlab.errors", "cnnlab.params.messages", "cnnlab.arguments", "cnnlab.tracking", "cnnlab.serving",
            "cnnlab.warm")  # module-name prefixes  # fmt: skip


def module_file(src: Path, module: str) -> Path | None:
    """The source file of a cnnlab module or package under `src` (None: not a module)."""
    path = src.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _parsed(path: Path) -> ast.Module:
    stat = path.stat()
    return _parse(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1024)
def _parse(path: str, mtime_ns: int, size: int) -> ast.Module:  # (each file parsed once while unchanged)
    try:
        return ast.parse(Path(path).read_text(), filename=path)
    except SyntaxError as e:
        raise CnnlabError(f"{path}:{e.lineno}: {e.msg}; fix the code and run `dvc repro` again") from None


def imported(src: Path, path: Path) -> set[str]:
    """The cnnlab modules the file at `path` imports (their parent packages too: importing a
    module runs its packages' __init__)."""
    found = set()
    for node in ast.walk(_parsed(path)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if parts[0] == "cnnlab"}
    return {m for m in found if module_file(src, m) is not None}


def _only_docstring(path: Path) -> bool:
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in _parsed(path).body)


def closure(root: Path, script: Path, src: Path | None = None) -> list[str]:
    """`script` and every cnnlab module it reaches (LEFT_OUT aside), as sorted paths relative to
    `root`; the modules are looked up under `src` (default `root/src`)."""
    src = src or root / "src"
    seen, todo = set(), imported(src, script)
    while todo:
        module = todo.pop()
        if module in seen or module.startswith(LEFT_OUT):
            continue
        seen.add(module)
        todo |= imported(src, module_file(src, module))
    files = {module_file(src, m) for m in seen}
    files = {f for f in files if not (f.name == "__init__.py" and _only_docstring(f))}
    return sorted({script.relative_to(root).as_posix()} | {f.relative_to(root).as_posix() for f in files})


def digest(root: Path, script: Path, src: Path | None = None) -> dict:
    """What a stage's file holds: its script and each file of its closure with the MD5 of its bytes."""
    files = closure(root, script, src)
    return {"script": script.relative_to(root).as_posix(),
            "code": {name: hashlib.md5((root / name).read_bytes()).hexdigest() for name in files}}  # fmt: skip


# the scripts whose stages list their code in dvc.yaml themselves: this stage, whose deps are all
# the code, and check_params, which runs before it (a bad params key stops `dvc repro` first)
OWN_CODE = ("code_digest", "check_params")


def code_digest(stages: Path, src: Path, out: Path, root: Path | None = None) -> list[Path]:
    """Write `out/<script>.json` (digest) for every script in `stages` but OWN_CODE's; returns
    the files written."""
    root = root or Path.cwd()
    scripts = sorted(path for path in stages.glob("*.py") if path.stem not in OWN_CODE)
    if not scripts:
        raise CnnlabError(f"{stages}: no stage scripts (stages/<name>.py) here; run from the repository's root")
    written = []
    for script in scripts:
        path = out / f"{script.stem}.json"
        write_json(path, digest(root.resolve(), script.resolve(), src.resolve()))
        written.append(path)
    return written
