"""The route table: every operation of the ``/v1`` API, defined once.

Each ``Route`` says its method and path, how its query, headers and body become its
typed request (``services.requests``), which service call answers it, and what the
OpenAPI document says of it. The FastAPI routes (``api.register``, and so
``openapi.json``) and the fast path (``api.fast_path``) are both built from this
table, so a header is added in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from session_memory_client.protocol import (
    IDEMPOTENCY_KEY,
    IF_MATCH,
    LAST_EVENT_ID,
    MAX_SEQ,
    RUN_LEASE,
    SESSION_METADATA,
    SESSION_TTL,
)

from ..config import Settings
from ..problems import InvalidInput
from ..replies import JSON, Reply
from ..services import Services
from ..services import requests as rq
from ..wire.headers import (
    IDEMPOTENCY_KEY_PATTERN,
    IF_MATCH_PATTERN,
    LAST_EVENT_ID_PATTERN,
    RUN_LEASE_PATTERN,
    SESSION_TTL_PATTERN,
    expected_revision,
    idempotency_key,
    last_event_id,
    run_lease,
    session_ttl,
)
from ..wire.history import parse_metadata
from ..wire.incremental import (
    IF_NONE_MATCH,
    IF_NONE_MATCH_PATTERN,
    READ_TOKEN_PATTERN,
    if_none_match,
)
from . import schemas

__all__ = ["ROUTES", "Body", "HeaderParam", "QueryParam", "Route"]


@dataclass(frozen=True, slots=True)
class HeaderParam:
    """A request header: ``parse`` turns its value (None: absent) into the request's field."""

    field: str
    name: str
    parse: Callable[[str | None, Settings], Any]
    description: str
    pattern: str | None = None
    required: bool = False


@dataclass(frozen=True, slots=True)
class QueryParam:
    """A query parameter: an integer in [``ge``, ``le``] (ASCII digits), or a string."""

    field: str
    kind: type[int] | type[str]
    description: str
    default: Any = None
    ge: int = 0
    le: int = MAX_SEQ
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class Body:
    """A JSON body, read whole within ``max_bytes`` (a setting) before the service runs."""

    schema: dict[str, Any]
    max_bytes: Callable[[Settings], int]
    media_types: tuple[str, ...] = (JSON,)


@dataclass(frozen=True, slots=True)
class Route:
    """One operation. ``name`` and ``doc`` become its OpenAPI summary and description."""

    name: str
    method: str
    path: str
    operation_id: str
    tag: str
    doc: str
    request: Callable[..., Any]
    call: Callable[[Services, Any], Awaitable[Reply]]
    problems: tuple[int, ...]
    status: int = 200
    response_model: type[BaseModel] | None = None
    etag: bool = False
    query: tuple[QueryParam, ...] = ()
    headers: tuple[HeaderParam, ...] = ()
    body: Body | None = None
    # Query parameters named metadata.<key> become the request's ``filters``.
    filters: bool = False
    # Served by the fast path when the query holds every one of these.
    hot: frozenset[str] | None = None
    # The request gets ``caller_gone``, which returns once the client has left (for a
    # call that may wait long).
    watches_caller: bool = False
    responses: dict[int | str, dict[str, Any]] | None = None

    @property
    def has_session(self) -> bool:
        return "{session_id}" in self.path


def _max_body(settings: Settings) -> int:
    return settings.max_body_bytes


# A fork's body is an id and a number: nothing near a batch of items.
FORK_BODY_BYTES = 16 * 1024


def _max_fork(settings: Settings) -> int:
    return min(settings.max_body_bytes, FORK_BODY_BYTES)


def _max_patch(settings: Settings) -> int:
    # A merge patch may hold nulls that vanish when merged: allow it some room.
    return min(settings.max_body_bytes, 4 * settings.max_metadata_bytes)


