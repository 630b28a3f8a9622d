"""The compaction snapshot ``RemoteSession`` hands the Agents SDK: the latest items, and
a replace of a suffix of them that also prunes the history's expired prefix.

Both rest on ``PUT .../items`` (atomic replace) under ``If-Match``: nothing is
replaced, and nothing pruned, unless the session is still exactly as the snapshot saw
it, so every read the replace is built from belongs to that one revision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._exceptions import ProblemError
from ._history import HistoryMethods
from ._types import ItemPage
from ._writes import _settle, _Snapshot
from .protocol import ProblemType

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["read_snapshot"]

logger = logging.getLogger("session_memory_client")

Prune = Callable[["TResponseInputItem"], bool]


class _Stale(Exception):
    """The session changed since the snapshot: the replace could not apply."""


async def read_snapshot(
    session: HistoryMethods, limit: int, prune_prefix: Prune | None
) -> _Snapshot:
    """The latest ``limit`` items and their ``replace_suffix`` (see ``RemoteSession``)."""
    page = await session.read_items(limit=limit)
    items = page.items

    async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
        session._check_open()
        if start >= len(items) or page.last_seq is None:
            return False
        try:
            from_seq = await _seq_of(session, len(items) - start, page)
            retained = None
            if prune_prefix is not None:
                retained = await _retained_prefix(session, page, limit, from_seq, prune_prefix)
            return await _replace(session, page.etag, from_seq, retained, output)
        except _Stale:
            return False

    return _Snapshot(items, not page.has_more, replace_suffix)


async def _replace(
    session: HistoryMethods,
    etag: str | None,
    from_seq: int,
    retained: list[TResponseInputItem] | None,
    output: list[TResponseInputItem],
) -> bool:
    """Replace from ``from_seq`` on by ``output``; with ``retained``, replace the whole
    history by ``retained + output`` instead (the expired prefix goes with it)."""
    if_match = etag or "*"
    try:
        if retained is not None:
            try:
                await _settle(session._replace(retained + output, from_seq=None, if_match=if_match))
                return True
            except ProblemError as exc:
                # The retained history is more than one request may carry (413, or 422
                # for too many items): replace the suffix alone and keep the prefix.
                if exc.status not in (413, 422):
                    raise
                logger.warning(
                    "session %r: expired items were kept, as the history after them is "
                    "too large to rewrite in one request (%s)",
                    session.session_id,
                    exc.detail,
                )
        await _settle(session._replace(output, from_seq=from_seq, if_match=if_match))
    except ProblemError as exc:
        if exc.type == ProblemType.PRECONDITION_FAILED:
            return False
        raise
    return True


async def _seq_of(session: HistoryMethods, newest: int, page: ItemPage) -> int:
    """The seq of the first of the ``newest`` latest items of ``page``; ``_Stale`` if
    the session has moved on since (the replace would not apply anyway)."""
    assert page.first_seq is not None
    assert page.last_seq is not None
    if page.last_seq - page.first_seq + 1 == len(page.items):
        # No gaps (nothing replaced in that range): the number is known.
        return page.last_seq - newest + 1
    # Gaps from an earlier replace: ask for that many latest items, at the same
    # revision, and take their first seq.
    tail = await session.read_items(limit=newest)
    if tail.etag != page.etag or len(tail.items) != newest or tail.first_seq is None:
        raise _Stale
    return tail.first_seq


async def _retained_prefix(
    session: HistoryMethods, snapshot: ItemPage, limit: int, before: int, prune: Prune
) -> list[TResponseInputItem] | None:
    """The items before seq ``before`` that follow the history's leading run of items
    ``prune`` accepts, as SQLiteSession's ``replace_suffix`` keeps them; None when that
    run is empty (nothing to prune, the usual case: one small read)."""
    after = 0
    expired = 0
    while True:
        # The oldest first, ``limit`` per page, as SQLiteSession walks them.
        page = await session.read_items(limit=max(limit, 1), after=after, before=before)
        if page.etag != snapshot.etag:
            raise _Stale
        for index, item in enumerate(page.items):
            if not prune(item):
                if expired == 0:
                    return None
                retained = page.items[index:]
                if page.has_more and page.last_seq is not None:
                    # The rest, up to the suffix, in one (streamed) read.
                    rest = await session.read_items(after=page.last_seq, before=before)
                    if rest.etag != snapshot.etag:
                        raise _Stale
                    retained += rest.items
                return retained
            expired += 1
        if not page.has_more or page.last_seq is None:
            return [] if expired else None
        after = page.last_seq
