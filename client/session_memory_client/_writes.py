"""Helpers the session's writes share: settling a cancelled write, encoding a body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["_Snapshot", "_encode", "_settle"]

_T = TypeVar("_T")


async def _settle(awaitable: Awaitable[_T]) -> _T:
    """Wait for a write's outcome even when the caller is cancelled, then re-raise.

    The SDK's 0.24 stores do the same: a ``CancelledError`` never leaves while the
    write it interrupted could still land afterwards.
    """
    task = asyncio.ensure_future(awaitable)
    loop = task.get_loop()
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        # A waiter of our own, not the task: cancelling the caller cancels the waiter
        # alone. (asyncio.wait does the same with more bookkeeping, on every write.)
        waiter = loop.create_future()
        task.add_done_callback(partial(_wake, waiter))
        try:
            await waiter
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if cancelled is not None:
        # The outcome (value or error) is settled; the caller asked to stop.
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as lost
        raise cancelled
    return task.result()


def _wake(waiter: asyncio.Future[None], _task: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


# Built once: json.dumps with options builds an encoder on every call. Keys keep their
# order; NaN and Infinity are refused here, as JSON has no such values.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _encode(body: dict[str, Any]) -> bytes:
    try:
        return _ENCODE(body).encode()
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8; as a \uXXXX escape it round-trips.
        return _ENCODE_ASCII(body).encode()


@dataclass(frozen=True)
class _Snapshot:
    """The SDK's ``_CompactionSnapshot`` shape, without importing a private SDK type."""

    items: list[TResponseInputItem]
    complete: bool
    replace_suffix: Callable[[int, list[TResponseInputItem]], Awaitable[bool]]
