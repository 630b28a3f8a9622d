"""The ``session-memory`` command: serve, migrate, export, import, sessions, config, openapi."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar

from pydantic import ValidationError

from .cli_history import add_history_actions
from .cli_leases import add_lease_action
from .cli_sessions import add_sessions, show_client_warnings
from .config import Settings, unknown_variables
from .server import EDGE_FLAGS, add_edge_arguments

if TYPE_CHECKING:
    import socket
    from typing import TypeAlias

    from .auth import ApiKeys
    from .storage import HistoryStore, SessionStore

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

T = TypeVar("T")

__all__ = ["main"]


def _flag_hint(field: str, names: Sequence[str]) -> str:
    variable = f"SESSION_MEMORY_{field.upper()}"
    if field in names:
        return f"--{field.replace('_', '-')} or {variable}"
    return variable


def _settings(args: argparse.Namespace, names: Sequence[str]) -> Settings:
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in names if getattr(args, name, None) is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        # One line per bad setting, naming the flag or variable that sets it.
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"session-memory: {field}: {message} (set {_flag_hint(field, names)})")
        raise SystemExit("\n".join(lines)) from None


def _with_store(settings: Settings, work: Callable[[HistoryStore], Awaitable[T]]) -> T:
    """Open the configured store (applying migrations), run ``work``, close it (flushed)."""
    import asyncio

    from .storage import store_for

    _reach_postgres(settings)

    async def run() -> T:
        store = store_for(settings)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


LIMIT_FLAGS = [
    "max_body_bytes",
    "max_item_bytes",
    "max_items_per_request",
    "max_items_per_session",
    "max_sessions_per_tenant",
]
SERVE_FLAGS = ["host", "port", "database_url", "log_level", *LIMIT_FLAGS, *EDGE_FLAGS]


def _serve(args: argparse.Namespace) -> int:
    # Imported here, like the server's other parts: the other commands start without them.
    from .server.run import serve

    # Everything that can be checked is checked before anything is opened:
    # settings, keys, the data folder, the port, then the claim on a SQLite file.
    settings = _settings(args, SERVE_FLAGS)
    keys = _serve_keys(settings)
    if args.workers > 1 and settings.database.sqlite_path is not None:
        raise SystemExit(
            "session-memory: --workers needs PostgreSQL; one process owns a SQLite "
            "database (run one process per SQLite file)"
        )
    listener, claim = _claim_place(settings)
    try:
        line = _summary(settings, keys, port=int(listener.getsockname()[1]))
        # The settings and keys read here are the ones every server process uses.
        return serve(settings, api_keys=keys, workers=args.workers, listener=listener, summary=line)
    finally:
        if claim is not None:
            claim.close()


def _serve_keys(settings: Settings) -> ApiKeys:
    """The API keys, read once; refused: none on a network address without ``allow_open``."""
    from .auth import ApiKeys

    if (
        settings.api_keys is None
        and settings.api_keys_file is None
        and not settings.binds_loopback_only()
        and not settings.allow_open
    ):
        raise SystemExit(
            f"session-memory: refusing to serve without API keys on {settings.host}: anyone "
            "on the network could read every session. Set SESSION_MEMORY_API_KEYS (or "
            "SESSION_MEMORY_API_KEYS_FILE), or SESSION_MEMORY_ALLOW_OPEN=true to accept that."
        )
    try:
        return ApiKeys.from_settings(settings)
    except OSError as exc:
        raise SystemExit(
            f"session-memory: cannot read the keys file {settings.api_keys_file}: "
            f"{exc.strerror} (set SESSION_MEMORY_API_KEYS_FILE)"
        ) from None
    except ValueError as exc:
        raise SystemExit(f"session-memory: {exc}") from None


def _claim_place(settings: Settings) -> tuple[socket.socket, IO[str] | None]:
    """The database's place checked, the port bound, then a SQLite file claimed (its lock
    held) or PostgreSQL reached."""
    from .server.startup import (
        StartupError,
        bind_listener,
        check_postgres,
        check_postgres_driver,
        claim_sqlite_file,
        prepare_sqlite_folder,
    )

    database = settings.database.sqlite_path
    try:
        if database is not None:
            prepare_sqlite_folder(database)
        else:
            check_postgres_driver()
        listener = bind_listener(settings.host, settings.port)
    except StartupError as exc:
        raise SystemExit(f"session-memory: {exc}") from None
    try:
        if database is not None:
            return listener, claim_sqlite_file(database)
        check_postgres(settings.database, timeout=settings.pg_connect_timeout)
    except StartupError as exc:
        listener.close()
        raise SystemExit(f"session-memory: {exc}") from None
    return listener, None


def _reach_postgres(settings: Settings) -> None:
    """For the commands that open the database: PostgreSQL's mistakes as one line each."""
    from .server.startup import StartupError, check_postgres, check_postgres_driver

    if settings.database.backend != "postgresql":
        return
    try:
        check_postgres_driver()
        check_postgres(settings.database, timeout=settings.pg_connect_timeout)
    except StartupError as exc:
        raise SystemExit(f"session-memory: {exc}") from None


