"""The JSON bodies of the API's answers, built from stored item text without re-encoding.

The services write these; ``api.schemas`` documents them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from ..storage import AppendResult, ItemPage, SessionInfo, SessionPage
from ..storage.tails import UNCHANGED, TailPage

__all__ = [
    "append_body",
    "fork_body",
    "page_body",
    "page_tail",
    "pop_body",
    "session_body",
    "session_list_body",
    "tail_body",
]


def _int(value: int | None) -> bytes:
    return b"null" if value is None else str(value).encode()


def page_tail(first_seq: int | None, last_seq: int | None, has_more: bool) -> bytes:
    """Closes the items array and adds the paging fields."""
    return b'],"first_seq":%b,"last_seq":%b,"has_more":%b}' % (
        _int(first_seq),
        _int(last_seq),
        b"true" if has_more else b"false",
    )


def page_body(page: ItemPage) -> bytes:
    return b'{"items":[%b%b' % (
        ",".join(page.items).encode(),
        page_tail(page.first_seq, page.last_seq, page.has_more),
    )


def tail_body(tail: TailPage, token: str) -> bytes:
    """A page as ``page_body`` writes it, with what an incremental read adds: ``since``
    (the seq its items follow; null for a full page), ``unchanged`` and ``read_token``."""
    page = tail.page
    return b'{"items":[%b],"first_seq":%b,"last_seq":%b,"has_more":%b,' % (
        ",".join(page.items).encode(),
        _int(page.first_seq),
        _int(page.last_seq),
        b"true" if page.has_more else b"false",
    ) + b'"since":%b,"unchanged":%b,"read_token":"%b"}' % (
        _int(tail.since),
        b"true" if tail.mode == UNCHANGED else b"false",
        token.encode(),
    )


def append_body(result: AppendResult) -> bytes:
    return b'{"count":%d,"first_seq":%b,"last_seq":%b}' % (
        result.count,
        _int(result.first_seq),
        _int(result.last_seq),
    )


def pop_body(item: str | None) -> bytes:
    return b'{"item":null}' if item is None else b'{"item":%b}' % item.encode()


def fork_body(session_id: str, result: AppendResult) -> bytes:
    return b'{"session_id":%b,%b' % (_text(session_id), append_body(result)[1:])


def _text(value: str) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _time(seconds: float | None) -> bytes:
    if seconds is None:
        return b"null"
    return (
        b'"%b"' % datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z").encode()
    )


def _seconds(value: float | None) -> bytes:
    # repr: the shortest text that reads back as the same float, as json.dumps writes it.
    return b"null" if value is None else repr(float(value)).encode()


def session_body(info: SessionInfo) -> bytes:
    """A session's record; its metadata is stored as compact JSON text, sent as it is.
    ``ttl`` and ``last_seq`` come last, after the members the record has always had."""
    return (
        b'{"id":%b,"item_count":%d,"created_at":%b,"updated_at":%b,"expires_at":%b,"metadata":%b,'
        b'"ttl":%b,"last_seq":%d}'
        % (
            _text(info.session_id),
            info.item_count,
            _time(info.created_at),
            _time(info.updated_at),
            _time(info.expires_at),
            (info.metadata or "{}").encode(),
            _seconds(info.ttl),
            info.last_seq,
        )
    )


def session_list_body(page: SessionPage) -> bytes:
    return b'{"sessions":[%b],"next_cursor":%b}' % (
        b",".join(session_body(info) for info in page.sessions),
        b"null" if page.next_cursor is None else _text(page.next_cursor),
    )
