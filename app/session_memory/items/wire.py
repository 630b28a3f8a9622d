"""The JSON bodies of the item routes, built from stored item text without re-encoding.

The items service writes these; ``api.schemas`` documents them.
"""

from __future__ import annotations

from ..storage import AppendResult, ItemPage

__all__ = ["append_body", "page_body", "page_tail", "pop_body"]


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


def append_body(result: AppendResult) -> bytes:
    return b'{"count":%d,"first_seq":%b,"last_seq":%b}' % (
        result.count,
        _int(result.first_seq),
        _int(result.last_seq),
    )


def pop_body(item: str | None) -> bytes:
    return b'{"item":null}' if item is None else b'{"item":%b}' % item.encode()
