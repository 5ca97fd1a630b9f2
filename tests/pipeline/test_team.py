"""A team on real servers (docs/team.md): two clones play two machines with one bare git remote,
one DVC remote over SSH (OpenSSH's sshd) and one MLflow tracking server on PostgreSQL, all on
127.0.0.1 with throwaway data and keys. .ci/run installs Debian's postgresql and openssh-server
where they are missing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import mlflow
import pytest

from tests.conftest import REPO
from tests.helpers.servers import SSHD, postgres, postgres_bin, ssh_server
from tests.pipeline.conftest import clean_env, copy_repo, free_port, mlflow_server, sh

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(postgres_bin() is None, reason="no PostgreSQL server: install Debian's postgresql"),
    pytest.mark.skipif(not SSHD.exists(), reason="no SSH server: install Debian's openssh-server"),
]


def _machine(repo, ssh, origin=None) -> None:
    """What each member types once: the remote's user and key, kept out of git (config.local)."""
    sh(f"dvc remote modify --local storage user {ssh.user} && dvc remote modify --local storage keyfile {ssh.keyfile}",
       repo)  # fmt: skip
    committed = sh("git show HEAD:.dvc/config", repo).stdout
    assert "keyfile" not in committed and "user =" not in committed  # no credential in the repository
    assert "keyfile" in (repo / ".dvc/config.local").read_text()
    assert ".dvc/config.local" not in sh("git ls-files", repo).stdout


def _ran(out) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", out.stdout + getattr(out, "stderr", ""))


class Output:
    """A process's merged output, read as it comes (to act on a line before it ends)."""

    def __init__(self, process: subprocess.Popen):
        self.text = ""
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process) -> None:
        for line in process.stdout:
            self.text += line

    def wait_for(self, pattern: str, process: subprocess.Popen, seconds: float = 300) -> None:
        deadline = time.monotonic() + seconds
        while not re.search(pattern, self.text):
            assert process.poll() is None and time.monotonic() < deadline, f"no {pattern!r} in:\n{self.text[-3000:]}"
            time.sleep(0.1)


def _server_as_documented(db, port: int) -> dict:
    """docs/team.md's `mlflow server` settings: the database by postgresql+psycopg:// without a
    password (libpq reads PGPASSWORD), the unit's Environment= variables, --allowed-hosts as written
    there (and 127.0.0.1, where the test talks to it)."""
    team = (REPO / "docs/team.md").read_text()
    (hosts,) = re.findall(r"--allowed-hosts (\S+)", team)
    (scheme,) = set(re.findall(r"--backend-store-uri (postgresql\+psycopg)://mlflow@", team))
    settings = dict(re.findall(r"^Environment=(\w+)=(\S+)$", team, re.M))  # the unit's own variables
    assert settings, "docs/team.md's unit sets no Environment="
    return dict(backend=f"{scheme}://{db.user}@127.0.0.1:{db.port}/mlflow", env={"PGPASSWORD": db.password, **settings},
                allowed_hosts=f"{hosts},127.0.0.1:{port}")  # fmt: skip


