"""Run ``session-memory serve`` as a real OS process on a free TCP port.

The server runs in its own process group; stopping it ends the whole group, so
``--workers`` children and their resource tracker never outlive a test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from tests.utils.processes import end_group, group_members, spawn

__all__ = ["ServerProcess", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PortTakenError(RuntimeError):
    """The port picked for a server was taken before the server could bind it."""


def _listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid``'s group holds the listening socket on ``port`` (not
    another server that happens to answer there). The group, since a wrapper such as
    strace runs the server as its child."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{inode}]")
    fds: list[Path] = []
    for member in group_members(pid):
        try:
            fds += Path(f"/proc/{member}/fd").iterdir()
        except OSError:
            continue
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue
    return False


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class ServerProcess:
    """One server process; ``start()`` returns once ``/readyz`` answers 200."""

    def __init__(
        self,
        database_url: str | None,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.database_url = database_url
        # A port picked here may be taken (by another process, or as some client
        # connection's ephemeral port) before the server binds it: start() then
        # picks another. A port the test chose is kept.
        self._picked = port is None
        self.port = port or free_port()
        self.log_path = log_path
        self.extra_args = extra_args or []
        self.env = env or {}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "session_memory",
            "serve",
            "--port",
            str(self.port),
            *(["--database-url", self.database_url] if self.database_url else []),
            "--log-level",
            "warning",
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> ServerProcess:
        for _ in range(4):
            try:
                return self._start(timeout)
            except PortTakenError:
                self.port = free_port()
        return self._start(timeout)

    def _start(self, timeout: float) -> ServerProcess:
        with open(self.log_path or os.devnull, "ab") as log:
            # The child keeps its own copy of the descriptor.
            self.process = spawn(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                end_group(self.process)
                if self._picked and not _bindable(self.port):
                    raise PortTakenError(self.port)
                raise RuntimeError(
                    f"server exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                ready = httpx2.get(self.base_url + "/readyz", timeout=1.0).status_code == 200
                if ready and _listens_on(self.process.pid, self.port):
                    return self
            except httpx2.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not become ready within {timeout}s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` to the server, wait for it, then end anything left in its group."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            end_group(self.process)

    def kill(self) -> int:
        """SIGKILL the whole group at once (a crash of every process)."""
        assert self.process is not None
        end_group(self.process)
        return self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            end_group(self.process)
