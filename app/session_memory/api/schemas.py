"""Request and response models. They document the API in OpenAPI; the items service writes
its JSON directly, and tests check that what they write matches these models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from session_memory_client.protocol import MAX_SEQ, MAX_SESSION_ID_LENGTH, SESSION_ID_PATTERN

__all__ = [
    "AppendRequest",
    "AppendResponse",
    "ForkRequest",
    "ForkResponse",
    "HealthResponse",
    "ItemPageResponse",
    "LeaseRenewRequest",
    "LeaseRequest",
    "LeaseResponse",
    "PopResponse",
    "Problem",
    "ReplaceRequest",
    "SessionListResponse",
    "SessionRecord",
]


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


class AppendRequest(BaseModel):
    """Items to append, in order. Each item is a JSON object, stored exactly as sent."""

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(
        description="Items to append, oldest first. An empty list is a no-op.",
        examples=[[{"role": "user", "content": "Hello"}]],
    )


class AppendResponse(BaseModel):
    count: int = Field(description="How many items were appended.")
    first_seq: int | None = Field(description="Sequence number of the first item appended.")
    last_seq: int | None = Field(
        description="Sequence number of the last one; the batch holds every number between."
    )


class ReplaceRequest(BaseModel):
    """Items that replace a session's tail, in order, each stored exactly as sent."""

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(
        description="The new items, oldest first; they get numbers above any given before.",
        examples=[[{"role": "assistant", "content": "Summary of the conversation so far"}]],
    )
    from_seq: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEQ,
        description="Replace the items with seq >= this; absent: the whole history.",
    )


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str = Field(
        min_length=1,
        max_length=MAX_SESSION_ID_LENGTH,
        pattern=SESSION_ID_PATTERN,
        description="The new session's id (the path's rules); it must not exist.",
    )
    through_seq: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEQ,
        description="Copy the items up to this seq; absent: all of them.",
    )


class ForkResponse(AppendResponse):
    session_id: str = Field(description="The new session's id.")


class ItemPageResponse(BaseModel):
    items: list[dict[str, Any]] = Field(description="Items, oldest first, exactly as stored.")
    first_seq: int | None = Field(description="Sequence number of the first item on this page.")
    last_seq: int | None = Field(description="Sequence number of the last item on this page.")
    has_more: bool = Field(
        description=(
            "More items lie beyond this page in the direction of travel: older ones for a "
            "tail or `before` read (continue with before=first_seq), newer ones for an "
            "`after` read (continue with after=last_seq)."
        )
    )
    since: int | None = Field(
        default=None,
        description="With `known` only: the seq after which these items follow what the "
        "token's read saw (only items were added since); null for a full page.",
    )
    unchanged: bool | None = Field(
        default=None,
        description="With `known` only: nothing changed since the token's read; no items.",
    )
    read_token: str | None = Field(
        default=None,
        description="With `known` only: send it as `known` on the next read (opaque).",
    )


class PopResponse(BaseModel):
    item: dict[str, Any] | None = Field(description="The removed item, or null when empty.")


class SessionRecord(BaseModel):
    id: str = Field(description="The session id.")
    item_count: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = Field(
        description="When the session expires unless written again; null: never."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="The session's metadata object ({} when none)."
    )
    ttl: float | None = Field(
        description="The session's own time-to-live in seconds, set by a write's Session-TTL "
        "header (0: it never expires); null: it has none, and the server's default applies."
    )
    last_seq: int = Field(
        description="The highest seq the session has ever given (0: none); above its newest "
        "item's after a pop or a replace, since seqs are never reused."
    )


class SessionListResponse(BaseModel):
    sessions: list[SessionRecord]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class LeaseRequest(BaseModel):
    """What a run lease is acquired for."""

    model_config = ConfigDict(extra="forbid")

    ttl: float = Field(
        default=30,
        gt=0,
        description="Seconds the lease is held unless renewed; more than the server's "
        "max_lease_ttl_seconds is granted as that (the answer's ttl says).",
    )
    wait: float = Field(
        default=0,
        ge=0,
        description="Seconds to wait for a lease another run holds to end (more than "
        "the server's max_lease_wait_seconds waits that long); 0: answer 409 at once.",
    )
    unleased_writes: Literal["refuse", "allow"] = Field(
        default="refuse",
        description="While the lease is held, writes without a Run-Lease token are "
        "refused (409 session-leased) or allowed.",
    )


class LeaseRenewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl: float | None = Field(
        default=None,
        gt=0,
        description="Seconds the lease is now held for (at most the server's "
        "max_lease_ttl_seconds); absent: its own TTL again.",
    )


class LeaseResponse(BaseModel):
    token: int = Field(
        description="The fencing token: send it as Run-Lease with every write of the run. "
        "Above every token this session's leases had before."
    )
    expires_at: datetime = Field(description="When the lease ends unless renewed.")
    ttl: float = Field(description="Seconds a renewal holds it for.")


class HealthResponse(BaseModel):
    status: str
