"""What it takes to use a model on new images: its usage record. Every model the pipeline saves
(a checkpoint's `usage`) or logs (its MLflow model config and metadata) carries one, and `cnnlab
predict` and the served model read it to prepare images as the model's training did.

Three kinds:

- `objects`: an objects-chain classifier (or the background classifier) on crops of `input_size`
  px cut to the object's box, trained with cure `strategy`; `segment` holds GrabCut's settings
  where its test crops are masked by GrabCut (cnnlab.params.schema.Params.segment_settings),
  `masker` the masking settings where they are masked by the learned masker it carries;
- `study`: a study model on images resized and centre-cropped to `input_size` (`model`, `family`;
  the pretrained backbone also `role` pretrain and the `dataset` and `source` it was trained on);
- `masker`: the learned foreground masker itself, its masking settings in `masker`.

On disk a record is a plain dict (checkpoints are read with torch's weights_only) without the
fields that do not apply; :meth:`ModelUsage.from_dict` reads it back, also as models saved before
this record existed wrote it (a masker's settings at the top level)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from cnnlab.errors import CnnlabError

Kind = Literal["objects", "study", "masker"]
KINDS = ("objects", "study", "masker")
# the learned masking's settings (cnnlab.train.masker.Masking and crop.context, the network's width)
MASKING_KEYS = ("context", "width", "colour_components", "colour_prior", "seed_bins", "seed_margin")


@dataclass(frozen=True)
class ModelUsage:
    kind: Kind
    role: str | None = None  # "pretrain": the backbone the transfer cells load
    classes: list[str] | None = None  # the output classes, in order (a masker has none)
    input_size: int = 0  # px of the model's input side
    strategy: str | None = None  # objects: the cure it was trained with (cnnlab.cures)
    segment: dict | None = None  # objects: GrabCut's settings, where test crops are masked by GrabCut
    masker: dict | None = None  # objects (test crops masked by the learned masker) and masker: MASKING_KEYS
    model: str | None = None  # study: the params key of the model
    family: str | None = None  # study: its family (cnnlab.models.zoo)
    dataset: str | None = None  # pretrain: the params key of the dataset it was trained on
    source: str | None = None  # pretrain: where that dataset came from

    def as_dict(self) -> dict:
        """The record as checkpoints and MLflow model configs store it: the fields that apply."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, record: dict | ModelUsage, where: str = "the model") -> ModelUsage:
        """A stored record (or a ModelUsage, returned as is); `where` names the model in errors."""
        if isinstance(record, ModelUsage):
            return record
        record = dict(record)
        if record.get("kind") == "masker" and "masker" not in record:  # saved flat before this record
            record["masker"] = {k: record.pop(k) for k in MASKING_KEYS if k in record}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise CnnlabError(f"{where}: its usage record holds unknown keys {', '.join(unknown)} (known: "
                              f"{', '.join(sorted(known))}); was it saved by a newer cnnlab?")  # fmt: skip
        if record.get("kind") not in KINDS or not record.get("input_size"):
            raise CnnlabError(f"{where}: its usage record needs kind ({', '.join(KINDS)}) and input_size; "
                              f"it holds {', '.join(sorted(record)) or 'nothing'}")  # fmt: skip
        if record["kind"] != "masker" and not record.get("classes"):
            raise CnnlabError(f"{where}: a {record['kind']} model's usage record needs its classes")
        return cls(**record)
