"""ASGI middleware: answer only requests whose Host names this service.

A keyless server on loopback is otherwise readable from any web page by DNS
rebinding: the page's own host name is made to resolve to 127.0.0.1, and the
browser sends ``Host: attacker.example``. Refusing host names the service does not
expect closes that door; the port is not compared (it varies with ``--port``).
"""

from __future__ import annotations

from collections.abc import Iterable

from session_memory_client.protocol import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import problem_body

__all__ = ["LOOPBACK_HOSTS", "HostGuard", "host_name"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def host_name(host: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8000`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.partition(":")[0]


class HostGuard:
    """Pass requests whose Host is in ``allowed`` (``*`` allows any); others get 421."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_name(name) for name in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        host = next((value for name, value in scope["headers"] if name == b"host"), b"")
        if host_name(host.decode("latin-1")) in self.allowed:
            await self.app(scope, receive, send)
            return
        body = problem_body(
            status=421,
            type_=PROBLEM_TYPE_PREFIX + "misdirected-request",
            title="Misdirected request",
            detail="this server does not answer for the host named in the request; "
            "SESSION_MEMORY_ALLOWED_HOSTS lists the names it answers for",
            instance=scope["path"],
        )
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
