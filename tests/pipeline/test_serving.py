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


def _environment(requirements: list[str], folder) -> str:
    """A virtual environment holding exactly the distributions `requirements` name and those they
    require (their markers evaluated here), each linked file by file from this environment (the
    local package cache, without a download); cnnlab is not in it. Returns its python."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = folder / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    todo, seen = [(Requirement(r), "") for r in requirements], {}  # (requirement, the extra that asked for it)
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        key = req.name.lower().replace("_", "-")
        extras = {""} | set(req.extras)
        if extras <= seen.get(key, set()):
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            raise AssertionError(f"{req.name} (required by the model) is not installed here") from None
        assert req.specifier.contains(dist.version.split("+")[0], prereleases=True), (req, dist.version)
        if key not in seen:
            base = dist.locate_file("")
            for file in dist.files or []:
                source, target = base / file, site / file
                if not file.parts[0].startswith("..") and source.exists() and not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.symlink_to(source)
        for new in extras - seen.get(key, set()):
            todo += [(Requirement(r), new) for r in dist.requires or []]
        seen[key] = seen.get(key, set()) | extras
    assert "cnnlab" not in seen
    return str(folder / "bin" / "python")


def test_a_logged_model_runs_in_an_environment_of_its_own_requirements_without_cnnlab(tmp_path, monkeypatch):
    import mlflow

    _, uri = _register(tmp_path, monkeypatch, "segment")
    model = tmp_path / "model"
    mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(model))
    assert (model / "code/cnnlab/serving.py").is_file()  # the model carries cnnlab's code
    requirements = [r for r in (model / "requirements.txt").read_text().splitlines() if r and not r.startswith("#")]
    assert all("==" in r for r in requirements) and {r.split("==")[0] for r in requirements} >= {"mlflow", "torch"}
    python = _environment(requirements, tmp_path / "env")
    env = {k: v for k, v in clean_env().items() if k != "PYTHONPATH"}
    gone = subprocess.run([python, "-c", "import cnnlab"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "No module named 'cnnlab'" in gone.stderr, gone.stderr  # nowhere but in the model
    folder = _images(tmp_path / "test")
    script = (f"import sys, mlflow.pyfunc, pandas as pd\n"
              f"m = mlflow.pyfunc.load_model({str(model)!r})\n"
              f"frame = pd.DataFrame({{'image': [open({str(folder / 'img1.png')!r}, 'rb').read()], "
              f"'x': [15], 'y': [10], 'w': [20], 'h': [20]}})\n"
              f"print(m.predict(frame).to_json(orient='records'))\n"
              f"assert not any(p.startswith({str(REPO)!r}) for p in sys.path)\n")  # fmt: skip
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = json.loads(out.stdout.strip().splitlines()[-1])
    frame = pd.DataFrame({"image": [(folder / "img1.png").read_bytes()], "x": [15], "y": [10], "w": [20], "h": [20]})
    here = mlflow.pyfunc.load_model(str(model)).predict(frame).iloc[0]
    assert row["label"] == here["label"]
    np.testing.assert_allclose(row["probability"], here["probability"], rtol=1e-6)
