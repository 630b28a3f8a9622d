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
from .config import Settings
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
    """The data folder checked, the port bound, then a SQLite file claimed (its lock held)."""
    from .server.startup import (
        StartupError,
        bind_listener,
        claim_sqlite_file,
        prepare_sqlite_folder,
    )

    database = settings.database.sqlite_path
    try:
        if database is not None:
            prepare_sqlite_folder(database)
        listener = bind_listener(settings.host, settings.port)
        claim = claim_sqlite_file(database) if database is not None else None
    except StartupError as exc:
        raise SystemExit(f"session-memory: {exc}") from None
    return listener, claim


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
            settings, lambda store: import_lines(store, source, default_tenant=args.tenant)
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


def _sessions(args: argparse.Namespace) -> int:
    import asyncio

    from session_memory_client import SessionMemoryClient, SessionMemoryError
    from session_memory_client.protocol import session_id_error

    if args.action != "list" and (error := session_id_error(args.session_id)) is not None:
        # Refused here, before any request: "a/items/last" is no session id.
        raise SystemExit(f"session-memory: {error}")

    async def run() -> Any:
        key = args.api_key or os.environ.get("SESSION_MEMORY_API_KEY")
        # The CLI answers promptly: a few retries, not the agents' long restart budget.
        async with SessionMemoryClient(
            base_url=args.base_url, api_key=key, retries=2, retry_for=5
        ) as client:
            if args.action == "list":
                page = await client.list_sessions(limit=args.limit)
                return {"sessions": page.sessions, "next_cursor": page.next_cursor}
            session = client.session(args.session_id)
            if args.action == "delete":
                await session.clear_session()
                return None
            record: dict[str, Any] = dict(await session.get_record())
            if args.items:
                record["items"] = await session.get_items()
            return record

    try:
        result = asyncio.run(run())
    except SessionMemoryError as exc:
        raise SystemExit(f"session-memory: {exc}") from None
    if result is None:
        print(f"session-memory: deleted {args.session_id!r}", file=sys.stderr)
    elif args.json:
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    elif args.action == "list":
        sys.stdout.write(_session_table(result["sessions"]))
        if result["next_cursor"]:
            print(f"(more: the first {args.limit} shown; see --limit)", file=sys.stderr)
    else:
        sys.stdout.write(_record_text(result))
    return 0


def _session_table(records: list[dict[str, Any]]) -> str:
    """Sessions as aligned columns, for people; ``--json`` is for programs."""
    header = ("ID", "ITEMS", "UPDATED", "EXPIRES")
    rows = [
        (
            json.dumps(record["id"], ensure_ascii=False)[1:-1],  # control-free, one line
            str(record["item_count"]),
            _when(record["updated_at"]),
            _when(record["expires_at"]) if record["expires_at"] else "never",
        )
        for record in records
    ]
    if not rows:
        return "no sessions\n"
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in [header, *rows]
    )


def _record_text(record: dict[str, Any]) -> str:
    lines = [
        f"id:       {json.dumps(record['id'], ensure_ascii=False)[1:-1]}",
        f"items:    {record['item_count']}",
        f"created:  {_when(record['created_at'])}",
        f"updated:  {_when(record['updated_at'])}",
        f"expires:  {_when(record['expires_at']) if record['expires_at'] else 'never'}",
    ]
    for n, item in enumerate(record.get("items", []), start=1):
        lines.append(f"{n:>4}  {json.dumps(item, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def _when(timestamp: str) -> str:
    # ISO 8601 from the service, shown to the second in UTC.
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


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
    _add_sessions(commands)
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
    load.set_defaults(handler=_import)


def _add_sessions(commands: Commands) -> None:
    sessions = commands.add_parser("sessions", help="look at sessions on a running server")
    sessions.add_argument(
        "--base-url",
        default=os.environ.get("SESSION_MEMORY_BASE_URL", "http://127.0.0.1:8000"),
        help="the server (default $SESSION_MEMORY_BASE_URL or http://127.0.0.1:8000)",
    )
    sessions.add_argument("--api-key", help="API key (default $SESSION_MEMORY_API_KEY)")
    actions = sessions.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="sessions, most recently updated first")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    show = actions.add_parser("show", help="one session's record")
    show.add_argument("session_id")
    show.add_argument("--items", action="store_true", help="include its items")
    show.add_argument("--json", action="store_true", help="JSON instead of text")
    delete = actions.add_parser("delete", help="clear a session")
    delete.add_argument("session_id")
    sessions.set_defaults(handler=_sessions)
    add_history_actions(actions)


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
