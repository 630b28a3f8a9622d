"""What ``serve`` checks and claims before it opens the database, and its start-up summary.

Each check fails with a one-line :class:`StartupError` that says what is wrong and
which flag or variable fixes it; the command prints it without a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import IO, Any

import uvicorn

from ..config import Database, Settings

__all__ = [
    "StartupError",
    "SummaryServer",
    "bind_listener",
    "check_postgres",
    "check_postgres_driver",
    "claim_sqlite_file",
    "data_location",
    "prepare_sqlite_folder",
    "summary",
]


class StartupError(Exception):
    """A start-up mistake the operator can fix; the message names the fix."""


def data_location(settings: Settings) -> dict[str, Any]:
    """Where the data lives, for the summary: a path, or a host and database (no password)."""
    database = settings.database
    if database.backend == "sqlite":
        return {"backend": "sqlite", "database": database.name}
    return {"backend": "postgresql", "database": database.name, "database_host": database.host}


def prepare_sqlite_folder(path: Path) -> None:
    """Create the database's folder and check that it and the file can be written."""
    hint = "choose a writable place with --database-url sqlite:////absolute/path/sessions.db"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"cannot create the data folder {path.parent}: {exc.strerror}; {hint}"
        ) from None
    # SQLite also writes -wal and -shm files beside the database, so the folder
    # itself must be writable, not only the file.
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StartupError(f"the data folder {path.parent} is not writable; {hint}")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StartupError(f"the database {path} is not writable; {hint}")


# How to get the driver where the README installs the service: from a clone.
POSTGRES_INSTALL = (
    "pip install './client' '.[postgres]' (in the checkout's own .venv: "
    ".venv/bin/pip install -e '.[postgres]')"
)
_URL_HINT = "--database-url (or SESSION_MEMORY_DATABASE_URL)"


def check_postgres_driver() -> None:
    """That asyncpg, which only PostgreSQL needs (an extra), is installed."""
    try:
        from ..storage.postgres import driver  # noqa: F401 - importing it is the check
    except ImportError:
        raise StartupError(
            "PostgreSQL needs the asyncpg driver, which is not installed; from a clone "
            f"of session-memory: {POSTGRES_INSTALL}"
        ) from None


def check_postgres(database: Database, *, timeout: float) -> None:
    """Connect once and close: the server is there, lets this user in, has the database."""
    from ..storage.postgres import driver

    assert database.postgres_dsn is not None

    async def attempt() -> None:
        connection = await driver.connect(database.postgres_dsn, timeout=timeout)
        await connection.close()

    where = f"PostgreSQL at {database.host}"
    try:
        asyncio.run(attempt())
    except driver.PostgresError as exc:
        raise StartupError(_refusal(where, database.name, exc)) from None
    except TimeoutError:
        raise StartupError(
            f"cannot reach {where}: no answer within {timeout:g} s; is it running, and is "
            f"the host right? Fix {_URL_HINT}, or wait longer with "
            "SESSION_MEMORY_PG_CONNECT_TIMEOUT"
        ) from None
    except OSError as exc:
        if isinstance(exc, socket.gaierror):
            reason = f"unknown host ({exc.strerror}); is the host name right?"
        elif exc.errno == errno.ECONNREFUSED or isinstance(exc, ConnectionRefusedError):
            reason = "connection refused; is it running on that host and port?"
        else:
            reason = f"{exc.strerror or exc}; is it running on that host and port?"
        raise StartupError(f"cannot reach {where}: {reason} Fix {_URL_HINT}") from None
    except Exception as exc:  # the driver's own refusals (a bad URL parameter, SSL)
        raise StartupError(
            f"cannot connect to {where}: {type(exc).__name__}: {exc}; fix {_URL_HINT}"
        ) from None


def _refusal(where: str, name: str, exc: Exception) -> str:
    code = getattr(exc, "sqlstate", None)
    if code == "3D000":  # invalid_catalog_name
        return (
            f"{where} has no database {name!r}; create it (createdb {name}) "
            f"or name another in {_URL_HINT}"
        )
    if code in ("28000", "28P01"):  # invalid authorization / invalid password
        return f"{where} refused the login: {exc}; fix the user or password in {_URL_HINT}"
    return f"{where} refused the connection: {exc} (SQLSTATE {code}); check {_URL_HINT}"


def claim_sqlite_file(path: Path) -> IO[str]:
    """Hold an exclusive lock on ``<database>.lock`` for as long as the process lives.

    One process owns a SQLite database's writer; a second server on the same file is
    refused here instead of competing for the file's write lock. The OS drops the lock
    when the process ends, however it ends. Keep the returned file open.
    """
    lock_path = path.with_name(path.name + ".lock")
    try:
        handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the process's life
    except OSError as exc:
        raise StartupError(f"cannot open the lock file {lock_path}: {exc.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f" (process {holder})" if holder.isdigit() else ""
        raise StartupError(
            f"another server{who} is already serving {path}; one process owns a SQLite "
            "database: stop it, or serve another file with --database-url"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else is opened (uvicorn serves on it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use; pick another with --port "
                "(or SESSION_MEMORY_PORT)"
            ) from None
        if exc.errno == errno.EACCES:
            raise StartupError(
                f"no permission to listen on port {port}; use a port above 1023 with --port"
            ) from None
        raise StartupError(
            f"cannot listen on {host}:{port}: {exc.strerror}; fix --host "
            "(or SESSION_MEMORY_HOST), e.g. 127.0.0.1 or 0.0.0.0"
        ) from None
    except socket.gaierror as exc:  # pragma: no cover - bind of an unresolvable name
        sock.close()
        raise StartupError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def summary(
    settings: Settings, *, version: str, port: int, tenants: int, keys: int
) -> tuple[str, dict[str, Any]]:
    """The start-up line: a readable message and the same facts as fields."""
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    if settings.host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"  # reachable from this machine; the address field says all
    base = f"http://{shown}:{port}"
    where = data_location(settings)
    place = (
        where["database"]
        if where["backend"] == "sqlite"
        else f"{where['database']} on {where['database_host']}"
    )
    if keys:
        access = f"{keys} API key{'s' if keys != 1 else ''} for {tenants} tenant" + (
            "s" if tenants != 1 else ""
        )
    else:
        access = "open mode: no API keys"
    message = (
        f"session-memory {version} serving {where['backend']} {place} at {base} "
        f"(browser {base}/ui, API docs {base}/docs); {access}; Ctrl-C stops it"
    )
    fields: dict[str, Any] = {
        "version": version,
        **where,
        "address": f"{settings.host}:{port}",
        "ui": f"{base}/ui",
        "docs": f"{base}/docs",
        "tenants": tenants,
        "keys": keys,
        "open": keys == 0,
    }
    return message, fields


class SummaryServer(uvicorn.Server):
    """uvicorn's server, which logs the start-up summary once it is listening."""

    def __init__(self, config: uvicorn.Config, line: tuple[str, dict[str, Any]]) -> None:
        super().__init__(config)
        self._line = line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            message, fields = self._line
            logging.getLogger("session_memory").info(message, extra={"fields": fields})
