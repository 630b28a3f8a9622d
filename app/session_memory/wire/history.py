"""Request bodies of the history routes: replace's items (kept as sent), fork, metadata."""

from __future__ import annotations

import json
import re
from typing import Any

from session_memory_client.protocol import MAX_SEQ

from ..problems import InvalidInput, MalformedBody, PayloadTooLarge
from .items import BatchLimits, parse_item_body

__all__ = ["CLEAR_METADATA", "parse_fork", "parse_metadata", "parse_replace", "parse_session_patch"]


def _invalid(detail: str, *loc: object) -> InvalidInput:
    return InvalidInput(detail, extra={"errors": [{"loc": list(loc), "msg": detail}]})


def _load(body: bytes, where: str) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise MalformedBody(f"{where} is not valid UTF-8") from None
    except ValueError as exc:
        raise MalformedBody(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise _invalid(f"{where} is nested too deeply", "body") from None


def _seq(value: object, name: str) -> int | None:
    if value is None:
        return None
    # JSON Schema's integer takes 3.0 too: a number with no fraction is one.
    if isinstance(value, float) and value.is_integer() and 0 <= value <= MAX_SEQ:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise _invalid(f"{name!r} must be a sequence number (an integer from 0)", "body", name)
    return value


def parse_replace(body: bytes, limits: BatchLimits) -> tuple[list[str], int | None]:
    """``{"items": [...], "from_seq": S}``: the items' raw text, and S (None when absent).

    The append parser splits it, so the items are kept byte for byte and bounded
    alike (count, size, nesting) before anything is built.
    """
    items, scalars = parse_item_body(body, limits, _REPLACE_SCALARS)
    from_seq = scalars.get("from_seq")
    return items, None if from_seq is None else _seq(json.loads(from_seq), "from_seq")


_REPLACE_SCALARS = frozenset({"from_seq"})


def parse_fork(body: bytes, *, check_id: Any) -> tuple[str, int | None]:
    """``{"session_id": "new-id", "through_seq": S}``: the new id and S (None: all)."""
    document = _load(body, "body")
    if not isinstance(document, dict):
        raise _invalid('body must be a JSON object: {"session_id": "new-id"}', "body")
    unknown = set(document) - {"session_id", "through_seq"}
    if unknown:
        name = sorted(unknown)[0]
        raise _invalid(f"unknown field {name!r}; the body holds 'session_id', 'through_seq'", name)
    target = document.get("session_id")
    if not isinstance(target, str):
        raise _invalid("'session_id' (the new session's id) is required", "body", "session_id")
    error = check_id(target)
    if error is not None:
        raise _invalid(error, "body", "session_id")
    return target, _seq(document.get("through_seq"), "through_seq")


def parse_metadata(text: str | bytes, max_bytes: int, *, where: str) -> str:
    """A metadata object (or a merge patch) as compact JSON text, bounded by ``max_bytes``."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > max_bytes:
        raise PayloadTooLarge(
            f"{where} is {size} bytes; metadata may take at most {max_bytes}",
            extra={"limit": "max_metadata_bytes", "max": max_bytes},
        )
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise _invalid(f"{where} must be a JSON object", where) from None
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a JSON object", where)
    if not _storable(value):
        raise _unstorable(where)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _unstorable(where: str) -> InvalidInput:
    return _invalid(
        f"{where} holds U+0000 or a lone surrogate (\\ud800-\\udfff), which cannot be stored",
        where,
    )


def _no_constant(name: str) -> None:
    # NaN and Infinity are not JSON (items refuse them too).
    raise ValueError(f"{name} is not valid JSON")


def _storable(value: object) -> bool:
    """No string in it holds U+0000 or a lone surrogate: text neither backend can keep."""
    if isinstance(value, str):
        return "\x00" not in value and not _SURROGATE.search(value)
    if isinstance(value, dict):
        return all(_storable(key) and _storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


_SURROGATE = re.compile("[\ud800-\udfff]")


# What ``{"metadata": null}`` asks: the session's metadata removed, whatever it holds.
CLEAR_METADATA = "null"
# The members of a session's record; only ``metadata`` can be written.
_READ_ONLY = frozenset(
    {"id", "item_count", "created_at", "updated_at", "expires_at", "ttl", "last_seq"}
)


def parse_session_patch(body: bytes, max_bytes: int) -> str | None:
    """A JSON Merge Patch (RFC 7396) of a session's record, as it reads it back:
    the merge patch of its metadata (an object's text), ``CLEAR_METADATA``, or None
    when the patch changes nothing. Any other member is refused (422): it is
    read-only, or the record has no such member.
    """
    document = _load(body, "body")
    if not isinstance(document, dict):
        raise _invalid(
            'a session is patched with a JSON object, such as {"metadata": {"topic": null}}',
            "body",
        )
    for name in document:
        if name == "metadata":
            continue
        what = "is read-only" if name in _READ_ONLY else "is not a member of a session"
        if name == "ttl":  # the one read-only member a caller sets, elsewhere
            what += " (a write's Session-TTL header sets it)"
        raise _invalid(f"{name!r} {what}; only 'metadata' can be patched", "body", name)
    if "metadata" not in document:
        return None
    patch = document["metadata"]
    if patch is None:
        return CLEAR_METADATA
    if not isinstance(patch, dict):
        raise _invalid(
            "'metadata' must stay a JSON object (or null, to remove it)", "body", "metadata"
        )
    if not _storable(patch):
        raise _unstorable("metadata")
    return parse_metadata(json.dumps(patch, ensure_ascii=False), max_bytes, where="metadata")
