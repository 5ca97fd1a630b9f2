"""Stage check_params: every key of params.yaml checked before any other stage runs.

DVC removes a stage's outputs just before it runs the stage, so a typo found only inside a
training stage (`dvc exp run -S lr=-1`) would already have cost that stage's outputs. Every
stage depends on this one's output, so DVC runs it first; a bad value stops the run here, naming
the key, and nothing else is touched. The output never changes with the params (it says only
what was checked), so a valid change reruns no stage through it, and it is `persist`, so DVC
leaves the previous one in place when the check fails.

    python stages/check_params.py --out data/params.ok [--params params.yaml]
"""

from cnnlab.warm import handoff

handoff(__file__)  # run in a fork of a process with torch & co already imported (src/cnnlab/warm.py)

import argparse
import sys
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.params.check_params import check_params

ARGS = {"out": "the stamp file written when every key is valid"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, text in ARGS.items():
        parser.add_argument(f"--{name}", type=Path, required=True, help=text)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        check_params(args.params, args.out)
    except (CnnlabError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        print("error: no stage ran and no output was removed; fix the key above and run again", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
