"""Stage transfer: a cell of the transfer matrix (transfer.models x study.datasets), a study cell
(cnnlab.study.study) trained on the first transfer.train_per_class images per class, which may
load the backbone of the pretrain stage (cnnlab.study.pretrain)."""

from __future__ import annotations

from dataclasses import replace

from cnnlab.data.split import first_per_class
from cnnlab.params.schema import Params
from cnnlab.study.study import Cell


def transfer_cell(p: Params, cell: Cell) -> Cell:
    """`cell` as a transfer cell: its training split cut to the first transfer.train_per_class
    images of each class, the transfer params beside its own, its run named transfer@<cell>."""
    train = cell.data.splits["train"]
    cut = train.subset(first_per_class(train.index.label.to_numpy(), p.transfer.train_per_class))
    data = replace(cell.data, splits={**cell.data.splits, "train": cut})  # `cell` itself is left as it was
    return replace(cell, data=data, params=cell.params | p.transfer.flat("transfer."), stage=f"transfer@{cell.name}")


def is_transfer(p: Params, model: str) -> bool:
    """Whether `model` is one of the transfer matrix's (transfer.models)."""
    return model in p.transfer.models
