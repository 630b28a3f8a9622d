"""The client's exception tree.

    SessionMemoryError
    ├── TransportError        the request did not complete; ``url`` says where it went
    │   ├── ConnectError      nothing accepted the connection (is the service running?)
    │   └── RequestTimeout    no answer within the timeout
    └── ProblemError          the service answered with an error: ``status`` and the
                              RFC 9457 ``title``, ``detail``, ``type`` and whole ``problem``

A session id outside the allowed alphabet raises the built-in ``ValueError`` before
any request is sent.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConnectError",
    "ProblemError",
    "RequestTimeout",
    "SessionMemoryError",
    "TransportError",
]


class SessionMemoryError(Exception):
    """Base class of every error the client raises about the service."""


class TransportError(SessionMemoryError):
    """The request did not complete."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class ConnectError(TransportError):
    """No connection could be made to the service."""


class RequestTimeout(TransportError):
    """The service did not answer within the timeout."""


class ProblemError(SessionMemoryError):
    """The service answered with an error status and a problem+json body."""

    def __init__(
        self,
        status: int,
        *,
        title: str,
        detail: str,
        type: str = "about:blank",
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.problem = problem if problem is not None else {}
