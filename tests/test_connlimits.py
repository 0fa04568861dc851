"""keybroker.http.connlimits: over any sequence of accepts, requests and closes the caps hold, a
busy connection is never shed, and a new connection is refused only when nothing idle is in
its way."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.http.connlimits import ConnectionLimits, client_key


class _Conn:
    def __init__(self, remote: str) -> None:
        self.remote: str | None = remote
        self.open = True
        self.busy = False

    def shed(self) -> None:
        if self.busy:
            raise AssertionError("a busy connection was shed")
        self.open = False


_OPS = st.lists(
    st.tuples(st.sampled_from(["accept", "busy", "idle", "close"]), st.integers(0, 4)),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, total=st.integers(1, 8), per_client=st.integers(1, 5))
def test_caps_hold_and_only_idle_connections_are_shed(
    ops: list[tuple[str, int]], total: int, per_client: int
) -> None:
    limits = ConnectionLimits(total, per_client)
    conns: list[_Conn] = []
    for op, n in ops:
        live = [c for c in conns if c.open]
        if op == "accept":
            conn = _Conn(f"10.0.0.{n}")
            idle_before = [c for c in live if not c.busy]
            same = [c for c in live if c.remote == conn.remote]
            reason = limits.admit(conn)
            if reason is None:
                conns.append(conn)
            elif reason == "too many connections from this client":
                assert len(same) >= per_client and not any(not c.busy for c in same)
            else:
                assert len(live) >= total and not idle_before
        elif live:
            conn = live[n % len(live)]
            if op == "busy":
                conn.busy = True
                limits.busy(conn)
            elif op == "idle":
                conn.busy = False
                limits.idle(conn)
            else:
                conn.open = False
                limits.release(conn)
                limits.release(conn)  # twice: counted once
        live = [c for c in conns if c.open]
        assert limits.count == len(live) <= total
        for remote in {c.remote for c in live}:
            assert sum(c.remote == remote for c in live) <= per_client


def test_the_oldest_idle_connection_goes_first() -> None:
    limits = ConnectionLimits(2, 0)
    a, b, c = _Conn("1"), _Conn("2"), _Conn("3")
    assert limits.admit(a) is None and limits.admit(b) is None
    limits.busy(a)
    limits.idle(a)  # a became idle after b: b is the oldest idle one now
    assert limits.admit(c) is None
    assert a.open and not b.open


@given(
    host=st.integers(0, 2**64 - 1),
    other=st.integers(0, 2**64 - 1),
    prefix=st.integers(1 << 60, 2**64 - 2),  # not ::/64, where the IPv4-mapped ones live
)
def test_an_ipv6_64_is_one_client_and_a_mapped_ipv4_is_its_ipv4(
    host: int, other: int, prefix: int
) -> None:
    import ipaddress

    def v6(low: int, high: int = prefix) -> str:
        return str(ipaddress.IPv6Address((high << 64) | low))

    assert client_key(v6(host)) == client_key(v6(other))
    assert client_key(v6(host)) != client_key(v6(host, prefix ^ 1))
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    limits = ConnectionLimits(0, 2)
    a, b, c = _Conn(v6(host)), _Conn(v6(other)), _Conn(v6(host ^ 1))
    assert limits.admit(a) is None and limits.admit(b) is None
    limits.busy(a)
    limits.busy(b)
    assert limits.admit(c) == "too many connections from this client"
