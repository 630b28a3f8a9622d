"""ETag and If-Match: a session's revision as an entity tag, for optimistic concurrency."""

from __future__ import annotations

import re

from .errors import InvalidInput
from .storage import ANY_REVISION

__all__ = ["IF_MATCH_PATTERN", "etag", "expected_revision"]

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
