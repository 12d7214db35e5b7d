"""Who may connect, and for how long, through real sockets: lockout after repeated
wrong passwords (logged when it engages), the most viewers at once, the sharing
rule, and handshake and idle timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from tests.integration.harness import running_console
from tests.rfbclient import RAW, AuthFailed, Refused, RfbClient


def test_repeated_wrong_passwords_lock_the_address_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        async with running_console(
            password=b"right", lockout_threshold=3, lockout_seconds=1.0
        ) as console:
            port = console.address[1]
            for _ in range(3):
                with pytest.raises(AuthFailed):
                    await RfbClient.connect(port, password=b"wrong")
            # Locked out: even the right password is turned away, with the reason.
            with pytest.raises(Refused, match="Too many authentication failures"):
                await RfbClient.connect(port, password=b"right")
            assert any("locked out for 1 s" in r.getMessage() for r in caplog.records)
            await asyncio.sleep(1.1)
            # The first try back fails: locked out again at once, for twice as long.
            with pytest.raises(AuthFailed):
                await RfbClient.connect(port, password=b"wrong")
            with pytest.raises(Refused, match="try again in 2 s"):
                await RfbClient.connect(port, password=b"right")
            await asyncio.sleep(2.1)
            client = await RfbClient.connect(port, password=b"right")
            await client.close()
            # A success forgets the failures: one wrong password is no lockout now.
            with pytest.raises(AuthFailed):
                await RfbClient.connect(port, password=b"wrong")
            client = await RfbClient.connect(port, password=b"right")
            await client.close()

    asyncio.run(scenario())
    assert not any("right" in r.getMessage() or "wrong" in r.getMessage() for r in caplog.records)


def test_the_most_viewers_at_once() -> None:
    async def scenario() -> None:
        async with running_console(max_viewers=2) as console:
            port = console.address[1]
            first = await RfbClient.connect(port, encodings=(RAW,))
            second = await RfbClient.connect(port, encodings=(RAW,))
            with pytest.raises(Refused, match="Too many viewers"):
                await RfbClient.connect(port)
            await first.close()
            await asyncio.sleep(0.1)
            third = await RfbClient.connect(port, encodings=(RAW,))
            await third.update(incremental=False)
            await second.update(incremental=False)
            await second.close()
            await third.close()

    asyncio.run(scenario())


def test_sockets_that_never_authenticate_do_not_count_as_viewers() -> None:
    async def scenario() -> None:
        async with running_console(max_viewers=2, password=b"pw") as console:
            port = console.address[1]
            squatters = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            for reader, _ in squatters:
                assert (await reader.readexactly(12)).startswith(b"RFB ")
            honest = await RfbClient.connect(port, password=b"pw", encodings=(RAW,))
            await honest.update(incremental=False)
            second = await RfbClient.connect(port, password=b"pw", encodings=(RAW,))
            with pytest.raises(Refused, match="Too many viewers"):
                await RfbClient.connect(port, password=b"pw")
            for _, writer in squatters:
                writer.close()
            await second.close()
            await honest.close()

    asyncio.run(scenario())


async def is_dropped(client: RfbClient, within: float) -> bool:
    try:
        while True:
            await asyncio.wait_for(client.read_message(), within)
    except (asyncio.IncompleteReadError, ConnectionError):
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("sharing", ["request", "always", "refuse"])
def test_the_sharing_rule_for_a_viewer_that_asks_for_exclusive_access(sharing: str) -> None:
    async def scenario() -> None:
        async with running_console(sharing=sharing) as console:
            port = console.address[1]
            first = await RfbClient.connect(port, encodings=(RAW,))
            await first.update(incremental=False)
            try:
                exclusive = await RfbClient.connect(port, shared=False, encodings=(RAW,))
                await exclusive.update(incremental=False)
                newcomer_in = True
                await exclusive.close()
            except (asyncio.IncompleteReadError, ConnectionError):
                newcomer_in = False
            first_out = await is_dropped(first, 0.5)
            await first.close()
            assert (newcomer_in, first_out) == {
                "request": (True, True),
                "always": (True, False),
                "refuse": (False, False),
            }[sharing]

    asyncio.run(scenario())


def test_a_client_that_says_nothing_is_dropped_after_the_handshake_timeout() -> None:
    async def scenario() -> None:
        async with running_console(handshake_timeout=0.5) as console:
            reader, writer = await asyncio.open_connection("127.0.0.1", console.address[1])
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(12), 5) == b"RFB 003.008\n"
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
            assert time.monotonic() - started < 3
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    asyncio.run(scenario())


def test_an_idle_viewer_is_dropped_and_a_busy_one_is_not() -> None:
    async def scenario() -> None:
        async with running_console(idle_timeout=0.6) as console:
            port = console.address[1]
            idle = await RfbClient.connect(port, encodings=(RAW,))
            busy = await RfbClient.connect(port, encodings=(RAW,))
            for _ in range(8):
                busy.request(incremental=True)
                await asyncio.sleep(0.15)
            assert await is_dropped(idle, 1.0)
            assert not await is_dropped(busy, 0.1)
            await busy.close()
            await idle.close()

    asyncio.run(scenario())
