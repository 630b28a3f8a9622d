"""The session id alphabet, shared by the client and the service.

A session id is 1 to 256 Unicode code points, each printable (``str.isprintable``:
letters, marks, digits, punctuation, symbols and the ASCII space), except ``/``.
Control, format, surrogate, private-use and unassigned code points and line or
paragraph separators are refused. ``/`` is refused because the id is one URL path
segment; every other character, ``%``, ``?``, ``#``, ``.`` and ``..`` included, is
percent-encoded by the client and round-trips exactly.
"""

from __future__ import annotations

__all__ = ["MAX_SESSION_ID_LENGTH", "session_id_error", "validate_session_id"]

MAX_SESSION_ID_LENGTH = 256


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
    if session_id.isprintable() and "/" not in session_id:
        return None
    for index, char in enumerate(session_id):
        if char == "/" or not char.isprintable():
            return (
                f"session id has a character outside the allowed alphabet at index {index} "
                f"(U+{ord(char):04X}); allowed: printable Unicode and space, except '/'"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def validate_session_id(session_id: str) -> str:
    """Return ``session_id`` unchanged, or raise ``ValueError`` saying why it is refused."""
    error = session_id_error(session_id)
    if error is not None:
        raise ValueError(error)
    return session_id
