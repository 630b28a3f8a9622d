"""Reading and splitting ``{"items": [...]}`` request bodies without re-encoding items.

Each item is validated once (it must be a JSON object) and kept as the exact text the
client sent, so reads can return it byte for byte.

Validation builds as little as it can: objects and numbers inside an item decode to
one shared placeholder (so a body of millions of ``{}`` builds no dicts, and an
integer of any length is checked by the grammar, never by ``int()``, whose
4,300-digit limit would refuse it). The item count is checked before each item is
decoded, and an item is decoded within a window of ``max_item_bytes`` characters, so
an oversized item is refused after at most that much work. ``parse_item_batch_async``
runs large bodies on one worker thread, off the event loop, one at a time.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ..problems import InvalidInput, MalformedBody

__all__ = [
    "INLINE_PARSE_BYTES",
    "NO_LIMITS",
    "BatchLimits",
    "parse_item_batch",
    "parse_item_batch_async",
    "parse_item_body",
    "run_off_loop",
    "split_items",
]

T = TypeVar("T")

_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class _Placeholder:
    """What every object and number inside an item decodes to: validated, never built."""

    __slots__ = ()


_OBJECT = _Placeholder()
_NUMBER = _Placeholder()


def _object(_pairs: object) -> _Placeholder:
    return _OBJECT


def _number(_text: str) -> _Placeholder:
    return _NUMBER


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant,
    object_pairs_hook=_object,
    parse_int=_number,
    parse_float=_number,
)
# Smallest decoding window for one item; it doubles up to max_item_bytes as needed.
_FIRST_WINDOW = 4096
# A decoding error this close to a window's end may come from the cut, not the item.
_CUT_MARGIN = 16
# Bodies up to this size are split on the event loop: less work than a thread hop.
INLINE_PARSE_BYTES = 64 * 1024
# One thread: large bodies are validated one at a time, which bounds the memory
# validation can hold to one item's worth whatever the number of uploads.
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="payload")


def _type_name(value: object) -> str:
    if value is _OBJECT:
        return "object"
    if value is _NUMBER:
        return "number"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _malformed(text: str, pos: int, what: str) -> MalformedBody:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return MalformedBody(f"body is not valid JSON: {what} at line {line} column {column}")


def _decode_value(text: str, pos: int, where: str) -> tuple[object, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise _malformed(text, exc.pos, exc.msg) from None
    except ValueError as exc:
        raise _malformed(text, pos, str(exc)) from None
    except RecursionError:
        raise InvalidInput(
            f"{where} is nested too deeply",
            extra={"errors": [{"loc": ["body", *where.split(".")], "msg": "nested too deeply"}]},
        ) from None


@dataclass(frozen=True)
class BatchLimits:
    """How many items one request may carry, and how large one item may be."""

    max_items: int | None = None
    max_item_bytes: int | None = None


NO_LIMITS = BatchLimits()


async def run_off_loop(size: int, work: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``work(*args, **kwargs)`` for a body of ``size`` bytes: inline when it is small
    (``INLINE_PARSE_BYTES``), else on the payload thread, off the event loop."""
    if size <= INLINE_PARSE_BYTES:
        return work(*args, **kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_WORKER, functools.partial(work, *args, **kwargs))


async def parse_item_batch_async(body: bytes, limits: BatchLimits = NO_LIMITS) -> list[str]:
    """``parse_item_batch``, on the payload thread for a body over ``INLINE_PARSE_BYTES``."""
    return await run_off_loop(len(body), parse_item_batch, body, limits)


def parse_item_batch(body: bytes, limits: BatchLimits = NO_LIMITS) -> list[str]:
    """Split ``{"items": [obj, ...]}`` into the raw JSON text of each item.

    Raises ``MalformedBody`` (400) for bytes that are not JSON and ``InvalidInput``
    (422) for JSON of the wrong shape or past a limit, naming the index of the
    first bad item.
    """
    return parse_item_body(body, limits)[0]


# The longest text a scalar member beside the items may have (a sequence number's).
MAX_SCALAR_CHARS = 32


def parse_item_body(
    body: bytes, limits: BatchLimits = NO_LIMITS, scalars: frozenset[str] = frozenset()
) -> tuple[list[str], dict[str, str]]:
    """``parse_item_batch`` for a body that may also hold the short scalar members named
    in ``scalars`` (``{"items": [...], "from_seq": 3}``): the items, and each such
    member's JSON text. Every body that carries items goes through this one parser,
    so each is bounded alike, whatever else it holds.
    """
    text = _body_text(body)
    pos = _skip_ws(text, 0)
    if not text.startswith("{", pos):
        if pos == len(text):
            raise MalformedBody('body is empty; send {"items": [...]}')
        value, _ = _decode_value(text, pos, "body")
        raise _shape_error(
            f"body must be a JSON object with an items array, not {_type_name(value)}"
        )
    items, scalar_texts, pos = _members(text, _skip_ws(text, pos + 1), limits, scalars)
    if _skip_ws(text, pos) != len(text):
        raise _malformed(text, pos, "extra data after the JSON value")
    if items is None:
        raise _shape_error("field 'items' is required", loc=["items"])
    return items, scalar_texts


def _body_text(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"body is not valid UTF-8 (bad byte at offset {exc.start})") from None
    if text.startswith("\ufeff"):
        raise MalformedBody("body starts with a byte order mark; send plain UTF-8 JSON")
    return text


