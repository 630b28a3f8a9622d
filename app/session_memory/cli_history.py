"""``session-memory sessions fork`` and ``sessions follow``: history operations for operators."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

__all__ = ["add_history_actions"]


def _client_args(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    key = args.api_key or os.environ.get("SESSION_MEMORY_API_KEY")
    return args.base_url.rstrip("/"), {"Authorization": f"Bearer {key}"} if key else {}


def _fail(response: Any) -> SystemExit:
    detail = response.json().get("detail", response.text) if response.content else ""
    return SystemExit(f"session-memory: {response.status_code}: {detail}")


def _fork(args: argparse.Namespace) -> int:
    import httpx2
    from session_memory_client.protocol import session_path

    base, headers = _client_args(args)
    body: dict[str, Any] = {"session_id": args.new_id}
    if args.through_seq is not None:
        body["through_seq"] = args.through_seq
    try:
        response = httpx2.post(
            base + session_path(args.session_id) + "/fork", json=body, headers=headers, timeout=300
        )
    except httpx2.TransportError as exc:
        raise SystemExit(f"session-memory: cannot reach {base}: {exc}") from None
    if response.status_code >= 400:
        raise _fail(response)
    sys.stdout.write(json.dumps(response.json(), indent=2, ensure_ascii=False) + "\n")
    return 0


def _follow(args: argparse.Namespace) -> int:
    """Print one JSON line per event until interrupted; reconnect where it left off."""
    import httpx2
    from session_memory_client.protocol import LAST_EVENT_ID, session_path

    base, headers = _client_args(args)
    url = base + session_path(args.session_id) + "/events"
    cursor: int | None = args.after
    while True:
        resume = {} if cursor is None else {LAST_EVENT_ID: str(cursor)}
        try:
            with httpx2.stream("GET", url, headers={**headers, **resume}, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _fail(response)
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line.startswith(":") or not (line or fields):
                        continue  # a heartbeat, or the blank line after one
                    if line:
                        name, _, value = line.partition(": ")
                        fields[name] = fields[name] + "\n" + value if name in fields else value
                        continue
                    if "id" in fields:
                        cursor = int(fields["id"])
                    event = fields.get("event", "message")
                    data = json.loads(fields.get("data", "null"))
                    record = (
                        {"event": event, "seq": cursor, "item": data}
                        if event == "append"
                        else {"event": event, **data}
                    )
                    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                    fields = {}
        except KeyboardInterrupt:
            return 0
        except httpx2.TransportError as exc:
            print(f"session-memory: stream lost ({exc}); reconnecting", file=sys.stderr)
            time.sleep(1)


def add_history_actions(actions: Any) -> None:
    """Add ``fork`` and ``follow`` to the ``sessions`` command's actions."""
    fork = actions.add_parser("fork", help="copy a session (up to a seq) into a new one")
    fork.add_argument("session_id")
    fork.add_argument("new_id", help="the new session's id; it must not exist")
    fork.add_argument("--through-seq", type=int, help="copy items up to this seq (default all)")
    fork.set_defaults(handler=_fork)
    follow = actions.add_parser("follow", help="print a session's changes live, as JSON lines")
    follow.add_argument("session_id")
    follow.add_argument(
        "--after", type=int, help="start after this seq (0: from the start; default: now)"
    )
    follow.set_defaults(handler=_follow)
