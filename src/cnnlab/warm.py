"""Warm stage start-up: a stage script forks from a process that has already imported torch,
torchvision, MLflow, matplotlib, pandas, scikit-learn and captum, instead of importing them again.

`dvc repro` starts some twenty stage processes; each paid 5-10 s of imports before any work, more
than most stages' work on the default data. A stage script calls `handoff(__file__)` before its own
imports. The first call starts a server in the background (`python -m cnnlab.warm`, which
imports those libraries once) and runs its stage the usual way; later calls connect to the
server's Unix socket and the server forks a child that runs the script with the caller's argv,
working directory, environment and standard streams (passed as file descriptors), so the output,
exit code and signals are the caller's as if it had run the script itself:

- SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the caller are forwarded to the child; a child that
  dies by a signal makes the caller die by the same signal; if the caller is killed outright
  (SIGKILL), the child is killed too.
- cnnlab's own modules are never preloaded, so edited code is always what runs; the preloaded
  libraries are checked by the modification times of their files at every request (a reinstall
  stops the server). Environment variables that those libraries read at import (OMP_*, CUDA_*,
  MPL*, PYTHON*, TQDM_*, ...) are part of the socket's name: another environment gets another
  server.
- The server stops after `CNNLAB_WARM_IDLE` seconds without a request (default 120).
  `CNNLAB_WARM_PRELOAD` (comma-separated module names) replaces the list of preloaded modules.
- The stage runs the usual way (no server) when CNNLAB_WARM=0, off Linux (fork is Linux-only
  here), under torchrun (each process is started by torchrun), under a debugger or profiler, when
  the script is not the program being run (imported, or run by `python -m pdb`), or when anything
  about the server goes wrong before the child starts.

The socket lives in a folder only this user can open (`$XDG_RUNTIME_DIR/cnnlab` or
`/tmp/cnnlab-<uid>`); the server also checks the caller's uid (SO_PEERCRED).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Imported once by the server. Each is optional: one that does not import is left out.
PRELOAD = (
    "numpy",
    "yaml",
    "PIL.Image",
    "pydantic",
    "pandas",
    "torch",
    "torch.nn.functional",
    "torchvision",
    "torchvision.transforms.v2",
    "matplotlib",
    "matplotlib.pyplot",
    "sklearn.metrics",
    "captum.attr",
    "mlflow",
    "mlflow.pytorch",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "tqdm",
    # what stages import lazily: torch._dynamo & co (torch's optimizers import it at their first
    # step; torch.export, for models logged as graphs), logging a model, system metrics, git tags
    "torch.export._trace",
    "torch._export.serde.serialize",
    "torch._functorch.partitioners",
    "torch._inductor.ir",
    "networkx",
    "mlflow.pyfunc",
    "mlflow.models.signature",
    "mlflow.system_metrics.system_metrics_monitor",
    "mlflow.tracing",
    "mlflow.data",
    "git",
    "alembic.command",
    "sqlalchemy.dialects.sqlite",
    "opentelemetry.sdk.trace",
    "PIL.PngImagePlugin",
    "PIL.JpegImagePlugin",
    "matplotlib.backends.backend_agg",
    "mlflow.pyfunc.scoring_server",
    "mlflow.tracing.processor.otel",
    "opentelemetry.sdk.metrics",
    "alembic.config",
    "sympy.combinatorics",
    "torch._export.passes.replace_set_grad_with_hop_pass",
    "torch._inductor.fx_passes.dedupe_symint_uses",
    "pyarrow.pandas_compat",
)
# Environment variables read while those libraries import: they name the server.
IMPORT_ENV = (
    "OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "TORCH", "PYTORCH", "CUDA", "NVIDIA", "ATEN_", "DNNL_",
    "ONEDNN_", "MPL", "MATPLOTLIB", "PYTHON", "LD_", "TQDM_", "LANG", "LC_", "TZ", "HOME", "TMPDIR",
    "SKLEARN_", "NUMPY_", "CNNLAB_WARM",
)  # fmt: skip
DISTRIBUTED_ENV = ("WORLD_SIZE", "TORCHELASTIC_RUN_ID")  # set by torchrun for its workers
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
CHILD_ENV = "CNNLAB_WARM_CHILD"  # set in a forked child: its own handoff() returns
CONNECT_TIMEOUT = 5.0


def _enabled(script: Path) -> bool:
    if os.environ.get("CNNLAB_WARM", "1") == "0" or os.environ.get(CHILD_ENV) == "1":
        return False
    if not sys.platform.startswith("linux") or any(k in os.environ for k in DISTRIBUTED_ENV):
        return False
    if sys.gettrace() is not None or sys.getprofile() is not None or sys.flags.inspect:
        return False
    main_file = vars(sys.modules["__main__"]).get("__file__")
    return bool(main_file) and Path(main_file).resolve() == script.resolve() == Path(sys.argv[0]).resolve()


def socket_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        folder = Path(base) / "cnnlab"
    else:
        folder = Path(tempfile.gettempdir()) / f"cnnlab-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{folder} is not private to this user")
    return folder


def socket_path(env: dict | None = None) -> Path:
    """The socket of the server for this interpreter and this import environment."""
    env = os.environ if env is None else env
    key = {
        "python": sys.executable,
        "version": sys.version,
        "path": [p for p in sys.path if p and Path(p).resolve() != Path(sys.argv[0]).resolve().parent],
        "env": sorted((k, v) for k, v in env.items() if k.startswith(IMPORT_ENV)),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return socket_dir() / f"warm-{digest}.sock"


# ----------------------------------------------------------------------------------------------
# the stage's side


def handoff(script: str) -> None:
    """Run the calling stage script (`script`: its `__file__`) in a child of the warm server and
    exit with its status; or return (run it here) when that cannot be done. Call it before the
    script's heavy imports."""
    if not script or not _enabled(Path(script)):
        return
    try:
        path = socket_path()
        conn = _connect(path)
    except OSError:
        return
    if conn is None:
        _start_server(path)  # for the next stage; this one runs here, meanwhile
        return
    status = _delegate(conn)
    if status is None:
        return  # the server refused (it is stopping): run here
    _exit_like(status)


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(CONNECT_TIMEOUT)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    conn.settimeout(None)
    return conn


