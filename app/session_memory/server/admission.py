"""Which connections a server process keeps when they are too many, and whom it trusts.

A process holds at most ``max_connections``. Past the cap, one connection gives
way to the newcomer, in this order:

1. one whose requests carried no valid API key and that is idle or closing;
2. one whose request carries no valid key (a health probe in progress excepted);
3. one that has not sent a whole request head yet, oldest first;
4. an idle one (between requests, or closing).

If none can, the newcomer gets 503. So a client without a key never keeps a
tenant out, a tenant's idle keep-alive connection goes only when nothing else
can, and a probe gets in as long as keyless or fresh connections hold a slot.
Connections without a valid key also hold at most ``unauthenticated_share`` of
the cap at any time: past it, the oldest of them (idle ones first) is closed.

In open mode (no keys) every request is trusted; only steps 3 and 4 apply.

Imports nothing of the server's protocol: a connection is anything with the
``Held`` methods.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from ..auth import ApiKeys
from .limits import EdgeLimits

__all__ = ["Admission", "Held", "is_probe"]

# Requests that are health probes: they need no key and are never cut off.
_PROBE_PATHS = frozenset((b"/healthz", b"/readyz"))


def is_probe(method: bytes, url: bytes) -> bool:
    """Whether a request is a health probe (GET or HEAD of /healthz or /readyz)."""
    return method in (b"GET", b"HEAD") and url.partition(b"?")[0] in _PROBE_PATHS


class Held(Protocol):
    """A connection as admission sees it (``EdgeProtocol``)."""

    def idle(self) -> bool:
        """Between requests with nothing of the next one received, or closing."""

    def probing(self) -> bool:
        """Answering a health probe."""

    def evict(self) -> None:
        """Close at once, to make room."""


class Admission:
    """One process's connections by trust: admits, trusts, and picks who gives way."""

    def __init__(self, keys: ApiKeys | None, limits: EdgeLimits) -> None:
        self.keys = keys
        self.max_connections = limits.max_connections
        self.max_unauthenticated = limits.max_unauthenticated
        # Oldest first (dicts keep insertion order).
        self._fresh: dict[Held, None] = {}  # no whole request head yet
        self._keyless: dict[Held, None] = {}  # requests without a valid key
        self._leaving: set[Held] = set()  # evicted, not yet gone

    def admit(self, newcomer: Held, connections: Collection[Any]) -> bool:
        """Make room for ``newcomer`` (already in ``connections``); False: refuse it."""
        self._fresh[newcomer] = None
        if len(connections) - len(self._leaving) <= self.max_connections:
            return True
        victim = self._victim(newcomer, connections)
        if victim is None:
            return False
        self._evict(victim)
        return True

    def headed(self, connection: Held, headers: list[tuple[bytes, bytes]]) -> bool:
        """``connection`` sent a whole request head; whether it is trusted from now on.

        Trusted: the head carried a valid key (or the service is open). Otherwise it
        counts against the keyless share, past which the oldest keyless connection
        (an idle one first) gives way.
        """
        self._fresh.pop(connection, None)
        if self.keys is None or self.keys.open or self._grants(headers):
            self._keyless.pop(connection, None)
            return True
        self._keyless[connection] = None
        if len(self._keyless) > self.max_unauthenticated:
            victim = self._keyless_victim(connection)
            if victim is not None:
                self._evict(victim)
        return False

    def _grants(self, headers: list[tuple[bytes, bytes]]) -> bool:
        assert self.keys is not None
        for name, value in headers:  # uvicorn lower-cases header names
            if name == b"authorization":
                return self.keys.grants(value.decode("latin-1"))
        return False

    def forget(self, connection: Held) -> None:
        """``connection`` is gone."""
        self._fresh.pop(connection, None)
        self._keyless.pop(connection, None)
        self._leaving.discard(connection)

    def _evict(self, victim: Held) -> None:
        self._leaving.add(victim)
        self._fresh.pop(victim, None)
        self._keyless.pop(victim, None)
        victim.evict()

    def _keyless_victim(self, newcomer: Held) -> Held | None:
        """Steps 1 and 2: an idle keyless connection, else the oldest busy one."""
        busy = None
        for connection in self._keyless:
            if connection is newcomer:
                continue
            if connection.idle():
                return connection
            if busy is None and not connection.probing():
                busy = connection
        return busy

    def _victim(self, newcomer: Held, connections: Collection[Any]) -> Held | None:
        victim = self._keyless_victim(newcomer)
        if victim is not None:
            return victim
        for connection in self._fresh:  # step 3
            if connection is not newcomer:
                return connection
        for other in connections:  # step 4
            if other is not newcomer and other not in self._leaving and other.idle():
                found: Held = other
                return found
        return None
