"""Real servers for the team tests, each on 127.0.0.1 with a throwaway data directory and key,
stopped after: PostgreSQL (Debian's `postgresql`) and an SSH server (Debian's `openssh-server`).
.ci/run installs both where they are missing; without them the tests that need them skip, saying
which package to install."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server's bin/ folder of Debian's packages, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def _as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user."""
    return ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []


def _wait_for_port(port: int, process: subprocess.Popen | None, what: str, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")
        if time.time() > deadline:
            raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {seconds} s")
        time.sleep(0.2)


@dataclass
class Postgres:
    """A running PostgreSQL server: `uri(database)` with the user's password in it."""

    port: int
    user: str
    password: str
    bin: Path

    def uri(self, database: str = "mlflow", password: str | None = None) -> str:
        return f"postgresql://{self.user}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        env = {**os.environ, "PGPASSWORD": self.password}
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name],
                       check=True, env=env, capture_output=True)  # fmt: skip


@contextlib.contextmanager
def postgres(user: str = "cnnlab", password: str = "team-secret") -> Iterator[Postgres]:
    """PostgreSQL on 127.0.0.1 at a free port, password (scram-sha-256) authentication, its data in
    a new temporary folder (owned by `postgres` when run as root), database `mlflow` created."""
    bin_ = postgres_bin()
    assert bin_ is not None, "no PostgreSQL server: install Debian's postgresql"
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    folder.chmod(0o755)
    if os.getuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    pwfile = folder / "pw"
    pwfile.write_text(password)
    if os.getuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    data, port, run = folder / "data", free_port(), _as_server_user()
    try:
        subprocess.run([*run, str(bin_ / "initdb"), "-D", str(data), "-U", user, "--pwfile", str(pwfile), "-A",
                        "scram-sha-256", "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
        subprocess.run([*run, str(bin_ / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                        f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}", "start"], check=True,
                       capture_output=True)  # fmt: skip
        server = Postgres(port, user, password, bin_)
        server.create_database("mlflow")
        yield server
    finally:
        subprocess.run([*run, str(bin_ / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class SSHServer:
    """A running SSH server that lets `user` in with the private key `keyfile`."""

    port: int
    user: str
    keyfile: Path

    def url(self, path: Path) -> str:
        return f"ssh://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def ssh_server(folder: Path) -> Iterator[SSHServer]:
    """OpenSSH's sshd on 127.0.0.1 at a free port: a new host key, a new client key (the only way
    in: no password, no PAM), SFTP for DVC's ssh remote. Files in `folder`."""
    assert SSHD.exists(), "no SSH server: install Debian's openssh-server"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    if os.getuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        _wait_for_port(port, server, "sshd")
        yield SSHServer(port, getpass.getuser(), folder / "client_key")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(30)
