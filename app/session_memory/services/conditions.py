"""Conditional writes: what an If-Match asks, as the one revision a store write requires.

A store compares one revision atomically. A list of ETags is resolved against the
session as it is now: the write then requires that revision, so it applies only
if nothing changed since (and is refused, 412 with the current ETag, otherwise).
"""

from __future__ import annotations

from ..storage.contract import SessionStore
from ..storage.errors import PreconditionFailedError
from ..wire.headers import Expected

__all__ = ["required_revision"]


async def required_revision(
    store: SessionStore, tenant: str, session_id: str, expected: Expected
) -> int | None:
    """The revision (or ``ANY_REVISION``, or None) a write must find the session at."""
    if not isinstance(expected, frozenset):
        return expected
    info = await store.get_session(tenant, session_id)
    current = info.revision if info is not None else 0
    if current in expected:
        return current
    raise PreconditionFailedError(current=current)