def _metadata(value: str | None, settings: Settings) -> str | None:
    if value is None:
        return None
    # Header values arrive as Latin-1 (ASGI); the metadata was sent as UTF-8.
    try:
        text = value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{SESSION_METADATA} must be UTF-8 JSON",
            extra={"errors": [{"loc": ["header", SESSION_METADATA], "msg": "not UTF-8"}]},
        ) from None
    return parse_metadata(text, settings.max_metadata_bytes, where=SESSION_METADATA)


IF_MATCH_HEADER = HeaderParam(
    "expected_revision",
    IF_MATCH,
    lambda value, _: expected_revision(value),
    "Write only if the session is still at this ETag (as a read returned it), "
    'or `*` for "only if the session exists"; otherwise 412.',
    IF_MATCH_PATTERN,
)
IDEMPOTENCY_KEY_HEADER = HeaderParam(
    "idempotency_key",
    IDEMPOTENCY_KEY,
    lambda value, _: idempotency_key(value),
    "A unique key (a UUID) for this write. A retry with the same key and request "
    "gets the first outcome back and changes nothing; the same key with another "
    "request is a 422; a retry while the first still runs is a 409.",
    IDEMPOTENCY_KEY_PATTERN,
)
SESSION_TTL_HEADER = HeaderParam(
    "ttl",
    SESSION_TTL,
    lambda value, _: session_ttl(value),
    "Seconds the session lives after each write (0: never expires). Kept for the "
    "session until changed; without it the service default applies.",
    SESSION_TTL_PATTERN,
)
SESSION_METADATA_HEADER = HeaderParam(
    "metadata",
    SESSION_METADATA,
    _metadata,
    "A JSON object (at most `max_metadata_bytes`) the session starts with when this "
    "append creates it; ignored when the session exists (change it with PATCH).",
)
LAST_EVENT_ID_HEADER = HeaderParam(
    "last_event_id",
    LAST_EVENT_ID,
    lambda value, _: last_event_id(value),
    "Resume after this seq (what a reconnecting EventSource sends).",
    LAST_EVENT_ID_PATTERN,
)

RUN_LEASE_HEADER = HeaderParam(
    "run_lease",
    RUN_LEASE,
    lambda value, _: run_lease(value),
    "The token of the session's run lease this write belongs to. While a lease is "
    "held, a write with another token is refused (409 lease-lost), and one without a "
    "token too unless the lease allows unleased writes (409 session-leased); with no "
    "lease held, a write with a token is refused (409 lease-lost).",
    RUN_LEASE_PATTERN,
)


ACQUIRE_KEY_HEADER = HeaderParam(
    "idempotency_key",
    IDEMPOTENCY_KEY,
    lambda value, _: idempotency_key(value),
    "A unique key (a UUID) for this acquisition, the same on each of its attempts. "
    "One with the key of the lease held gets that lease back (same token, held for "
    "its own ttl from now) instead of waiting or a 409; once that lease ended, the "
    "key acquires anew. Scoped to the session.",
    IDEMPOTENCY_KEY_PATTERN,
)


def _lease_token(value: str | None, _: Settings) -> int:
    token = run_lease(value)
    if token is None:
        raise InvalidInput(
            f"send the lease's token in {RUN_LEASE}",
            extra={"errors": [{"loc": ["header", RUN_LEASE], "msg": "missing"}]},
        )
    return token


LEASE_TOKEN_HEADER = HeaderParam(
    "run_lease",
    RUN_LEASE,
    _lease_token,
    "The token the lease's acquisition returned.",
    RUN_LEASE_PATTERN,
    required=True,
)


def _max_lease(settings: Settings) -> int:
    # A lease's body is three small fields.
    return min(settings.max_body_bytes, 4096)


