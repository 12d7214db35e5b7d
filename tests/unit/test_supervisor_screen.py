"""``Supervisor.screen``: a domain's screen rebuilt from its snapshot and journal.

What ``domain screenshot`` and ``domain console`` show. No domain runs here: the
run directory is written as a controller and console server would leave it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vzvnc import state
from vzvnc.domain.journal import Journal
from vzvnc.supervisor import Supervisor
from vzvnc.term.terminal import Terminal

# A coloured first line that must stay on screen, then numbered lines under it.
HEADER = b"\x1b[H\x1b[2J\x1b[1;32mstatus line painted once\x1b[0m\x1b[2;24r\x1b[24;1H"
BODY = b"".join(b"line %d\r\n" % n for n in range(200))


def setup_domain(tmp_path: Path) -> Supervisor:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    definition = tmp_path / "box.toml"
    definition.write_text(f'name = "box"\nrootfs = "{rootfs}"\n[console]\nsize = "40x24"\n')
    supervisor = Supervisor(tmp_path / "home")
    supervisor.define_file(definition)
    supervisor.run_dir("box").mkdir(parents=True)
    return supervisor


def write_journal(supervisor: Supervisor, data: bytes) -> None:
    # Small segments: the journal keeps only the last few hundred bytes.
    journal = Journal(supervisor.run_dir("box"), segment_size=256)
    journal.open_new()
    for start in range(0, len(data), 64):
        journal.append(data[start : start + 64])
    journal.close()


def same(a: Terminal, b: Terminal) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.cells(), b.cells(), strict=True))


def test_the_snapshot_supplies_what_the_journal_no_longer_holds(tmp_path: Path) -> None:
    supervisor = setup_domain(tmp_path)
    stream = HEADER + BODY
    write_journal(supervisor, stream)
    at = len(HEADER) + 100 * len(b"line 00\r\n")
    before = Terminal(40, 24)
    before.feed(stream[:at])
    snapshot = state.capture(before, at)
    assert snapshot is not None
    state.write_snapshot(supervisor.run_dir("box"), snapshot)

    reference = Terminal(40, 24)
    reference.feed(stream)
    shown = supervisor.screen("box")
    assert shown.text_lines()[0].startswith("status line painted once")
    assert same(shown, reference)


def test_without_a_snapshot_the_journal_is_all_there_is(tmp_path: Path) -> None:
    supervisor = setup_domain(tmp_path)
    write_journal(supervisor, HEADER + BODY)
    # The header rotated out of the journal: the status line is lost.
    assert "status line" not in supervisor.screen("box").text_lines()[0]


def test_upto_stops_at_an_offset_and_skips_a_later_snapshot(tmp_path: Path) -> None:
    supervisor = setup_domain(tmp_path)
    stream = HEADER + b"first\r\n" + b"second\r\n"
    write_journal(supervisor, stream)
    later = Terminal(40, 24)
    later.feed(stream)
    snapshot = state.capture(later, len(stream))
    assert snapshot is not None
    state.write_snapshot(supervisor.run_dir("box"), snapshot)

    upto = len(HEADER) + len(b"first\r\n")
    text = "\n".join(supervisor.screen("box", upto=upto).text_lines())
    assert "first" in text and "second" not in text
