"""``session-memory sessions``: list, show and delete sessions on a running server.

Every action talks to the server through the client package (``SessionMemoryClient``,
aiohttp), so the command works from a plain install. The connection flags
(``--base-url``, ``--api-key``) are accepted before the action and after it.
``fork`` and ``follow`` are in ``cli_history``, ``lease`` in ``cli_leases``; they use
the helpers here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from typing import TypeAlias

    from session_memory_client import RunLease, SessionMemoryClient

    Actions: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

T = TypeVar("T")

__all__ = [
    "add_action",
    "add_sessions",
    "check_session_ids",
    "lease_record",
    "lease_text",
    "run_with_client",
    "show_client_warnings",
]

_DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# The CLI answers promptly: a few retries over seconds, not the agents' restart budget.
_RETRIES = 2
_RETRY_FOR = 5.0
_TIMEOUT = 30.0


def _add_connection_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--base-url`` and ``--api-key``, on ``sessions`` (``top``) and on each action.

    An action's copies have no default (``SUPPRESS``): not given there, they leave the
    value given before the action (or its default) alone; given there, they win.
    """
    base_default = (
        os.environ.get("SESSION_MEMORY_BASE_URL", _DEFAULT_BASE_URL) if top else argparse.SUPPRESS
    )
    parser.add_argument(
        "--base-url",
        default=base_default,
        help="the server (default $SESSION_MEMORY_BASE_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--api-key",
        default=None if top else argparse.SUPPRESS,
        help="API key (default $SESSION_MEMORY_API_KEY)",
    )


def add_action(
    actions: Actions, name: str, help: str, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """One ``sessions`` action, taking the connection flags after its name too."""
    action = actions.add_parser(name, help=help)
    _add_connection_flags(action, top=False)
    action.set_defaults(handler=handler)
    return action


def check_session_ids(*session_ids: str) -> None:
    """Refuse a malformed id before any request: "a/items/last" is no session id."""
    from session_memory_client.protocol import session_id_error

    for session_id in session_ids:
        if (error := session_id_error(session_id)) is not None:
            raise SystemExit(f"session-memory: {error}")


def show_client_warnings() -> None:
    """The client's warnings (a server that does not answer, retried) as lines on stderr."""
    client_logger = logging.getLogger("session_memory_client")
    if not client_logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("session-memory: %(message)s"))
        client_logger.addHandler(handler)
        client_logger.setLevel(logging.WARNING)
        client_logger.propagate = False


def run_with_client(
    args: argparse.Namespace,
    work: Callable[[SessionMemoryClient], Awaitable[T]],
    *,
    timeout: float = _TIMEOUT,
) -> T:
    """Run ``work`` with a client on ``--base-url``; a service error is one line and exit 1."""
    import asyncio

    from session_memory_client import SessionMemoryClient, SessionMemoryError

    async def run() -> T:
        key = args.api_key or os.environ.get("SESSION_MEMORY_API_KEY")
        async with SessionMemoryClient(
            base_url=args.base_url,
            api_key=key,
            timeout=timeout,
            retries=_RETRIES,
            retry_for=_RETRY_FOR,
        ) as client:
            return await work(client)

    try:
        return asyncio.run(run())
    except SessionMemoryError as exc:
        raise SystemExit(f"session-memory: {exc}") from None


async def _listing(client: SessionMemoryClient, args: argparse.Namespace) -> dict[str, Any]:
    page = await client.list_sessions(limit=args.limit, cursor=args.cursor)
    sessions, cursor = list(page.sessions), page.next_cursor
    while args.all and cursor is not None:
        page = await client.list_sessions(limit=args.limit, cursor=cursor)
        sessions += page.sessions
        cursor = page.next_cursor
    return {"sessions": sessions, "next_cursor": cursor}


