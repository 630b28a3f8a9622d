"""Who gives way at the connection cap (``server.admission``), without a server.

The order: connections whose requests carried no valid key (idle ones first, a
probe being answered never), then connections with no whole request head yet
(oldest first), then idle ones; keyless connections also hold at most their share
of the cap. tests/test_slow_clients.py runs the same against a real server.
"""

from __future__ import annotations

from session_memory.auth import ApiKeys
from session_memory.server.admission import Admission, is_probe
from session_memory.server.limits import EdgeLimits

KEYS = ApiKeys.load("team:right-key", None)
WITH_KEY = [(b"host", b"x"), (b"authorization", b"Bearer right-key")]
WITHOUT_KEY = [(b"host", b"x")]


class Conn:
    """A connection as admission sees it."""

    def __init__(self, name: str, *, idle: bool = False, probing: bool = False) -> None:
        self.name = name
        self.is_idle = idle
        self.is_probing = probing
        self.evicted = False

    def idle(self) -> bool:
        return self.is_idle

    def probing(self) -> bool:
        return self.is_probing

    def evict(self) -> None:
        self.evicted = True

    def __repr__(self) -> str:
        return self.name


def _admission(cap: int, keys: ApiKeys | None = KEYS, share: float = 0.5) -> Admission:
    limits = EdgeLimits(
        max_header_bytes=65536,
        max_header_count=100,
        header_timeout=10,
        body_timeout=10,
        max_connections=cap,
        unauthenticated_share=share,
    )
    return Admission(keys, limits)


class Server:
    """The connections of one process, as uvicorn's set holds them."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self.open: list[Conn] = []

    def connect(self, conn: Conn, headers: list[tuple[bytes, bytes]] | None = None) -> bool:
        self.open.append(conn)
        admitted = self.admission.admit(conn, self.open)
        self._settle()
        if admitted and headers is not None:
            self.admission.headed(conn, headers)
            self._settle()
        return admitted

    def _settle(self) -> None:
        # An evicted connection is gone by the next turn of the loop.
        for conn in [conn for conn in self.open if conn.evicted]:
            self.open.remove(conn)
            self.admission.forget(conn)


def test_keyless_connections_make_room_before_a_tenants_idle_one() -> None:
    server = Server(_admission(cap=3))
    tenant = Conn("tenant", idle=True)
    keyless = Conn("keyless")
    fresh = Conn("fresh")
    assert server.connect(tenant, WITH_KEY)
    assert server.connect(keyless, WITHOUT_KEY)
    assert server.connect(fresh)
    newcomer = Conn("newcomer")
    assert server.connect(newcomer)
    assert keyless.evicted  # busy, but keyless: before the fresh and the idle tenant
    assert server.connect(Conn("next"))
    assert fresh.evicted  # then the oldest with no whole head yet
    assert not tenant.evicted


def test_an_idle_keyless_connection_goes_before_a_busy_one_and_a_probe_never() -> None:
    server = Server(_admission(cap=3, share=1.0))
    busy = Conn("busy")
    probe = Conn("probe", probing=True)
    answered = Conn("answered", idle=True)
    for conn in (busy, probe, answered):
        assert server.connect(conn, WITHOUT_KEY)
    assert server.connect(Conn("tenant"), WITH_KEY)
    assert answered.evicted
    assert server.connect(Conn("tenant 2"), WITH_KEY)
    assert busy.evicted
    # Only a probe and two trusted, busy connections are left: none can give way.
    assert not server.connect(Conn("refused"))
    assert not probe.evicted


def test_keyless_connections_hold_at_most_their_share() -> None:
    server = Server(_admission(cap=10, share=0.3))
    first, second, third = Conn("first", idle=True), Conn("second"), Conn("third")
    for conn in (first, second, third):
        assert server.connect(conn, WITHOUT_KEY)
    fourth = Conn("fourth")
    assert server.connect(fourth, WITHOUT_KEY)
    assert first.evicted  # the share is 3 of 10: the idle one makes room
    assert server.connect(Conn("fifth"), WITHOUT_KEY)
    assert second.evicted  # then the oldest busy one
    assert not third.evicted
    assert not fourth.evicted
    # Tenants are not counted against it.
    for n in range(5):
        assert server.connect(Conn(f"tenant {n}"), WITH_KEY)
    assert not third.evicted


def test_a_key_shown_once_trusts_the_connection() -> None:
    admission = _admission(cap=10)
    conn = Conn("c")
    assert admission.admit(conn, [conn])
    assert not admission.headed(conn, WITHOUT_KEY)
    assert admission.headed(conn, WITH_KEY)


def test_open_mode_trusts_every_whole_head() -> None:
    server = Server(_admission(cap=2, keys=ApiKeys()))
    idle, busy = Conn("idle", idle=True), Conn("busy")
    assert server.connect(idle, WITHOUT_KEY)
    assert server.connect(busy, WITHOUT_KEY)  # no key needed: neither is keyless
    assert server.connect(Conn("newcomer"))
    assert idle.evicted
    assert not busy.evicted


def test_probes_are_gets_and_heads_of_the_health_paths() -> None:
    assert is_probe(b"GET", b"/healthz")
    assert is_probe(b"HEAD", b"/readyz?x=1")
    assert not is_probe(b"POST", b"/healthz")
    assert not is_probe(b"GET", b"/metrics")
