"""``session-memory sessions lease``: which run holds a session's lease, and freeing it.

A run that crashed holding a lease with a long TTL blocks the session's other runs
until the TTL ends; an operator sees the lease here and frees it with ``--release``.
Like the other ``sessions`` actions it goes through the client package.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from .cli_sessions import add_action, check_session_ids, lease_record, lease_text, run_with_client

if TYPE_CHECKING:
    from session_memory_client import RunLease, SessionMemoryClient

__all__ = ["add_lease_action"]


def _lease(args: argparse.Namespace) -> int:
    check_session_ids(args.session_id)
    shown = json.dumps(args.session_id, ensure_ascii=False)

    async def work(client: SessionMemoryClient) -> tuple[RunLease | None, bool]:
        """The lease held (None: none), and whether ``--release`` freed it."""
        from session_memory_client import ProblemError
        from session_memory_client.protocol import ProblemType

        lease = await client.get_lease(args.session_id)
        if lease is None or not args.release:
            return lease, False
        try:
            await client.release_lease(args.session_id, lease.token)
        except ProblemError as exc:
            if exc.type != ProblemType.LEASE_LOST:
                raise
            return lease, False
        return lease, True

    lease, released = run_with_client(args, work)
    if args.json:
        record = None if lease is None else lease_record(lease)
        answer = {"released": record if released else None} if args.release else record
        sys.stdout.write(json.dumps(answer, indent=2) + "\n")
    elif lease is not None and not args.release:
        sys.stdout.write(lease_text(lease_record(lease)))
    if lease is None:
        print(f"session-memory: no run holds the lease of {shown}", file=sys.stderr)
    elif args.release and not released:
        # Between the read and the release it ended, or another run's lease followed it.
        print(
            f"session-memory: the lease of {shown} changed before it could be released "
            f"(token {lease.token} is no longer the one held); nothing was released. "
            "Look again and retry.",
            file=sys.stderr,
        )
        return 1
    elif released:
        print(
            f"session-memory: released the lease of {shown} (token {lease.token}); "
            "its run's writes are refused from now on",
            file=sys.stderr,
        )
    return 0


def add_lease_action(actions: Any) -> None:
    """Add ``lease`` to the ``sessions`` command's actions."""
    lease = add_action(
        actions, "lease", "which run holds a session's lease; --release frees it", _lease
    )
    lease.add_argument("session_id")
    lease.add_argument(
        "--release",
        action="store_true",
        help="free the lease held (a run that crashed holding it): its writes are refused after",
    )
    lease.add_argument("--json", action="store_true", help="JSON instead of text")
