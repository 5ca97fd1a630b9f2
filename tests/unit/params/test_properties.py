"""Property-based tests (hypothesis) over inputs the user controls: whatever boxes.csv or
params.yaml holds, cnnlab either accepts it or stops with its own clear error, never a crash
from deep inside a library, and never by changing the user's files."""

import shutil

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.data.objects import read_objects
from cnnlab.errors import DatasetError, ParamsError
from cnnlab.params.schema import parse_params
from tests.conftest import params_data

CELL = st.one_of(
    st.integers(-10_000, 10_000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
    st.sampled_from(["", "00", "07", "train", "test", " 5", "1e3", "NaN", "None", "0x10"]),
)
COLUMNS = ["path", "label", "split", "x", "y", "w", "h"]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(0, 30), column=st.sampled_from(COLUMNS), value=CELL, drop=st.booleans())
def test_any_boxes_csv_cell_is_accepted_or_named(tiny_objects_master, tmp_path_factory, row, column, value, drop):
    root = tmp_path_factory.mktemp("p") / "objects"
    shutil.copytree(tiny_objects_master, root)
    rows = pd.read_csv(root / "boxes.csv", dtype=str, keep_default_na=False)
    row %= len(rows)
    if drop:
        rows = rows.drop(index=row)
    else:
        rows.loc[row, column] = value
    rows.to_csv(root / "boxes.csv", index=False)
    before = (root / "boxes.csv").read_bytes()
    try:
        read_objects(root)
    except DatasetError as e:
        assert "boxes.csv" in str(e) or "line" in str(e) or str(root) in str(e), e  # says where
    assert (root / "boxes.csv").read_bytes() == before  # the user's file is never rewritten


PARAM_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
KEYS = [
    ("seed",), ("lr",), ("crop", "size"), ("classifier", "epochs"), ("classifier", "batch_size"),
    ("gradcam", "threshold"), ("backgrounds", "classes"), ("study", "models"), ("datasets", "cifar10", "source"),
    ("models", "resnet", "lr"), ("augment", "cutmix", "p"), ("augment", "cutout", "scale"),
    ("visualize", "images"), ("visualize", "deconv_cell"), ("generate", "image_size"), ("models", "resnet"),
    ("datasets", "cifar10"), ("models", "resnet", "family"), ("datasets", "imagenet10", "stream"),
]  # fmt: skip


@settings(max_examples=200, deadline=None, derandomize=True)  # same examples on every run: CI is reproducible
@given(key=st.sampled_from(KEYS), value=PARAM_VALUE)
def test_any_params_value_is_accepted_or_rejected_by_name(key, value):
    data = params_data()  # params.yaml, with one value replaced
    node = data
    for part in key[:-1]:
        node = node[part]
    node[key[-1]] = value
    try:
        parse_params(data)
    except ParamsError as e:
        assert any(part in str(e) for part in key), e  # the message names the key
