"""SQL text the store's statements share (the write functions' own is in ``migrations``)."""

from __future__ import annotations

__all__ = ["SESSION_COLUMNS", "live"]

# A session's record, in ``SessionInfo``'s field order.
SESSION_COLUMNS = (
    "session_id, item_count, extract(epoch FROM created_at)::float8, "
    "extract(epoch FROM updated_at)::float8, revision, extract(epoch FROM expires_at)::float8, "
    "metadata, ttl_seconds, last_seq"
)


def live(table: str = "") -> str:
    """The condition a session (``table``: its alias in the query) has not expired."""
    column = f"{table}.expires_at" if table else "expires_at"
    return f"({column} IS NULL OR {column} > now())"
