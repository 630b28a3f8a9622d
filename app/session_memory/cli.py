"""The ``session-memory`` command: serve, migrate, export, import, sessions, config, openapi."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from pydantic import ValidationError

from .cli_history import add_history_actions
from .config import Settings, redact_url
from .server import EDGE_FLAGS, add_edge_arguments

if TYPE_CHECKING:
    from typing import TypeAlias

    from .storage import SessionStore

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

T = TypeVar("T")

__all__ = ["main"]


def _settings(args: argparse.Namespace, names: Sequence[str]) -> Settings:
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in names if getattr(args, name, None) is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SystemExit(f"session-memory: invalid settings:\n{exc}") from None


def _with_store(settings: Settings, work: Callable[[SessionStore], Awaitable[T]]) -> T:
    """Open the configured store (applying migrations), run ``work``, close it (flushed)."""
    import asyncio

    from .storage import store_from_url

    async def run() -> T:
        store = store_from_url(settings.database_url, settings)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


LIMIT_FLAGS = ["max_body_bytes", "max_item_bytes", "max_items_per_request", "max_items_per_session"]
SERVE_FLAGS = ["host", "port", "database_url", "log_level", *LIMIT_FLAGS, *EDGE_FLAGS]


def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    settings = _settings(args, SERVE_FLAGS)
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
    if args.workers > 1:
        if settings.database_url.startswith("sqlite"):
            raise SystemExit(
                "session-memory: --workers needs PostgreSQL; one process owns a SQLite "
                "database (run one process per SQLite file)"
            )
        # Worker processes build their own app from the environment.
        for name in SERVE_FLAGS:
            if getattr(args, name, None) is not None:
                os.environ[f"SESSION_MEMORY_{name.upper()}"] = str(getattr(settings, name))
    return serve(settings, workers=args.workers)


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings(args, ["database_url"])

    async def nothing(store: SessionStore) -> None:
        """Opening a store applies every pending migration; that is all."""

    _with_store(settings, nothing)
    print(f"session-memory: schema is current in {redact_url(settings.database_url)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import httpx2

    from .transfer import export_from_server, export_lines

    settings = _settings(args, ["database_url"])

    def run(out: BinaryIO) -> None:
        async def work(store: SessionStore) -> None:
            async for line in export_lines(store):
                out.write(line)

        _with_store(settings, work)

    def write(out: BinaryIO) -> None:
        if args.base_url:
            key = args.api_key or os.environ.get("SESSION_MEMORY_API_KEY")
            try:
                out.writelines(export_from_server(args.base_url, key))
            except httpx2.HTTPError as exc:
                raise SystemExit(
                    f"session-memory: export from {args.base_url} failed: {exc}"
                ) from None
        else:
            run(out)

    if args.output:
        with open(args.output, "wb") as out:
            write(out)
    else:
        write(sys.stdout.buffer)
        sys.stdout.flush()
    return 0


def _import(args: argparse.Namespace) -> int:
    from .transfer import import_lines

    settings = _settings(args, ["database_url"])

    def run(source: BinaryIO) -> tuple[int, int]:
        return _with_store(
            settings, lambda store: import_lines(store, source, default_tenant=args.tenant)
        )

    try:
        if args.input:
            with open(args.input, "rb") as source:
                added, skipped = run(source)
        else:
            added, skipped = run(sys.stdin.buffer)
    except ValueError as exc:
        raise SystemExit(f"session-memory: import stopped: {exc}") from None
    print(f"session-memory: imported {added} items ({skipped} already present)", file=sys.stderr)
    return 0


def _sessions(args: argparse.Namespace) -> int:
    import httpx2
    from session_memory_client.protocol import session_path

    base = args.base_url.rstrip("/")
    key = args.api_key or os.environ.get("SESSION_MEMORY_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if args.action == "list":
        method, url, params = "GET", base + "/v1/sessions", {"limit": args.limit}
    elif args.action == "show":
        method, url, params = "GET", base + session_path(args.session_id), {}
    else:
        method, url, params = "DELETE", base + session_path(args.session_id), {}
    try:
        response = httpx2.request(method, url, params=params, headers=headers, timeout=30)
    except httpx2.TransportError as exc:
        raise SystemExit(f"session-memory: cannot reach {base}: {exc}") from None
    if response.status_code >= 400:
        detail = response.json().get("detail", response.text) if response.content else ""
        raise SystemExit(f"session-memory: {response.status_code}: {detail}")
    if args.action == "show" and args.items:
        items = httpx2.get(url + "/items", headers=headers, timeout=60)
        items.raise_for_status()
        record = {**response.json(), "items": items.json()["items"]}
        sys.stdout.write(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    elif response.content:
        sys.stdout.write(json.dumps(response.json(), indent=2, ensure_ascii=False) + "\n")
    else:
        print(f"session-memory: deleted {args.session_id!r}", file=sys.stderr)
    return 0


def _config(args: argparse.Namespace) -> int:
    settings = _settings(args, [])
    effective = settings.model_dump(mode="json")
    # SecretStr already dumps as asterisks; a password inside the URL needs masking too.
    effective["database_url"] = redact_url(settings.database_url)
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
    show = actions.add_parser("show", help="one session's record")
    show.add_argument("session_id")
    show.add_argument("--items", action="store_true", help="include its items")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Any = args.handler
    return int(handler(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