LIMIT = QueryParam(
    "limit",
    int,
    "At most this many items. Without `after`/`before`: the latest N, oldest first. "
    "A page also stops before passing the server's max_read_page_bytes (has_more "
    "then says there is more; its first item comes whatever its size). "
    "Omit for all items (the response then streams).",
)
KNOWN = QueryParam(
    "known",
    str,
    "A `read_token` from an earlier read of the latest items (empty: nothing known "
    "yet). The answer says what changed since that read, from one snapshot: "
    '`"unchanged": true` with no items; `"since": S` with only the items added after '
    "seq S (the latest `limit` of them; `has_more` when some were left out); or, after "
    "anything else (a pop, a replace, a clear, an expiry), the page a read without it "
    'gives, with `"since": null`. Each answer carries the next `read_token`. Not with '
    "`after` or `before`.",
    pattern=READ_TOKEN_PATTERN,
    max_length=128,
)
IF_NONE_MATCH_HEADER = HeaderParam(
    "if_none_match",
    IF_NONE_MATCH,
    lambda value, _: if_none_match(value),
    "The ETag of an earlier read: 304 Not Modified, with no body, while the session "
    "is still at it.",
    IF_NONE_MATCH_PATTERN,
)
AFTER = QueryParam("after", int, "Only items with a sequence number above this.")
BEFORE = QueryParam("before", int, "Only items with a sequence number below this.")

_SESSIONS = "/v1/sessions"
_ITEMS = "/v1/sessions/{session_id}/items"
_MERGE_PATCH = "application/merge-patch+json"
_LEASE = "/v1/sessions/{session_id}/lease"


# A merge patch of a session's record: only its metadata is writable.
_PATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "metadata": {
            "anyOf": [{"type": "object", "additionalProperties": True}, {"type": "null"}],
            "description": "A merge patch of the metadata: a key set to null goes; "
            "null removes all of it.",
        }
    },
    "additionalProperties": False,
}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


