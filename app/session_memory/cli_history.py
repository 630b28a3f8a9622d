"""``session-memory sessions fork`` and ``sessions follow``: history operations for operators.

Both go through the client package (``RemoteSession.fork`` and ``follow``), like the
other ``sessions`` actions, so they work from a plain install.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from .cli_sessions import add_action, check_session_ids, run_with_client

if TYPE_CHECKING:
    from session_memory_client import ForkResult, SessionMemoryClient

__all__ = ["add_history_actions"]

# A fork copies a whole session in one transaction: a large one takes a while.
_FORK_TIMEOUT = 300.0


def _fork(args: argparse.Namespace) -> int:
    check_session_ids(args.session_id, args.new_id)

    async def work(client: SessionMemoryClient) -> ForkResult:
        session = client.session(args.session_id)
        return await session.fork(args.new_id, through_seq=args.through_seq)

    made = run_with_client(args, work, timeout=_FORK_TIMEOUT)
    answer = {
        "session_id": made.session_id,
        "count": made.count,
        "first_seq": made.first_seq,
        "last_seq": made.last_seq,
    }
    sys.stdout.write(json.dumps(answer, indent=2, ensure_ascii=False) + "\n")
    return 0


def _follow(args: argparse.Namespace) -> int:
    """Print one JSON line per event until interrupted; reconnect where it left off.

    A lease event says which run holds the session (as ``sessions lease`` shows it)."""
    check_session_ids(args.session_id)

    async def work(client: SessionMemoryClient) -> None:
        async for event in client.session(args.session_id).follow(after=args.after):
            record: dict[str, Any]
            if event.kind == "append":
                record = {"event": "append", "seq": event.seq, "item": event.item}
            elif event.kind == "lease":
                record = {
                    "event": "lease",
                    "token": event.token,
                    "expires_at": event.expires_at,
                    "ttl": event.ttl,
                }
            elif event.kind == "lease-end":
                record = {"event": "lease-end", "token": event.token}
            else:
                record = {"event": event.kind, "revision": event.revision}
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    run_with_client(args, work)
    return 0


def add_history_actions(actions: Any) -> None:
    """Add ``fork`` and ``follow`` to the ``sessions`` command's actions."""
    fork = add_action(actions, "fork", "copy a session (up to a seq) into a new one", _fork)
    fork.add_argument("session_id")
    fork.add_argument("new_id", help="the new session's id; it must not exist")
    fork.add_argument("--through-seq", type=int, help="copy items up to this seq (default all)")
    follow = add_action(actions, "follow", "print a session's changes live, as JSON lines", _follow)
    follow.add_argument("session_id")
    follow.add_argument(
        "--after", type=int, help="start after this seq (0: from the start; default: now)"
    )
