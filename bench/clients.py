"""Client CPU per call: async HTTP clients (and RemoteSession) against redis-py.

An agent host pays its session client's CPU on every turn, so this measures the
client alone: one process of 8 asyncio tasks on CPU 0, a do-nothing server (the
bare ASGI app of bench/ceiling.py under uvicorn) pinned to CPU 1, and the CPU
time the client process used (user + system, every thread) divided by the calls
it made. Wall time is not the figure: on a shared machine it mostly measures the
neighbours.

The calls mirror a turn: a GET of 20 items of about 1 KB (the body is read, not
decoded, except by RemoteSession, which decodes as the SDK needs) and a POST of
2 such items; redis-py does LRANGE of 20 such items and RPUSH of 2 on the
machine's Redis.

    python -m bench.clients [--calls N] [--only NAME ...]

Candidates whose package is not installed are reported as such and skipped; the
dev extra installs only what ``make bench`` needs (the client brings aiohttp; httpx2 and
redis-py), the others come from ``pip install httpx-aiohttp pyreqwest aiosonic``, and
niquests from a virtualenv of its own: it brings urllib3-future, which takes over the
``urllib3`` import name and breaks ``requests`` (and so schemathesis) in the same
environment.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench import peers
from tests.utils.server import ServerProcess

TASKS = 8
ITEM: dict[str, Any] = {"role": "user", "content": "x" * 1000}
POST_BODY = json.dumps({"items": [ITEM, ITEM]}).encode()
ITEM_BYTES = json.dumps(ITEM).encode()
# The CPU the client runs on, and the one the do-nothing server is pinned to.
CLIENT_CPU, SERVER_CPU = 0, 1

Call = Callable[[], Awaitable[None]]
_redis_url = [peers.REDIS_URL]  # set in the measuring process by measure_one


def _optional(module: str) -> Any:
    """A candidate that is not a dependency of the project, imported untyped."""
    return importlib.import_module(module)


class PinnedCeiling(ServerProcess):
    """bench/ceiling.py's bare ASGI app under uvicorn, pinned to one CPU."""

    def __init__(self, log_path: Path) -> None:
        super().__init__("", log_path=log_path)

    def command(self) -> list[str]:
        return [
            "taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "uvicorn",
            "bench.ceiling:app", "--port", str(self.port), "--log-level", "warning",
            "--no-server-header", "--timeout-keep-alive", "60",
        ]  # fmt: skip


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # the whole process, all threads
    return usage.ru_utime + usage.ru_stime


async def _drive(calls: int, make: Callable[[], Call]) -> tuple[float, float]:
    """``calls`` calls over TASKS tasks; (CPU seconds, wall seconds) for them all."""
    call = make()
    for _ in range(TASKS * 4):  # warm: connections opened, code paths imported
        await call()
    per_task = calls // TASKS
    cpu, wall = _cpu_seconds(), time.perf_counter()

    async def loop() -> None:
        for _ in range(per_task):
            await call()

    await asyncio.gather(*(loop() for _ in range(TASKS)))
    return _cpu_seconds() - cpu, time.perf_counter() - wall


# -- the candidates: each is an async context giving (get, post) callables -------------


async def _httpx2(base: str, op: str, calls: int, transport: str) -> tuple[float, float]:
    import httpx2

    limits = httpx2.Limits(max_connections=TASKS, max_keepalive_connections=TASKS)
    kwargs: dict[str, Any] = {"limits": limits, "timeout": 30}
    if transport == "aiohttp":
        kwargs["transport"] = _optional("httpx_aiohttp.httpx2").AiohttpTransport(limits=limits)
    async with httpx2.AsyncClient(base_url=base, **kwargs) as client:
        headers = {"content-type": "application/json"}

        async def get() -> None:
            response = await client.get("/v1/sessions/s/items", params={"limit": "20"})
            response.raise_for_status()

        async def post() -> None:
            response = await client.post("/v1/sessions/s/items", content=POST_BODY, headers=headers)
            response.raise_for_status()

        return await _drive(calls, lambda: get if op == "get" else post)


async def _aiohttp(base: str, op: str, calls: int) -> tuple[float, float]:
    aiohttp = _optional("aiohttp")
    connector = aiohttp.TCPConnector(limit=TASKS)
    async with aiohttp.ClientSession(base, connector=connector) as client:
        headers = {"content-type": "application/json"}

        async def get() -> None:
            async with client.get("/v1/sessions/s/items", params={"limit": "20"}) as response:
                response.raise_for_status()
                await response.read()

        async def post() -> None:
            async with client.post(
                "/v1/sessions/s/items", data=POST_BODY, headers=headers
            ) as response:
                response.raise_for_status()
                await response.read()

        return await _drive(calls, lambda: get if op == "get" else post)


async def _niquests(base: str, op: str, calls: int) -> tuple[float, float]:
    niquests = _optional("niquests")
    async with niquests.AsyncSession(pool_connections=1, pool_maxsize=TASKS) as client:
        headers = {"content-type": "application/json"}

        async def get() -> None:
            response = await client.get(f"{base}/v1/sessions/s/items", params={"limit": "20"})
            response.raise_for_status()

        async def post() -> None:
            response = await client.post(
                f"{base}/v1/sessions/s/items", data=POST_BODY, headers=headers
            )
            response.raise_for_status()

        return await _drive(calls, lambda: get if op == "get" else post)


