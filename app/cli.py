"""The ``session-memory`` command: ``serve``, ``migrate``, ``config`` and ``openapi``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from .config import Settings, redact_url

__all__ = ["main"]


def _settings(args: argparse.Namespace, names: Sequence[str]) -> Settings:
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in names if getattr(args, name, None) is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SystemExit(f"session-memory: invalid settings:\n{exc}") from None


LIMIT_FLAGS = ["max_body_bytes", "max_item_bytes", "max_items_per_request", "max_items_per_session"]
SERVE_FLAGS = ["host", "port", "database_url", "log_level", *LIMIT_FLAGS]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .main import create_asgi_app

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
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "lifespan": "on",
        # Keep-alive a little longer than common client pools so reused
        # connections are not closed under a request.
        "timeout_keep_alive": 30,
        "server_header": False,
        # The service logs its own JSON line per request (SESSION_MEMORY_ACCESS_LOG).
        "access_log": False,
    }
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
        uvicorn.run("app.main:create_asgi_app", factory=True, workers=args.workers, **options)
        return 0
    config = uvicorn.Config(create_asgi_app(settings), **options)
    # uvicorn stops accepting on SIGTERM/SIGINT, finishes in-flight requests,
    # then runs the lifespan shutdown, which flushes the writer and closes the store.
    # Afterwards it re-raises the signal; for SIGTERM that lands here, so a clean
    # drain exits 0 instead of looking like a crash to supervisors.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.Server(config).run()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    import asyncio

    from .storage import store_from_url

    settings = _settings(args, ["database_url"])

    async def run() -> None:
        # Opening a store applies every pending migration.
        store = store_from_url(settings.database_url, settings)
        await store.open()
        await store.close()

    asyncio.run(run())
    print(f"session-memory: schema is current in {redact_url(settings.database_url)}")
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
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (PostgreSQL only; default 1)",
    )
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser(
        "migrate", help="create or upgrade the database schema, then exit"
    )
    migrate.add_argument("--database-url", dest="database_url", help="storage URL")
    migrate.set_defaults(handler=_migrate)

    config = commands.add_parser(
        "config", help="print the effective settings (from the environment), secrets masked"
    )
    config.set_defaults(handler=_config)

    openapi = commands.add_parser("openapi", help="print the OpenAPI spec as JSON")
    openapi.set_defaults(handler=_openapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Any = args.handler
    return int(handler(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