def _summary(settings: Settings, keys: ApiKeys, *, port: int) -> tuple[str, dict[str, Any]]:
    from .server.startup import summary

    return summary(
        settings,
        version=_version(),
        port=port,
        tenants=len({tenant for tenant, _ in keys.entries}),
        keys=len(keys.entries),
    )


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings(args, ["database_url"])

    async def nothing(store: SessionStore) -> None:
        """Opening a store applies every pending migration; that is all."""

    _with_store(settings, nothing)
    print(f"session-memory: schema is current in {settings.database.redacted}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import asyncio

    from session_memory_client import SessionMemoryError

    from .transfer import export_from_server, export_lines

    settings = _settings(args, ["database_url"])
    database = settings.database.sqlite_path
    if not args.base_url and database is not None and not database.exists():
        # Opening it would make an empty database and export nothing, as if that were all.
        raise SystemExit(
            f"session-memory: export: no database at {database} "
            "(set --database-url or SESSION_MEMORY_DATABASE_URL)"
        )

    def write(out: BinaryIO) -> None:
        if not args.base_url:

            async def work(store: HistoryStore) -> None:
                async for line in export_lines(store):
                    out.write(line)

            _with_store(settings, work)
            return

        async def fetch() -> None:
            key = args.api_key or os.environ.get("SESSION_MEMORY_API_KEY")
            async for line in export_from_server(args.base_url, key):
                out.write(line)

        try:
            asyncio.run(fetch())
        except SessionMemoryError as exc:
            raise SystemExit(f"session-memory: export from {args.base_url} failed: {exc}") from None

    if args.output:
        _write_atomically(args.output, write)
        return 0
    try:
        write(sys.stdout.buffer)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`export | head`): end quietly, as a program killed by
        # SIGPIPE does (status 141), with nothing left for Python to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return 0