def _members(
    text: str, pos: int, limits: BatchLimits, scalars: frozenset[str]
) -> tuple[list[str] | None, dict[str, str], int]:
    """The object's members from ``pos`` (after its ``{``) through its ``}``."""
    items: list[str] | None = None
    found: dict[str, str] = {}
    if text.startswith("}", pos):
        return items, found, pos + 1
    while True:
        if not text.startswith('"', pos):
            raise _malformed(text, pos, "expected a property name in double quotes")
        key, pos = _decode_value(text, pos, "body")
        pos = _skip_ws(text, pos)
        if not text.startswith(":", pos):
            raise _malformed(text, pos, "expected ':'")
        pos = _skip_ws(text, pos + 1)
        if key in found or (key == "items" and items is not None):
            raise _shape_error(f"field {key!r} appears twice", loc=[key])
        if key == "items":
            items, pos = _split_array(text, pos, limits)
        elif key in scalars:
            found[str(key)], pos = _scalar(text, pos, str(key))
        else:
            holds = " and ".join(repr(name) for name in ["items", *sorted(scalars)])
            raise _shape_error(f"unknown field {key!r}; the body holds only {holds}", loc=[key])
        pos = _skip_ws(text, pos)
        if text.startswith("}", pos):
            return items, found, pos + 1
        if not text.startswith(",", pos):
            raise _malformed(text, pos, "expected ',' or '}'")
        pos = _skip_ws(text, pos + 1)


def _scalar(text: str, pos: int, key: str) -> tuple[str, int]:
    # Validated by the placeholder decoder (nothing is built), then kept short.
    _, end = _decode_value(text, pos, key)
    if end - pos > MAX_SCALAR_CHARS:
        raise _shape_error(f"{key!r} is too long for what it holds", loc=[key])
    return text[pos:end], end


def split_items(body: bytes) -> list[str]:
    """The raw text of each item in one of our own item pages (``{"items":[...],...}``)."""
    text = body.decode("utf-8")
    prefix = '{"items":'
    if not text.startswith(prefix):
        raise ValueError("not an item page")
    return _split_array(text, len(prefix), NO_LIMITS)[0]


def _split_array(text: str, pos: int, limits: BatchLimits) -> tuple[list[str], int]:
    if not text.startswith("[", pos):
        value, _ = _decode_value(text, pos, "items")
        raise _shape_error(f"'items' must be an array, not {_type_name(value)}", loc=["items"])
    pos = _skip_ws(text, pos + 1)
    spans: list[str] = []
    if text.startswith("]", pos):
        return spans, pos + 1
    while True:
        index = len(spans)
        if limits.max_items is not None and index >= limits.max_items:
            raise _shape_error(
                f"a request may carry at most {limits.max_items} items; send the rest "
                "in further requests",
                loc=["items", index],
                limit=("max_items_per_request", limits.max_items),
            )
        value, end = _decode_item(text, pos, index, limits.max_item_bytes)
        if value is not _OBJECT:
            raise _shape_error(
                f"items[{index}] must be a JSON object, not {_type_name(value)}",
                loc=["items", index],
            )
        span = text[pos:end]
        # Characters never outnumber UTF-8 bytes: encode only when it could matter.
        if (
            limits.max_item_bytes is not None
            and len(span) * 4 > limits.max_item_bytes
            and len(span.encode()) > limits.max_item_bytes
        ):
            raise _too_large(index, limits.max_item_bytes, f"is {len(span.encode())} bytes")
        spans.append(span)
        pos = _skip_ws(text, end)
        if text.startswith("]", pos):
            return spans, pos + 1
        if not text.startswith(",", pos):
            raise _malformed(text, pos, "expected ',' or ']'")
        pos = _skip_ws(text, pos + 1)


def _decode_item(text: str, pos: int, index: int, max_bytes: int | None) -> tuple[object, int]:
    """Decode the item at ``pos``, reading at most ``max_bytes`` characters past it.

    The window starts small and doubles: an item is decoded in a few tries costing
    twice its length at most, and one that does not end within ``max_bytes``
    characters (so is over ``max_bytes`` bytes) is refused without reading further.
    """
    where = f"items.{index}"
    if max_bytes is None:
        return _decode_value(text, pos, where)
    window = _FIRST_WINDOW
    while True:
        window = min(window, max_bytes + 1)
        if pos + window >= len(text):
            return _decode_value(text, pos, where)
        piece = text[pos : pos + window]
        try:
            value, end = _DECODER.raw_decode(piece)
        except json.JSONDecodeError as exc:
            cut = exc.pos >= window - _CUT_MARGIN or exc.msg.startswith("Unterminated string")
            if not cut:
                raise _malformed(text, pos + exc.pos, exc.msg) from None
            if window > max_bytes:
                raise _too_large(index, max_bytes, f"is over {max_bytes} bytes") from None
            window *= 2
            continue
        except (ValueError, RecursionError):
            return _decode_value(text, pos, where)  # the same error, with its position
        return value, pos + end


def _too_large(index: int, max_bytes: int, size: str) -> InvalidInput:
    return _shape_error(
        f"items[{index}] {size} of JSON; the limit is {max_bytes}",
        loc=["items", index],
        limit=("max_item_bytes", max_bytes),
    )


def _shape_error(
    detail: str, *, loc: list[object] | None = None, limit: tuple[str, int] | None = None
) -> InvalidInput:
    extra: dict[str, object] = {"errors": [{"loc": ["body", *(loc or [])], "msg": detail}]}
    if limit is not None:
        extra["limit"], extra["max"] = limit
    return InvalidInput(detail, extra=extra)
