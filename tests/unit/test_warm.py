"""cnnlab.warm: a stage script run through the warm server behaves as if it had run itself
(argv, working directory, environment, streams, exit code, signals), and edited code is read anew."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cnnlab import warm

PROBE = Path(__file__).resolve().parents[1] / "helpers" / "warm_probe.py"
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the warm server is Linux-only")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """An environment with its own socket folder and a server that preloads numpy only; the
    server is started (by a first, cold run) and up when the tests get it."""
    runtime = tmp_path_factory.mktemp("runtime")
    runtime.chmod(0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLAB_WARM")}
    env.update(XDG_RUNTIME_DIR=str(runtime), CNNLAB_WARM_PRELOAD="numpy", CNNLAB_WARM_IDLE="60")
    first = _run(["exit", "0"], runtime, env)
    assert first.returncode == 0 and json.loads(first.stdout)["warm"] is False, first.stderr
    deadline = time.monotonic() + 60
    while not list((runtime / "cnnlab").glob("warm-*.sock")):
        assert time.monotonic() < deadline, "the warm server did not come up"
        time.sleep(0.1)
    yield env
    for proc in psutil.process_iter(["cmdline"]):
        if str(runtime) in " ".join(proc.info["cmdline"] or []):
            proc.kill()


def _run(args, cwd, env, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROBE), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, **kw)  # fmt: skip


def test_a_warm_run_gets_the_callers_argv_cwd_environment_streams_and_exit_code(env, tmp_path):
    out = _run(["exit", "3", "x y"], tmp_path, env | {"PROBE": "seen"})
    report = json.loads(out.stdout)
    assert report["warm"] is True
    assert report["pid"] != os.getpid()
    assert report["argv"] == [str(PROBE), "exit", "3", "x y"]
    assert report["cwd"] == str(tmp_path)
    assert report["probe"] == "seen"
    assert out.stderr.strip() == "to stderr"
    assert out.returncode == 3


def test_an_exception_gives_its_traceback_and_exit_code_1(env, tmp_path):
    out = _run(["fail"], tmp_path, env)
    assert json.loads(out.stdout.splitlines()[0])["warm"] is True
    assert out.returncode == 1
    assert "ValueError: probe failed" in out.stderr and "Traceback" in out.stderr


def test_a_spawned_multiprocessing_pool_finds_the_script(env, tmp_path):
    out = _run(["pool"], tmp_path, env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["warm"] is True and report["pool"] == [1, 4, 9]


def test_edited_code_is_what_runs(env, tmp_path):
    # the server imported cnnlab.tracking to warm MLflow up; a stage imports all of cnnlab anew
    assert json.loads(_run(["exit", "0"], tmp_path, env).stdout)["cnnlab_modules"] == ["cnnlab.warm"]
    (tmp_path / "helper.py").write_text("VALUE = 1\n")
    assert json.loads(_run(["helper"], tmp_path, env).stdout)["helper"] == 1
    (tmp_path / "helper.py").write_text("VALUE = 2  # edited\n")
    report = json.loads(_run(["helper"], tmp_path, env).stdout)
    assert report["warm"] is True and report["helper"] == 2


def _start_sleeping(env, cwd) -> tuple[subprocess.Popen, int]:
    caller = subprocess.Popen([sys.executable, str(PROBE), "sleep"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    report = json.loads(caller.stdout.readline())
    assert report["warm"] is True
    return caller, report["pid"]


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_caller_reaches_the_stage_and_the_caller_ends_as_it_did(env, tmp_path, sig):
    caller, child = _start_sleeping(env, tmp_path)
    caller.send_signal(sig)
    caller.wait(30)
    assert _gone(child)
    if sig == signal.SIGTERM:
        assert caller.returncode == -signal.SIGTERM  # killed by the same signal, as a cold run would be
    else:
        assert caller.returncode == -signal.SIGINT and "KeyboardInterrupt" in caller.stderr.read()


def test_killing_the_caller_outright_kills_the_stage(env, tmp_path):
    caller, child = _start_sleeping(env, tmp_path)
    caller.kill()
    caller.wait(30)
    assert _gone(child)


def test_a_server_that_closes_the_connection_unread_lets_the_stage_run_itself():
    # a server that stops (idle, or its libraries changed) drops the connections still in its
    # backlog: the stage's request meets a broken pipe, no child was started, the stage runs here
    stage, server = socket.socketpair()
    server.close()
    with stage:
        assert warm._delegate(stage) is None


def test_without_the_server_the_script_runs_itself(env, tmp_path):
    out = _run(["exit", "0"], tmp_path, env | {"CNNLAB_WARM": "0"})
    assert json.loads(out.stdout)["warm"] is False and out.returncode == 0


def test_another_import_environment_gets_another_server(env, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"])
    assert warm.socket_path({}) != warm.socket_path({"OMP_NUM_THREADS": "1"})
    assert warm.socket_path({}) == warm.socket_path({"DVC_EXP_NAME": "a", "MLFLOW_TRACKING_URI": "x"})


def test_a_socket_folder_others_can_open_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "cnnlab"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(PermissionError, match="not private"):
        warm.socket_dir()