def _write_atomically(path: str, write: Callable[[BinaryIO], None]) -> None:
    """``write`` to a new file beside ``path``, synced, then renamed over it: ``path``
    is either as it was or the whole new content, whatever fails on the way."""
    import tempfile

    folder, name = os.path.split(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    try:
        with open(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _import(args: argparse.Namespace) -> int:
    from .transfer import ImportReport, import_lines

    settings = _settings(args, ["database_url"])

    def run(source: BinaryIO) -> ImportReport:
        return _with_store(
            settings,
            lambda store: import_lines(
                store,
                source,
                default_tenant=args.tenant,
                honour_leases=not args.ignore_run_leases,
            ),
        )

    if args.input:
        with open(args.input, "rb") as source:
            report = run(source)
    else:
        report = run(sys.stdin.buffer)
    for error in report.errors:
        print(f"session-memory: import: {error}", file=sys.stderr)
    print(
        f"session-memory: imported {report.added} items ({report.skipped} already present)"
        + (f"; {report.expired} sessions had expired, left out" if report.expired else "")
        + (f"; {len(report.errors)} problems, see above" if report.errors else ""),
        file=sys.stderr,
    )
    return 1 if report.errors else 0


def _config(args: argparse.Namespace) -> int:
    settings = _settings(args, [])
    effective = settings.model_dump(mode="json")
    # SecretStr already dumps as asterisks; a password inside the URL needs masking too.
    effective["database_url"] = settings.database.redacted
    sys.stdout.write(json.dumps(effective, indent=2) + "\n")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from .main import openapi_spec

    sys.stdout.write(json.dumps(openapi_spec(), indent=2, ensure_ascii=False) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="session-memory", description="Networked session memory for AI agents."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands)
    _add_data_commands(commands)
    actions = add_sessions(commands)
    add_history_actions(actions)
    add_lease_action(actions)
    _add_info_commands(commands)
    return parser


def _add_serve(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument(
        "--database-url",
        dest="database_url",
        help="storage URL (default sqlite:///./data/sessions.db)",
    )
    serve.add_argument(
        "--log-level",
        dest="log_level",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default info)",
    )
    for name in LIMIT_FLAGS:
        serve.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=int,
            help=f"{Settings.model_fields[name].description} (SESSION_MEMORY_{name.upper()})",
        )
    add_edge_arguments(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (PostgreSQL only; default 1)",
    )
    serve.set_defaults(handler=_serve)


def _add_data_commands(commands: Commands) -> None:
    migrate = commands.add_parser(
        "migrate", help="create or upgrade the database schema, then exit"
    )
    migrate.add_argument("--database-url", dest="database_url", help="storage URL")
    migrate.set_defaults(handler=_migrate)

    export = commands.add_parser(
        "export", help="write every session of every tenant as JSON Lines (one item a line)"
    )
    export.add_argument("--database-url", dest="database_url", help="storage URL")
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    export.add_argument(
        "--base-url", help="export over HTTP from this running server instead (one key's sessions)"
    )
    export.add_argument("--api-key", help="with --base-url (default $SESSION_MEMORY_API_KEY)")
    export.set_defaults(handler=_export)

    load = commands.add_parser("import", help="load an export; idempotent")
    load.add_argument("--database-url", dest="database_url", help="storage URL")
    load.add_argument("--input", "-i", help="file to read (default: standard input)")
    load.add_argument(
        "--tenant", default="", help="tenant for lines without one (exported from a server)"
    )
    load.add_argument(
        "--ignore-run-leases",
        action="store_true",
        help="restore sessions even while a run's lease on them is held (only with no "
        "server running: a run's lease left from before a stop)",
    )
    load.set_defaults(handler=_import)


def _add_info_commands(commands: Commands) -> None:
    config = commands.add_parser(
        "config", help="print the effective settings (from the environment), secrets masked"
    )
    config.set_defaults(handler=_config)

    openapi = commands.add_parser("openapi", help="print the OpenAPI spec as JSON")
    openapi.set_defaults(handler=_openapi)


def _stop_now(signum: int, frame: object) -> None:
    """End a command at once on Ctrl-C or SIGTERM, with status 0 and no traceback.

    Unwinding through an event loop and a store's threads from a signal is what
    printed tracebacks; ending the process is safe instead, because every write is
    a transaction of its own (an import can be run again: it skips what is present).
    """
    name = signal.Signals(signum).name
    os.write(2, f"session-memory: stopped by {name}\n".encode())
    os._exit(0)


def _version() -> str:
    from .main import app_version

    return app_version()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Ctrl-C and SIGTERM end it with status 0 and no traceback.

    An unexpected error is one line on stderr; ``--log-level debug`` (or
    SESSION_MEMORY_LOG_LEVEL=debug) shows its traceback instead.
    """
    args = build_parser().parse_args(argv)
    if unknown := unknown_variables(os.environ):
        # Before anything runs: a misspelt setting would otherwise leave its default on.
        raise SystemExit("\n".join(f"session-memory: {line}" for line in unknown))
    if args.command != "serve":  # whose every log line is JSON
        # `sessions` and `export --base-url` talk through the client, which says when it retries.
        show_client_warnings()
    handler: Any = args.handler
    debug = (getattr(args, "log_level", None) or os.environ.get("SESSION_MEMORY_LOG_LEVEL")) == (
        "debug"
    )
    # `serve` replaces these once it has what it needs to drain gracefully.
    previous = {sig: signal.signal(sig, _stop_now) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        if debug:
            raise
        print(
            f"session-memory: {args.command} failed: {type(exc).__name__}: {exc} "
            "(--log-level debug or SESSION_MEMORY_LOG_LEVEL=debug shows the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