async def _pyreqwest(base: str, op: str, calls: int) -> tuple[float, float]:
    builder = _optional("pyreqwest.client").ClientBuilder
    async with builder().base_url(base).error_for_status(True).build() as client:

        async def get() -> None:
            request = client.get("/v1/sessions/s/items").query({"limit": "20"}).build()
            response = await request.send()
            await response.bytes()

        async def post() -> None:
            request = (
                client.post("/v1/sessions/s/items")
                .header("content-type", "application/json")
                .body_bytes(POST_BODY)
                .build()
            )
            response = await request.send()
            await response.bytes()

        return await _drive(calls, lambda: get if op == "get" else post)


async def _aiosonic(base: str, op: str, calls: int) -> tuple[float, float]:
    aiosonic = _optional("aiosonic")
    client = aiosonic.HTTPClient()
    headers = {"content-type": "application/json"}

    async def get() -> None:
        response = await client.get(f"{base}/v1/sessions/s/items", params={"limit": "20"})
        assert response.status_code == 200
        await response.content()

    async def post() -> None:
        response = await client.post(f"{base}/v1/sessions/s/items", data=POST_BODY, headers=headers)
        assert response.status_code == 201
        await response.content()

    try:
        return await _drive(calls, lambda: get if op == "get" else post)
    finally:
        await client.connector.cleanup()


async def _remote_session(base: str, op: str, calls: int) -> tuple[float, float]:
    from session_memory_client import RemoteSession

    # As an agent host uses it: its own pool (aiohttp), no http_client of ours.
    async with RemoteSession("s", base_url=base) as session:

        async def get() -> None:
            await session.get_items(limit=20)

        async def post() -> None:
            await session.add_items([ITEM, ITEM])  # type: ignore[list-item]

        return await _drive(calls, lambda: get if op == "get" else post)


async def _redis(base: str, op: str, calls: int) -> tuple[float, float]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(_redis_url[0], max_connections=TASKS)
    try:
        await client.delete("s", "w")
        await client.rpush("s", *([ITEM_BYTES] * 20))

        async def get() -> None:
            await client.lrange("s", 0, 19)

        async def post() -> None:
            await client.rpush("w", ITEM_BYTES, ITEM_BYTES)

        return await _drive(calls, lambda: get if op == "get" else post)
    finally:
        await client.delete("s", "w")
        await client.aclose()


async def _redis_session(base: str, op: str, calls: int) -> tuple[float, float]:
    from agents.extensions.memory.redis_session import RedisSession

    session = RedisSession.from_url("s", url=_redis_url[0])
    try:
        await session.clear_session()
        await session.add_items([ITEM] * 20)  # type: ignore[list-item]

        async def get() -> None:
            await session.get_items(limit=20)

        async def post() -> None:
            await session.add_items([ITEM, ITEM])  # type: ignore[list-item]

        return await _drive(calls, lambda: get if op == "get" else post)
    finally:
        await session.clear_session()
        await session.close()


Runner = Callable[[str, str, int], Coroutine[Any, Any, tuple[float, float]]]
CANDIDATES: dict[str, tuple[str, Runner]] = {
    "httpx2 (default transport)": ("httpx2", lambda b, o, n: _httpx2(b, o, n, "default")),
    "httpx2 + httpx-aiohttp transport": (
        "httpx_aiohttp",
        lambda b, o, n: _httpx2(b, o, n, "aiohttp"),
    ),
    "aiohttp": ("aiohttp", _aiohttp),
    "niquests": ("niquests", _niquests),
    "pyreqwest": ("pyreqwest", _pyreqwest),
    "aiosonic": ("aiosonic", _aiosonic),
    "RemoteSession (aiohttp), decodes": ("session_memory_client", _remote_session),
    "redis-py LRANGE 20 / RPUSH 2": ("redis", _redis),
    "RedisSession (redis-py), decodes": ("agents", _redis_session),
}


def measure_one(name: str, base: str, op: str, calls: int, redis_url: str) -> dict[str, Any]:
    """Run in a fresh process pinned to CLIENT_CPU: µs of CPU per call, and calls/s."""
    os.sched_setaffinity(0, {CLIENT_CPU})
    _redis_url[0] = redis_url
    module, run = CANDIDATES[name]
    try:
        __import__(module)
    except ImportError:
        return {"client": name, "op": op, "missing": f"pip install {module}"}
    cpu, wall = asyncio.run(run(base, op, calls))
    return {
        "client": name,
        "op": op,
        "cpu_us_per_call": round(cpu / calls * 1e6, 1),
        "calls_per_s": round(calls / wall, 1),
    }


def measure(
    names: list[str],
    calls: int,
    log_dir: Path,
    ops: tuple[str, ...] = ("get", "post"),
    redis_url: str = peers.REDIS_URL,
) -> list[dict[str, Any]]:
    """Each candidate in its own spawned process, one after another, against one server."""
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the client-cost measurement pins client and server to two CPUs")
    rows = []
    with (
        PinnedCeiling(log_dir / "clients-ceiling.log") as server,
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        for name in names:
            for op in ops:
                row = pool.submit(measure_one, name, server.base_url, op, calls, redis_url).result()
                rows.append(row)
                print(f"  {name:36} {op:4} {row}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=8000, help="calls per candidate and op")
    parser.add_argument("--only", nargs="*", choices=list(CANDIDATES), default=list(CANDIDATES))
    parser.add_argument("--redis-url", default=peers.REDIS_URL, help="Redis for redis-py's line")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-clients-"))
    rows = measure(args.only, args.calls, work, redis_url=args.redis_url)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
