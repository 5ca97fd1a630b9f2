"""Each stage's params in dvc.yaml cover every params.yaml setting its code reads: the stage script
and its stage module (tests/unit/test_stage_modules.py) are read for `p.<section>[.<key>]`, the
params methods stand for the settings they read, and each one read must be listed (the section,
the key, all of params.yaml, or the file as a dependency). So `dvc exp run -S <key>=...` reruns
every stage that reads it.

A section handed on whole (`p.crop` into `cut_crops`) is covered by any listed key under it; which
of its keys that code reads is its own signature's business (typed sections)."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO
from tests.unit.test_deps import stages
from tests.unit.test_stage_modules import PACKAGE

# Params methods -> the settings they read (cnnlab.params.schema.Params)
METHODS = {
    "segment_settings": {"segment", "crop.context", "masker.seed_bins", "masker.seed_margin"},
    "cells": {"study.datasets", "study.models", "transfer.models"},
    "cell": {"visualize", "study.datasets", "study.models", "transfer.models"},
    "augment_dataset": {"visualize.augment_dataset", "study.datasets"},
}
KEY_ALIASES = {"objects.seed_list": "objects.seeds"}  # Objects.seed_list reads objects.seeds
READ = re.compile(r"\b(?:self\.)?p\.([a-z_]+)(?:\.([a-z_]+)\b(?!\())?")
# the study stages' modules beside their own: the transfer cells run the study cell's code
ALSO = {"transfer": ["study/study.py"], "study": []}


def reads(name: str, script) -> set[str]:
    """The settings (section or section.key) stage `name`'s script and module read."""
    files = [script, REPO / "src" / "cnnlab" / PACKAGE[name] / f"{name}.py"]
    files += [REPO / "src" / "cnnlab" / path for path in ALSO.get(name, [])]
    found = set()
    for path in files:
        for section, key in READ.findall(path.read_text()):
            if section in METHODS:
                found |= METHODS[section]
            else:
                found.add(KEY_ALIASES.get(f"{section}.{key}", f"{section}.{key}") if key else section)
    return found


def covered(read: str, listed: list, deps: list) -> bool:
    if {"params.yaml": None} in listed or "params.yaml" in deps:  # every key, or the file as a dependency
        return True
    names = [entry for entry in listed if isinstance(entry, str)]
    names = [re.sub(r"\.\$\{[^}]+\}$", "", n) for n in names]  # datasets.${item.dataset} -> datasets
    section = read.split(".")[0]
    if "." not in read:
        return any(n == section or n.startswith(section + ".") for n in names)
    return any(n == read or n == section or read.startswith(n + ".") for n in names)


def missing(dvc: dict) -> list[str]:
    out = []
    for name, (script, deps) in stages(dvc).items():
        listed = dvc["stages"][name].get("params", [])
        lacking = sorted(r for r in reads(name, script) if not covered(r, listed, deps))
        if lacking:
            out.append(f"{name}: reads {', '.join(lacking)}, not in its dvc.yaml params")
    return out


def test_every_stage_lists_the_params_its_code_reads():
    assert missing(yaml.safe_load((REPO / "dvc.yaml").read_text())) == []


def test_a_setting_taken_out_of_a_stage_s_params_is_named():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    dvc["stages"]["train_classifier"]["params"] = [k for k in dvc["stages"]["train_classifier"]["params"]
                                                   if not str(k).startswith("masker.")]  # fmt: skip
    dvc["stages"]["segment"]["params"].remove("masker.seed_bins")
    assert missing(dvc) == ["segment: reads masker.seed_bins, not in its dvc.yaml params",
                            "train_classifier: reads masker, masker.seed_bins, masker.seed_margin, not in its dvc.yaml "
                            "params"]  # fmt: skip
