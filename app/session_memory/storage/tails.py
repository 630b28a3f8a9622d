"""Incremental reads of a session's latest items, shared by the backends.

A reader that read the latest items before holds a ``ReadMark`` of what the session
was then. Its next read (``HistoryStore.read_since``) is answered from one snapshot
with one of three outcomes (``TailPage.mode``):

- ``UNCHANGED``: the session is at the mark's revision; no items are read;
- ``APPENDED``: only items were added since: the page holds those after the mark's
  seq (the latest ``limit`` of them);
- ``FULL``: anything else happened (a pop, a replace, a clear, an expiry, the id made
  again by a write or a fork): the page is a plain read of the latest items.

Why the check is sound: seqs only grow within a session (an append and a replace
number their items above every seq the session gave), so items at or below the
mark's seq can only have gone, never come. If the session is the same one (its
lineage: its row, never reused) and still holds as many items at or below that seq
as the mark counted, none has gone, and what is new is exactly what lies above.
Only the new items are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .paging import page_from_rows
from .records import MAX_SEQ, ItemPage

__all__ = [
    "ANY_LINEAGE",
    "APPENDED",
    "FULL",
    "UNCHANGED",
    "ReadMark",
    "TailPage",
    "tail_page",
]

UNCHANGED, APPENDED, FULL = 2, 1, 0

# A mark's lineage that matches any session: a revision alone (If-None-Match).
ANY_LINEAGE = -1


@dataclass(frozen=True, slots=True)
class ReadMark:
    """What a session was at a reader's last read of its latest items.

    ``lineage`` is the session's own (0: there was none), ``seq`` the seq of its newest
    item (0: none), ``count`` how many items it held (all at or below ``seq``), and
    ``revision`` its revision.
    """

    lineage: int
    seq: int
    count: int
    revision: int

    @classmethod
    def revision_only(cls, revision: int) -> ReadMark:
        """A mark that can only come out unchanged or full (a conditional request's ETag)."""
        return cls(ANY_LINEAGE, MAX_SEQ, -1, revision)


@dataclass(frozen=True, slots=True)
class TailPage:
    """The answer to ``read_since``: the page, how it relates to the mark (``mode``, and
    ``since``: the mark's seq, which the page's items follow; None for a full page), and
    the mark of this read, for the next."""

    page: ItemPage
    mode: int
    since: int | None
    mark: ReadMark


def tail_page(
    header: tuple[int, int, int, int] | None,
    rows: list[Any],
    limit: int | None,
    known: ReadMark | None,
    max_bytes: int | None,
) -> TailPage:
    """A ``TailPage`` from the session's ``header`` (lineage, revision, item count, mode;
    None: no live session) and its item rows as (seq, body), newest first.

    The rows were fetched with one more than ``limit`` and may stop past ``max_bytes``
    (see ``paging.page_from_rows``), which cuts them here.
    """
    if header is None:
        empty = ItemPage(items=[], first_seq=None, last_seq=None, has_more=False)
        if known is not None and known.revision == 0:
            # It did not exist then either (revision 0: no session).
            return TailPage(empty, UNCHANGED, known.seq, known)
        return TailPage(empty, FULL, None, ReadMark(0, 0, 0, 0))
    lineage, revision, count, mode = header
    if rows:
        rows = [(revision, seq, body) for seq, body in rows]
        page = page_from_rows(rows, limit, False, max_bytes)
    else:
        page = ItemPage(items=[], first_seq=None, last_seq=None, has_more=False, revision=revision)
    if mode == UNCHANGED and known is not None:
        return TailPage(page, mode, known.seq, known)
    since = known.seq if mode == APPENDED and known is not None else None
    # The newest item read is the session's newest (the rows come newest first).
    newest = page.last_seq if page.last_seq is not None else since or 0
    return TailPage(page, mode, since, ReadMark(lineage, newest, count, revision))
