"""The request headers that condition a request, each parsed in exactly one place.

- ``If-Match``: the session's revision as an ETag (optimistic concurrency), or ``*``.
- ``Session-TTL``: how long the session lives after a write.
- ``Idempotency-Key``: a retry of a write replays its first outcome.
- ``Last-Event-ID``: where a resumed event stream goes on.
- ``Run-Lease``: the run lease token a write carries.

The ``*_PATTERN`` strings only document the headers in OpenAPI; the parsers below are
what refuses a bad header (with one message, whichever path the request took).
"""

from __future__ import annotations

import hashlib
import re

from session_memory_client.protocol import (
    IDEMPOTENCY_KEY,
    IF_MATCH,
    LAST_EVENT_ID,
    RUN_LEASE,
    SESSION_TTL,
)

from ..problems import InvalidInput
from ..storage import ANY_REVISION, Idempotency
from .numbers import is_ascii_digits

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "IF_MATCH_PATTERN",
    "LAST_EVENT_ID_PATTERN",
    "MAX_SESSION_TTL",
    "RUN_LEASE_PATTERN",
    "SESSION_TTL_PATTERN",
    "Expected",
    "expected_revision",
    "idempotency_for",
    "idempotency_key",
    "last_event_id",
    "run_lease",
    "session_ttl",
]

# Nine digits: about 31 years.
MAX_SESSION_TTL = 999_999_999
SESSION_TTL_PATTERN = r"^\s*[0-9]{1,9}\s*$"

# "*", or a list of entity tags (RFC 9110 section 13.1.1); ours are strong, "<digits>".
IF_MATCH_PATTERN = r'^\s*(\*|(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*)\s*$'
_IF_MATCH = re.compile(IF_MATCH_PATTERN)
_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')

# What If-Match asks of a session: None (nothing), one revision (``ANY_REVISION``
# for "*"), or a set of revisions, any of which may match (see
# ``services.conditions``); an empty set never matches.
Expected = int | frozenset[int] | None


# Visible ASCII, as the IETF draft's examples and Stripe's keys use; UUIDs fit.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def _invalid(header: str, detail: str, msg: str) -> InvalidInput:
    return InvalidInput(detail, extra={"errors": [{"loc": ["header", header], "msg": msg}]})


def expected_revision(if_match: str | None) -> Expected:
    """What an If-Match header asks for; None without one; 422 when malformed.

    A weak tag never matches (If-Match compares strongly), and a tag this service
    never gives out cannot match either: both are left out of the set.
    """
    if if_match is None:
        return None
    if _IF_MATCH.fullmatch(if_match) is None:
        raise _invalid(
            IF_MATCH,
            'If-Match takes ETags as a read returned them (for example "42"), or *',
            "not an ETag",
        )
    if if_match.strip() == "*":
        return ANY_REVISION
    revisions = frozenset(
        int(tag)
        for weak, tag in _ENTITY_TAG.findall(if_match)
        if not weak and is_ascii_digits(tag) and len(tag) <= 18
    )
    if len(revisions) == 1 and "," not in if_match and not if_match.lstrip().startswith("W/"):
        return next(iter(revisions))
    return revisions


def session_ttl(header: str | None) -> float | None:
    """A Session-TTL header: whole seconds (0: never expire); None without one; else 422."""
    if header is None:
        return None
    value = header.strip(" \t")
    # ASCII digits only: str.isdigit() also takes "²", which int() then refuses.
    if not is_ascii_digits(value) or len(value) > 9:
        raise _invalid(
            SESSION_TTL,
            f"Session-TTL takes whole seconds from 0 (never expire) to {MAX_SESSION_TTL}",
            "not a TTL",
        )
    return float(value)


def idempotency_key(header: str | None) -> str | None:
    """An Idempotency-Key header: 1 to 255 visible ASCII characters; None without one."""
    if header is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(header):
        raise _invalid(
            IDEMPOTENCY_KEY,
            "the Idempotency-Key header must be 1 to 255 visible ASCII characters "
            "(a UUID is a good choice)",
            "invalid key",
        )
    return header


def idempotency_for(
    key: str | None, *, method: str, session_id: str, body: bytes, ttl: float
) -> Idempotency | None:
    """The store's ``Idempotency`` for a request with a (checked) key; None without one.

    The fingerprint covers the method, the session and the body, so the same key
    sent with another request is told apart.
    """
    if key is None:
        return None
    digest = hashlib.sha256()
    for part in (method.encode(), session_id.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return Idempotency(key=key, fingerprint=digest.hexdigest(), ttl=ttl)


LAST_EVENT_ID_PATTERN = r"^[0-9]{1,18}$"
_LAST_EVENT_ID = re.compile(LAST_EVENT_ID_PATTERN)


def last_event_id(header: str | None) -> int | None:
    """A Last-Event-ID header (the seq a reconnecting stream saw last); None without one."""
    if header is None:
        return None
    if not _LAST_EVENT_ID.fullmatch(header):
        raise _invalid(LAST_EVENT_ID, "Last-Event-ID takes the id of an append event", "not an id")
    return int(header)


# A token as the lease's acquisition gave it: decimal digits (a signed 64-bit integer).
RUN_LEASE_PATTERN = r"^[0-9]{1,18}$"
_RUN_LEASE = re.compile(RUN_LEASE_PATTERN)


def run_lease(header: str | None) -> int | None:
    """A Run-Lease header (a lease's token); None without one; 422 when malformed."""
    if header is None:
        return None
    if not _RUN_LEASE.fullmatch(header.strip(" \t")):
        raise _invalid(
            RUN_LEASE, "Run-Lease takes the token a lease acquisition returned", "not a token"
        )
    return int(header)
