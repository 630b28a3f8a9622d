"""A writer in an OS process of its own, driven by the test over a pipe.

Each message is one HTTP request (method, path, JSON body or None, headers); the
writer sends it to the service and answers with the status. Used to change a session
behind the back of a client that keeps what it read.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

import httpx2

__all__ = ["Writer"]


def _serve(base_url: str, conn: Connection) -> None:
    with httpx2.Client(base_url=base_url, timeout=30) as http:
        while True:
            message = conn.recv()
            if message is None:
                return
            method, path, body, headers = message
            response = http.request(method, path, json=body, headers=headers)
            conn.send(response.status_code)


class Writer:
    """``send(method, path, body, headers)`` runs in the writer process; returns the status."""

    def __init__(self, base_url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(base_url, theirs), daemon=True)

    def __enter__(self) -> Writer:
        self._process.start()
        return self

    def send(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> int:
        self._conn.send((method, path, body, headers or {}))
        status: int = self._conn.recv()
        return status

    def __exit__(self, *exc: object) -> None:
        self._conn.send(None)
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
