"""The errors a store raises: one tree under ``StoreError``.

The service maps each to a problem in one place (``problems.as_problem``).
"""

from __future__ import annotations

from .records import ANY_REVISION

__all__ = [
    "ForkTooLargeError",
    "IdempotencyInFlightError",
    "IdempotencyMismatchError",
    "InvalidCursorError",
    "LeaseLostError",
    "MetadataTooLargeError",
    "PreconditionFailedError",
    "RefusedError",
    "SessionExistsError",
    "SessionFullError",
    "SessionLeasedError",
    "SessionMissingError",
    "StoreError",
    "StoreUnavailableError",
    "TooManySessionsError",
    "check_revision",
]


class StoreError(Exception):
    """Base class of the errors a store raises."""


class RefusedError(StoreError):
    """The caller's request was refused as the contract says; nothing was done.

    Not a failure of the store: such errors are answered, not logged or counted.
    """


class StoreUnavailableError(StoreError):
    """The database cannot be reached or did not answer in time."""


class IdempotencyMismatchError(RefusedError):
    """An idempotency key came back with a different request; nothing was done."""


class IdempotencyInFlightError(RefusedError):
    """A request with this idempotency key is still running; nothing was done."""


class InvalidCursorError(RefusedError, ValueError):
    """A session-listing cursor that no listing gave out."""


class PreconditionFailedError(RefusedError):
    """The session's revision is not the one the write expected; nothing was done."""

    def __init__(self, *, current: int | None) -> None:
        super().__init__(f"the session is at revision {current}")
        self.current = current


class SessionFullError(RefusedError):
    """An append would take a session past its item limit; nothing was stored.

    ``count`` counts the items the session holds and the popped items it keeps for
    replay (``kept``: see ``Idempotency``).
    """

    def __init__(self, *, limit: int, count: int, adding: int, kept: int = 0) -> None:
        super().__init__(f"session holds {count} items; adding {adding} would pass {limit}")
        self.limit = limit
        self.count = count
        self.adding = adding
        self.kept = kept


class TooManySessionsError(RefusedError):
    """A write would create a session past the tenant's session limit; nothing was done."""

    def __init__(self, *, limit: int) -> None:
        super().__init__(f"the tenant already holds {limit} sessions")
        self.limit = limit


class ForkTooLargeError(RefusedError):
    """A fork would copy more than the store lets one fork copy; nothing was made.

    ``what`` is ``"items"`` or ``"bytes"`` (of item text); ``size`` is how many the
    fork would copy, or, for bytes, how many were found before the copy stopped.
    """

    def __init__(self, *, what: str, limit: int, size: int) -> None:
        # Bytes are counted only until they pass the limit: ``size`` is a lower bound.
        copies = f"{size} items" if what == "items" else f"more than {limit} bytes of items"
        super().__init__(f"the fork would copy {copies}; one fork may copy at most {limit} {what}")
        self.what = what
        self.limit = limit
        self.size = size


class SessionExistsError(RefusedError):
    """The session a fork would create already exists; nothing was done."""


class SessionMissingError(RefusedError):
    """The session the operation needs does not exist; nothing was done."""


class SessionLeasedError(RefusedError):
    """Another caller holds the session's run lease: the write (without a token, when
    the lease refuses those) or the acquisition was refused; nothing was done.

    ``retry_after``: seconds until the lease expires unless renewed (None: unknown).
    """

    def __init__(self, *, retry_after: float | None = None) -> None:
        super().__init__("another run holds the session's lease")
        self.retry_after = retry_after


class LeaseLostError(RefusedError):
    """The run lease token given is not the session's current lease (it expired, was
    released, or another lease followed it); nothing was done."""


class MetadataTooLargeError(RefusedError):
    """Merged metadata would pass its size limit; nothing changed."""

    def __init__(self, *, size: int, limit: int) -> None:
        super().__init__(f"metadata would be {size} bytes; the limit is {limit}")
        self.size = size
        self.limit = limit


def check_revision(expected: int | None, current: int) -> None:
    """Raise ``PreconditionFailedError`` unless ``current`` (0: no session) is as expected."""
    if expected is None:
        return
    if current > 0 if expected == ANY_REVISION else current == expected:
        return
    raise PreconditionFailedError(current=current)
