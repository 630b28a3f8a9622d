"""Service settings, read from ``SESSION_MEMORY_*`` environment variables and CLI flags."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "NOT_SETTINGS",
    "Database",
    "Settings",
    "check_database_url",
    "redact_url",
    "unknown_variables",
]


# Schemes store_from_url knows (a "+driver" suffix is allowed), and the forms to name.
_URL_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db or "
    "postgresql://user:password@host:5432/database"
)


def check_database_url(url: str) -> str:
    """``url`` if it is a form the stores accept; else ``ValueError`` naming the right form.

    Checked before anything is opened, so ``sqlite:/x.db`` (one slash) is refused
    instead of being read as ``./x.db``.
    """
    scheme, sep, rest = url.partition(":")
    base = scheme.split("+", 1)[0].lower()
    if not sep and url.endswith(".db"):
        # A file's path where a URL belongs: name the URL it meant.
        raise ValueError(
            f"{url!r} is a path, not a database URL; write sqlite:///{url} "
            "(a path after three slashes; an absolute path then starts with a fourth)"
        )
    if not sep or base not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(
            f"unsupported database URL scheme {scheme!r} in {redact_url(url)!r}; use {_URL_FORMS}"
        )
    if base == "sqlite":
        if not rest.startswith("///") or not rest[3:] or "?" in rest:
            raise ValueError(
                f"malformed SQLite URL {url!r}: write sqlite:///relative/path.db "
                "(three slashes) or sqlite:////absolute/path.db (four)"
            )
        if rest[3:] == ":memory:":
            raise ValueError(
                "in-memory SQLite is not supported (each connection would see its own); "
                "name a file: sqlite:///data/sessions.db"
            )
    elif not rest.startswith("//"):
        raise ValueError(
            f"malformed PostgreSQL URL {redact_url(url)!r}: write "
            "postgresql://user:password@host:5432/database"
        )
    else:
        try:
            urlsplit(url).port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError(
                f"malformed PostgreSQL URL {redact_url(url)!r}: the port must be a number "
                "from 0 to 65535"
            ) from None
    return url


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Database:
    """The database URL, parsed once (by ``Settings``) into what its users need."""

    url: str
    """As configured, password included."""
    backend: Literal["sqlite", "postgresql"]
    redacted: str
    """The URL with its password masked, for logs and messages."""
    name: str
    """SQLite: the file's absolute path; PostgreSQL: the database (by default the user's)."""
    host: str
    """PostgreSQL: ``host:port`` (``local socket`` without a host); SQLite: empty."""
    sqlite_path: Path | None
    """SQLite: the database file, absolute (relative URLs are read from the working folder)."""
    postgres_dsn: str | None
    """PostgreSQL: the URL as asyncpg takes it (without a ``+asyncpg`` driver suffix)."""

    @classmethod
    def parse(cls, url: str) -> Database:
        """``url``, checked by :func:`check_database_url` (``ValueError`` if it is malformed)."""
        scheme, _, rest = check_database_url(url).partition(":")
        redacted = redact_url(url)
        if scheme.split("+", 1)[0].lower() == "sqlite":
            # sqlite:///relative or sqlite:////absolute: the path follows the third slash.
            path = Path(unquote(rest[3:])).absolute()
            return cls(url, "sqlite", redacted, str(path), "", path, None)
        parts = urlsplit(url)
        return cls(
            url,
            "postgresql",
            redacted,
            name=parts.path.lstrip("/") or parts.username or "",
            host=f"{parts.hostname or 'local socket'}:{parts.port or 5432}",
            sqlite_path=None,
            postgres_dsn=url.replace("postgresql+asyncpg://", "postgresql://", 1),
        )


class Settings(BaseSettings):
    """Every setting has a documented default; docs/operations.md's table lists them.

    Immutable once read, so what is derived from them (``database``) stays true.
    """

    model_config = SettingsConfigDict(env_prefix="SESSION_MEMORY_", extra="ignore", frozen=True)

    _database: Database = PrivateAttr()

    database_url: str = Field(
        default="sqlite:///./data/sessions.db",
        description="Where items are stored: sqlite:///path.db or postgresql://...",
    )
    host: str = Field(default="127.0.0.1", description="Address `serve` binds to.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `serve` listens on.")
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted; a larger one gets 413.",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request line plus headers, in bytes, held while they "
        "arrive; larger gets 431 and the connection is closed.",
    )
    max_header_count: int = Field(
        default=100, ge=8, description="Most header fields one request may carry; more gets 431."
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds from a request's first byte to the end of its headers; "
        "slower gets 408 and the connection is closed.",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request body may pause between chunks; longer gets 408 "
        "and the connection is closed.",
    )
    idle_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a connection may wait for its next request (a new one "
        "for its first) before it is closed.",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Most open client connections; past it an idle one is closed to "
        "make room, or the new one gets 503.",
    )
    shutdown_timeout_seconds: float = Field(
        default=10.0,
        ge=0,
        description="On SIGTERM, seconds to let in-flight requests finish before they "
        "are cancelled and the store is closed.",
    )
    # Slow, silent and keyless clients: how long and how much they may hold.
    body_deadline_seconds: float = Field(
        default=120.0,
        gt=0,
        description="Seconds a whole request body may take to arrive, from the end of its "
        "headers, however steadily it trickles; longer gets 408 and the connection is closed.",
    )
    send_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an answer may wait for its client to read what was already sent "
        "(the server stops producing meanwhile); a client that reads nothing for that long "
        "has its connection closed.",
    )
    max_pending_write_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of answers one process holds for clients that are not reading "
        "them; an answer that would pass it has its connection closed.",
    )
    unauthenticated_connection_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="With API keys: the share of max_connections that connections whose "
        "requests carry no valid key may hold; past it the oldest of them is closed. At the "
        "cap they are closed before any tenant's connection.",
    )
    allowed_hosts: str | None = Field(
        default=None,
        description="Comma-separated host names the server answers for (* for any); "
        "others get 421. Default: with API keys any, in open mode only localhost, "
        "127.0.0.1 and [::1].",
    )
    max_item_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64,
        description="Largest single item (its JSON text, in bytes); a larger one gets 422.",
    )
    max_read_page_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Most bytes of items one read page holds: a read with a limit "
        "returns fewer items, with has_more true, rather than pass it (a single larger "
        "item is still returned alone); reads without a limit stream in pages of it.",
    )
    max_items_per_request: int = Field(
        default=10_000, ge=1, description="Most items one append may carry; more gets 422."
    )
    max_items_per_session: int = Field(
        default=0,
        ge=0,
        description="Most items a session may hold; an append past it gets 422. 0: no limit.",
    )
    max_metadata_bytes: int = Field(
        default=4096,
        ge=2,
        le=1024 * 1024,
        description="Largest metadata object a session may carry (its JSON text, in bytes).",
    )
    follow_heartbeat_seconds: float = Field(
        default=15,
        gt=0,
        description="A live follow stream sends a comment this often when nothing happens.",
    )
    max_follow_streams: int = Field(
        default=1000,
        ge=0,
        description="Live follow streams one process serves at once; more get 503.",
    )
    max_follow_streams_per_tenant: int = Field(
        default=100,
        ge=0,
        description="Live follow streams one tenant may hold in one process; more get 503.",
    )
    max_sessions_per_tenant: int = Field(
        default=0,
        ge=0,
        description="Most sessions one tenant may hold; a write that would create one more "
        "gets 422. 0: no limit.",
    )
    # What one fork may copy: a fork is one small request that makes the store copy a
    # whole history, so it is bounded like an append of that many items is.
    max_fork_items: int = Field(
        default=10_000,
        ge=0,
        description="Most items one fork may copy; a fork of more gets 422 and makes "
        "nothing. 0: no limit.",
    )
    max_fork_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=0,
        description="Most bytes of items (their JSON text) one fork may copy; a fork of "
        "more gets 422 and makes nothing. 0: no limit.",
    )
    # A run lease is held by one caller at a time: its TTL bounds how long a crashed
    # holder blocks the session, and a wait holds a request (and a connection) open.
    max_lease_ttl_seconds: float = Field(
        default=3600,
        gt=0,
        description="Longest TTL a run lease is acquired or renewed for (seconds); a "
        "longer one asked for is granted as this.",
    )
    max_lease_wait_seconds: float = Field(
        default=30,
        ge=0,
        description="Longest an acquisition waits for a run lease held by another; a "
        "longer wait asked for waits this long.",
    )
    api_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated tenant:key pairs (a key may be sha256:<hex digest>).",
    )
    api_keys_file: Path | None = Field(
        default=None, description="A file of tenant:key lines; blank lines and # comments skipped."
    )
    allow_open: bool = Field(
        default=False,
        description="Allow running without API keys on a non-loopback address.",
    )
    session_ttl_seconds: float = Field(
        default=0,
        ge=0,
        description="Sessions expire this long after their last write (0: never); "
        "a Session-TTL header on an append overrides it for that session.",
    )
    idempotency_ttl_seconds: float = Field(
        default=86_400,
        gt=0,
        description="How long a write's outcome is kept for replay under its Idempotency-Key.",
    )
    sweep_batch_rows: int = Field(
        default=1000,
        ge=1,
        description="Rows of each kind (expired sessions, their items, idempotency records) "
        "one expiry-sweep transaction deletes at most; a session holding more is deleted "
        "over several.",
    )
    sqlite_readers: int = Field(
        default=2, ge=1, le=64, description="Read connections kept open to the SQLite file."
    )
    pg_pool_size: int = Field(
        default=10, ge=1, le=1000, description="PostgreSQL connections per server process."
    )
    pg_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a PostgreSQL connection."
    )
    pg_statement_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a PostgreSQL statement may run."
    )
    hot_path: bool = Field(
        default=True,
        description="Serve the hot item routes without the framework (same answers, faster).",
    )
    access_log: bool = Field(
        default=True, description="Log one JSON line per request (method, route, status...)."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        default="info", description="Server log level."
    )

    @field_validator("database_url")
    @classmethod
    def _database_url_form(cls, url: str) -> str:
        return check_database_url(url)

    @model_validator(mode="after")
    def _parse_database_url(self) -> Self:
        self._database = Database.parse(self.database_url)
        return self

    @property
    def database(self) -> Database:
        """``database_url``, parsed: the one reading of it every part of the service uses."""
        return self._database

    def binds_loopback_only(self) -> bool:
        """Whether ``host`` is a loopback address (or localhost)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


