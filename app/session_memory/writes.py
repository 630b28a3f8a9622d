"""The append and pop operations as both the FastAPI routes and the hot path run them:
request headers and body in, a store result out."""

from __future__ import annotations

from starlette.datastructures import State

from .config import Settings
from .idempotency import idempotency_for
from .observability import Metrics
from .payload import parse_item_batch
from .preconditions import expected_revision, session_ttl
from .storage import AppendResult, SessionStore

__all__ = ["append_items", "pop_item"]


async def append_items(
    state: State,
    tenant: str,
    session_id: str,
    body: bytes,
    *,
    idempotency_key: str | None,
    if_match: str | None,
    ttl: str | None,
) -> AppendResult:
    """Validate a read body and its headers, then append; any refusal is a ProblemError."""
    settings: Settings = state.settings
    store: SessionStore = state.store
    items = parse_item_batch(body, state.batch_limits)
    result = await store.append(
        tenant,
        session_id,
        items,
        max_items=settings.max_items_per_session or None,
        idempotency=idempotency_for(
            idempotency_key,
            method="POST",
            session_id=session_id,
            body=body,
            ttl=settings.idempotency_ttl_seconds,
        ),
        expected_revision=expected_revision(if_match),
        ttl=session_ttl(ttl),
    )
    metrics: Metrics = state.metrics
    metrics.items_written.inc(result.count)
    metrics.write_batch.observe(result.count)
    return result


async def pop_item(
    state: State,
    tenant: str,
    session_id: str,
    *,
    idempotency_key: str | None,
    if_match: str | None,
) -> str | None:
    """Validate the headers, then pop the newest item."""
    settings: Settings = state.settings
    store: SessionStore = state.store
    return await store.pop(
        tenant,
        session_id,
        idempotency=idempotency_for(
            idempotency_key,
            method="DELETE",
            session_id=session_id,
            body=b"",
            ttl=settings.idempotency_ttl_seconds,
        ),
        expected_revision=expected_revision(if_match),
    )
