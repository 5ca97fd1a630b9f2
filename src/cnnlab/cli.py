"""cnnlab's command line.

    cnnlab predict MODEL IMAGES...   classify images with a trained model (a checkpoint of the
                                     pipeline, models:/<name>@champion, models:/<name>/<version>): a
                                     CSV of predictions with every class's probability
    cnnlab docs [--check]            write the numbers of README.md and docs/ from metrics/ (--check:
                                     say what differs, exit 1)
    cnnlab overrides FILE            a params delta (a YAML file of the keys that differ from
                                     params.yaml, e.g. configs/real.yaml) as DVC's `-S key=value`
                                     arguments, one per line:
                                     cnnlab overrides configs/real.yaml | xargs dvc exp run -n real-data
    cnnlab mask-figure RUN... --out F  the evaluate stage's mask-source crops (GrabCut, Grad-CAM,
                                     learned, truth, each with its IoU) of several runs (repository
                                     folders, e.g. the built-in data and a real folder) in one PNG
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.params.schema import merge, parse_params, read_yaml


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


def _overrides(args) -> None:
    base, delta = read_yaml(args.params), read_yaml(args.delta)
    try:
        parse_params(merge(base, delta))  # a bad delta fails here, naming the key, not in the experiment
    except CnnlabError as e:
        raise CnnlabError(f"{args.delta}: {e}") from None
    for arg in overrides(delta, base):
        print(f"-S {_quote(arg)}")
    sys.stdout.flush()  # a reader that stopped early (`| head`) shows here, in main's handler


def _predict(args) -> None:
    import torch

    from cnnlab.io import write_csv
    from cnnlab.predict import image_files, load_predictor, predict_files, read_boxes

    if not args.out.parent.is_dir():  # a typo in the folder: say so, rather than make it
        raise CnnlabError(f"--out {args.out}: no such folder {args.out.parent}; create it or write elsewhere")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    predictor = load_predictor(args.model, device)
    files = image_files(args.images)
    frame = predict_files(predictor, files, read_boxes(args.boxes) if args.boxes else None, device)
    write_csv(args.out, frame)
    print(f"{len(frame)} predictions of {args.model} ({predictor.usage.kind}, "
          f"{len(predictor.usage.classes)} classes) in {args.out}")  # fmt: skip


MASK_EXAMPLES = Path("data/evaluation/mask_sources")  # the evaluate stage's mask-source crops


def _mask_figure(args) -> None:
    from cnnlab.io import load_array
    from cnnlab.viz.plots import mask_sources, save_figure

    names = args.names or [Path(run).resolve().name for run in args.runs]
    if len(names) != len(args.runs):
        raise CnnlabError(f"--names: {len(names)} names for {len(args.runs)} runs; give one per run")
    found = []
    for run in args.runs:
        folder = Path(run) / MASK_EXAMPLES
        if not (folder / "images.npy").is_file():
            raise CnnlabError(f"{folder}: no mask-source crops here; run `dvc repro evaluate` in {run} first")
        found.append({f.stem: load_array(f) for f in sorted(folder.glob("*.npy"))})
    sources = [s for s in ("GrabCut", "Grad-CAM", "learned") if all(s in arrays for arrays in found)]
    images, truth, labels, masks = [], [], [], {s: [] for s in sources}
    for arrays, name in zip(found, names):
        n = len(arrays["images"])
        images += list(arrays["images"])
        truth += list(arrays["truth"]) if "truth" in arrays else [None] * n
        labels += [name] * n
        for source in sources:
            masks[source] += list(arrays[source])
    fig = mask_sources(images, masks, truth, row_labels=labels)
    if args.title:  # above the laid-out panels, with room made for it
        height = fig.get_figheight()
        fig.subplots_adjust(top=fig.subplotpars.top - 0.35 / height)
        fig.suptitle(args.title, fontsize=9, y=1 - 0.1 / height, va="top")
    save_figure(fig, args.out)
    print(f"{len(images)} crops of {len(args.runs)} runs in {args.out}")


def _docs(args) -> None:
    from cnnlab.docs import main as docs

    code = docs(["--check"] if args.check else [])
    if code:
        sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cnnlab", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("predict", help="classify images with a trained model")
    cmd.add_argument("model", help="a checkpoint of the pipeline (data/models/classifier/<strategy>/seed<k>.pt, "
                     "data/study/<cell>/model.pt), models:/<name>@champion or models:/<name>/<version>")  # fmt: skip
    cmd.add_argument("images", nargs="+", help="image files, or folders of them")
    cmd.add_argument("--boxes", type=Path, help="objects models: CSV of path,x,y,w,h to crop each image to its box "
                     "(boxes.csv of the objects format will do); needed by segment models")  # fmt: skip
    cmd.add_argument("--out", type=Path, default=Path("predictions.csv"), help="the CSV (default: predictions.csv)")
    cmd.add_argument("--device", help="cpu or cuda (default: cuda when there is a GPU)")
    cmd.set_defaults(run=_predict)
    cmd = commands.add_parser("overrides", help="a params delta as `-S` arguments of `dvc exp run`")
    cmd.add_argument("delta", type=Path, help="YAML file of the keys that differ from params.yaml")
    cmd.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file (default: params.yaml)")
    cmd.set_defaults(run=_overrides)
    cmd = commands.add_parser("mask-figure", help="several runs' mask sources side by side, each with its IoU")
    cmd.add_argument("runs", nargs="+", help="repository folders whose evaluate stage ran (the built-in data, a real "
                     f"folder, ...); each holds {MASK_EXAMPLES}/")  # fmt: skip
    cmd.add_argument("--out", type=Path, default=Path("mask_sources.png"), help="the PNG (default: mask_sources.png)")
    cmd.add_argument("--names", nargs="+", help="one label per run, left of its rows (default: each folder's name)")
    cmd.add_argument("--title", default="", help="the figure's title")
    cmd.set_defaults(run=_mask_figure)
    cmd = commands.add_parser("docs", help="write the numbers of README.md and docs/ from metrics/")
    cmd.add_argument("--check", action="store_true", help="change nothing; exit 1 if a number differs")
    cmd.set_defaults(run=_docs)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (CnnlabError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # the reader closed the pipe: what is left to print goes nowhere, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
