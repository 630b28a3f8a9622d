"""The session id alphabet, shared by the client and the service.

A session id is 1 to 256 Unicode code points. Refused: the C0 and C1 control
characters (U+0000 to U+001F, U+007F to U+009F), surrogates, the line and paragraph
separators (U+2028, U+2029), and ``/``, because the id is one URL path segment.
Everything else is allowed (spaces, ``%``, ``?``, ``#``, ``.``, ``..``, emoji with
joiners, any script); the client percent-encodes it and it round-trips exactly.
"""

from __future__ import annotations

import re

__all__ = ["MAX_SESSION_ID_LENGTH", "SESSION_ID_PATTERN", "session_id_error", "validate_session_id"]

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
