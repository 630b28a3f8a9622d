"""The bound on request header size: uvicorn's httptools parser sets none, so this does."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..problems import HeadersTooLarge, problem_response

__all__ = ["HeaderBound"]


class HeaderBound:
    """Answers 431 when the request's header names and values pass ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            sum(len(name) + len(value) for name, value in scope["headers"]) > self.max_bytes
        ):
            problem = HeadersTooLarge(
                f"the request headers exceed {self.max_bytes} bytes",
                extra={"limit": "max_header_bytes", "max": self.max_bytes},
            )
            await problem_response(problem, scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)
