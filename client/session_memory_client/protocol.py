"""session-memory's wire protocol: the one definition the client and the service share.

The service imports this module; nothing here knows of the service.

Session ids.

A session id is 1 to 256 Unicode code points. Refused: the C0 and C1 control
characters (U+0000 to U+001F, U+007F to U+009F), surrogates, the line and paragraph
separators (U+2028, U+2029), and ``/``, because the id is one URL path segment.
Everything else is allowed (spaces, ``%``, ``?``, ``#``, ``.``, ``..``, emoji with
joiners, any script); the client percent-encodes it and it round-trips exactly.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = [
    "API_PREFIX",
    "ETAG",
    "IDEMPOTENCY_KEY",
    "IF_MATCH",
    "LAST_EVENT_ID",
    "MAX_SEQ",
    "MAX_SESSION_ID_LENGTH",
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TYPE_PREFIX",
    "REQUEST_ID",
    "RUN_LEASE",
    "SESSION_ID_PATTERN",
    "SESSION_METADATA",
    "SESSION_TTL",
    "ProblemType",
    "session_id_error",
    "session_path",
    "validate_session_id",
]

API_PREFIX = "/v1"

# Sequence numbers, revisions and cursors are signed 64-bit integers on the wire.
MAX_SEQ = 2**63 - 1

# Header names, as sent (HTTP compares them case-insensitively).
IDEMPOTENCY_KEY = "Idempotency-Key"
IF_MATCH = "If-Match"
ETAG = "ETag"
SESSION_TTL = "Session-TTL"
SESSION_METADATA = "Session-Metadata"
LAST_EVENT_ID = "Last-Event-ID"
REQUEST_ID = "X-Request-ID"
# A run lease's fencing token, sent with each write of the run that holds the lease.
RUN_LEASE = "Run-Lease"

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:session-memory:problem:"


class ProblemType:
    """The ``type`` of every problem the service answers (RFC 9457), by slug."""

    MALFORMED_BODY = PROBLEM_TYPE_PREFIX + "malformed-body"
    UNAUTHORIZED = PROBLEM_TYPE_PREFIX + "unauthorized"
    SESSION_NOT_FOUND = PROBLEM_TYPE_PREFIX + "session-not-found"
    IDEMPOTENCY_KEY_IN_FLIGHT = PROBLEM_TYPE_PREFIX + "idempotency-key-in-flight"
    PRECONDITION_FAILED = PROBLEM_TYPE_PREFIX + "precondition-failed"
    PAYLOAD_TOO_LARGE = PROBLEM_TYPE_PREFIX + "payload-too-large"
    UNSUPPORTED_MEDIA_TYPE = PROBLEM_TYPE_PREFIX + "unsupported-media-type"
    INVALID_INPUT = PROBLEM_TYPE_PREFIX + "invalid-input"
    IDEMPOTENCY_KEY_REUSED = PROBLEM_TYPE_PREFIX + "idempotency-key-reused"
    HEADERS_TOO_LARGE = PROBLEM_TYPE_PREFIX + "headers-too-large"
    MALFORMED_REQUEST = PROBLEM_TYPE_PREFIX + "malformed-request"
    REQUEST_TIMEOUT = PROBLEM_TYPE_PREFIX + "request-timeout"
    MISDIRECTED_REQUEST = PROBLEM_TYPE_PREFIX + "misdirected-request"
    TOO_MANY_CONNECTIONS = PROBLEM_TYPE_PREFIX + "too-many-connections"
    INTERNAL_ERROR = PROBLEM_TYPE_PREFIX + "internal-error"
    STORE_UNAVAILABLE = PROBLEM_TYPE_PREFIX + "store-unavailable"
    SESSION_EXISTS = PROBLEM_TYPE_PREFIX + "session-exists"
    TOO_MANY_STREAMS = PROBLEM_TYPE_PREFIX + "too-many-streams"
    SESSION_LEASED = PROBLEM_TYPE_PREFIX + "session-leased"
    LEASE_LOST = PROBLEM_TYPE_PREFIX + "lease-lost"
    LEASE_NOT_HELD = PROBLEM_TYPE_PREFIX + "lease-not-held"


MAX_SESSION_ID_LENGTH = 256
_REFUSED = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029/"
# Published in the OpenAPI spec. Surrogates are left out of it: text that arrives
# as UTF-8 cannot hold them, and most regex engines refuse them in a class.
SESSION_ID_PATTERN = f"^[^{_REFUSED}]+$"
_BAD_CHAR = re.compile(f"[{_REFUSED}\\ud800-\\udfff]")


def session_id_error(session_id: object) -> str | None:
    """Say what is wrong with ``session_id``, or return None when it is valid."""
    if not isinstance(session_id, str):
        return f"session id must be a string, not {type(session_id).__name__}"
    if not session_id:
        return "session id must not be empty"
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        return (
            f"session id is {len(session_id)} characters long; "
            f"the maximum is {MAX_SESSION_ID_LENGTH}"
        )
    bad = _BAD_CHAR.search(session_id)
    if bad is None:
        return None
    return (
        f"session id has a refused character at index {bad.start()} "
        f"(U+{ord(bad.group()):04X}); control characters, surrogates, line separators "
        "and '/' are not allowed"
    )


def validate_session_id(session_id: str) -> str:
    """Return ``session_id`` unchanged, or raise ``ValueError`` saying why it is refused."""
    error = session_id_error(session_id)
    if error is not None:
        raise ValueError(error)
    return session_id


def session_path(session_id: str) -> str:
    """The path of a session's resource: ``/v1/sessions/<id>``, the id one encoded segment."""
    # Encode every reserved character, and the dots too: "." and ".." would
    # otherwise be dot segments that URL normalisation removes.
    return f"{API_PREFIX}/sessions/" + quote(session_id, safe="").replace(".", "%2E")
