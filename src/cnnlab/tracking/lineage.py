"""The lineage of a stage run: the git commit, the DVC experiment's name, and DVC's own hash of
every input (from dvc.lock)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path


def git_commit(cwd: str | Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def dvc_experiment_name(commit: str | None = None) -> str:
    """DVC_EXP_NAME inside `dvc exp run`; for a plain `dvc repro`, a name from the git commit."""
    name = os.environ.get("DVC_EXP_NAME")
    if name:
        return name
    commit = commit or git_commit()
    return f"repro-{commit[:7]}" if commit != "unknown" else "repro-nogit"


_LOCKS: dict[Path, tuple[tuple[int, int], dict[str, str]]] = {}


def _locked_outputs(lock: Path) -> dict[str, str]:
    """{path: md5} of every output in dvc.lock; parsed once per version of the file (it is large:
    0.15 s a parse in pure Python on a 2-core VM, and a stage asks once per input)."""
    import yaml

    try:
        st = lock.stat()
    except OSError:
        return {}
    stamp = (st.st_mtime_ns, st.st_size)
    if lock in _LOCKS and _LOCKS[lock][0] == stamp:
        return _LOCKS[lock][1]
    loader = yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader  # libyaml: 10x faster
    stages = (yaml.load(lock.read_text(), Loader=loader) or {}).get("stages", {})
    outs = {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", []) if "md5" in out}
    _LOCKS[lock] = (stamp, outs)
    return outs


def dvc_digest(path: str | Path) -> tuple[str, str]:
    """(digest, how it was made) of a stage's input, for its lineage: DVC's own md5 from dvc.lock
    when a stage outputs it (written as soon as that stage finished, or restored it); for a folder
    that holds several outputs, an md5 of theirs; for anything else (a dataset folder of your
    own), an md5 of its listing (paths, sizes, modification times), said as such."""
    rel = Path(os.path.relpath(Path(path).resolve(), Path.cwd())).as_posix()
    outs = _locked_outputs(Path("dvc.lock").resolve())
    if rel in outs:
        return outs[rel], "dvc.lock"
    inner = sorted((p, h) for p, h in outs.items() if p.startswith(rel + "/"))
    if inner:
        return hashlib.md5(json.dumps(inner).encode()).hexdigest(), "md5 of the dvc.lock hashes of the outputs in it"
    root = Path(path)
    files = sorted(root.rglob("*")) if root.is_dir() else [root]
    listing = [(f.relative_to(root).as_posix() if root.is_dir() else f.name, f.stat().st_size, f.stat().st_mtime_ns)
               for f in files if f.is_file()]  # fmt: skip
    return hashlib.md5(json.dumps(listing).encode()).hexdigest(), "md5 of its file listing (not a DVC output)"
