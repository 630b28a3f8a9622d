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


def parse_key_lines(
    lines: list[str], *, source: str, unit: str = "entry"
) -> list[tuple[str, bytes, str]]:
    """``tenant:key`` or ``tenant:sha256:<hex>`` entries to (tenant, digest, place) triples.

    ``place`` names where the entry was (``<source> <unit> <number>``). Blank entries
    and ``#`` comments are skipped. A malformed entry raises ``ValueError`` naming its
    place, never the secret.
    """
    found: list[tuple[str, bytes, str]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        place = f"{source} {unit} {number}"
        tenant, sep, secret = line.partition(":")
        tenant = tenant.strip()
        if not sep or not secret:
            raise ValueError(f"{place}: expected tenant:key")
        if not _TENANT.fullmatch(tenant):
            raise ValueError(f"{place}: tenant names are 1 to 64 of A-Z a-z 0-9 . _ -")
        match = _DIGEST.fullmatch(secret)
        digest = bytes.fromhex(match.group(1)) if match else _digest(secret)
        found.append((tenant, digest, place))
    return found


def _one_tenant_per_key(found: list[tuple[str, bytes, str]]) -> list[tuple[str, bytes]]:
    """The (tenant, digest) pairs, each once; ``ValueError`` if a key names two tenants.

    A request with such a key would act for whichever tenant came last: it is
    refused at start instead, naming both places (never the key).
    """
    first: dict[bytes, tuple[str, str]] = {}
    pairs: list[tuple[str, bytes]] = []
    for tenant, digest, place in found:
        if digest not in first:
            first[digest] = (tenant, place)
            pairs.append((tenant, digest))
        elif first[digest][0] != tenant:
            other, other_place = first[digest]
            raise ValueError(
                f"{place}: this key is already the key of tenant {other!r} ({other_place}); "
                "a key may name one tenant only"
            )
    return pairs


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys; empty means the service runs open (one tenant, '')."""

    entries: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def load(cls, keys: str | None, keys_file: Path | None) -> ApiKeys:
        """The keys of ``keys`` (comma-separated) and of ``keys_file`` (one per line).

        Either one, when given, must hold at least one key: an empty keys file would
        otherwise start the service open to anyone (``ValueError`` saying so).
        """
        found: list[tuple[str, bytes, str]] = []
        if keys is not None:
            source = "SESSION_MEMORY_API_KEYS"
            from_variable = parse_key_lines(keys.split(","), source=source)
            if not from_variable:
                raise ValueError(f"{source} is set but holds no tenant:key entry")
            found += from_variable
        if keys_file is not None:
            from_file = parse_key_lines(
                keys_file.read_text().splitlines(), source=str(keys_file), unit="line"
            )
            if not from_file:
                raise ValueError(
                    f"{keys_file} holds no API keys (no tenant:key line); add one, or unset "
                    "SESSION_MEMORY_API_KEYS_FILE to serve without keys"
                )
            found += from_file
        return cls(tuple(_one_tenant_per_key(found)))

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """The keys ``settings`` configure (``api_keys`` and ``api_keys_file``).

        ``OSError`` if the file cannot be read; ``ValueError`` naming a malformed entry,
        a key listed for two tenants, or a keys setting that holds no key.
        """
        secret = settings.api_keys.get_secret_value() if settings.api_keys else None
        return cls.load(secret, settings.api_keys_file)

    @property
    def open(self) -> bool:
        return not self.entries

    def grants(self, authorization: str | None) -> bool:
        """Whether ``authorization`` carries a valid key (always, in open mode)."""
        try:
            self.tenant_for(authorization)
        except Unauthorized:
            return False
        return True

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
