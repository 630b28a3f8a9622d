"""ASGI middleware: answer only requests whose Host names this service.

A keyless server on loopback is otherwise readable from any web page by DNS
rebinding: the page's own host name is made to resolve to 127.0.0.1, and the
browser sends ``Host: attacker.example``. Refusing host names the service does not
expect closes that door; the port is not compared (it varies with ``--port``).
"""

from __future__ import annotations

from collections.abc import Iterable

from session_memory_client.protocol import PROBLEM_MEDIA_TYPE
from starlette.types import ASGIApp, Receive, Scope, Send

from ..problems import MisdirectedRequest, problem_body

__all__ = ["LOOPBACK_HOSTS", "HostGuard", "allowed_hosts", "host_name"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def allowed_hosts(setting: str | None, *, open_mode: bool) -> list[str]:
    """The Host names to answer for: the setting (comma-separated, ``*``: any), else by mode.

    With keys a rebinding page cannot authenticate, so any name is answered; open,
    only loopback names.
    """
    if setting is not None:
        return [name.strip() for name in setting.split(",") if name.strip()]
    return sorted(LOOPBACK_HOSTS) if open_mode else ["*"]


# How many distinct allowed Host values HostGuard remembers.
_MAX_PASSED = 64


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
        # Host header values already let through: nearly every request repeats one,
        # and a set lookup is cheaper than parsing it again. Bounded, since the
        # values come from callers (only allowed ones are kept).
        self._passed: set[bytes] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        host = next((value for name, value in scope["headers"] if name == b"host"), b"")
        if host in self._passed:
            await self.app(scope, receive, send)
            return
        if host_name(host.decode("latin-1")) in self.allowed:
            if len(self._passed) < _MAX_PASSED:
                self._passed.add(host)
            await self.app(scope, receive, send)
            return
        problem = MisdirectedRequest(
            "this server does not answer for the host named in the request; "
            "SESSION_MEMORY_ALLOWED_HOSTS (--allowed-hosts) lists the names it answers for"
        )
        body = problem_body(problem, scope["path"])
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