# -- variables that are not settings ---------------------------------------------------

ENV_PREFIX = "SESSION_MEMORY_"

NOT_SETTINGS = frozenset(
    {
        # The clients and the CLI's `sessions` and `export --base-url`: where the
        # server is, and the key to send it.
        "SESSION_MEMORY_BASE_URL",
        "SESSION_MEMORY_API_KEY",
        # The test suites: their PostgreSQL server, whether it must be there, and the
        # Python environment the TypeScript client's tests serve from.
        "SESSION_MEMORY_TEST_POSTGRES_URL",
        "SESSION_MEMORY_REQUIRE_POSTGRES",
        "SESSION_MEMORY_VENV",
    }
)
"""Every ``SESSION_MEMORY_*`` variable the project reads that is not a ``Settings`` field."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One message per ``SESSION_MEMORY_*`` variable in ``environ`` that nothing reads.

    A typo in a setting's name would otherwise be ignored without a word (and the
    default used); each message names the closest known variable when one is close.
    Names are compared in upper case, as settings are read regardless of case.
    """
    # Compared without the prefix, which every name shares and would make all look close.
    known = sorted(
        {name.upper() for name in Settings.model_fields}
        | {name.removeprefix(ENV_PREFIX) for name in NOT_SETTINGS}
    )
    messages = []
    for name in sorted(environ):
        upper = name.upper()
        if upper in NOT_SETTINGS and name != upper:
            # The clients read these by their exact name (settings ignore case).
            messages.append(f"unknown variable {name}; did you mean {upper}?")
            continue
        if not upper.startswith(ENV_PREFIX) or upper.removeprefix(ENV_PREFIX) in known:
            continue
        close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), known, n=1)
        hint = (
            f"; did you mean {ENV_PREFIX}{close[0]}?"
            if close
            else " (`session-memory config` prints every setting)"
        )
        messages.append(f"unknown variable {name}{hint}")
    return messages
