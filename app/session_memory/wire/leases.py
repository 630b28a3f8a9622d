"""Run leases on the wire: the bodies of an acquisition and a renewal, and a lease as
the API answers it (and as a ``lease`` event carries it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..problems import InvalidInput, MalformedBody
from ..storage import Lease

__all__ = [
    "DEFAULT_LEASE_TTL",
    "UNLEASED_WRITES",
    "AcquireTerms",
    "lease_body",
    "lease_end_body",
    "parse_acquire",
    "parse_renew",
]

# A lease's TTL when the body names none (seconds).
DEFAULT_LEASE_TTL = 30.0
# What a lease does with writes that carry no token: refuse them (True) or not.
UNLEASED_WRITES = {"refuse": True, "allow": False}
_ACQUIRE_FIELDS = frozenset({"ttl", "wait", "unleased_writes"})
_RENEW_FIELDS = frozenset({"ttl"})


@dataclass(frozen=True, slots=True)
class AcquireTerms:
    """What an acquisition asks: the lease's TTL, how long to wait for it, and whether
    it refuses writes without a token."""

    ttl: float
    wait: float
    refuse_unleased: bool


def _invalid(detail: str, name: str) -> InvalidInput:
    return InvalidInput(detail, extra={"errors": [{"loc": ["body", name], "msg": detail}]})


def _object(body: bytes, allowed: frozenset[str]) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedBody(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(
            "the request body must be a JSON object",
            extra={"errors": [{"loc": ["body"], "msg": "not an object"}]},
        )
    for name in value:
        if name not in allowed:
            raise _invalid(f"unknown field {name!r}; the fields are {sorted(allowed)}", name)
    return value


def _seconds(value: object, name: str, *, most: float, zero: bool) -> float:
    """A number of seconds, from 0 with ``zero``, else above 0; more than ``most`` is
    cut to ``most`` (a server's bound, which the answer's ``ttl`` shows)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _invalid(f"{name!r} must be a number of seconds", name)
    if value < 0 or (value == 0 and not zero):
        least = "0 or more" if zero else "above 0"
        raise _invalid(f"{name!r} must be {least} seconds", name)
    # Compared before converting: an integer of any size is a number JSON allows
    # (NaN, which JSON has not, is the one value unequal to itself).
    return float(min(value, most))


def parse_acquire(body: bytes, *, max_ttl: float, max_wait: float) -> AcquireTerms:
    """An acquisition's body: ``ttl`` (default ``DEFAULT_LEASE_TTL``), ``wait`` (default
    0) and ``unleased_writes`` (``refuse``, the default, or ``allow``)."""
    fields = _object(body, _ACQUIRE_FIELDS)
    ttl = _seconds(
        fields.get("ttl", min(DEFAULT_LEASE_TTL, max_ttl)), "ttl", most=max_ttl, zero=False
    )
    wait = _seconds(fields.get("wait", 0), "wait", most=max_wait, zero=True)
    unleased = fields.get("unleased_writes", "refuse")
    if not isinstance(unleased, str) or unleased not in UNLEASED_WRITES:
        raise _invalid("'unleased_writes' must be 'refuse' or 'allow'", "unleased_writes")
    return AcquireTerms(ttl, wait, UNLEASED_WRITES[unleased])


def parse_renew(body: bytes, *, max_ttl: float) -> float | None:
    """A renewal's body: ``ttl`` (None when absent or null: the lease's own)."""
    fields = _object(body, _RENEW_FIELDS)
    if fields.get("ttl") is None:
        return None
    return _seconds(fields["ttl"], "ttl", most=max_ttl, zero=False)


def _time(seconds: float) -> str:
    # As a session's record writes its times.
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def lease_body(lease: Lease) -> bytes:
    """A lease as the API answers it: its token, expiry and TTL (and, as the ``lease``
    event's data, the same)."""
    return json.dumps(
        {"token": lease.token, "expires_at": _time(lease.expires_at), "ttl": lease.ttl},
        separators=(",", ":"),
    ).encode()


def lease_end_body(token: int) -> bytes:
    """A ``lease-end`` event's data: the token of the lease that ended."""
    return b'{"token":%d}' % token
