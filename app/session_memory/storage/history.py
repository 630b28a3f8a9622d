"""The history operations a backend adds to ``SessionStore``: replace, fork, metadata.

Kept apart from ``base`` so the item contract stays small; both backends implement
``HistoryStore`` (``sqlite_history`` and ``postgres_history`` hold their halves).
Metadata crosses this boundary as JSON text of an object, already validated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from .base import (
    AppendResult,
    Idempotency,
    SessionInfo,
    SessionPage,
    SessionStore,
    StoreError,
    item_bytes,
)

__all__ = [
    "HistoryStore",
    "SessionExistsError",
    "SessionMissingError",
    "labels_of",
    "merge_patch",
    "seq_page",
]


class SessionExistsError(StoreError):
    """The session a fork would create already exists; nothing was done."""


class SessionMissingError(StoreError):
    """The session the operation needs does not exist; nothing was done."""


def merge_patch(target: object, patch: object) -> object:
    """RFC 7396 JSON Merge Patch: ``patch`` applied to ``target`` (neither is changed)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def labels_of(metadata: str | None) -> list[tuple[str, str]]:
    """The (key, value) pairs a metadata object is filtered by: its top-level scalars.

    A string is its own text; a number or boolean is its JSON text (``3``, ``true``);
    null, arrays and objects are kept but not indexed.
    """
    if metadata is None:
        return []
    labels: list[tuple[str, str]] = []
    for key, value in json.loads(metadata).items():
        if isinstance(value, str):
            labels.append((key, value))
        elif isinstance(value, (bool, int, float)):
            labels.append((key, json.dumps(value)))
    return labels


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


@runtime_checkable
class HistoryStore(SessionStore, Protocol):
    """A ``SessionStore`` that can also replace a history's tail, fork it, and label it."""

    async def replace(
        self,
        tenant: str,
        session_id: str,
        items: Sequence[str],
        *,
        from_seq: int | None = None,
        max_items: int | None = None,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
        ttl: float | None = None,
    ) -> AppendResult:
        """Replace every item with seq >= ``from_seq`` (all when None) by ``items``, atomically.

        Items before ``from_seq`` are untouched. The new items get sequence numbers
        above the highest the session ever gave, so numbers never go backwards or
        repeat. An unknown session is created (an empty ``items`` then does nothing
        and returns revision 0). ``max_items``, ``idempotency``, ``expected_revision``
        and ``ttl`` work as for ``append``. The result carries the new revision.
        """
        ...

    async def fork(
        self,
        tenant: str,
        session_id: str,
        target_id: str,
        *,
        through_seq: int | None = None,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
    ) -> AppendResult:
        """Create ``target_id`` holding a copy of the items up to ``through_seq`` (all when None).

        The copies keep their order and are numbered from 1; the metadata and the
        session's own time-to-live are copied too. Atomic: the target appears whole
        or not at all. Raises ``SessionMissingError`` when the source does not exist
        and ``SessionExistsError`` when the target does. ``expected_revision`` is the
        source's. The result describes the new session's items and revision.
        """
        ...

    async def patch_metadata(
        self,
        tenant: str,
        session_id: str,
        patch: str,
        *,
        max_bytes: int,
        expected_revision: int | None = None,
    ) -> SessionInfo:
        """Apply a JSON Merge Patch (``patch``, an object's text) to the session's metadata.

        Raises ``SessionMissingError`` for an unknown session and ``MetadataTooLargeError``
        when the result would pass ``max_bytes`` (nothing changes). A patch is a write:
        the revision moves on. Returns the updated record.
        """
        ...

    async def read_seqs(
        self,
        tenant: str,
        session_id: str,
        *,
        after: int,
        limit: int,
        max_bytes: int | None = None,
    ) -> tuple[list[tuple[int, str]], bool]:
        """The first items above ``after``, oldest first, each with its seq, and whether
        more follow: at most ``limit`` of them and, past ``max_bytes`` of bodies, fewer
        (the first comes whatever its size), as ``SessionStore.read`` bounds a page."""
        ...

    async def last_seq(self, tenant: str, session_id: str) -> int:
        """The highest sequence number the live session has given (0: no session)."""
        ...

    async def find_sessions(
        self,
        tenant: str,
        *,
        limit: int,
        cursor: str | None = None,
        metadata: Mapping[str, str] | None = None,
        prefix: str | None = None,
    ) -> SessionPage:
        """``list_sessions`` narrowed to sessions whose metadata holds every pair in
        ``metadata`` (see ``labels_of``) and whose id starts with ``prefix``."""
        ...


class MetadataTooLargeError(StoreError):
    """Merged metadata would pass its size limit; nothing changed."""

    def __init__(self, *, size: int, limit: int) -> None:
        super().__init__(f"metadata would be {size} bytes; the limit is {limit}")
        self.size = size
        self.limit = limit


__all__ += ["MetadataTooLargeError"]
