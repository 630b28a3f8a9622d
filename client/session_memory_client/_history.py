"""History operations of ``RemoteSession``: atomic replace, fork and live follow (the
Agents SDK's compaction hooks are built on them in ``_compaction``).

``HistoryMethods`` is mixed into ``RemoteSession``; it speaks HTTP only through the
session's ``Transport`` (``_transport``), like every other method.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._exceptions import TransportError
from ._lease import lease_token
from ._transport import Reply, Target, Transport
from ._types import ItemPage
from ._writes import _encode, _settle
from .protocol import LAST_EVENT_ID, validate_session_id

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["FollowEvent", "ForkResult", "HistoryMethods", "ReplaceResult"]

logger = logging.getLogger("session_memory_client")


@dataclass(frozen=True, slots=True)
class ReplaceResult:
    """Where a replace put the new items, and the session's revision after it."""

    count: int
    first_seq: int | None
    last_seq: int | None
    revision: int


@dataclass(frozen=True, slots=True)
class ForkResult:
    """The new session a fork made: its id, what was copied into it (numbered from 1),
    and its revision."""

    session_id: str
    count: int
    first_seq: int | None
    last_seq: int | None
    revision: int


@dataclass(frozen=True, slots=True)
class FollowEvent:
    """One change: ``append`` (``seq`` and ``item``), or ``pop``/``replace``/``clear``
    (``revision``: re-read the session to see what it holds now). ``clear`` also says
    the session ended (cleared, expired): the appends after it are a new history,
    numbered from 1. ``resync``: changes came faster than this follower read them and
    some notices were dropped; re-read the session. ``lease``: a run holds the
    session's lease (at the stream's start, and at each acquisition and renewal);
    ``lease-end``: it was released or expired; both carry ``token``, and ``lease``
    also ``expires_at`` (ISO 8601) and ``ttl`` (seconds)."""

    kind: str
    seq: int | None = None
    item: Any = None
    revision: int | None = None
    token: int | None = None
    expires_at: str | None = None
    ttl: float | None = None


def _revision(reply: Reply) -> int:
    return int((reply.etag or '"0"').strip('"'))


class HistoryMethods:
    """``replace_items``, ``fork`` and ``follow`` of ``RemoteSession``."""

    if TYPE_CHECKING:
        session_id: str
        _transport: Transport
        _path: str
        _items_target: Target

        def _check_open(self) -> None: ...

        async def read_items(
            self,
            *,
            limit: int | None = None,
            after: int | None = None,
            before: int | None = None,
        ) -> ItemPage: ...

    async def replace_items(
        self,
        items: list[TResponseInputItem],
        *,
        from_seq: int | None = None,
        if_revision: int | None = None,
    ) -> ReplaceResult:
        """Replace the items from ``from_seq`` on (all when None) by ``items``, atomically.

        The new items are numbered above every seq the session has given. With
        ``if_revision`` (an ETag's number) only if the session is still at that
        revision: else ``ProblemError`` with status 412 and nothing changes. Retried
        like every write, under one Idempotency-Key; a cancelled call waits for the
        outcome first.
        """
        self._check_open()
        return await _settle(
            self._replace(
                items,
                from_seq=from_seq,
                if_match=None if if_revision is None else f'"{if_revision}"',
            )
        )

    async def _replace(
        self, items: list[TResponseInputItem], *, from_seq: int | None, if_match: str | None
    ) -> ReplaceResult:
        body: dict[str, Any] = {"items": list(items)}
        if from_seq is not None:
            body["from_seq"] = from_seq
        reply = await self._transport.request(
            "PUT",
            self._items_target,
            content=_encode(body),
            idempotency_key=str(uuid.uuid4()),
            if_match=if_match,
            run_lease=lease_token(self),
        )
        answer = reply.json()
        return ReplaceResult(
            answer["count"], answer["first_seq"], answer["last_seq"], _revision(reply)
        )

    async def fork(self, new_session_id: str, *, through_seq: int | None = None) -> ForkResult:
        """Copy this session's items through ``through_seq`` (all when None) into a new
        session, numbered from 1.

        ``ProblemError`` 409 when ``new_session_id`` exists, 404 when this session does
        not. Retried like every write, under one Idempotency-Key.
        """
        self._check_open()
        body: dict[str, Any] = {"session_id": validate_session_id(new_session_id)}
        if through_seq is not None:
            body["through_seq"] = through_seq
        target = self._transport.target(self._path + "/fork")
        reply = await _settle(
            self._transport.request("POST", target, content=_encode(body), write=True)
        )
        answer = reply.json()
        return ForkResult(
            answer["session_id"],
            answer["count"],
            answer["first_seq"],
            answer["last_seq"],
            _revision(reply),
        )

    async def follow(self, after: int | None = None) -> AsyncIterator[FollowEvent]:
        """The session's changes as they happen (after seq ``after``; None: from now on).

        An async iterator that never ends by itself (close it, or stop iterating). A
        lost connection is resumed after the last item seen (``Last-Event-ID``), without
        gaps or repeats, waiting the session's backoff between attempts. An error
        answer (401, 404 for a bad id, 503 when the server has too many streams) is
        raised as ``ProblemError``.
        """
        self._check_open()
        target = self._transport.target(self._path + "/events")
        cursor = after
        attempt = 0
        while True:
            headers = {} if cursor is None else {LAST_EVENT_ID: str(cursor)}
            fields: dict[str, str] = {}
            try:
                async for line in self._transport.stream_lines(target, headers):
                    attempt = 0
                    if line.startswith(":") or not (line or fields):
                        continue
                    if line:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        fields[name] = f"{fields[name]}\n{value}" if name in fields else value
                        continue
                    kind, data = fields.get("event", "message"), fields.get("data", "null")
                    seq = int(fields["id"]) if "id" in fields else None
                    fields = {}
                    if kind == "append":
                        cursor = seq
                        yield FollowEvent(kind, seq=seq, item=json.loads(data))
                    elif kind in ("lease", "lease-end"):
                        lease = json.loads(data)
                        yield FollowEvent(
                            kind,
                            token=lease["token"],
                            expires_at=lease.get("expires_at"),
                            ttl=lease.get("ttl"),
                        )
                    else:
                        if kind == "clear":
                            cursor = 0  # a resumed stream starts the new history at 1
                        yield FollowEvent(kind, revision=json.loads(data).get("revision"))
            except TransportError as exc:
                if attempt == 0:
                    # Said once per outage: the stream is resumed until it answers.
                    logger.warning("%s; reconnecting until it answers", exc)
            # The stream ended (a restart, a proxy) or the connection was lost: resume.
            transport = self._transport
            await transport._sleep(min(transport.max_backoff, transport.backoff * 2**attempt))
            attempt += 1
