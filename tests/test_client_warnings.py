"""The client says what it is doing: a server that does not answer is a warning at once.

Without it a call waits out its retry budget (30 s by default) in silence. The
warning comes on the first failed attempt of a call, once, on the
``session_memory_client`` logger, naming the URL and the retry budget left.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from session_memory_client import ConnectError, RemoteSession, SessionMemoryClient

from tests.utils.server import free_port

LOGGER = "session_memory_client"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


async def test_a_refused_call_warns_once_naming_the_url_and_the_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with RemoteSession("s", base_url=url, retry_for=0.5, backoff=0.01) as session:
        with pytest.raises(ConnectError):
            await session.get_items()
    (warning,) = _warnings(caplog)  # one, though the call was attempted several times
    assert f"could not connect to session-memory at {url}" in warning
    assert "retrying for up to 0." in warning
    assert warning.endswith(" s more")


async def test_the_warning_names_the_attempts_left_when_they_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with SessionMemoryClient(base_url=url, retries=2, retry_for=5, backoff=0.01) as client:
        with pytest.raises(ConnectError):
            await client.list_sessions()
    (warning,) = _warnings(caplog)
    assert url in warning
    assert "(at most 2 more attempts)" in warning


async def test_a_call_that_will_not_retry_raises_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    url = f"http://127.0.0.1:{free_port()}"
    async with RemoteSession("s", base_url=url, retries=0) as session:
        with pytest.raises(ConnectError):
            await session.get_items()
    assert _warnings(caplog) == []  # the error itself says it all


async def test_follow_warns_once_while_it_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with RemoteSession("s", base_url=url, backoff=0.01, max_backoff=0.02) as session:
        events = session.follow()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(events), 0.5)  # it keeps reconnecting
        await events.aclose()  # type: ignore[attr-defined]
    (warning,) = _warnings(caplog)
    assert url in warning
    assert "reconnecting until it answers" in warning
