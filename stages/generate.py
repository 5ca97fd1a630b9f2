"""Stage generate: write the built-in synthetic objects dataset (objects format, with masks),
packed into one .zip file (one file for DVC to hash and cache; `objects.root` reads it as the
folder it holds)."""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import tempfile
from pathlib import Path

from cnnlab.data.synthetic import generate_objects
from cnnlab.io import pack_folder
from cnnlab.stage import run_stage
from cnnlab.tracking import stage_run


def main(p, args):
    with stage_run("generate", {"seed": p.seed, **p.generate.flat("generate.")}, data_source="synthetic"):
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".generate-", dir=Path(args.out).parent) as tmp:
            folder = generate_objects(Path(tmp) / "objects", seed=p.seed, **p.generate.model_dump())
            pack_folder(folder, args.out)


if __name__ == "__main__":
    run_stage(main, doc=__doc__, out="the generated dataset (a zip in the objects format)")
