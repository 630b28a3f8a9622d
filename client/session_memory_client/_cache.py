"""The items a client has read, kept per session so the next read fetches only what changed.

A ``ReadCache`` holds, for each session read through it, the latest items the client
has seen, the read token the service gave with them, and whether they are the whole
history. It is bounded by the JSON bytes of the items it holds (``max_bytes``): past
the bound, the sessions read least recently go first, and a session larger than the
bound alone keeps only its latest items.

Items are kept so that every read hands out fresh objects, and a caller mutating what
it got never changes what is kept: an item whose values are all strings, numbers,
booleans or null is kept as its dict and handed out as a copy of it (the values are
immutable, so a shallow copy is a whole one); any other item is kept marshalled and
handed out unmarshalled (marshal copies JSON's types exactly, in C).
"""

from __future__ import annotations

import marshal
import threading
from collections import OrderedDict
from typing import Any

__all__ = ["DEFAULT_CACHE_BYTES", "CacheEntry", "ReadCache", "fresh", "keep"]

# Enough for a few long conversations (a 1,000-item history of 1 KB items is 1 MB).
DEFAULT_CACHE_BYTES = 8 * 2**20

_ATOMS = (str, int, float, bool, type(None))


def keep(item: Any) -> Any:
    """What the cache keeps of a decoded item (never handed out as is)."""
    if type(item) is dict and all(type(value) in _ATOMS for value in item.values()):
        return item
    return marshal.dumps(item)


def fresh(kept: Any) -> Any:
    """A new copy of a kept item: the caller's to change."""
    return kept.copy() if type(kept) is dict else marshal.loads(kept)


# Guards the one step that changes a shared buffer: appending to its end.
_GROWING = threading.Lock()


class CacheEntry:
    """One session's latest items as last read; its items and their sizes are the first
    ``count`` of two lists.

    An entry never changes once made, so a read in progress keeps a consistent view
    while another read replaces it. What was appended since extends the lists in
    place when this entry ends where they do (the usual case: each read's entry
    follows the last), so the newer entry costs what was added, not the history; an
    older entry still sees only its own ``count``. Otherwise the new entry copies.
    """

    __slots__ = ("_items", "_sizes", "complete", "count", "flat", "nbytes", "token")

    def __init__(
        self,
        token: str,
        items: list[Any],
        sizes: list[int],
        complete: bool,
        *,
        count: int | None = None,
        nbytes: int | None = None,
        flat: bool | None = None,
    ) -> None:
        self.token = token  # the service's read token for this state
        self._items = items  # kept items (``keep``), oldest first
        self._sizes = sizes  # each item's share of the JSON bytes read
        self.complete = complete  # the items start at the session's first item
        self.count = len(items) if count is None else count
        self.nbytes = sum(sizes[: self.count]) if nbytes is None else nbytes
        # Every item is kept as a dict: they are handed out in one C loop.
        self.flat = all(type(item) is dict for item in items) if flat is None else flat

    def followed_by(self, added: CacheEntry) -> CacheEntry:
        """This entry with ``added`` (what was appended since) after it, at its token."""
        count = self.count
        with _GROWING:
            if len(self._items) == count:
                items, sizes = self._items, self._sizes
                items += added._items[: added.count]
                sizes += added._sizes[: added.count]
            else:
                items = self._items[:count] + added._items[: added.count]
                sizes = self._sizes[:count] + added._sizes[: added.count]
        return CacheEntry(
            added.token,
            items,
            sizes,
            self.complete,
            count=count + added.count,
            nbytes=self.nbytes + added.nbytes,
            flat=self.flat and added.flat,
        )

    def covers(self, limit: int | None) -> bool:
        """Whether the latest ``limit`` items (all: None) can be served from this entry
        plus whatever was appended since."""
        return self.complete or (limit is not None and self.count >= limit)

    def latest(self, limit: int | None) -> list[Any]:
        """Fresh copies of the latest ``limit`` items (all: None)."""
        count = self.count
        start = 0 if limit is None or limit >= count else count - limit
        items = self._items[start:count]
        if self.flat:
            return list(map(dict.copy, items))  # the common case, in one C loop
        return [fresh(item) for item in items]

    def trimmed(self, max_bytes: int) -> CacheEntry | None:
        """This entry within ``max_bytes``: when over it, its oldest items dropped down
        to three quarters of it (so a long history is not trimmed again on every read);
        None when not even the newest item fits."""
        if self.nbytes <= max_bytes:
            return self
        total, start, target = self.nbytes, 0, max_bytes * 3 // 4
        while total > target and start < self.count:
            total -= self._sizes[start]
            start += 1
        if start == self.count:
            return None
        return CacheEntry(
            self.token,
            self._items[start : self.count],
            self._sizes[start : self.count],
            False,
            nbytes=total,
            flat=self.flat,
        )


class ReadCache:
    """Sessions' latest items within ``max_bytes`` of JSON, least recently read out first.

    Safe to share between sessions, event loops and threads.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("cache_bytes must be 0 or more")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """The JSON bytes of the items held now."""
        return self._bytes

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: CacheEntry | None) -> None:
        """Keep ``entry`` for ``key`` (None: forget it), then evict down to the bound."""
        if entry is not None:
            entry = entry.trimmed(self.max_bytes)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if entry is None:
                return
            self._entries[key] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
