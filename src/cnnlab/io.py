"""Atomic file output: a stage that fails leaves nothing that looks finished."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from cnnlab.errors import OutputError


def _explain(e: OSError, path: Path) -> OSError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full (or the quota is reached)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "it is not writable"
    else:
        return e
    return OutputError(e.errno, f"cannot write {path}: {why}; the previous version, if any, is kept. "
                                f"Free space or fix the permissions, then run `dvc repro` again")  # fmt: skip


def _umask() -> int:
    """The process's umask (read without changing it where Linux tells it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _usual_mode(path: Path, folder: bool) -> None:
    """mkstemp and mkdtemp create private files (0600) and folders (0700); an output gets the
    mode any new file or folder would (0644 and 0755 under the usual umask 022)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename.

    On an exception the temporary folder is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    _usual_mode(tmp, folder=True)
    try:
        yield tmp
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _explain(e, path) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(path)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator:
    """Open a temporary file beside `path` for writing; rename it to `path` when closed cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        _usual_mode(Path(tmp), folder=False)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise _explain(e, path) from e
        raise


def pack_folder(folder: str | Path, path: str | Path) -> Path:
    """Write the files under `folder` into the zip file `path` (atomically), uncompressed, in
    sorted order with fixed timestamps: the same files give the same bytes."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with atomic_file(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for p in files:
            info = zipfile.ZipInfo(p.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, p.read_bytes())
    return Path(path)


def write_json(path: str | Path, data: dict) -> None:
    with atomic_file(path) as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_file(path) as f:
        frame.to_csv(f, index=False, lineterminator="\n")


def save_array(path: str | Path, array: np.ndarray) -> None:
    with atomic_file(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def load_array(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)
