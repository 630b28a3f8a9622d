"""``get_items``: a session's latest items, read incrementally through a ``ReadCache``.

Every read sends a ``limit`` (the caller's, or ``PAGE_ITEMS`` per page for "all"), so
it takes the service's fast path, and pages back (``before``) while the service says
there is more. With a cache, it also sends the read token of what it holds (``known``);
the service answers, from one snapshot, that nothing changed, or with only the items
appended since, or with a full page when anything else happened (a pop, a replace, a
clear, an expiry, the session made again). A read is never stale: the check is the
service's, within the read.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple
from urllib.parse import quote

from ._cache import CacheEntry, ReadCache, keep
from ._transport import Reply, Transport

__all__ = ["PAGE_ITEMS", "LatestReads"]

# Items per request when every item is asked for: large, since a page is also bounded
# by the service's byte bound (max_read_page_bytes), and one round trip serves most.
PAGE_ITEMS = 10_000
# A read stitched from several pages starts over when a write lands between them.
_ATTEMPTS = 3
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]*")


class _Moved(Exception):
    """The session changed between the pages of one read."""


class _Pages(NamedTuple):
    items: list[Any]
    complete: bool  # the items start at the session's first
    nbytes: int  # the bytes of the pages read
    consistent: bool  # every page came from one revision of the session


def _entry(token: str, items: list[Any], nbytes: int, complete: bool) -> CacheEntry:
    # Each item's share of the bytes read; a page's envelope is small beside its items.
    share = max(1, nbytes // max(1, len(items)))
    return CacheEntry(token, [keep(item) for item in items], [share] * len(items), complete)


class LatestReads:
    """The latest items of one session (``path``), kept in ``cache`` (None: off)."""

    __slots__ = ("_cache", "_key", "_path", "_transport")

    def __init__(self, transport: Transport, path: str, cache: ReadCache | None) -> None:
        self._transport = transport
        self._path = path + "/items"
        self._cache = cache
        self._key = transport.base_url + path

    async def items(self, limit: int | None) -> list[Any]:
        """The latest ``limit`` items (all: None), oldest first, fresh objects."""
        cache = self._cache
        entry = None if cache is None else cache.get(self._key)
        base = entry if entry is not None and entry.covers(limit) else None
        for attempt in range(_ATTEMPTS):
            # The last attempt takes the pages as they come, as a read of pages does.
            anyway = attempt == _ATTEMPTS - 1
            try:
                if cache is None or limit == 0:
                    return (await self._full(limit, None, anyway)).items
                got = await self._since(limit, base, anyway)
            except _Moved:
                base = None
                continue
            if isinstance(got, list):  # nothing to keep: the decoded items are the caller's
                cache.put(self._key, None)
                return got
            cache.put(self._key, got)
            return got.latest(limit)
        raise AssertionError("unreachable: the last attempt does not raise _Moved")

    async def _get(
        self, limit: int, *, known: str | None = None, before: int | None = None
    ) -> Reply:
        # Built by hand (urlencode costs more than the rest of a cached read); a read
        # token is URL-safe base64, quoted all the same should a service send another.
        query = f"?limit={limit}"
        if before is not None:
            query += f"&before={before}"
        if known is not None:
            query += "&known=" + (known if _URL_SAFE.fullmatch(known) else quote(known, safe=""))
        return await self._transport.request("GET", self._transport.target(self._path + query))

    async def _since(
        self, limit: int | None, base: CacheEntry | None, anyway: bool
    ) -> CacheEntry | list[Any]:
        """What changed since ``base`` (nothing known: None), as the next entry; or the
        items alone when they are not to be kept (no read token: a service without
        incremental reads; or pages of several revisions, taken ``anyway``)."""
        reply = await self._get(
            PAGE_ITEMS if limit is None else limit, known="" if base is None else base.token
        )
        body = reply.json()
        token = body.get("read_token") or ""
        if base is not None and token:
            if body.get("unchanged"):
                return base
            if body.get("since") is not None:
                items = body["items"]
                if not body.get("has_more"):
                    return base.followed_by(_entry(token, items, len(reply.content), False))
                if limit is not None and len(items) >= limit:
                    return _entry(token, items, len(reply.content), False)
                # More was appended than one page holds, and all of it is needed.
                return await self._since(limit, None, anyway)
        pages = await self._full(limit, reply, anyway)
        if not token or not pages.consistent:
            return pages.items
        return _entry(token, pages.items, pages.nbytes, pages.complete)

    async def _full(self, limit: int | None, first: Reply | None, anyway: bool) -> _Pages:
        """The latest ``limit`` items (all: None) from a first page (read here when
        None) and the pages before it, while the service says there is more.

        The pages must be of one revision (one ETag), else ``_Moved``; with ``anyway``
        they are taken as they come.
        """
        page_size = PAGE_ITEMS if limit is None else limit
        reply = first or await self._get(page_size)
        body = reply.json()
        items: list[Any] = body["items"]
        nbytes = len(reply.content)
        mixed = False
        more = bool(body.get("has_more"))
        while more and (limit is None or len(items) < limit):
            wanted = page_size if limit is None else limit - len(items)
            older = await self._get(wanted, before=body["first_seq"])
            if older.etag != reply.etag:
                if not anyway:
                    raise _Moved
                mixed = True
            body = older.json()
            items[:0] = body["items"]
            nbytes += len(older.content)
            more = bool(body.get("has_more"))
        return _Pages(items, not more, nbytes, not mixed)
