"""What a service answers: a status, a JSON body (or a stream of it) and the ETag.

Services return a ``Reply``; the edge (``api.edge``) turns it into ASGI messages, on
the fast path and under FastAPI alike, so both answer byte for byte the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["JSON", "Reply", "etag"]

JSON = "application/json"


def etag(revision: int) -> str:
    """The ETag of a session at ``revision`` (``"0"``: the session does not exist)."""
    return f'"{revision}"'


@dataclass(slots=True)
class Reply:
    """A successful answer. ``stream`` replaces ``body`` for answers sent in pieces."""

    status: int
    body: bytes = b""
    revision: int | None = None
    stream: AsyncIterator[bytes] | None = None
    media_type: str = JSON
    extra_headers: tuple[tuple[str, str], ...] = ()

    @property
    def headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.revision is not None:
            headers["ETag"] = etag(self.revision)
        return headers
