"""cnnlab's command line.

    cnnlab overrides FILE    a params delta (a YAML file of the keys that differ from params.yaml,
                             e.g. configs/real.yaml) as DVC's `-S key=value` arguments, one per line:
                             cnnlab overrides configs/real.yaml | xargs dvc exp run -n real-data
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cnnlab.config import merge, parse_params, read_yaml
from cnnlab.errors import CnnlabError


def _value(v) -> str:
    """A value in the grammar of DVC's `-S` (Hydra's overrides): strings quoted, mappings as {k:v}."""
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return json.dumps(v)  # true, false, null, numbers, "strings"


def overrides(delta: dict, base: dict, prefix: str = "") -> list[str]:
    """`key=value` for every leaf of `delta`; a key that `base` lacks is added whole (`+key={...}`)."""
    out = []
    for key, value in delta.items():
        if key not in base:
            out.append(f"+{prefix}{key}={_value(value)}")
        elif isinstance(value, dict) and isinstance(base[key], dict):
            out += overrides(value, base[key], f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={_value(value)}")
    return out


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cnnlab", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("overrides", help="a params delta as `-S` arguments of `dvc exp run`")
    cmd.add_argument("delta", type=Path, help="YAML file of the keys that differ from params.yaml")
    cmd.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        base, delta = read_yaml(args.params), read_yaml(args.delta)
        parse_params(merge(base, delta))  # a bad delta fails here, naming the key, not in the experiment
    except (CnnlabError, FileNotFoundError) as e:
        print(f"error: {args.delta}: {e}", file=sys.stderr)
        sys.exit(1)
    for arg in overrides(delta, base):
        print(f"-S {_quote(arg)}")


if __name__ == "__main__":
    main()
