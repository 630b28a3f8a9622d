"""The wire form of incremental reads: read tokens and If-None-Match.

A read of a session's latest items that sends ``known`` gets a ``read_token`` back:
the base64url text (unpadded) of ``lineage.seq.count.revision`` (``tails.ReadMark``).
Clients treat it as opaque and send it back as ``known`` on the next read, which
then carries only what changed. A token this service did not give out (or gave out
in another format) reads as "nothing known", so the answer is a full page.

``If-None-Match`` is the plain HTTP form of the same question for any client or
cache: a read whose ETag it names is answered 304 Not Modified, with no body.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from session_memory_client.protocol import MAX_SEQ

from ..problems import InvalidInput
from ..storage.tails import ReadMark

__all__ = [
    "IF_NONE_MATCH",
    "IF_NONE_MATCH_PATTERN",
    "READ_TOKEN_PATTERN",
    "NoneMatch",
    "if_none_match",
    "parse_read_token",
    "read_token",
]

IF_NONE_MATCH = "If-None-Match"
# "*", or a list of entity tags (RFC 9110 section 13.1.2), as If-Match takes them.
IF_NONE_MATCH_PATTERN = r'^\s*(\*|(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*)\s*$'
_IF_NONE_MATCH = re.compile(IF_NONE_MATCH_PATTERN)
_ENTITY_TAG = re.compile(r'\s*(?:W/)?"([0-9]{1,18})"\s*(?:,|$)|\s*(?:W/)?"[^"]*"\s*(?:,|$)')

# base64url without padding; four numbers of at most 19 digits need at most 104.
READ_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{0,128}$"
_NUMBER = re.compile(r"[0-9]{1,19}")


def read_token(mark: ReadMark) -> str:
    """The token of ``mark``, as a read's reply carries it."""
    text = f"{mark.lineage}.{mark.seq}.{mark.count}.{mark.revision}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def parse_read_token(token: str) -> ReadMark | None:
    """The mark a token holds; None for the empty token ("nothing known yet") and for
    any token this service did not give out."""
    if not token or len(token) > 128:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = text.split(".")
    if len(parts) != 4 or not all(_NUMBER.fullmatch(part) for part in parts):
        return None
    numbers = [int(part) for part in parts]
    if max(numbers) > MAX_SEQ:
        return None
    return ReadMark(*numbers)


@dataclass(frozen=True, slots=True)
class NoneMatch:
    """What an If-None-Match header names: ``*`` (any), or these revisions.

    Compared weakly (RFC 9110: ``W/"5"`` matches ``"5"``); a tag this service never
    gives out matches nothing.
    """

    any: bool
    revisions: frozenset[int]

    def matches(self, revision: int) -> bool:
        return self.any or revision in self.revisions

    @property
    def single(self) -> int | None:
        """The one revision named, when it names exactly one (and not ``*``)."""
        if self.any or len(self.revisions) != 1:
            return None
        return next(iter(self.revisions))


def if_none_match(value: str | None) -> NoneMatch | None:
    """An If-None-Match header; None without one; 422 when it is not a list of ETags or *."""
    if value is None:
        return None
    if _IF_NONE_MATCH.fullmatch(value) is None:
        raise InvalidInput(
            'If-None-Match takes ETags as a read returned them (for example "42"), or *',
            extra={"errors": [{"loc": ["header", IF_NONE_MATCH], "msg": "not an ETag"}]},
        )
    if value.strip() == "*":
        return NoneMatch(True, frozenset())
    revisions = frozenset(int(tag) for tag in _ENTITY_TAG.findall(value) if tag)
    return NoneMatch(False, revisions)