def _sessions(args: argparse.Namespace) -> int:
    """``list``, ``show`` and ``delete``."""
    if args.action != "list":
        check_session_ids(args.session_id)

    async def work(client: SessionMemoryClient) -> Any:
        if args.action == "list":
            return await _listing(client, args)
        session = client.session(args.session_id)
        if args.action == "delete":
            await session.clear_session()
            return None
        record: dict[str, Any] = dict(await session.get_record())
        lease = await _held_lease(client, args.session_id)
        if lease is not _UNKNOWN:
            record["lease"] = lease
        if args.items:
            record["items"] = await session.get_items()
        return record

    result = run_with_client(args, work)
    if result is None:
        print(f"session-memory: deleted {args.session_id!r}", file=sys.stderr)
    elif args.json:
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    elif args.action == "list":
        sys.stdout.write(_session_table(result["sessions"]))
        if result["next_cursor"]:
            print(
                f"(more: the next page with --cursor {result['next_cursor']}, "
                "or every session with --all)",
                file=sys.stderr,
            )
    else:
        sys.stdout.write(_record_text(result))
    return 0


# A server from before GET .../lease cannot say whether a lease is held.
_UNKNOWN = object()


async def _held_lease(client: SessionMemoryClient, session_id: str) -> object:
    """The lease held as the API answers it, None when none is, or ``_UNKNOWN``."""
    from session_memory_client import ProblemError

    try:
        lease = await client.get_lease(session_id)
    except ProblemError as exc:
        if exc.status == 405:
            return _UNKNOWN
        raise
    return None if lease is None else lease_record(lease)


def lease_record(lease: RunLease) -> dict[str, Any]:
    """A lease as the API answers it: ``token``, ``expires_at``, ``ttl``."""
    return {"token": lease.token, "expires_at": lease.expires_at, "ttl": lease.ttl}


def lease_text(lease: dict[str, Any]) -> str:
    """A lease held, for people: its token, expiry and TTL."""
    return (
        f"token:    {lease['token']}\n"
        f"expires:  {_when(lease['expires_at'])}\n"
        f"ttl:      {_ttl(lease['ttl'])}\n"
    )


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
    if "ttl" in record:  # an older server's record has neither
        lines.append(f"ttl:      {_ttl(record['ttl'])}")
    if "last_seq" in record:
        lines.append(f"last seq: {record['last_seq']}")
    if lease := record.get("lease"):
        lines.append(
            f"lease:    token {lease['token']}, until {_when(lease['expires_at'])} "
            f"(ttl {_ttl(lease['ttl'])})"
        )
    # One line of JSON: what a program put there, shown exactly, never wrapped.
    lines.append(f"metadata: {json.dumps(record.get('metadata', {}), ensure_ascii=False)}")
    for n, item in enumerate(record.get("items", []), start=1):
        lines.append(f"{n:>4}  {json.dumps(item, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def _ttl(seconds: float | None) -> str:
    if seconds is None:
        return "the server's default"
    shown = f"{seconds:g}" if seconds != int(seconds) else str(int(seconds))
    return f"{shown} s" + (" (never expires)" if seconds == 0 else "")


def _when(timestamp: str) -> str:
    # ISO 8601 from the service, shown to the second in UTC.
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def add_sessions(commands: Commands) -> Actions:
    """The ``sessions`` command with ``list``, ``show`` and ``delete``; returns its actions."""
    sessions = commands.add_parser(
        "sessions",
        help="look at sessions on a running server",
        description="--base-url and --api-key go before or after the action.",
    )
    _add_connection_flags(sessions, top=True)
    actions = sessions.add_subparsers(dest="action", required=True)
    listing = add_action(actions, "list", "sessions, most recently updated first", _sessions)
    listing.add_argument("--limit", type=int, default=50, help="sessions per page (default 50)")
    listing.add_argument("--cursor", help="start at this page (a next_cursor from before)")
    listing.add_argument("--all", action="store_true", help="every session, page after page")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    show = add_action(actions, "show", "one session's record and metadata", _sessions)
    show.add_argument("session_id")
    show.add_argument("--items", action="store_true", help="include its items")
    show.add_argument("--json", action="store_true", help="JSON instead of text")
    delete = add_action(actions, "delete", "clear a session", _sessions)
    delete.add_argument("session_id")
    return actions
