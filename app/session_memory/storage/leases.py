"""Run leases: the record a store's leases give, and how a fencing token is made.

A run lease gives one caller (a run of an agent) a session for a while: writes that
carry its token (``Run-Lease``) go through, writes carrying any other token are
refused, and writes carrying none are refused too unless the lease allows them.
Tokens only grow per session: each is above every one before it, across releases,
expiries, restarts and replicas, so a holder that lost its lease is told so.
"""

from __future__ import annotations

from dataclasses import dataclass

from .records import revision_at

__all__ = ["LEASE_KEEP_SECONDS", "Lease", "next_token"]

# How long a lease's row (its last token) outlives the lease's end before the sweep
# deletes it. A token made afterwards still comes out higher, from the clock.
LEASE_KEEP_SECONDS = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Lease:
    """A session's lease: held until ``expires_at`` (wall-clock seconds) unless renewed
    (by ``ttl`` seconds) or released; ``refuse_unleased``: writes without a token are
    refused while it is held."""

    token: int
    expires_at: float
    ttl: float
    refuse_unleased: bool = True


def next_token(last: int | None, now: float) -> int:
    """The token of a new lease: above the session's last (None: none kept), and at
    least the clock in microseconds, as revisions are made (``records.revision_at``)."""
    return max((last or 0) + 1, revision_at(now))
