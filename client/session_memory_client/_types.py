"""The shapes the service answers with, as the client hands them out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from ._transport import Reply

__all__ = ["ItemPage", "SessionPage", "SessionRecord"]


class SessionRecord(TypedDict):
    """A session's record, as ``GET /v1/sessions/{id}`` returns it (timestamps in ISO 8601)."""

    id: str
    item_count: int
    created_at: str
    updated_at: str
    expires_at: str | None
    metadata: dict[str, Any]
    """What the session carries besides its items (a JSON object; ``{}`` when none)."""
    ttl: float | None
    """Its own time-to-live in seconds, set by a write's ``Session-TTL`` header (0: it never
    expires); None: it has none, and the service's default applies."""
    last_seq: int
    """The highest seq it has ever given (0: none); above its newest item's after a pop
    or a replace, since seqs are never reused."""


@dataclass(frozen=True)
class SessionPage:
    """One page of the sessions an API key sees, most recently updated first."""

    sessions: list[SessionRecord]
    next_cursor: str | None
    """Pass to ``list_sessions(cursor=...)`` for the next page; None on the last."""


@dataclass(frozen=True)
class ItemPage:
    """One page of a session's items, oldest first, with their sequence numbers."""

    items: list[Any]
    first_seq: int | None
    last_seq: int | None
    has_more: bool
    etag: str | None
    """The session's version when read; send it as If-Match to write only if unchanged."""
    content: bytes
    """The response body exactly as the service sent it (items byte for byte)."""

    @classmethod
    def from_reply(cls, reply: Reply) -> ItemPage:
        body = reply.json()
        return cls(
            items=body["items"],
            first_seq=body.get("first_seq"),
            last_seq=body.get("last_seq"),
            has_more=bool(body.get("has_more", False)),
            etag=reply.etag,
            content=reply.content,
        )
