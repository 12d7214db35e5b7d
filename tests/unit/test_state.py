"""Console snapshots: exact round trips, a strict loader, and safe files."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import threading
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_terminal import FRAGMENTS
from vzvnc import state
from vzvnc.state import (
    FORMAT_VERSION,
    MAX_SNAPSHOT_BYTES,
    Snapshot,
    SnapshotError,
    capture,
    read_snapshot,
    restore,
    write_snapshot,
)
from vzvnc.term.terminal import Terminal

CASES = Path(__file__).resolve().parents[1] / "captured" / "cases"

# Beyond the terminal tests' pieces: every parser state, charsets, long strings.
MORE_FRAGMENTS = [
    b"\x1b(U",
    b"\x1b)V",
    b"\x1b(",
    b"\x1b#",
    b"\x1b %",
    b"\x1b[?",
    b"\x1b[>",
    b"\x1b[=",
    b"\x1b[1;2",
    b"\x1b[1:2",
    b"\x1b[12 ",
    b"\x1b[1<",
    b"\x1b[?12h",
    b"\x1b[?1015l",
    b"\x1b[?2004l",
    b"\x1b[2;5r\x1b[?6h",
    b"\x1b]2;part",
    b"\x1b]0;" + b"long " * 900,
    b"\x1bP1$qm",
    b"\xc2\x9b?25",
    b"\x1b[5i",
    b"\x1b[?1048h",
    b"\x1b8",
    b"\xf0\x9f",
    b"\xf0",
    b"\x1b[300b",
]
stream_bytes = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS + MORE_FRAGMENTS), st.binary(max_size=6)), max_size=50
).map(b"".join)
sizes = st.tuples(st.integers(1, 12), st.integers(1, 6))
histories = st.integers(0, 8)

# Fed after B, observing after each: they bring out the DECSC slots, the pen,
# charsets, REP, tab stops, both buffers and the history.
PROBES = [
    b"\x18xX\x1b[6n",
    b"\x1b8yY\x1b[6n\x1b[?6n",
    b"\x1b[3b",
    b"\t\tT\x1b[Zq\x0eq\x0f",
    b"\x1b[?47h",
    b"\x1b8zZ\x1b[6n",
    b"\x1b[?47l",
    b"\x1b[99B\n\n\n\n\n\n\nend\x1b[c",
]


def observe(t: Terminal) -> tuple[object, ...]:
    """Everything public about a terminal (draining what it owes its owner)."""
    chars, fg, bg, attrs = t.cells()
    views = []
    for offset in range(t.history_size + 1):
        views.append(tuple(a.tobytes() for a in t.view_cells(offset)))
        views.append(tuple(t.view_text(offset)))
    marks = tuple(t.combining_at(y, x) for y in range(t.lines) for x in range(t.columns))
    return (
        t.columns,
        t.lines,
        chars.tobytes(),
        fg.tobytes(),
        bg.tobytes(),
        attrs.tobytes(),
        marks,
        tuple(t.text_lines()),
        tuple(views),
        t.history_size,
        t.cursor_x,
        t.cursor_y,
        t.cursor_visible,
        t.cursor_shape,
        t.application_cursor_keys,
        t.application_keypad,
        t.bracketed_paste,
        t.alternate_screen,
        t.mouse_mode,
        t.mouse_sgr,
        t.mouse_encoding,
        t.focus_events,
        t.title,
        t.take_title_changed(),
        t.take_replies(),
        t.take_bells(),
        tuple(t.take_scrolls()),
    )


def drain(t: Terminal) -> None:
    t.take_replies()
    t.take_bells()
    t.take_title_changed()
    t.take_scrolls()


def round_trip(t: Terminal, offset: int = 0) -> Terminal:
    """Snapshot ``t`` (after its owner took what it was owed), encode, decode, restore."""
    drain(t)
    snapshot = capture(t, offset)
    assert snapshot is not None
    data = snapshot.to_bytes()
    loaded = Snapshot.from_bytes(data)
    assert loaded.offset == offset
    assert loaded.to_bytes() == data
    return restore(loaded)


def assert_same_future(original: Terminal, restored: Terminal, rest: bytes) -> None:
    original.feed(rest)
    restored.feed(rest)
    assert observe(restored) == observe(original)
    for probe in PROBES:
        original.feed(probe)
        restored.feed(probe)
        assert observe(restored) == observe(original)


# -- round trips ----------------------------------------------------------------------


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=stream_bytes, second=stream_bytes, size=sizes, history=histories)
def test_feed_a_snapshot_restore_feed_b_equals_feed_a_and_b(
    first: bytes, second: bytes, size: tuple[int, int], history: int
) -> None:
    columns, lines = size
    original = Terminal(columns, lines, history=history)
    original.feed(first)
    drain(original)
    restored = round_trip(original, offset=len(first))
    assert_same_future(original, restored, second)


# Dense in the state that lives outside the cells: DECSC slots, buffers, charsets, margins.
STRUCTURE = [
    b"\x1b7",
    b"\x1b8",
    b"\x1b[s",
    b"\x1b[?47h",
    b"\x1b[?47l",
    b"\x1b[?1047l",
    b"\x1b[?1049h",
    b"\x1b[?1049l",
    b"\x1b[?1048h",
    b"\x1b)0",
    b"\x1b(0",
    b"\x1b(B",
    b"\x1b)U",
    b"\x0e",
    b"\x0f",
    b"lqx",
    b"\x1b[31;1m",
    b"\x1b[m",
    b"\x1b[3;2H",
    b"\x1b[2;3r",
    b"\x1b[?6h",
    b"\x1b[?6l",
    b"\x1b[?7l",
    b"\x1b[!p",
    b"\x1bc",
    b"\r\n",
    b"ab",
    b"\xe4\xb8\xad",
    b"\x1b[2b",
]
structure_bytes = st.lists(st.sampled_from(STRUCTURE), max_size=30).map(b"".join)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=structure_bytes, second=structure_bytes)
def test_round_trip_of_saved_cursors_buffers_and_charsets(first: bytes, second: bytes) -> None:
    original = Terminal(6, 4, history=3)
    original.feed(first)
    drain(original)
    restored = round_trip(original)
    assert_same_future(original, restored, second)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=stream_bytes, second=stream_bytes, resize=st.tuples(st.integers(1, 12), st.integers(1, 6))
)
def test_round_trip_after_resize(first: bytes, second: bytes, resize: tuple[int, int]) -> None:
    original = Terminal(7, 4, history=5)
    original.feed(first)
    original.resize(*resize)
    drain(original)
    restored = round_trip(original)
    assert_same_future(original, restored, second)


@pytest.mark.parametrize("case", ["vim-scroll", "htop", "less-long", "cjk-emoji", "mc"])
def test_a_real_program_cut_anywhere(case: str) -> None:
    data = (CASES / f"{case}.bin").read_bytes()
    meta = json.loads((CASES / f"{case}.json").read_text())
    columns, lines = (int(n) for n in meta["size"].split("x"))
    step = max(1, len(data) // 150)
    for cut in [*range(0, len(data), step), len(data)]:
        original = Terminal(columns, lines, history=50)
        original.feed(data[:cut])
        drain(original)
        restored = round_trip(original, offset=cut)
        original.feed(data[cut:])
        restored.feed(data[cut:])
        assert observe(restored) == observe(original), cut


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"\x1b", b"[?1049h"),
        (b"\x1b[?10", b"49hX"),
        (b"\x1b[?", b"25l"),
        (b"\x1b[1;4", b"1mred"),
        (b"\x1b[\x0a", b"?5hX"),  # after a control inside CSI a marker is an error
        (b"\x1b[1 ", b"q"),
        (b"\x1b(", b"0lqk"),
        (b"\x1b]2;ti", b"tle\x07"),
        (b"\x1b]2;" + b"t" * 5000, b"\x07"),
        (b"\x1bPq", b"#0;2;0;0;0\x1b\\X"),
        (b"\xe4\xb8", b"\xadX"),
        (b"\xf0", b"\x9f\x98\x80"),
        (b"e", b"\xcc\x81"),
        (b"abc", b"\x1b[2b"),
    ],
)
def test_mid_sequence_state_is_captured(before: bytes, after: bytes) -> None:
    original = Terminal(12, 4, history=3)
    original.feed(before)
    restored = round_trip(original)
    assert_same_future(original, restored, after)


@pytest.mark.parametrize(
    "before",
    [
        b"\x1b[?47h\x1b[3;2H\x1b[31;1m\x1b)0\x0e\x1b7\x1b[?47l\x1b[2;5H\x1b7",
        b"\x1b[2;5H\x1b[4m\x1b7\x1b[?1049h\x1b[3;3Hx\x1b[42m\x1b7",
        b"\x1b[2;3r\x1b[?6h\x1b[2;6Hab\x1b7\x1b[?6l\x1b[r\x1b[!p",
    ],
)
def test_each_buffer_keeps_its_own_saved_cursor(before: bytes) -> None:
    original = Terminal(6, 4, history=3)
    original.feed(before)
    restored = round_trip(original)
    assert_same_future(original, restored, b"")


def test_restored_terminal_keeps_its_history_limit() -> None:
    original = Terminal(10, 3, history=4)
    original.feed(b"".join(b"%d\r\n" % i for i in range(20)))
    restored = round_trip(original)
    rest = b"".join(b"x%d\r\n" % i for i in range(20))
    assert_same_future(original, restored, rest)
    assert restored.history_size == 4


def test_capture_leaves_the_terminal_alone() -> None:
    t = Terminal(20, 5)
    t.feed(b"hello\x1b[31m\x1b]2;x\x07\x1b[?10")
    before = capture(t, 0)
    assert before is not None
    t.feed(b"49h")
    assert t.alternate_screen


def test_history_beyond_the_size_limit_drops_its_oldest_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = Terminal(10, 3, history=100)
    t.feed(b"".join(b"line %d\r\n" % i for i in range(60)))
    assert t.history_size == 58
    row = 10 * 14 + 1
    monkeypatch.setattr(state, "_ARRAY_BUDGET", row * (3 + 20) + 5)
    snapshot = capture(t, 0)
    assert snapshot is not None
    restored = restore(Snapshot.from_bytes(snapshot.to_bytes()))
    assert restored.history_size == 20
    assert restored.view_text(20)[0].rstrip() == "line 38"
    assert restored.text_lines() == t.text_lines()


def test_states_are_immutable_and_compare_by_value() -> None:
    t = Terminal(8, 3)
    t.feed("e\u0301x".encode())
    first, second = capture(t, 5), capture(t, 5)
    assert first is not None and second is not None
    assert first == second
    assert first.to_bytes() == second.to_bytes()
    with pytest.raises(ValueError):
        first.terminal_state.primary.chars[0, 0] = 1
    t.feed(b"y")
    assert first == Snapshot.from_bytes(second.to_bytes())


def test_snapshot_size_and_speed_80x25_with_full_history() -> None:
    t = Terminal(80, 25, history=2000)
    for i in range(2100):
        t.feed(
            b"\x1b[3%dm%5d \x1b[0mThe quick brown fox jumps over the lazy dog %x\r\n"
            % (i % 8, i, i)
        )
    snapshot = capture(t, 123)
    assert snapshot is not None
    data = snapshot.to_bytes()
    assert len(data) < 512 * 1024
    assert restore(Snapshot.from_bytes(data)).view_text(2000) == t.view_text(2000)


# -- the format and its loader ------------------------------------------------------------


def sample(columns: int = 6, lines: int = 3) -> Snapshot:
    t = Terminal(columns, lines, history=4)
    t.feed("ab\u4e2d\r\nc\u0301\x1b[31m\x1b[?1049hx\x1b]2;t\x07\x1b[2;3r\x1b[?".encode())
    snapshot = capture(t, 77)
    assert snapshot is not None
    return snapshot


def unseal(data: bytes) -> tuple[dict[str, Any], bytes]:
    header = state._HEADER
    raw = zlib.decompress(data[header.size : -32])
    (size,) = struct.unpack_from(">I", raw)
    return json.loads(raw[4 : 4 + size]), raw[4 + size :]


def seal(
    document: dict[str, Any] | bytes,
    blob: bytes = b"",
    *,
    version: int = FORMAT_VERSION,
    flags: int = 0,
    raw_size: int | None = None,
    compressed: bytes | None = None,
) -> bytes:
    """A file with a correct checksum around whatever is given."""
    text = document if isinstance(document, bytes) else json.dumps(document).encode()
    raw = struct.pack(">I", len(text)) + text + blob
    payload = zlib.compress(raw) if compressed is None else compressed
    size = len(raw) if raw_size is None else raw_size
    body = state._HEADER.pack(state.MAGIC, version, flags, size, len(payload)) + payload
    return body + hashlib.sha256(body).digest()


def refused(data: bytes, match: str | None = None) -> None:
    with pytest.raises(SnapshotError, match=match):
        Snapshot.from_bytes(data)


def test_encoding_is_deterministic_and_loads_back() -> None:
    data = sample().to_bytes()
    assert data == sample().to_bytes()
    assert data.startswith(b"VZVNCST\0\x00\x01\x00\x00")
    loaded = Snapshot.from_bytes(data)
    assert loaded == sample()
    assert loaded.offset == 77
    document, _blob = unseal(data)
    assert document["parser"]["kind"] == "csi"
    assert document["charsets"] == {"g0": "B", "g1": "B", "shift": 0}
    assert [a["dtype"] for a in document["arrays"][:5]] == ["<u4", "<u4", "<u4", "<u2", "|u1"]


def test_seal_helper_matches_the_format() -> None:
    document, blob = unseal(sample().to_bytes())
    assert Snapshot.from_bytes(seal(document, blob)) == sample()


def test_any_changed_byte_is_refused() -> None:
    data = sample().to_bytes()
    for i in range(len(data)):
        for flip in (0x01, 0x80):
            changed = bytearray(data)
            changed[i] ^= flip
            refused(bytes(changed))


def test_truncated_or_padded_files_are_refused() -> None:
    data = sample().to_bytes()
    for n in range(len(data)):
        refused(data[:n])
    refused(data + b"\0", "truncated or padded")
    refused(b"", "truncated")


def test_header_fields_are_checked() -> None:
    document, blob = unseal(sample().to_bytes())
    refused(b"NOTVZVNC" + seal(document, blob)[8:], "magic")
    refused(seal(document, blob, version=FORMAT_VERSION + 1), "unsupported snapshot version 2")
    refused(seal(document, blob, version=0), "unsupported snapshot version 0")
    refused(seal(document, blob, flags=1), "flags")
    refused(seal(document, blob, raw_size=0), "decompressed size")
    refused(seal(document, blob, raw_size=MAX_SNAPSHOT_BYTES + 1), "decompressed size")


def test_payload_must_match_its_declared_size() -> None:
    document, blob = unseal(sample().to_bytes())
    raw_size = len(json.dumps(document)) + 4 + len(blob)
    refused(seal(document, blob, raw_size=raw_size - 1), "declared size")
    refused(seal(document, blob, raw_size=raw_size + 1), "declared size")
    refused(seal(document, blob, compressed=b"not zlib at all"), "compressed")
    extra = zlib.compress(struct.pack(">I", 2) + b"{}") + b"junk"
    refused(seal(b"{}", compressed=extra), "after the compressed payload")


def compress_zeros(total: int) -> bytes:
    packer = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [packer.compress(chunk) for _ in range(total >> 20)]
    return b"".join([*parts, packer.flush()])


def test_zlib_bombs_stop_at_the_declared_size() -> None:
    bomb = compress_zeros(256 << 20)  # 256 MiB of zeros in about 256 KiB
    tracemalloc.start()
    try:
        refused(seal(b"{}", compressed=bomb, raw_size=1000), "declared size")
        _size, peak = tracemalloc.get_traced_memory()
        assert peak < 8 << 20
        tracemalloc.reset_peak()
        refused(seal(b"{}", compressed=bomb, raw_size=MAX_SNAPSHOT_BYTES), "declared size")
        _size, peak = tracemalloc.get_traced_memory()
        assert peak < MAX_SNAPSHOT_BYTES + (16 << 20)
    finally:
        tracemalloc.stop()


def test_bad_json_is_refused() -> None:
    refused(seal(b"{not json"), "bad snapshot document")
    refused(seal(b"[1, 2]"), "not an object")
    refused(seal(b'{"offset": NaN}'), "NaN")
    refused(seal(b'{"a": 1, "a": 2}'), "repeated key")
    refused(seal(b"[" * 100_000 + b"]" * 100_000), "bad snapshot document")
    refused(seal('{"t": "\u00e9"}'.encode()), "bad snapshot document")
    refused(seal(b"{}"), "missing")


def mutated(change: Callable[[dict[str, Any]], object], blob_change: Any = None) -> bytes:
    document, blob = unseal(sample().to_bytes())
    change(document)
    if blob_change is not None:
        blob = blob_change(blob)
    return seal(document, blob)


def arrays_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {spec["name"]: spec for spec in document["arrays"]}


def put(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = document
        for key in parents:
            target = target[key]
        target[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (put("surprise", 1), "unknown key surprise"),
        (lambda d: d.pop("title"), "missing title"),
        (put("offset", -1), "offset"),
        (put("offset", 1.5), "offset: not an integer"),
        (put("columns", 100_000), "columns"),
        (put("cursor.x", 7), "cursor.x"),
        (put("cursor.y", -1), "cursor.y"),
        (put("cursor.hidden", 0), "not a boolean"),
        (put("cursor.shape", 7), "shape"),
        (put("pen.fg", 3 << 24), "pen: bad colour"),
        (put("pen.bg", (1 << 24) | 256), "pen: bad colour"),
        (put("pen.attrs", 1 << 8), "pen.attrs"),
        (put("modes", [4, 4]), "repeated mode"),
        (put("modes", [5]), "unknown mode"),
        (put("charsets.g0", "Q"), "unknown charset"),
        (put("charsets.shift", 2), "shift"),
        (put("margins", [2, 1]), "margins"),
        (put("margins", [0, 1, 2]), "margins"),
        (put("tab_stops", [6]), "tab_stops"),
        (put("tab_stops", [4, 2]), "not sorted"),
        (put("title", "t" * 5000), "title"),
        (put("last_char", "ab"), "last_char"),
        (put("decoder", "ff"), "decoder state"),
        (put("decoder", "zz"), "hexadecimal"),
        (put("decoder", "e4b8ad"), "decoder state"),
        (put("parser.kind", "dcs"), "unknown parser state"),
        (put("parser.params", "1m"), "CSI parameters"),
        (put("parser.text", "x"), "stray text"),
        (put("parser.marker", "!"), "marker"),
        (put("saved_cursors.primary.x", 99), "saved_cursors.primary.x"),
        (put("saved_cursors.alternate", {"x": 0}), "missing"),
        (put("buffers.alternate", None), "arrays"),
        (put("buffers.primary.history", 5), "history"),
        (put("history_limit", -1), "history_limit"),
        (lambda d: arrays_of(d)["primary.chars"].update(dtype="<u8"), "dtype must be <u4"),
        (lambda d: arrays_of(d)["primary.attrs"].update(dtype="<u4"), "dtype must be <u2"),
        (lambda d: arrays_of(d)["primary.fg"].update(shape=[3, 7]), "shape"),
        (lambda d: arrays_of(d)["primary.chars"].update(name="primary.fg"), "expected"),
        (lambda d: d["arrays"].pop(), "arrays"),
        (lambda d: arrays_of(d)["alternate.mark_text"].update(shape=[99]), "past the end"),
        (lambda d: arrays_of(d)["primary.mark_rows"].update(shape=[5]), "length 1 != 5"),
    ],
)
def test_bad_fields_are_refused(change: Callable[[dict[str, Any]], object], match: str) -> None:
    refused(mutated(change), match)


def test_absurd_sizes_are_refused_without_allocating() -> None:
    def huge(document: dict[str, Any]) -> None:
        document["columns"] = document["lines"] = 100_000
        document["buffers"]["alternate"] = None
        for spec in document["arrays"]:
            if spec["name"].startswith("primary.") and len(spec["shape"]) == 2:
                spec["shape"] = [100_000, 100_000]

    tracemalloc.start()
    try:
        refused(mutated(huge), "columns")
        document, blob = unseal(sample().to_bytes())
        document["history_limit"] = 1_000_000
        document["buffers"]["primary"]["history"] = 1_000_000
        refused(seal(document, blob), "shape")
        arrays_of(document)["primary.mark_text"]["shape"] = [1 << 30]
        refused(seal(document, blob))
        _size, peak = tracemalloc.get_traced_memory()
        assert peak < 4 << 20
    finally:
        tracemalloc.stop()


def test_bad_array_contents_are_refused() -> None:
    document, blob = unseal(sample().to_bytes())
    cells = 6 * (3 + 0)  # no history in the sample's primary buffer
    specs = arrays_of(document)
    assert specs["primary.chars"]["shape"] == [3, 6]
    fg_at = cells * 4

    def patch(offset: int, value: bytes) -> bytes:
        return blob[:offset] + value + blob[offset + len(value) :]

    refused(seal(document, patch(0, struct.pack("<I", 0x110000))), "code point")
    refused(seal(document, patch(0, struct.pack("<I", 0xD800))), "code point")
    refused(seal(document, patch(fg_at, struct.pack("<I", 5 << 24))), "fg: not a colour")
    refused(seal(document, patch(fg_at * 3, struct.pack("<H", 1 << 15))), "attrs")
    refused(seal(document, patch(fg_at * 3 + cells * 2, b"\x02")), "wide")
    refused(seal(document, blob + b"\0"), "after the last array")


def test_bad_combining_marks_are_refused() -> None:
    document, blob = unseal(sample().to_bytes())
    specs = document["arrays"]
    assert [s["shape"] for s in specs[5:9]] == [[1], [1], [1], [1]]
    offset = sum(int(np.prod(s["shape"])) * np.dtype(s["dtype"]).itemsize for s in specs[:5])

    def marks(row: int, column: int, length: int, text: int) -> bytes:
        tail = struct.pack("<IHBI", row, column, length, text)
        return blob[:offset] + tail + blob[offset + len(tail) :]

    refused(seal(document, marks(3, 0, 1, 0x301)), "mark_rows")
    refused(seal(document, marks(1, 6, 1, 0x301)), "mark_columns")
    refused(seal(document, marks(1, 0, 0, 0x301)), "mark_lengths")
    refused(seal(document, marks(1, 0, 1, 0xDC00)), "mark_text")
    assert Snapshot.from_bytes(seal(document, marks(2, 5, 1, 0x302)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_give_a_clean_error(data: bytes) -> None:
    with pytest.raises(SnapshotError):
        Snapshot.from_bytes(state.MAGIC + data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_damaged_payloads_with_a_good_checksum_load_or_fail_cleanly(
    edits: list[tuple[int, int]],
) -> None:
    data = sample().to_bytes()
    raw = bytearray(zlib.decompress(data[state._HEADER.size : -32]))
    for position, value in edits:
        raw[position % len(raw)] = value
    compressed = zlib.compress(bytes(raw))
    body = state._HEADER.pack(state.MAGIC, 1, 0, len(raw), len(compressed)) + compressed
    try:
        loaded = Snapshot.from_bytes(body + hashlib.sha256(body).digest())
    except SnapshotError:
        return
    restored = restore(loaded)
    restored.feed(b"more text\r\n\x1b[?1049l\x1b[6n")
    restored.cells()


def test_migration_steps_run_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    document, blob = unseal(sample().to_bytes())
    old = dict(document)
    old["old_title"] = old.pop("title")

    def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
        doc = dict(doc)
        doc["title"] = doc.pop("old_title")
        return doc

    monkeypatch.setattr(state, "FORMAT_VERSION", 2)
    monkeypatch.setattr(state, "_MIGRATIONS", {1: upgrade})
    assert Snapshot.from_bytes(seal(old, blob, version=1)).terminal_state.title == "t"


# -- files ----------------------------------------------------------------------------------


def test_write_then_read(tmp_path: Path) -> None:
    snapshot = sample()
    assert read_snapshot(tmp_path) is None
    write_snapshot(tmp_path, snapshot)
    write_snapshot(tmp_path, snapshot)  # replacing the old one
    assert os.listdir(tmp_path) == ["snapshot"]
    assert stat.S_IMODE(os.stat(tmp_path / "snapshot").st_mode) == 0o600
    assert read_snapshot(tmp_path) == snapshot
    write_snapshot(tmp_path, snapshot, name="other")
    assert read_snapshot(tmp_path, "other") == snapshot


def test_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(SnapshotError, match="No space"):
        write_snapshot(tmp_path, sample())
    assert os.listdir(tmp_path) == []


def test_write_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    target = tmp_path / "host-file"
    target.write_text("precious")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "snapshot").symlink_to(target)
    write_snapshot(tmp_path / "state", sample())
    assert target.read_text() == "precious"
    assert not (tmp_path / "state" / "snapshot").is_symlink()
    assert read_snapshot(tmp_path / "state") == sample()


def test_symlink_is_refused_not_followed_and_moved_aside(tmp_path: Path) -> None:
    passwd = Path("/etc/passwd")
    before = passwd.stat()
    content = passwd.read_bytes()
    (tmp_path / "snapshot").symlink_to(passwd)
    with pytest.raises(SnapshotError, match="symbolic link"):
        read_snapshot(tmp_path)
    assert os.readlink(tmp_path / "snapshot.corrupt-1") == "/etc/passwd"
    assert not (tmp_path / "snapshot").exists()
    after = passwd.stat()
    assert (after.st_mtime_ns, after.st_size, passwd.read_bytes()) == (
        before.st_mtime_ns,
        before.st_size,
        content,
    )
    assert read_snapshot(tmp_path) is None


def test_symlink_to_a_valid_snapshot_is_still_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    write_snapshot(tmp_path / "real", sample())
    (tmp_path / "snapshot").symlink_to(tmp_path / "real" / "snapshot")
    with pytest.raises(SnapshotError, match="symbolic link"):
        read_snapshot(tmp_path)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "snapshot")
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_snapshot(tmp_path)
        except BaseException as error:
            outcome.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():
        # Unblock the reader before failing.
        fd = os.open(tmp_path / "snapshot", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("read_snapshot blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], SnapshotError)
    assert "FIFO" in str(outcome[0])
    assert stat.S_ISFIFO(os.lstat(tmp_path / "snapshot.corrupt-1").st_mode)


def test_directory_named_snapshot_is_refused(tmp_path: Path) -> None:
    (tmp_path / "snapshot").mkdir()
    with pytest.raises(SnapshotError, match="directory"):
        read_snapshot(tmp_path)
    assert (tmp_path / "snapshot.corrupt-1").is_dir()


def test_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    with open(tmp_path / "snapshot", "wb") as f:
        f.truncate(MAX_SNAPSHOT_BYTES + 1)
    with pytest.raises(SnapshotError, match="too large"):
        read_snapshot(tmp_path)
    assert (tmp_path / "snapshot.corrupt-1").stat().st_size == MAX_SNAPSHOT_BYTES + 1


def test_corrupt_files_are_moved_aside_in_turn(tmp_path: Path) -> None:
    good = sample().to_bytes()
    for n in (1, 2):
        (tmp_path / "snapshot").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
        with pytest.raises(
            SnapshotError, match=f"checksum mismatch; moved aside to snapshot.corrupt-{n}"
        ):
            read_snapshot(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["snapshot.corrupt-1", "snapshot.corrupt-2"]
    (tmp_path / "snapshot").write_bytes(b"")
    with pytest.raises(SnapshotError, match="truncated"):
        read_snapshot(tmp_path)
    assert (tmp_path / "snapshot.corrupt-3").exists()


def test_when_too_many_are_kept_the_corrupt_file_is_removed(tmp_path: Path) -> None:
    for n in range(1, state._MAX_ASIDE + 1):
        (tmp_path / f"snapshot.corrupt-{n}").write_bytes(b"")
    (tmp_path / "snapshot").write_bytes(b"junk")
    with pytest.raises(SnapshotError, match="removed"):
        read_snapshot(tmp_path)
    assert not (tmp_path / "snapshot").exists()


def test_directory_must_not_be_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(SnapshotError, match="directory"):
        write_snapshot(tmp_path / "link", sample())
    with pytest.raises(SnapshotError, match="directory"):
        read_snapshot(tmp_path / "link")
    assert os.listdir(tmp_path / "real") == []
    assert read_snapshot(tmp_path / "missing") is None
    with pytest.raises(SnapshotError, match="directory"):
        write_snapshot(tmp_path / "missing", sample())


def test_no_symlink_below_root_is_followed(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    host = tmp_path / "host"
    (rootfs / "var").mkdir(parents=True)
    (host / "lib").mkdir(parents=True)
    (rootfs / "var" / "lib").symlink_to(host / "lib")  # the container's doing
    directory = rootfs / "var" / "lib"
    with pytest.raises(SnapshotError, match="directory"):
        write_snapshot(directory, sample(), root=rootfs)
    (host / "lib" / "snapshot").write_bytes(sample().to_bytes())
    with pytest.raises(SnapshotError, match="directory"):
        read_snapshot(directory, root=rootfs)
    assert os.listdir(host / "lib") == ["snapshot"]
    # A real directory below the root works; a path outside it is a caller's bug.
    (rootfs / "state").mkdir()
    write_snapshot(rootfs / "state", sample(), root=rootfs)
    assert read_snapshot(rootfs / "state", root=rootfs) == sample()
    with pytest.raises(ValueError):
        read_snapshot(tmp_path, root=rootfs)
    with pytest.raises(ValueError):
        write_snapshot(rootfs / ".." / "host", sample(), root=rootfs)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\0", "n" * 300])
def test_bad_file_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        write_snapshot(tmp_path, sample(), name=name)
    with pytest.raises(ValueError):
        read_snapshot(tmp_path, name=name)
