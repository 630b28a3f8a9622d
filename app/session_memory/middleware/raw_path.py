"""ASGI middleware: the session id decoded from the raw path, losslessly.

The server percent-decodes the whole path before routing, replacing invalid UTF-8
with U+FFFD, so ``%2F`` inside an id became a path separator (``DELETE
/v1/sessions/a%2Fitems%2Flast`` popped from session ``a``) and ``%FF``, ``%FE`` and
``%EF%BF%BD`` all named one session. Under ``/v1/sessions/`` this decodes each segment
of ``raw_path`` on its own, strictly: a segment holding ``/`` or invalid UTF-8 is a
422, and the routes see exactly the segments the client sent.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from ..problems import InvalidInput, problem_response

__all__ = ["RawPath"]

_PREFIX = "/v1/sessions/"
# raw_path splits into "", "v1", "sessions", the id, then the rest.
_ID_SEGMENT = 3


def _refusal(index: int, msg: str) -> InvalidInput:
    loc = ["path", "session_id"] if index == _ID_SEGMENT else ["path"]
    what = "the session id" if index == _ID_SEGMENT else "a path segment"
    return InvalidInput(f"{what} {msg}", extra={"errors": [{"loc": loc, "msg": msg}]})


def decode_path(raw_path: bytes) -> str:
    """The path with each segment percent-decoded as strict UTF-8; else ``InvalidInput``."""
    segments = raw_path.split(b"/")
    decoded: list[str] = []
    for index, segment in enumerate(segments):
        raw = unquote_to_bytes(segment) if b"%" in segment else segment
        if b"/" in raw:
            raise _refusal(index, "holds '/' (percent-encoded as %2F); an id is one segment")
        try:
            decoded.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _refusal(
                index, f"is not valid UTF-8 once percent-decoded (byte {exc.start})"
            ) from None
    return "/".join(decoded)


class RawPath:
    """Re-decode ``/v1/sessions/...`` paths from ``raw_path``; 422 for a lossy one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes | None = scope.get("raw_path") if scope["type"] == "http" else None
        # Only escapes can decode differently; the common path has none.
        if raw_path is None or b"%" not in raw_path or not scope["path"].startswith(_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            path = decode_path(raw_path.partition(b"?")[0])
        except InvalidInput as problem:
            await problem_response(problem, scope["path"])(scope, receive, send)
            return
        await self.app({**scope, "path": path}, receive, send)
