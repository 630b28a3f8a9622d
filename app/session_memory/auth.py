"""API keys bound to tenants: parsing the configured keys and checking a request's key.

Keys are configured as ``tenant:key`` pairs (or ``tenant:sha256:<hex digest>`` so the
secret itself is never stored). Only SHA-256 digests are kept in memory, and a
presented key is hashed and compared against every digest in constant time, so
neither the timing nor the answer tells an unknown key from a wrong one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .problems import Unauthorized

__all__ = ["ApiKeys", "parse_key_lines"]

_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")
_TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_key_lines(lines: list[str], *, source: str) -> list[tuple[str, bytes]]:
    """``tenant:key`` or ``tenant:sha256:<hex>`` entries to (tenant, digest) pairs.

    Blank entries and ``#`` comments are skipped. A malformed entry raises
    ``ValueError`` naming its place, never the secret.
    """
    pairs: list[tuple[str, bytes]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tenant, sep, secret = line.partition(":")
        tenant = tenant.strip()
        if not sep or not secret:
            raise ValueError(f"{source} entry {number}: expected tenant:key")
        if not _TENANT.fullmatch(tenant):
            raise ValueError(
                f"{source} entry {number}: tenant names are 1 to 64 of A-Z a-z 0-9 . _ -"
            )
        match = _DIGEST.fullmatch(secret)
        digest = bytes.fromhex(match.group(1)) if match else _digest(secret)
        pairs.append((tenant, digest))
    return pairs


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys; empty means the service runs open (one tenant, '')."""

    entries: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def load(cls, keys: str | None, keys_file: Path | None) -> ApiKeys:
        entries = parse_key_lines((keys or "").split(","), source="SESSION_MEMORY_API_KEYS")
        if keys_file is not None:
            entries += parse_key_lines(keys_file.read_text().splitlines(), source=str(keys_file))
        return cls(tuple(entries))

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """The keys ``settings`` configure (``api_keys`` and ``api_keys_file``).

        ``OSError`` if the file cannot be read, ``ValueError`` naming a malformed entry.
        """
        secret = settings.api_keys.get_secret_value() if settings.api_keys else None
        return cls.load(secret, settings.api_keys_file)

    @property
    def open(self) -> bool:
        return not self.entries

    def tenant_for(self, authorization: str | None) -> str:
        """The tenant a request acts for, or ``Unauthorized``."""
        if self.open:
            return ""
        scheme, _, token = (authorization or "").partition(" ")
        presented = _digest(token.strip()) if scheme.lower() == "bearer" else b""
        found = ""
        # Look at every entry whatever matched, so timing says nothing of where.
        for tenant, digest in self.entries:
            if hmac.compare_digest(presented, digest):
                found = tenant
        if not found:
            raise Unauthorized()
        return found
