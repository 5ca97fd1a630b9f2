"""Stage check_params: every key of params.yaml checked before any other stage runs.

DVC removes a stage's outputs just before it runs the stage, so a typo found only inside a
training stage (`dvc exp run -S lr=-1`) would already have cost that stage's outputs. Every
stage depends on this one's output, so DVC runs it first; a bad value stops the run here, naming
the key, and nothing else is touched. The output never changes with the params (it says only
what was checked), so a valid change reruns no stage through it."""

from __future__ import annotations

from pathlib import Path

from cnnlab.io import write_text
from cnnlab.params.schema import load_params

STAMP = "params.yaml: every key checked by cnnlab (types, ranges, names)\n"


def check_params(params: Path, out: Path) -> None:
    """Load and check `params` (a CnnlabError names the first bad key); then write the stamp `out`."""
    load_params(params)
    write_text(out, STAMP)
