"""The ``Idempotency-Key`` request header: validation and request fingerprints."""

from __future__ import annotations

import hashlib
import re

from .errors import InvalidInput
from .storage import Idempotency

__all__ = ["HEADER", "KEY_PATTERN", "idempotency_for"]

HEADER = "idempotency-key"
# Visible ASCII, as the IETF draft's examples and Stripe's keys use; UUIDs fit.
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)


def idempotency_for(
    key: str | None, *, method: str, session_id: str, body: bytes, ttl: float
) -> Idempotency | None:
    """The store's ``Idempotency`` for a request, None without a key, 422 for a bad key."""
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise InvalidInput(
            "the Idempotency-Key header must be 1 to 255 visible ASCII characters "
            "(a UUID is a good choice)",
            extra={"errors": [{"loc": ["header", "Idempotency-Key"], "msg": "invalid key"}]},
        )
    digest = hashlib.sha256()
    for part in (method.encode(), session_id.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return Idempotency(key=key, fingerprint=digest.hexdigest(), ttl=ttl)
