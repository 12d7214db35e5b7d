"""Lockout after repeated authentication failures, and refusing a client in the
protocol before any authentication (rfbproto "Security": no types, then a reason)."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from vzvnc.rfb.lockout import Lockout
from vzvnc.rfb.messages import ConnectionRefused
from vzvnc.rfb.protocol import ConnectionState, ServerConnection


def test_an_address_is_locked_out_after_the_threshold_and_only_it() -> None:
    lockout = Lockout(threshold=3, initial=10.0)
    assert lockout.failed("a", 0.0) == 0.0
    assert lockout.failed("a", 1.0) == 0.0
    assert lockout.blocked_for("a", 1.0) == 0.0
    assert lockout.failed("a", 2.0) == 10.0
    assert lockout.blocked_for("a", 2.0) == 10.0
    assert lockout.blocked_for("a", 7.0) == 5.0
    assert lockout.blocked_for("b", 7.0) == 0.0
    assert lockout.blocked_for("a", 12.0) == 0.0


def test_each_failure_after_a_lockout_doubles_it_up_to_the_maximum() -> None:
    lockout = Lockout(threshold=2, initial=10.0, maximum=35.0)
    lockout.failed("a", 0.0)
    assert lockout.failed("a", 0.0) == 10.0
    assert lockout.failed("a", 10.0) == 20.0  # the first try back fails: locked again
    assert lockout.failed("a", 30.0) == 35.0
    assert lockout.failed("a", 65.0) == 35.0


def test_a_success_forgets_the_failures() -> None:
    lockout = Lockout(threshold=2, initial=10.0)
    lockout.failed("a", 0.0)
    lockout.succeeded("a")
    assert lockout.failed("a", 1.0) == 0.0


def test_a_threshold_of_zero_never_locks() -> None:
    lockout = Lockout(threshold=0)
    for second in range(100):
        assert lockout.failed("a", float(second)) == 0.0
    assert lockout.blocked_for("a", 100.0) == 0.0


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=300))
def test_memory_is_bounded_whatever_the_addresses(addresses: list[int]) -> None:
    lockout = Lockout(threshold=2, capacity=50)
    for address in addresses:
        lockout.failed(str(address), 0.0)
    assert len(lockout._records) <= 50


def handshake_to_security(version: bytes, reason: str) -> tuple[ServerConnection, bytes, list]:
    conn = ServerConnection(password=b"pw", refuse=reason)
    assert conn.data_to_send() == b"RFB 003.008\n"
    events = conn.receive_data(version)
    return conn, conn.data_to_send(), events


def test_a_refused_38_client_gets_no_security_types_and_the_reason() -> None:
    conn, out, events = handshake_to_security(b"RFB 003.008\n", "Too many viewers")
    assert out == b"\x00" + struct.pack(">I", 16) + b"Too many viewers"
    assert ConnectionRefused("Too many viewers") in events
    assert conn.state is ConnectionState.CLOSED


def test_a_refused_33_client_gets_type_zero_and_the_reason() -> None:
    conn, out, _ = handshake_to_security(b"RFB 003.003\n", "locked")
    assert out == struct.pack(">I", 0) + struct.pack(">I", 6) + b"locked"
    assert conn.state is ConnectionState.CLOSED
