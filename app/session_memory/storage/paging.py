"""Paging shared by the backends: read shapes, pages cut by count and bytes, cursors."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from session_memory_client.protocol import session_id_error

from .errors import InvalidCursorError
from .records import MAX_SEQ, ItemPage

__all__ = [
    "item_bytes",
    "page_from_rows",
    "parse_session_cursor",
    "read_shape",
    "seq_page",
    "session_cursor",
]


def session_cursor(revision: int, session_id: str) -> str:
    """The opaque cursor after a listed session (sessions are listed by revision, id)."""
    text = json.dumps([revision, session_id], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def parse_session_cursor(cursor: str) -> tuple[int, str]:
    """(revision, session id) from ``session_cursor``; ``InvalidCursorError`` otherwise."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        revision, session_id = json.loads(text)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise InvalidCursorError("not a cursor a session listing gave out") from exc
    if (
        type(revision) is not int
        or not 0 <= revision <= MAX_SEQ
        or session_id_error(session_id) is not None
    ):
        # A crafted id (a lone surrogate, a NUL) would fail in the database instead.
        raise InvalidCursorError("not a cursor a session listing gave out")
    return revision, session_id


def read_shape(limit: int | None, after: int | None) -> tuple[bool, int | None]:
    """How a read runs: (forward?, rows to fetch). Shared by the backends.

    Forward (oldest first) from an ``after`` cursor or for an unbounded read;
    otherwise backward from the newest (or from ``before``). One row more than the
    limit is fetched to tell ``has_more``, kept within signed 64 bits.
    """
    forward = after is not None or limit is None
    return forward, None if limit is None else min(limit, MAX_SEQ - 1) + 1


def item_bytes(body: str) -> int:
    """An item's size in UTF-8 bytes (its length, when it is ASCII, without encoding it)."""
    return len(body) if body.isascii() else len(body.encode())


def page_from_rows(
    rows: list[Any], limit: int | None, forward: bool, max_bytes: int | None = None
) -> ItemPage:
    """An ``ItemPage`` from (revision, seq, body) rows fetched as ``read_shape`` said.

    The rows come from the session joined to its items, so a session with no
    matching items gives one row with a null seq, and an unknown session none.
    With ``max_bytes``, the page ends before the item that would take it past that
    many bytes (the first item is kept whatever its size), and ``has_more`` is true.
    """
    revision = rows[0][0] if rows else 0
    if rows and rows[0][1] is None:
        rows = []
    has_more = limit is not None and len(rows) > limit
    if has_more:
        rows = rows[:limit]
    if max_bytes is not None:
        total = 0
        for index, row in enumerate(rows):
            total += item_bytes(row[2])
            if total > max_bytes and index > 0:
                rows, has_more = rows[:index], True
                break
    if not forward:
        rows.reverse()
    if not rows:
        return ItemPage(items=[], first_seq=None, last_seq=None, has_more=False, revision=revision)
    return ItemPage(
        items=[row[2] for row in rows],
        first_seq=rows[0][1],
        last_seq=rows[-1][1],
        has_more=has_more,
        revision=revision,
    )


def seq_page(
    rows: list[tuple[int, str]], limit: int, max_bytes: int | None
) -> tuple[list[tuple[int, str]], bool]:
    """(seq, body) rows fetched past a page (up to ``limit`` + 1, cut by bytes) as a
    page and whether more follow: at most ``limit`` items, and past ``max_bytes`` of
    bodies only the first item (whatever its size) stays."""
    page: list[tuple[int, str]] = []
    total = 0
    for seq, body in rows[:limit]:
        total += item_bytes(body)
        if page and max_bytes is not None and total > max_bytes:
            break
        page.append((seq, body))
    return page, len(page) < len(rows)
