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
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One session's latest items as last read: never changed once made, so a read in
    progress keeps a consistent view while another read replaces the entry."""

    token: str  # the service's read token for this state
    items: tuple[Any, ...]  # kept items (``keep``), oldest first
    sizes: tuple[int, ...]  # each item's share of the JSON bytes read
    complete: bool  # the items start at the session's first item
    nbytes: int = -1  # the sum of ``sizes`` (worked out when not given)
    flat: bool | None = None  # every item is kept as a dict (worked out when not given)

    def __post_init__(self) -> None:
        if self.nbytes < 0:
            object.__setattr__(self, "nbytes", sum(self.sizes))
        if self.flat is None:
            object.__setattr__(self, "flat", all(type(item) is dict for item in self.items))

    def then(self, added: CacheEntry) -> CacheEntry:
        """This entry with ``added`` (what was appended since) after it, at its token."""
        return CacheEntry(
            added.token,
            self.items + added.items,
            self.sizes + added.sizes,
            self.complete,
            self.nbytes + added.nbytes,
            self.flat and added.flat,
        )

    def covers(self, limit: int | None) -> bool:
        """Whether the latest ``limit`` items (all: None) can be served from this entry
        plus whatever was appended since."""
        return self.complete or (limit is not None and len(self.items) >= limit)

    def latest(self, limit: int | None) -> list[Any]:
        """Fresh copies of the latest ``limit`` items (all: None)."""
        items = self.items if limit is None or limit >= len(self.items) else self.items[-limit:]
        if self.flat:
            return list(map(dict.copy, items))  # the common case, in one C loop
        return [fresh(item) for item in items]

    def trimmed(self, max_bytes: int) -> CacheEntry | None:
        """This entry within ``max_bytes``: its oldest items dropped, or None when not
        even the newest fits."""
        total = self.nbytes
        start = 0
        while total > max_bytes and start < len(self.items):
            total -= self.sizes[start]
            start += 1
        if start == 0:
            return self
        if start == len(self.items):
            return None
        return CacheEntry(
            self.token, self.items[start:], self.sizes[start:], False, total, self.flat
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