def _start_server(path: Path) -> None:
    """Start the server unless another stage is starting it (a lock file decides)."""
    lock = os.open(f"{path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return
    try:
        subprocess.Popen(
            [sys.executable, "-m", "cnnlab.warm", str(path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, pass_fds=(lock,), cwd=path.parent,
            env=os.environ | {"CNNLAB_WARM_LOCK_FD": str(lock)},
        )  # fmt: skip
    finally:
        os.close(lock)  # the server holds its own copy until it listens


def _delegate(conn: socket.socket) -> int | None:
    """Send the request, forward signals to the child until it ends; its wait status (None:
    refused before a child started)."""
    request = json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": _umask()}).encode()
    reader = conn.makefile("rb")
    try:
        socket.send_fds(conn, [struct.pack("!I", len(request)) + request], [0, 1, 2])
        first = reader.readline()
    except OSError:  # the server closed the connection unread (it was stopping): no child started
        return None
    if not first:
        return None
    message = json.loads(first)
    if "pid" not in message:
        return None
    pid = message["pid"]
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, frame: _forward(pid, signum))
    try:
        line = reader.readline()
    except OSError:
        line = b""
    if not line:  # the server died: the child's status is lost
        print(f"error: the warm stage server ended before stage process {pid}; run the stage again "
              "(CNNLAB_WARM=0 runs it without the server)", file=sys.stderr)  # fmt: skip
        return 1 << 8
    return json.loads(line)["status"]


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _exit_like(status: int) -> None:
    """End this process as the child ended: the same exit code, or death by the same signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        time.sleep(1)
        os._exit(128 + sig)
    sys.exit(os.waitstatus_to_exitcode(status))


# ----------------------------------------------------------------------------------------------
# the server's side


def _fingerprint(modules: list[str]) -> dict:
    stamps = {}
    for name in modules:
        file = vars(sys.modules[name]).get("__file__") if name in sys.modules else None
        if file:
            with contextlib.suppress(OSError):
                stamps[file] = os.stat(file).st_mtime_ns
    return stamps


def _current(stamps: dict) -> bool:
    try:
        return all(os.stat(f).st_mtime_ns == t for f, t in stamps.items())
    except OSError:
        return False


def serve(path: Path, idle: float) -> None:
    loaded = []
    preload = os.environ.get("CNNLAB_WARM_PRELOAD")  # a comma-separated list instead (the tests use it)
    for name in preload.split(",") if preload is not None else PRELOAD:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - a library that does not import here is simply not preloaded
            pass
    with contextlib.suppress(Exception):
        from cnnlab.tracking import warm_up

        warm_up()
    for name in [m for m in sys.modules if m == "cnnlab" or m.startswith("cnnlab.")]:
        del sys.modules[name]  # cnnlab's own code is imported anew by every stage: edits run
    stamps = _fingerprint(loaded)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    server.bind(str(tmp))
    os.replace(tmp, path)
    server.listen(16)
    inode = os.stat(path).st_ino
    lock = os.environ.pop("CNNLAB_WARM_LOCK_FD", None)
    if lock:
        os.close(int(lock))  # listening now: the next stage connects instead of starting another
    me = os.getpid()
    children: dict[int, socket.socket] = {}
    last = time.monotonic()
    try:
        while True:
            ready, _, _ = select.select([server], [], [], 0.2)
            for pid, conn in list(children.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    with contextlib.suppress(OSError):
                        conn.sendall(json.dumps({"status": status}).encode() + b"\n")
                    conn.close()
                    del children[pid]
                    last = time.monotonic()
            try:
                ours = os.stat(path).st_ino == inode
            except OSError:
                ours = False
            if not ours or (not children and time.monotonic() - last > idle):
                return
            if not ready:
                continue
            conn, _ = server.accept()
            last = time.monotonic()
            pid = _accept(conn, [server, *children.values()], stamps)
            if pid > 0:
                children[pid] = conn
            elif pid == -2:  # the libraries changed on disk: stop, the next stage starts a new server
                return
    finally:
        if os.getpid() == me:
            server.close()
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:
                    os.unlink(path)


def _accept(conn: socket.socket, others: list[socket.socket], stamps: dict) -> int:
    """Read one request and fork its child, which closes `others` (the server's socket, the
    other stages' connections), runs the script and exits the interpreter from here; the server
    gets the child's pid (-1: bad request, -2: stale libraries)."""
    fds: list[int] = []
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != os.getuid():
            conn.close()
            return -1
        head, fds, _, _ = socket.recv_fds(conn, 4, 3)
        (size,) = struct.unpack("!I", head)
        body = b""
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ConnectionError("short request")
            body += chunk
        request = json.loads(body)
    except (OSError, ValueError, struct.error):
        for fd in fds:
            os.close(fd)
        conn.close()
        return -1
    if not _current(stamps) or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        conn.close()  # the caller reads nothing and runs the stage itself
        return -2 if len(fds) == 3 else -1
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        return pid
    for sock in others:
        sock.close()
    _run_child(conn, fds, request)  # never returns


def _run_child(conn: socket.socket, fds: list[int], request: dict) -> None:
    import random
    import runpy
    import threading
    import traceback

    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.chdir(request["cwd"])
        if "multiprocessing.process" in sys.modules:  # it noted the server's directory at import
            sys.modules["multiprocessing.process"].ORIGINAL_DIR = request["cwd"]
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[CHILD_ENV] = "1"
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
        sys.stderr.reconfigure(line_buffering=True)
        random.seed()  # a fresh process would not share the server's random state
        with contextlib.suppress(ImportError):
            import numpy

            numpy.random.seed()
        script = request["argv"][0]
        sys.argv = list(request["argv"])
        sys.path[0] = os.path.dirname(os.path.abspath(script))

        def watch():  # the caller gone (killed outright): so is the stage
            with contextlib.suppress(OSError):
                while conn.recv(1024):
                    pass
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, daemon=True, name="cnnlab-warm-watch").start()
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code
        except KeyboardInterrupt:
            traceback.print_exc()
            code = None
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:  # noqa: BLE001 - as the interpreter would: traceback, exit code 1
            traceback.print_exc()
            code = 1
    except BaseException:  # noqa: BLE001
        with contextlib.suppress(Exception):
            traceback.print_exc()
        code = 1
    _finish(code)


def _finish(code) -> None:
    """Exit as the interpreter would (threads joined, atexit handlers run, streams flushed) but
    without tearing down every module of the big heap the child shares with the server (seconds)."""
    import atexit
    import threading

    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    with contextlib.suppress(Exception):
        threading._shutdown()  # the interpreter's own wait for non-daemon threads
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code & 0xFF)


def main() -> None:
    idle = float(os.environ.get("CNNLAB_WARM_IDLE", "120"))
    serve(Path(sys.argv[1]), idle)


if __name__ == "__main__":
    main()
