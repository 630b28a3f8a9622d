"""``Draining``: what to tell, once, when the server begins a graceful shutdown.

On SIGTERM uvicorn stops accepting, waits for the open requests to finish (for at
most the shutdown timeout) and only then runs the app's lifespan shutdown. A
request that never ends by itself, a live follow stream, would hold the shutdown
for the whole timeout: the lifespan hears of the shutdown too late to end it. So
the connection layer, which hears first, tells the app through this object: the
app registers what ends its endless requests (``add``), the server calls
``begin`` when the shutdown starts.

Imports nothing of the service, so the server and the app can both hold one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["Draining"]

logger = logging.getLogger("session_memory")


class Draining:
    """Callbacks run once when a graceful shutdown begins; ``begin`` may be called often."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []
        self._begun = False

    @property
    def begun(self) -> bool:
        """Whether the shutdown has begun."""
        return self._begun

    def add(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the shutdown begins; at once if it already has."""
        if self._begun:
            self._call(callback)
        else:
            self._callbacks.append(callback)

    def begin(self) -> None:
        """The shutdown has begun: call every callback, once (later calls do nothing)."""
        if self._begun:
            return
        self._begun = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._call(callback)

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        # One failing callback must not keep the others' streams open.
        try:
            callback()
        except Exception:
            logger.exception("a shutdown callback failed")
