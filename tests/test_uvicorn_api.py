"""The parts of uvicorn's private API that ``server.protocol`` relies on, and its hooks.

``EdgeProtocol`` subclasses uvicorn's httptools protocol; every private name it
uses is listed in ``UVICORN_PRIVATE_API``. These tests check each against the
installed uvicorn, so a uvicorn that moves one fails here, by name, rather than
somewhere deep in a served request. They also drive one connection in-process:
the cycle swap that makes one write per response, and the shutdown hook.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import uvicorn
from session_memory.draining import Draining
from session_memory.server.protocol import UVICORN_PRIVATE_API, EdgeLimits, EdgeProtocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

REQUEST = b"GET /x HTTP/1.1\r\nhost: test\r\n\r\n"
LIMITS = EdgeLimits(
    max_header_bytes=65536,
    max_header_count=100,
    header_timeout=10,
    body_timeout=10,
    max_connections=10,
)


def _moved(owner: str, name: str, why: str) -> str:
    what = f"{owner}.{name}" if name else owner
    return (
        f"uvicorn {uvicorn.__version__}: {what} {why}; server/protocol.py relies on it "
        "(UVICORN_PRIVATE_API): adapt the protocol to this uvicorn, then widen the uvicorn "
        "pin in pyproject.toml"
    )


def _resolve(owner: str) -> Any:
    """The module (``uvicorn.server``) or class (``uvicorn.server:ServerState``) named."""
    module_name, _, class_name = owner.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.fail(_moved(module_name, "", f"cannot be imported ({exc})"))
    if not class_name:
        return module
    found = getattr(module, class_name, None)
    if found is None:
        pytest.fail(_moved(module_name, class_name, "is gone"))
    return found


class _Transport(asyncio.Transport):
    """Keeps what is written; a loopback peer for uvicorn's address look-ups."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def _answered(protocol: HttpToolsProtocol) -> _Transport:
    """``protocol`` connected, sent one request, and its response complete."""
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(REQUEST)
    for _ in range(100):
        if protocol.cycle is not None and protocol.cycle.response_complete:
            return transport
        await asyncio.sleep(0.01)
    raise AssertionError("the response did not complete")


def _config() -> uvicorn.Config:
    # No log_config: building a Config must not reconfigure this process's logging.
    config = uvicorn.Config(_app, lifespan="off", log_config=None)
    config.load()
    return config


def _edge(config: uvicorn.Config, draining: Draining) -> EdgeProtocol:
    return EdgeProtocol(
        config=config,
        server_state=ServerState(),
        app_state={},
        _loop=asyncio.get_running_loop(),
        limits=LIMITS,
        draining=draining,
    )


def test_the_relied_on_methods_keep_their_signatures() -> None:
    moved = []
    for owner, names in UVICORN_PRIVATE_API.items():
        found = _resolve(owner)
        for name, parameters in names.items():
            if parameters is None:
                continue  # an attribute: see the next tests
            method = getattr(found, name, None)
            if method is None:
                moved.append(_moved(owner, name, "is gone"))
                continue
            actual = tuple(inspect.signature(method).parameters)[1:]  # without self
            if actual != parameters:
                moved.append(_moved(owner, name, f"takes {actual}, not {parameters}"))
    assert not moved, "\n".join(moved)


async def test_the_relied_on_attributes_are_there() -> None:
    # uvicorn's own protocol, not ours, so a missing attribute is named here
    # instead of raising inside an override.
    protocol = HttpToolsProtocol(
        config=_config(), server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    await _answered(protocol)
    live = {
        "HttpToolsProtocol": protocol,
        "RequestResponseCycle": protocol.cycle,
        "FlowControl": protocol.flow,
    }
    moved = []
    for owner, names in UVICORN_PRIVATE_API.items():
        found = _resolve(owner)
        holder = live.get(owner.partition(":")[2], found)
        moved += [
            _moved(owner, name, "is gone")
            for name, parameters in names.items()
            if parameters is None and not hasattr(holder, name)
        ]
    assert not moved, "\n".join(moved)


async def test_a_sized_response_is_one_write() -> None:
    protocol = _edge(_config(), Draining())
    transport = await _answered(protocol)
    # uvicorn's cycle became the one-write cycle before its task ran.
    assert type(protocol.cycle).__name__ == "OneWriteCycle"
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\nok")


async def test_a_shutdown_tells_draining_once() -> None:
    draining = Draining()
    calls: list[str] = []
    draining.add(lambda: calls.append("stop"))
    config = _config()
    first, second = _edge(config, draining), _edge(config, draining)
    await _answered(first)
    await _answered(second)
    first.shutdown()
    second.shutdown()
    assert calls == ["stop"]
    assert draining.begun


def test_draining_calls_late_callbacks_at_once_and_survives_a_failing_one() -> None:
    draining = Draining()
    calls: list[str] = []

    def fails() -> None:
        raise RuntimeError("boom")

    draining.add(fails)
    draining.add(lambda: calls.append("first"))
    draining.begin()
    draining.begin()
    draining.add(lambda: calls.append("late"))
    assert calls == ["first", "late"]


def test_a_worker_gets_one_channel_with_one_draining() -> None:
    # Run apart: building uvicorn's config reconfigures the process's logging.
    script = textwrap.dedent(
        """
        import os, pickle
        from session_memory.auth import ApiKeys
        from session_memory.config import Settings
        from session_memory.server.run import uvicorn_config

        settings = Settings(database_url="postgresql://u:pw@db.invalid/x", api_keys="a:k")
        keys = ApiKeys.from_settings(settings)
        before = dict(os.environ)
        config = uvicorn_config(settings, keys, workers=2, port=8123)
        assert dict(os.environ) == before, "settings must not travel in the environment"
        # What a worker process receives: the config, pickled whole.
        worker = pickle.loads(pickle.dumps(config))
        factory, protocol = worker.app, worker.http
        assert factory.args[0] == settings and factory.args[1] == keys
        assert factory.args[0].database.postgres_dsn == "postgresql://u:pw@db.invalid/x"
        assert factory.args[2] is protocol.keywords["draining"]
        assert protocol.keywords["limits"].max_header_count == settings.max_header_count
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr
