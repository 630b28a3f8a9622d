"""Graceful shutdown's first step, told by the connection layer to the app.

uvicorn ends connections before the app's lifespan shutdown runs, so what never
ends by itself (live follow streams) must be told by the connection layer: it calls
``begin``, and the app has registered what to stop.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Draining"]


class Draining:
    """Callbacks run once when the server starts draining its connections."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []
        self.begun = False

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def begin(self) -> None:
        if self.begun:
            return
        self.begun = True
        for callback in self._callbacks:
            callback()