ROUTES: tuple[Route, ...] = (
    Route(
        name="list_sessions",
        method="GET",
        path=_SESSIONS,
        operation_id="sessions-list",
        tag="sessions",
        doc="List sessions, most recently updated first, in keyset pages.\n\n"
        "Filter by metadata with `metadata.<key>=<value>` (exact match on a top-level\n"
        "string, number or boolean; several combine with AND) and by id with `prefix`.",
        request=rq.ListSessions,
        call=lambda s, r: s.history.list(r),
        problems=(401, 422, 503),
        response_model=schemas.SessionListResponse,
        query=(
            QueryParam("limit", int, "Sessions per page.", default=50, ge=1, le=1000),
            QueryParam(
                "cursor",
                str,
                "The `next_cursor` of the previous page (opaque).",
                pattern=r"^[A-Za-z0-9_-]{1,2048}$",
            ),
            QueryParam(
                "prefix",
                str,
                "Only ids that start with this.",
                pattern=r"^[^\x00]+$",
                min_length=1,
                max_length=256,
            ),
        ),
        filters=True,
    ),
    Route(
        name="get_session",
        method="GET",
        path=_SESSIONS + "/{session_id}",
        operation_id="sessions-get",
        tag="sessions",
        doc="Show one session's record: item count, created and updated times.",
        request=rq.GetSession,
        call=lambda s, r: s.history.get(r),
        problems=(401, 404, 422, 503),
        response_model=schemas.SessionRecord,
    ),
    Route(
        name="clear_session",
        method="DELETE",
        path=_SESSIONS + "/{session_id}",
        operation_id="sessions-clear",
        tag="sessions",
        doc="Delete a session's items and its record; an unknown session is a no-op.",
        request=rq.ClearSession,
        call=lambda s, r: s.items.clear(r),
        problems=(401, 409, 412, 422, 503),
        status=204,
        headers=(IF_MATCH_HEADER, RUN_LEASE_HEADER),
    ),
    Route(
        name="get_items",
        method="GET",
        path=_ITEMS,
        operation_id="items-get",
        tag="items",
        doc="Read a session's items, oldest first; the latest `limit` or a keyset page.\n\n"
        "Without cursors: the latest `limit` items. `after=S`: the first `limit` items\n"
        "above S. `before=S`: the latest `limit` items below S. Both: the first `limit`\n"
        "items strictly between them.\n\n"
        "Incremental reads: send `known` (empty at first, then the last answer's\n"
        "`read_token`) to be sent only what changed since; send `If-None-Match` with\n"
        "an ETag to be answered 304 while the session is unchanged.",
        request=rq.ReadItems,
        call=lambda s, r: s.items.read(r),
        problems=(401, 422, 503),
        response_model=schemas.ItemPageResponse,
        etag=True,
        query=(LIMIT, AFTER, BEFORE, KNOWN),
        headers=(IF_NONE_MATCH_HEADER,),
        hot=frozenset({"limit"}),
        responses={
            304: {
                "description": "Not Modified: the session is at the ETag If-None-Match "
                "named (sent again in ETag); no body."
            }
        },
    ),
    Route(
        name="add_items",
        method="POST",
        path=_ITEMS,
        operation_id="items-add",
        tag="items",
        doc="Append items atomically: all land next to each other, or none does.",
        request=rq.AppendItems,
        call=lambda s, r: s.items.append(r),
        problems=(401, 400, 409, 412, 413, 415, 422, 503),
        status=201,
        response_model=schemas.AppendResponse,
        etag=True,
        headers=(
            IDEMPOTENCY_KEY_HEADER,
            IF_MATCH_HEADER,
            SESSION_TTL_HEADER,
            SESSION_METADATA_HEADER,
            RUN_LEASE_HEADER,
        ),
        body=Body(_schema(schemas.AppendRequest), _max_body),
        hot=frozenset(),
    ),
    Route(
        name="pop_last_item",
        method="DELETE",
        path=_ITEMS + "/last",
        operation_id="items-pop",
        tag="items",
        doc='Remove and return the newest item; `{"item": null}` when the session is empty.',
        request=rq.PopItem,
        call=lambda s, r: s.items.pop(r),
        problems=(401, 409, 412, 422, 503),
        response_model=schemas.PopResponse,
        headers=(IDEMPOTENCY_KEY_HEADER, IF_MATCH_HEADER, RUN_LEASE_HEADER),
        hot=frozenset(),
    ),
    Route(
        name="replace_items",
        method="PUT",
        path=_ITEMS,
        operation_id="items-replace",
        tag="history",
        doc="Replace the items from `from_seq` on (all when absent) in one transaction.\n\n"
        "The new items are numbered above the highest number the session ever gave.\n"
        "With If-Match it is a compare-and-swap.",
        request=rq.ReplaceItems,
        call=lambda s, r: s.history.replace(r),
        problems=(401, 400, 409, 412, 413, 415, 422, 503),
        response_model=schemas.AppendResponse,
        etag=True,
        headers=(IDEMPOTENCY_KEY_HEADER, IF_MATCH_HEADER, SESSION_TTL_HEADER, RUN_LEASE_HEADER),
        body=Body(_schema(schemas.ReplaceRequest), _max_body),
    ),
    Route(
        name="fork_session",
        method="POST",
        path=_SESSIONS + "/{session_id}/fork",
        operation_id="sessions-fork",
        tag="history",
        doc="Copy the items through `through_seq` (all when absent) into a new session, "
        "from 1.\n\n409 when the new session exists, 404 when this one does not. If-Match "
        "is this\nsession's ETag; the response's ETag is the new session's.",
        request=rq.ForkSession,
        call=lambda s, r: s.history.fork(r),
        problems=(401, 400, 404, 409, 412, 413, 415, 422, 503),
        status=201,
        response_model=schemas.ForkResponse,
        etag=True,
        headers=(IDEMPOTENCY_KEY_HEADER, IF_MATCH_HEADER, RUN_LEASE_HEADER),
        body=Body(_schema(schemas.ForkRequest), _max_fork),
    ),
    Route(
        name="patch_session",
        method="PATCH",
        path=_SESSIONS + "/{session_id}",
        operation_id="sessions-patch",
        tag="history",
        doc="Change the session's metadata with a JSON Merge Patch (RFC 7396); null deletes a key.",
        request=rq.PatchSession,
        call=lambda s, r: s.history.patch(r),
        problems=(401, 400, 404, 409, 412, 413, 415, 422, 503),
        response_model=schemas.SessionRecord,
        etag=True,
        headers=(IF_MATCH_HEADER, RUN_LEASE_HEADER),
        body=Body(_PATCH_SCHEMA, _max_patch, (_MERGE_PATCH, JSON)),
    ),
    Route(
        name="follow_session",
        method="GET",
        path=_SESSIONS + "/{session_id}/events",
        operation_id="sessions-events",
        tag="history",
        doc="Follow a session live: its changes as server-sent events, resumable without gaps.",
        request=rq.FollowSession,
        call=lambda s, r: s.history.follow(r),
        problems=(401, 422, 503),
        query=(
            QueryParam(
                "after",
                int,
                "Start after this seq (0: from the first item). Default: from now.",
            ),
        ),
        headers=(LAST_EVENT_ID_HEADER,),
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": (
                    "Server-sent events: `append` (id: the seq, data: the item as stored), "
                    '`pop`, `replace` and `clear` (data: `{"revision": N}`); `lease` '
                    '(data: `{"token", "expires_at", "ttl"}`) while a run holds the '
                    "session's lease (at the start, and when acquired or renewed) and "
                    '`lease-end` (data: `{"token"}`) when it is released or expires; a '
                    "comment line now and then as a heartbeat."
                ),
            }
        },
    ),
    Route(
        name="get_lease",
        method="GET",
        path=_LEASE,
        operation_id="lease-get",
        tag="leases",
        doc="Show the session's run lease: who holds it (its token), until when, and its\n"
        "TTL, as its acquisition answered. 404 lease-not-held when no run holds it\n"
        "(never acquired, released, or expired). An operator frees a stuck lease by\n"
        "sending this token to DELETE.",
        request=rq.GetLease,
        call=lambda s, r: s.leases.get(r),
        problems=(401, 404, 422, 503),
        response_model=schemas.LeaseResponse,
    ),
    Route(
        name="acquire_lease",
        method="POST",
        path=_LEASE,
        operation_id="lease-acquire",
        tag="leases",
        doc="Acquire the session's run lease, waiting up to `wait` seconds for one held.\n\n"
        "The answer's token is above every token the session's leases had; send it as\n"
        "Run-Lease with each write of the run. 409 session-leased (with Retry-After) when\n"
        "another run holds the lease at the end of the wait. The session need not exist.\n\n"
        "With an Idempotency-Key, a retry of the acquisition that got the lease held (its\n"
        "answer lost) gets that lease back at once: the same token, held for its own\n"
        "`ttl` from now. Once that lease ended, the key acquires anew.",
        request=rq.AcquireLease,
        call=lambda s, r: s.leases.acquire(r),
        watches_caller=True,
        problems=(401, 400, 409, 413, 415, 422, 503),
        response_model=schemas.LeaseResponse,
        headers=(ACQUIRE_KEY_HEADER,),
        body=Body(_schema(schemas.LeaseRequest), _max_lease),
    ),
    Route(
        name="renew_lease",
        method="PUT",
        path=_LEASE,
        operation_id="lease-renew",
        tag="leases",
        doc="Hold the lease longer: `ttl` seconds from now. 409 lease-lost when the lease\n"
        "is no longer held (it expired, or was released).",
        request=rq.RenewLease,
        call=lambda s, r: s.leases.renew(r),
        problems=(401, 400, 409, 413, 415, 422, 503),
        response_model=schemas.LeaseResponse,
        headers=(LEASE_TOKEN_HEADER,),
        body=Body(_schema(schemas.LeaseRenewRequest), _max_lease),
    ),
    Route(
        name="release_lease",
        method="DELETE",
        path=_LEASE,
        operation_id="lease-release",
        tag="leases",
        doc="Release the lease now. 409 lease-lost when it is no longer held.",
        request=rq.ReleaseLease,
        call=lambda s, r: s.leases.release(r),
        problems=(401, 409, 422, 503),
        status=204,
        headers=(LEASE_TOKEN_HEADER,),
    ),
)
