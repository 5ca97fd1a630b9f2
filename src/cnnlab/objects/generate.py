"""Stage generate: the built-in synthetic objects dataset (objects format, with masks), packed into
one .zip file (one file for DVC to hash and cache; `objects.root` reads it as the folder it holds)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cnnlab.data.synthetic import generate_objects
from cnnlab.io import pack_folder
from cnnlab.params.schema import Generate


def write_dataset(cfg: Generate, seed: int, out: Path) -> None:
    """Draw the dataset of `cfg` from `seed` into a temporary folder beside `out` and pack it as the
    zip `out` (written atomically: an interrupted run leaves no half zip)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".generate-", dir=out.parent) as tmp:
        folder = generate_objects(Path(tmp) / "objects", seed=seed, **cfg.model_dump())
        pack_folder(folder, out)
