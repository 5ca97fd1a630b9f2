"""A new cure is one record (cnnlab.cures) and, for a new kind of training crops, one function
(cnnlab.data.strategies.TRAIN_VIEWS): added to a copy of the code, it runs through the tiny chain."""

from __future__ import annotations

import json
import os

import mlflow
import pytest

from tests.pipeline.conftest import clean_env, sh, write_params

pytestmark = pytest.mark.slow

RECORD = 'Cure("grey", "grey (training crops in grey, test crops as they are)", "grey"),\n    '
VIEW = '''

def _grey(strategy: str, data: ChainData, seed: int, gradcam) -> np.ndarray:
    train = data.images["train"]
    return np.repeat(train.mean(axis=1, keepdims=True).astype(train.dtype), 3, axis=1)


TRAIN_VIEWS["grey"] = _grey
'''


def test_a_toy_cure_added_as_one_record_and_one_function_runs_through_the_chain(chain_repo):
    repo = chain_repo
    cures, views = repo / "src/cnnlab/cures.py", repo / "src/cnnlab/data/strategies.py"
    text = cures.read_text()
    assert text.count('    Cure("oracle"') == 1
    cures.write_text(text.replace('    Cure("oracle"', "    " + RECORD + 'Cure("oracle"'))
    views.write_text(views.read_text() + VIEW)
    write_params(repo, {"objects": {"strategies": ["none", "grey"], "seeds": 1}})
    # the stages import cnnlab from this copy of the code
    env = clean_env() | {"PYTHONPATH": os.pathsep.join(filter(None, [str(repo / "src"), os.environ.get("PYTHONPATH")]))}
    # the edit reaches every stage's code (the params schema reads the cures), but only these two
    # read which cures there are (dvc.yaml: objects.strategies); the stages before them have run
    out = sh("dvc repro --single-item train_classifier evaluate", repo, env=env)
    assert "Running stage 'train_classifier'" in out.stdout and "Running stage 'evaluate'" in out.stdout

    ev = json.loads((repo / "metrics/evaluate.json").read_text())
    assert list(ev["strategies"]) == ["none", "grey"]
    assert 0 <= ev["strategies"]["grey"]["test_accuracy"]["mean"] <= 1
    assert "grey_minus_none" in ev["comparison"]
    table = (repo / "metrics/objects_comparison.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in table[1:]] == ["none", "grey"]
    assert (repo / "data/models/classifier/grey/seed0.pt").is_file()
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    assert client.get_model_version_by_alias("cnnlab-objects-grey", "champion").tags["seed"] == "0"
