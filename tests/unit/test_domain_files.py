"""Domain definitions, the console journal and the controller link framing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vzvnc.domain import link
from vzvnc.domain.config import load_domain
from vzvnc.domain.journal import Journal, read_journal
from vzvnc.errors import ConfigError, RemoteProtocolError

MINIMAL = 'name = "web1"\nrootfs = "/srv/web1"\n'


def test_minimal_definition_gets_defaults() -> None:
    domain = load_domain(MINIMAL)
    assert domain.init == ("/bin/sh",)
    assert domain.effective_hostname == "web1"
    assert (domain.columns, domain.lines) == (80, 25)
    assert (domain.listen_host, domain.listen_port) == ("127.0.0.1", None)


def test_full_definition_round_trips() -> None:
    text = (
        MINIMAL
        + 'init = ["/sbin/init", "-v"]\nhostname = "box"\nisolated_network = true\n'
        + '[limits]\nmemory = "64M"\npids = 32\n'
        + '[console]\nsize = "100x30"\nfont_scale = 2\nhistory = 500\n'
        + '[vnc]\nlisten = "127.0.0.1:5907"\nmax_viewers = 3\nsharing = "refuse"\n'
        + "idle_timeout = 600\nhandshake_timeout = 2.5\nwebsocket = false\n"
        + 'token = "abcdefghijklmnop-_12"\n'
    )
    domain = load_domain(text)
    assert (domain.max_viewers, domain.sharing, domain.idle_timeout) == (3, "refuse", 600.0)
    assert domain.handshake_timeout == 2.5
    assert not domain.websocket and domain.token == "abcdefghijklmnop-_12"
    assert domain.memory_limit == 64 << 20 and domain.pids_limit == 32
    assert (domain.columns, domain.lines, domain.font_scale) == (100, 30, 2)
    assert domain.listen_port == 5907 and domain.isolated_network
    assert load_domain(domain.to_toml()) == domain


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('rootfs = "/x"\n', "name"),
        ('name = "Web 1"\nrootfs = "/x"\n', "name"),
        ('name = "a"\n', "rootfs"),
        ('name = "a"\nrootfs = "relative"\n', "rootfs"),
        (MINIMAL + "colour = 1\n", "colour"),
        (MINIMAL + '[limits]\nmemory = "lots"\n', "limits.memory"),
        (MINIMAL + "[limits]\npids = 0\n", "limits.pids"),
        (MINIMAL + "[limits]\nswap = 1\n", "limits.swap"),
        (MINIMAL + '[console]\nsize = "80by25"\n', "size"),
        (MINIMAL + '[vnc]\nlisten = "0.0.0.0:5900"\n', "vnc.listen"),
        (MINIMAL + '[vnc]\nlisten = "127.0.0.1:http"\n', "vnc.listen"),
        (MINIMAL + '[vnc]\nsharing = "sometimes"\n', "vnc.sharing"),
        (MINIMAL + "[vnc]\nmax_viewers = -1\n", "vnc.max_viewers"),
        (MINIMAL + "[vnc]\nhandshake_timeout = 0\n", "vnc.handshake_timeout"),
        (MINIMAL + '[vnc]\ntoken = "short"\n', "vnc.token"),
        (
            MINIMAL + '[vnc]\nlisten = "0.0.0.0:5900"\npassword_file = "/p"\n',
            "vnc.insecure_vnc_auth",
        ),
        (MINIMAL + "init = []\n", "init"),
        (MINIMAL + 'init = "/bin/sh"\n', "init"),
        ("name = \n", "TOML"),
    ],
)
def test_bad_definitions_name_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_domain(text)


def test_journal_keeps_the_newest_output_within_two_segments(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_size=100)
    journal.open_new()
    written = b""
    for i in range(30):
        chunk = f"<{i:03d}>".encode() * 3
        assert journal.append(chunk) == len(written)
        written += chunk
    journal.close()
    begin, data = read_journal(tmp_path, 0)
    assert begin > 0  # the oldest output is gone
    assert data == written[begin:]
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 2 * (100 + 8) + 15
    begin2, data2 = read_journal(tmp_path, len(written) - 10)
    assert (begin2, data2) == (len(written) - 10, written[-10:])


@given(st.lists(st.binary(max_size=70), max_size=40), st.integers(0, 3000))
@settings(max_examples=100, deadline=None)
def test_journal_reads_are_suffixes_of_what_was_written(chunks: list[bytes], start: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp), segment_size=64)
        journal.open_new()
        for chunk in chunks:
            journal.append(chunk)
        journal.close()
        written = b"".join(chunks)
        begin, data = read_journal(Path(tmp), start)
        assert begin >= min(start, len(written))
        assert written[begin:] == data


def test_link_frames_round_trip_in_any_chunking() -> None:
    stream = (
        link.hello(12345)
        + b"".join(link.output(7, b"x" * 3000))
        + link.resize(100, 30)
        + link.stopped(-9)
        + link.encode(link.LIVE)
        + link.pause(99, True)
        + link.saved(99, False, "disk full")
        + link.encode(link.RESUME)
    )
    for size in (1, 7, len(stream)):
        decoder = link.FrameDecoder()
        frames = []
        for i in range(0, len(stream), size):
            frames.extend(decoder.feed(stream[i : i + size]))
        assert [f.kind for f in frames] == [
            link.HELLO,
            link.OUTPUT,
            link.RESIZE,
            link.STOPPED,
            link.LIVE,
            link.PAUSE,
            link.SAVED,
            link.RESUME,
        ]
        assert link.parse_offset(frames[0]) == (12345, b"")
        assert link.parse_offset(frames[1]) == (7, b"x" * 3000)
        assert link.parse_resize(frames[2]) == (100, 30)
        assert link.parse_status(frames[3]) == -9
        assert link.parse_pause(frames[5]) == (99, True)
        assert link.parse_saved(frames[6]) == (99, False, "disk full")


def test_link_refuses_unknown_and_oversized_frames() -> None:
    with pytest.raises(RemoteProtocolError):
        link.FrameDecoder().feed(b"\x0a\x00\x00\x00\x00")
    with pytest.raises(RemoteProtocolError):
        link.FrameDecoder().feed(b"\x02\x7f\xff\xff\xff")


def test_large_output_is_split_into_frames_that_fit() -> None:
    frames = link.output(0, b"y" * (3 * link.MAX_FRAME))
    assert len(frames) == 4
    decoder = link.FrameDecoder()
    decoded = [link.parse_offset(f) for f in decoder.feed(b"".join(frames))]
    assert b"".join(data for _, data in decoded) == b"y" * (3 * link.MAX_FRAME)
    assert [offset for offset, _ in decoded][1] == link.MAX_FRAME - 8
