"""`mlflow models serve` on a registered cnnlab model answers the request of docs/manual.md with
what `cnnlab predict` writes for the same image and box."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO
from tests.pipeline.conftest import clean_env, free_port, served
from tests.unit.test_predict import _images, _register

pytestmark = pytest.mark.slow


def test_mlflow_models_serve_answers_the_documented_request_as_predict_does(tmp_path, monkeypatch):
    _, uri = _register(tmp_path, monkeypatch, "segment")
    folder = _images(tmp_path / "test")
    predicted = tmp_path / "predicted.csv"
    env = clean_env() | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    command = [sys.executable, "-m", "cnnlab.cli", "predict", uri, str(folder / "img1.png"), "--boxes",
               str(tmp_path / "boxes.csv"), "--out", str(predicted)]  # fmt: skip
    subprocess.run(command, cwd=tmp_path, env=env, check=True)
    # the command and the payload of docs/manual.md
    manual = (REPO / "docs/manual.md").read_text()
    assert f"mlflow models serve -m {uri} --env-manager local" in manual
    assert '\\"columns\\": [\\"image\\", \\"x\\", \\"y\\", \\"w\\", \\"h\\"]' in manual
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local", "--host",
           "127.0.0.1", "--port", str(port)]  # fmt: skip
    with served(cmd, tmp_path, env, f"http://127.0.0.1:{port}/ping"):
        image = base64.b64encode((folder / "img1.png").read_bytes()).decode()
        body = {"dataframe_split": {"columns": ["image", "x", "y", "w", "h"], "data": [[image, 15, 10, 20, 20]]}}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    (row,) = answer["predictions"]
    expected = pd.read_csv(predicted, dtype={"label": str}).iloc[0]
    assert row["label"] == expected["label"] and set(row) == {"label", "probability", "p_00", "p_01", "p_02"}
    np.testing.assert_allclose([row[k] for k in ("probability", "p_00", "p_01", "p_02")],
                               expected[["probability", "p_00", "p_01", "p_02"]].astype(float), rtol=1e-6)  # fmt: skip
