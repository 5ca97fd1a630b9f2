"""The study's prepare step (cnnlab.study.prepare) and the cell it hands the study (cnnlab.study.study,
cnnlab.study.transfer)."""

from pathlib import Path

import pytest

from cnnlab.errors import ParamsError
from cnnlab.study.prepare import describe, prepare
from cnnlab.study.study import study_cell
from cnnlab.study.transfer import is_transfer, transfer_cell
from tests.conftest import make_params

P = make_params({"datasets": {"cifar10": {"train_per_class": 20, "test_per_class": 2, "image_size": 32}},
                 "transfer": {"train_per_class": 2}})  # fmt: skip


def test_an_unknown_dataset_names_the_key():
    with pytest.raises(ParamsError, match="params key 'datasets'"):
        prepare(P, "nope")


def test_prepare_splits_and_describes_the_dataset():
    data = prepare(P, "cifar10")
    assert set(data.splits) >= {"train", "val", "test"}
    assert describe("cifar10", data).startswith(f"cifar10: {data.source}; {len(data.classes)} classes; train ")


def test_a_study_cell_and_its_transfer_cell():
    data = prepare(P, "cifar10")
    with pytest.raises(ParamsError, match="params key 'models'"):
        study_cell(P, "cifar10", "nope", data, Path("data/prepared/cifar10"))
    with pytest.raises(ParamsError, match="holds dataset 'cifar10', not 'other'"):
        study_cell(P, "other", "simple_cnn", data, Path("data/prepared/cifar10"))
    cell = study_cell(P, "cifar10", "simple_cnn", data, Path("data/prepared/cifar10"))
    assert cell.name == "cifar10-simple_cnn" and cell.stage == "study@cifar10-simple_cnn"
    assert cell.params["model"] == "simple_cnn" and not is_transfer(P, "simple_cnn")
    model = P.transfer.models[0]
    assert is_transfer(P, model)
    given = study_cell(P, "cifar10", model, prepare(P, "cifar10"), Path("p"))
    moved = transfer_cell(P, given)
    labels = moved.data.splits["train"].index.label
    assert moved.stage == f"transfer@cifar10-{model}" and labels.value_counts().max() == 2
    assert given.data.splits["train"].index.label.value_counts().min() > 2  # the given cell is left as it was
    assert any(k.startswith("transfer.") for k in moved.params)