def _answers(uri: str, host: str) -> int:
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_two_machines_share_outputs_experiments_and_one_mlflow_server(chain_template, tmp_path):
    origin, storage = tmp_path / "origin.git", tmp_path / "dvc-storage"
    port, art = free_port(), tmp_path / "mlflow"
    with postgres() as db, ssh_server(tmp_path / "ssh") as ssh:
        server = _server_as_documented(db, port)
        with mlflow_server(art, port, **server) as uri:
            # the name the members use is answered (it is not without --allowed-hosts), another is not
            assert _answers(uri, "mlflow.example.org:5000") == 200 and _answers(uri, "elsewhere.example.com") == 403
            env = clean_env() | {"MLFLOW_TRACKING_URI": uri}
            # machine 1: the tiny pipeline has run; its parent run goes to the server; remote and push
            one = copy_repo(chain_template, tmp_path / "one")
            branch = sh("git branch --show-current", one).stdout.strip()
            sh(f"git init -q --bare --initial-branch {branch} {origin} && mkdir {storage}", tmp_path)
            sh(f"dvc remote add -d storage {ssh.url(storage)} && git add .dvc/config && git commit -qm remote", one)
            _machine(one, ssh)
            sh("dvc repro -f -s summary", one, env=env)  # logs the run's parent run to the server
            sh("git add -A && (git diff --cached --quiet || git commit -qm 'the run, logged')", one)
            sh(f"git remote add origin {origin} && git push -q origin HEAD && dvc push", one)
            # (two cures, not the template's seven: what is shared is the same for any number)
            exp = sh("dvc exp run -S lr=0.05 -S 'objects.strategies=[none,segment]' -n m1 summary", one, env=env)
            assert "train_classifier" in _ran(exp)
            sh("dvc exp push origin m1", one)

            # machine 2: clone, pull, and nothing to recompute
            two = tmp_path / "two"
            sh(f"git clone -q {origin} {two}", tmp_path)
            _machine(two, ssh)
            sh("dvc pull --with-deps summary", two)  # every output of the run (the tiny run stops before the page)
            assert "up to date" in sh("dvc status --with-deps summary", two).stdout.lower()
            assert _ran(sh("dvc repro summary", two, env=env)) == []
            assert (two / "data/models/classifier/none/seed0.pt").read_bytes() == (
                chain_template / "data/models/classifier/none/seed0.pt").read_bytes()  # fmt: skip
            sh("dvc exp pull origin m1", two)
            shown = json.loads(sh("dvc exp show --json", two).stdout)
            names = {r.get("name") for rev in shown for exp in (rev.get("experiments") or []) for r in exp["revs"]}
            assert "m1" in names, shown

            # machine 2's own experiment; the MLflow server dies during its training and comes back
            run = subprocess.Popen("dvc exp run -S lr=0.02 -S classifier.epochs=4 -n m2 summary", shell=True, cwd=two,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
            out = Output(run)
            out.wait_for(r"Running stage 'train_classifier'", run)
            client = mlflow.MlflowClient(uri)
            experiment = client.get_experiment_by_name("cnnlab").experiment_id
            deadline = time.monotonic() + 120
            while not client.search_runs([experiment], "tags.`dvc.experiment` = 'm2' and tags.`dvc.stage` = "
                                         "'train_classifier'"):  # fmt: skip
                assert run.poll() is None and time.monotonic() < deadline, out.text[-3000:]
                time.sleep(0.2)
        # (the server and all its workers are killed here)
        out.wait_for(r"records are kept in", run)
        with mlflow_server(art, port, **server):  # back, the same database
            assert run.wait(600) == 0, out.text[-3000:]
            assert "cnnlab-sync" in out.text
            synced = sh("cnnlab-sync", two, env=env)
            assert re.search(r"wrote [1-9]\d* run\(s\) to the store", synced.stdout), synced.stdout
            assert not (two / "mlflow-pending").exists() or not any((two / "mlflow-pending").iterdir())
            sh("dvc exp push origin m2", two)

            # the server holds one parent run per experiment, from both machines, with their models
            runs = client.search_runs([experiment], "tags.`cnnlab.role` = 'experiment'")
            parents = {r.data.tags.get("dvc.experiment"): r for r in runs}
            assert {"m1", "m2"} <= set(parents), sorted(parents)
            for name in ("m1", "m2"):
                parent = parents[name].info.run_id
                stage_runs = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")
                assert {r.data.tags["dvc.stage"] for r in stage_runs} >= {"train_classifier", "evaluate"}, name
                ids = {r.info.run_id for r in stage_runs}
                versions = client.search_model_versions("name='cnnlab-objects-none'")
                assert any(v.run_id in ids for v in versions), f"no model registered by {name}'s runs"
            assert parents["m1"].data.params["lr"] == "0.05" and parents["m2"].data.params["lr"] == "0.02"
        # machine 1 sees machine 2's experiment
        sh("dvc exp pull origin m2", one)
        assert "m2" in sh("dvc exp list --all-commits", one).stdout


def _check_store(uri: str) -> subprocess.CompletedProcess:
    """cnnlab's check of the tracking store in a process of its own (as a stage does it first)."""
    code = "from cnnlab.tracking import check_store\nprint(check_store())"
    return subprocess.run([sys.executable, "-c", code], env=clean_env() | {"MLFLOW_TRACKING_URI": uri},
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_wrong_team_settings_are_named_and_lose_nothing(tmp_path):
    # a DVC remote at a wrong address: `dvc push` stops naming it, and the local data stay
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "data.txt").write_text("kept")
    closed = free_port()
    sh(f"git init -q && dvc init -q && dvc add -q data.txt && dvc remote add -d storage ssh://127.0.0.1:{closed}/dvc",
       repo)  # fmt: skip
    out = sh("dvc push", repo, check=False)  # DVC's own message names the host and port it could not reach
    assert out.returncode != 0 and f"('127.0.0.1', {closed})" in out.stderr, out.stderr
    assert (repo / "data.txt").read_text() == "kept" and "up to date" in sh("dvc status", repo).stdout.lower()

    with postgres() as db:
        # a wrong database password: named as the setting it is in, at once, the password never shown
        start = time.monotonic()
        wrong = _check_store(db.uri(password="not-the-password"))
        assert wrong.returncode != 0 and time.monotonic() - start < 60, wrong.stderr[-2000:]
        message = wrong.stderr.strip().splitlines()[-1]
        assert "MLFLOW_TRACKING_URI=postgresql://cnnlab:***@127.0.0.1" in message, message
        assert "password authentication failed" in message and "not-the-password" not in wrong.stderr, message
        # ... and the right one reaches the store (MLflow creates its tables in the database)
        right = _check_store(db.uri())
        assert right.returncode == 0 and right.stdout.strip() == db.uri(), right.stderr[-2000:]
    # an unreachable tracking server: named
    down = _check_store(f"http://127.0.0.1:{closed}")
    assert f"MLFLOW_TRACKING_URI=http://127.0.0.1:{closed} cannot be reached" in down.stderr, down.stderr[-2000:]
