"""Stage code_digest: the code each stage script runs, as data/code/<script>.json (the script
and every cnnlab module it imports, each with its MD5): each stage depends on its script's file,
so editing a module reruns exactly the stages that run it (cnnlab.pipeline.code_digest).

    python stages/code_digest.py --stages stages --src src --out data/code
"""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import argparse
import sys
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.pipeline.code_digest import code_digest

ARGS = {"stages": "folder of the stage scripts", "src": "folder holding the cnnlab package",
        "out": "folder of the files written, one <script>.json per stage script"}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, text in ARGS.items():
        parser.add_argument(f"--{name}", type=Path, required=True, help=text)
    args = parser.parse_args(argv)
    try:
        written = code_digest(args.stages, args.src, args.out)
    except CnnlabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"the code of {len(written)} stage scripts in {args.out}/")


if __name__ == "__main__":
    main()
