"""Every line the server writes to stderr is one JSON object: the service's own, uvicorn's
start-up and error lines, and what database drivers, asyncio and warnings log.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from .utils.server import ServerProcess


def _json_lines(text: str) -> list[dict[str, object]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return parsed


@pytest.mark.slow
def test_a_server_run_logs_only_json_lines(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with ServerProcess(database_url, log_path=log, extra_args=["--log-level", "info"]) as server:
        assert httpx2.get(server.base_url + "/v1/sessions/x/items?limit=1").status_code == 200
        assert server.stop() == 0
    lines = _json_lines(log.read_text())
    loggers = {line["logger"] for line in lines}
    assert "uvicorn.error" in loggers  # start-up and shutdown lines, once plain text
    assert any(line.get("msg") == "request" for line in lines)


DRIVER_NOISE = """
import asyncio, logging, warnings
from session_memory.observability import configure_logging

configure_logging("info")
try:
    raise ConnectionResetError("connection was closed in the middle of operation")
except ConnectionResetError:
    # As asyncpg's pool logs a failed reconnect.
    logging.getLogger("asyncpg.pool").warning(
        "Failed to restore the pool connection floor; retrying", exc_info=True
    )

async def main() -> None:
    loop = asyncio.get_running_loop()
    # As asyncpg reports an error in a connection callback.
    loop.call_exception_handler(
        {"message": "Unhandled exception in asyncpg notification listener",
         "exception": RuntimeError("boom")}
    )

asyncio.run(main())
warnings.warn("an unclosed connection", ResourceWarning)
"""


@pytest.mark.slow
def test_driver_asyncio_and_warning_lines_are_json() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", DRIVER_NOISE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = _json_lines(done.stderr)
    by_logger = {line["logger"]: line for line in lines}
    assert "ConnectionResetError" in str(by_logger["asyncpg.pool"]["exc"])
    assert "RuntimeError: boom" in str(by_logger["asyncio"]["exc"])
    assert "ResourceWarning" in str(by_logger["py.warnings"]["msg"])
