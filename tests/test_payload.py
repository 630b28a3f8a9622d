"""Splitting request bodies into the raw text of each item."""

from __future__ import annotations

import json

import pytest
from session_memory.problems import InvalidInput, MalformedBody
from session_memory.wire.items import BatchLimits, parse_item_batch


def test_parse_keeps_each_item_byte_for_byte() -> None:
    body = '{ "items" : [ {"b":1,  "a":[1.50,1e2]} ,{"x":"\\u00e9 é 🙂"}]}'.encode()
    assert parse_item_batch(body) == ['{"b":1,  "a":[1.50,1e2]}', '{"x":"\\u00e9 é 🙂"}']


def test_parse_empty_list() -> None:
    assert parse_item_batch(b'{"items":[]}') == []


@pytest.mark.parametrize(
    ("body", "index", "kind"),
    [
        (b'{"items":[{"a":1}, 3]}', 1, "number"),
        (b'{"items":["x"]}', 0, "string"),
        (b'{"items":[{}, {}, [1]]}', 2, "array"),
        (b'{"items":[{}, null]}', 1, "null"),
        (b'{"items":[true]}', 0, "boolean"),
    ],
)
def test_non_object_item_is_named_by_index(body: bytes, index: int, kind: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_item_batch(body)
    assert caught.value.detail == f"items[{index}] must be a JSON object, not {kind}"
    assert caught.value.extra["errors"][0]["loc"] == ["body", "items", index]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'[{"a":1}]', "must be a JSON object with an items array, not array"),
        (b"{}", "'items' is required"),
        (b'{"items":{}}', "'items' must be an array, not object"),
        (b'{"items":[], "extra": 1}', "unknown field 'extra'"),
        (b'{"items":[], "items": []}', "appears twice"),
    ],
)
def test_wrong_shape_is_invalid_input(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        parse_item_batch(body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b'{"items":[{"a":1}',
        b'{"items":[{"a":1},]}',
        b'{"items":[],}',
        b'{"items":[]} x',
        b'{"items":[{"a":NaN}]}',
        b'{"items":[{"a":Infinity}]}',
        b"{items:[]}",
        b'{"items":[{"a":"\xff"}]}',
        b'\xef\xbb\xbf{"items":[]}',
    ],
)
def test_malformed_json_is_rejected(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_item_batch(body)


def test_deep_nesting_is_refused_cleanly() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(InvalidInput, match="nested too deeply"):
        parse_item_batch(f'{{"items":[{{"a":{deep}}}]}}'.encode())


def test_moderate_nesting_is_accepted() -> None:
    value: object = "leaf"
    for _ in range(200):
        value = {"k": value}
    text = json.dumps({"items": [value]})
    assert [json.loads(span) for span in parse_item_batch(text.encode())] == [value]


def test_integers_of_any_length_are_kept_as_sent() -> None:
    # Python's int() refuses more than 4,300 digits; the grammar alone decides here.
    digits = "9" * 50_000
    item = f'{{"n":{digits},"m":-{digits}.5e-{digits},"list":[{digits}]}}'
    assert parse_item_batch(f'{{"items":[{item}]}}'.encode()) == [item]


def test_limits_hold_with_a_deep_or_long_item() -> None:
    limits = BatchLimits(max_items=10, max_item_bytes=64 * 1024)
    body = b'{"items":[' + b",".join([b"{}"] * 11) + b"]}"
    with pytest.raises(InvalidInput, match="at most 10 items"):
        parse_item_batch(body, limits)
    # Items that end anywhere around the first decoding windows keep their text.
    items = [f'{{"s":"{"x" * size}"}}' for size in (4080, 4090, 4100, 8190, 40_000)]
    body = ('{"items":[' + ",".join(items) + "]}").encode()
    assert parse_item_batch(body, limits) == items


@pytest.mark.parametrize(
    "inner",
    [
        b"{}," * 1_000_000 + b"{}",  # many small objects
        b'"' + b"a" * 1_000_000 + b'"',  # one long string
        b"1" * 1_000_000,  # one long number
    ],
)
def test_an_oversized_item_is_refused_without_reading_it_whole(inner: bytes) -> None:
    limits = BatchLimits(max_items=10, max_item_bytes=64 * 1024)
    body = b'{"items":[{"a":[' + inner + b"]}]}"
    with pytest.raises(InvalidInput) as caught:
        parse_item_batch(body, limits)
    assert caught.value.extra["limit"] == "max_item_bytes"


def test_a_syntax_error_inside_a_long_item_is_malformed() -> None:
    limits = BatchLimits(max_item_bytes=64 * 1024)
    body = b'{"items":[{"a":[' + b"1," * 10_000 + b"x" + b"1," * 40_000 + b"1]}]}"
    with pytest.raises(MalformedBody, match="column"):
        parse_item_batch(body, limits)
