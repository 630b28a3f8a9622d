"""The typed requests the services take, one per operation.

The edge (``api.table``) builds them from a request's path, query, headers and
body, already parsed and bounded; the services never see HTTP. Every write carries
``run_lease``, the token of its ``Run-Lease`` header (None: none).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from ..wire.headers import Expected
from ..wire.incremental import NoneMatch

__all__ = [
    "AcquireLease",
    "AppendItems",
    "ClearSession",
    "FollowSession",
    "ForkSession",
    "GetLease",
    "GetSession",
    "ListSessions",
    "PatchSession",
    "PopItem",
    "ReadItems",
    "ReleaseLease",
    "RenewLease",
    "ReplaceItems",
]


@dataclass(frozen=True, slots=True)
class ReadItems:
    """The latest ``limit`` items, or a keyset page between ``after`` and ``before``.

    ``known`` (a read token; empty: nothing known yet) asks for the latest items as
    what changed since that read; ``if_none_match`` for 304 when the ETag is named.
    """

    tenant: str
    session_id: str
    limit: int | None = None
    after: int | None = None
    before: int | None = None
    known: str | None = None
    if_none_match: NoneMatch | None = None


@dataclass(frozen=True, slots=True)
class AppendItems:
    """Append a body's items; ``metadata`` starts a session this append creates."""

    tenant: str
    session_id: str
    body: bytes
    expected_revision: Expected = None
    idempotency_key: str | None = None
    ttl: float | None = None
    metadata: str | None = None
    run_lease: int | None = None


@dataclass(frozen=True, slots=True)
class PopItem:
    tenant: str
    session_id: str
    expected_revision: Expected = None
    idempotency_key: str | None = None
    run_lease: int | None = None


@dataclass(frozen=True, slots=True)
class ClearSession:
    tenant: str
    session_id: str
    expected_revision: Expected = None
    run_lease: int | None = None


@dataclass(frozen=True, slots=True)
class ReplaceItems:
    """Replace the items from the body's ``from_seq`` on with the body's items."""

    tenant: str
    session_id: str
    body: bytes
    expected_revision: Expected = None
    idempotency_key: str | None = None
    ttl: float | None = None
    run_lease: int | None = None


@dataclass(frozen=True, slots=True)
class ForkSession:
    tenant: str
    session_id: str
    body: bytes
    expected_revision: Expected = None
    idempotency_key: str | None = None
    run_lease: int | None = None


@dataclass(frozen=True, slots=True)
class PatchSession:
    """A JSON Merge Patch (RFC 7396) of the session's metadata."""

    tenant: str
    session_id: str
    body: bytes
    expected_revision: Expected = None
    run_lease: int | None = None


@dataclass(frozen=True, slots=True)
class GetSession:
    tenant: str
    session_id: str


@dataclass(frozen=True, slots=True)
class ListSessions:
    """A page of sessions; ``filters`` are the ``metadata.<key>=<value>`` pairs."""

    tenant: str
    limit: int = 50
    cursor: str | None = None
    prefix: str | None = None
    filters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FollowSession:
    """Follow from ``after`` (``Last-Event-ID`` wins over the query); None: from now."""

    tenant: str
    session_id: str
    after: int | None = None
    last_event_id: int | None = None


@dataclass(frozen=True, slots=True)
class AcquireLease:
    """Acquire the session's run lease: the body's ``ttl``, ``wait``, ``unleased_writes``;
    ``idempotency_key`` names the acquisition, so a retry gets the lease it granted."""

    tenant: str
    session_id: str
    body: bytes
    idempotency_key: str | None = None
    # Returns once the caller has closed its connection: a waiting acquisition stops
    # then, so no lease is granted to a caller that can no longer be told its token.
    caller_gone: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class GetLease:
    tenant: str
    session_id: str


@dataclass(frozen=True, slots=True)
class RenewLease:
    """Renew the lease ``run_lease`` for the body's ``ttl``."""

    tenant: str
    session_id: str
    body: bytes
    run_lease: int


@dataclass(frozen=True, slots=True)
class ReleaseLease:
    tenant: str
    session_id: str
    run_lease: int
