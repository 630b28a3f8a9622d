"""A scripted HTTP server on loopback: real TCP, answers chosen by the test.

For what a real session-memory process cannot be made to do on cue (answer 503 three
times, then 201): the client's retry and error mapping meet a real socket and a real
HTTP parser, not a mock of the HTTP library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = ["Answer", "Seen", "in_turn", "scripted_server"]


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # sent as JSON

    @classmethod
    def problem(cls, status: int) -> Answer:
        return cls(status, {"type": "about:blank", "title": "x", "status": status, "detail": "x"})


@asynccontextmanager
async def scripted_server(answer: Callable[[Seen], Answer], seen: list[Seen]) -> AsyncIterator[str]:
    """Serve every request with ``answer(request)``, recording it in ``seen``; yields the URL."""

    async def handle(request: web.Request) -> web.Response:
        got = Seen(
            request.method,
            request.raw_path,
            {name.lower(): value for name, value in request.headers.items()},
            await request.read(),
        )
        seen.append(got)
        reply = answer(got)
        content_type = "application/json" if reply.status < 400 else "application/problem+json"
        return web.json_response(reply.body, status=reply.status, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def in_turn(answers: list[Answer]) -> Callable[[Seen], Answer]:
    """An ``answer`` giving ``answers`` one after another."""
    return lambda _request: answers.pop(0)
