"""The atheris harness (fuzz/) without atheris: each target over its seed corpus and over
mutations of it, so the harness keeps up with vzvnc; the valid prefixes it builds really
get through the handshake; a swallowed terminal error is reported; and the inputs in
fuzz/crashes/ (bugs found and fixed) pass."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fuzz import seeds, targets
from vzvnc.rfb.constants import VeNCryptSubtype
from vzvnc.rfb.messages import AuthenticationSucceeded, ClientInit
from vzvnc.rfb.protocol import ConnectionState
from vzvnc.term.screen import CellScreen


def mutations(corpus: list[bytes], count: int, seed: int) -> list[bytes]:
    """libFuzzer's simplest moves: flip bytes, cut, splice two inputs, or noise."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(corpus))
        move = rng.randrange(4)
        if move == 0:
            for _ in range(rng.randint(1, 6)):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
        elif move == 1 and data:
            del data[rng.randrange(len(data)) :]
        elif move == 2:
            other = rng.choice(corpus)
            data = data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)) :]
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 300)))
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_every_seed_passes(name: str) -> None:
    corpus = seeds.seeds(name)
    assert len(corpus) >= 5
    for data in corpus:
        targets.TARGETS[name](data)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_mutated_seeds_pass(name: str) -> None:
    for data in mutations(seeds.seeds(name), 300, seed=len(name)):
        targets.TARGETS[name](data)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_the_empty_input_and_short_headers_pass(name: str) -> None:
    for size in range(8):
        targets.TARGETS[name](bytes(size))
        targets.TARGETS[name](b"\xff" * size)


def accepted(config: targets.RfbConfig) -> bool:
    """Whether the credentials in this prefix are good for this server."""
    if config.subtypes and config.version != b"RFB 003.003\n":
        subtype = VeNCryptSubtype(config.subtypes[config.choice % len(config.subtypes)])
        kind = subtype.auth
    else:
        kind = "vnc" if config.password else "none"
    who = config.who % 3  # as RfbConfig.prefix picks the secret
    if kind == "vnc":
        return who == 0 or (who == 1 and config.view_only_password)
    return kind == "none" or who != 2


@pytest.mark.parametrize("flags", range(0, 256, 5))
@pytest.mark.parametrize("vencrypt", [False, True])
def test_a_valid_prefix_gets_through_the_handshake(flags: int, vencrypt: bool) -> None:
    """Otherwise the fuzzers would never leave the first states."""
    for more in range(0, 256, 17) if vencrypt else [0]:
        config = targets.rfb_config(flags, more, vencrypt)
        driver = targets.RfbDriver(config)
        for message in config.prefix():
            driver.feed(message)
        transcript = driver.transcript
        if config.version == b"RFB 003.003\n" and not config.legacy and not config.refuse:
            assert transcript.error == "a 3.3 client, and only VeNCrypt is allowed"
            continue
        assert transcript.error is None
        succeeded = [e for e in transcript.events if isinstance(e, AuthenticationSucceeded)]
        if config.refuse or not accepted(config):
            assert not succeeded and driver.conn.state is ConnectionState.CLOSED
            continue
        assert succeeded, transcript.events
        assert isinstance(transcript.events[-1], ClientInit)
        assert driver.conn.state is ConnectionState.NORMAL


def test_chunks_cover_the_input_whatever_the_seed() -> None:
    data = bytes(range(256)) * 3
    for seed in range(64):
        pieces = list(targets.chunks(data, seed))
        assert b"".join(pieces) == data
        assert all(pieces)


def test_a_swallowed_terminal_error_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: CellScreen, *args: object) -> None:
        raise ValueError("a handler bug")

    monkeypatch.setattr(CellScreen, "bell", broken)
    with pytest.raises(targets.Finding, match="a handler bug"):
        targets.fuzz_terminal(bytes(6) + b"ding\x07dong")


@pytest.mark.parametrize("path", sorted(seeds.CRASHES.iterdir()), ids=lambda p: p.name)
def test_crashes_found_stay_fixed(path: Path) -> None:
    """fuzz/crashes/TARGET-what: an input that once broke a rule (they are seeds too)."""
    targets.TARGETS[path.name.split("-")[0]](path.read_bytes())
