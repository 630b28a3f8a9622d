"""Numbers on the wire: headers and query parameters take ASCII digits only, on the hot
path and through FastAPI alike; integers inside items are kept whatever their size.
Real server processes over loopback, one per path.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from .utils.server import ServerProcess

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module", params=["hot-path", "fastapi"])
def base_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp(f"numbers-{request.param}")
    env = {"SESSION_MEMORY_HOT_PATH": "true" if request.param == "hot-path" else "false"}
    with ServerProcess(
        f"sqlite:///{folder}/numbers.db", log_path=folder / "server.log", env=env
    ) as server:
        yield server.base_url


def _append(base_url: str, headers: dict[str, bytes | str], body: bytes) -> httpx2.Response:
    return httpx2.post(
        f"{base_url}/v1/sessions/numbers-{uuid.uuid4()}/items",
        content=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )


# Each passes str.isdigit() (or int()), none is plain ASCII digits.
@pytest.mark.parametrize(
    "value", [b"\xb2", b"\xb9\xb3", "\u0663".encode(), b"1_0", b"+5", b"-0", b"0x10"]
)
def test_session_ttl_takes_ascii_digits_only(base_url: str, value: bytes) -> None:
    answer = _append(base_url, {"Session-TTL": value}, b'{"items": [{"a": 1}]}')
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["errors"][0]["loc"] == ["header", "Session-TTL"]


def test_session_ttl_takes_plain_seconds(base_url: str) -> None:
    answer = _append(base_url, {"Session-TTL": "3600"}, b'{"items": [{"a": 1}]}')
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("value", ["%C2%B2", "%D9%A3", "1_0", "%2B5", "%201"])
@pytest.mark.parametrize("name", ["limit", "after", "before"])
def test_item_query_numbers_take_ascii_digits_only(base_url: str, name: str, value: str) -> None:
    extra = "" if name == "limit" else "&limit=5"
    answer = httpx2.get(f"{base_url}/v1/sessions/numbers/items?{name}={value}{extra}", timeout=30)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("value", ["%C2%B2", "1_0", "%2B5"])
def test_session_list_limit_takes_ascii_digits_only(base_url: str, value: str) -> None:
    answer = httpx2.get(f"{base_url}/v1/sessions?limit={value}", timeout=30)
    assert answer.status_code == 422, answer.text


def test_content_length_takes_ascii_digits_only(base_url: str) -> None:
    import socket
    from urllib.parse import urlsplit

    port = urlsplit(base_url).port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/sessions/numbers/items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: \xb2\r\n\r\n"
        )
        head = sock.recv(65536).split(b"\r\n", 1)[0]
    # The HTTP parser refuses it before the service sees it: never a 500.
    assert head.startswith(b"HTTP/1.1 4"), head
