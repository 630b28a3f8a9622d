"""A session's changes as server-sent events, resumable by sequence number.

A notification only wakes a stream: the items themselves are read from the store
after the stream's cursor, so a resumed stream (``Last-Event-ID`` or ``after``) has
no gap and no duplicate whatever notifications were lost or doubled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from ..storage.contract import HistoryStore
from .hub import Hub

__all__ = ["CATCH_UP_PAGE", "event_stream"]

# Items per store read while catching up.
CATCH_UP_PAGE = 500


def _event(kind: str, data: str, seq: int | None = None) -> bytes:
    # A multi-line item is sent as several data lines; the client joins them with
    # LF, which gives the item back (a JSON text has line breaks only as whitespace).
    lines = "".join(f"data: {line}\n" for line in data.replace("\r\n", "\n").split("\n"))
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\n{lines}\n".encode()


async def event_stream(
    store: HistoryStore,
    hub: Hub,
    tenant: str,
    session_id: str,
    *,
    after: int | None,
    heartbeat: float,
    max_bytes: int | None = None,
) -> AsyncIterator[bytes]:
    """The events of one session after ``after`` (None: from now on), until stopped.

    Subscribes before the first read, so a write between the two is not missed.
    """
    async with hub.subscribe(tenant, session_id) as queue:
        cursor = after if after is not None else await store.last_seq(tenant, session_id)
        yield b": following\n\n"
        while True:
            # Catch up from the store: every item above the cursor, in order, once.
            while True:
                # Pages bounded by bytes as well as count, as reads are
                # (max_read_page_bytes): one such page is held at a time.
                rows, has_more = await store.read_seqs(
                    tenant, session_id, after=cursor, limit=CATCH_UP_PAGE, max_bytes=max_bytes
                )
                for seq, body in rows:
                    yield _event("append", body, seq)
                    cursor = seq
                if not has_more:
                    break
            try:
                change = await asyncio.wait_for(queue.get(), heartbeat)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            changes = [change]
            while not queue.empty():
                changes.append(queue.get_nowait())
            if None in changes:
                return
            for each in filter(None, changes):
                if each.kind in ("pop", "replace", "clear"):
                    revision = each.revision
                    if not revision and each.kind != "clear":
                        info = await store.get_session(tenant, session_id)
                        revision = info.revision if info is not None else 0
                    yield _event(each.kind, json.dumps({"revision": revision}))
                if each.kind == "clear":
                    # A cleared session starts again from 1 when next written.
                    cursor = 0
