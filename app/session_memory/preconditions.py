"""Headers that condition a write: If-Match (the session's revision as an ETag, for
optimistic concurrency) and Session-TTL (how long the session lives after a write)."""

from __future__ import annotations

import re

from .errors import InvalidInput
from .storage import ANY_REVISION

__all__ = ["IF_MATCH_PATTERN", "MAX_SESSION_TTL", "etag", "expected_revision", "session_ttl"]

# Nine digits: about 31 years.
MAX_SESSION_TTL = 999_999_999

# One strong entity tag as GET returns it, or "*".
IF_MATCH_PATTERN = r'^\s*(\*|"[0-9]{1,18}")\s*$'
_IF_MATCH = re.compile(IF_MATCH_PATTERN)


def etag(revision: int) -> str:
    """The ETag of a session at ``revision`` (``"0"``: the session does not exist)."""
    return f'"{revision}"'


def expected_revision(if_match: str | None) -> int | None:
    """The revision an If-Match header asks for; None without one; 422 when malformed."""
    if if_match is None:
        return None
    match = _IF_MATCH.fullmatch(if_match)
    if match is None:
        raise InvalidInput(
            'If-Match takes one ETag as a read returned it (for example "42"), or *',
            extra={"errors": [{"loc": ["header", "If-Match"], "msg": "not an ETag"}]},
        )
    tag = match.group(1)
    return ANY_REVISION if tag == "*" else int(tag.strip('"'))


def session_ttl(header: str | None) -> float | None:
    """A Session-TTL header: whole seconds (0: never expire); None without one; else 422."""
    if header is None:
        return None
    value = header.strip()
    if not value.isdigit() or int(value) > MAX_SESSION_TTL:
        raise InvalidInput(
            f"Session-TTL takes whole seconds from 0 (never expire) to {MAX_SESSION_TTL}",
            extra={"errors": [{"loc": ["header", "Session-TTL"], "msg": "not a TTL"}]},
        )
    return float(value)
