"""A curses clock and progress display for the timed recordings (``clock`` case).

It redraws ten times a second until ``q`` or ``--seconds`` have passed: the
wall clock in large digits, a stopwatch with tenths, a progress bar over the
run, a spinner and a small table of counters, in colour. Only what changed is
written, as curses does for any such display.

    python3 benchmarks/tuis/clock.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import curses
import time

DIGITS = {
    "0": ["###", "# #", "# #", "# #", "###"],
    "1": ["  #", "  #", "  #", "  #", "  #"],
    "2": ["###", "  #", "###", "#  ", "###"],
    "3": ["###", "  #", "###", "  #", "###"],
    "4": ["# #", "# #", "###", "  #", "  #"],
    "5": ["###", "#  ", "###", "  #", "###"],
    "6": ["###", "#  ", "###", "# #", "###"],
    "7": ["###", "  #", "  #", "  #", "  #"],
    "8": ["###", "# #", "###", "# #", "###"],
    "9": ["###", "# #", "###", "  #", "###"],
    ":": ["   ", " # ", "   ", " # ", "   "],
}
SPINNER = "|/-\\"


def draw_big(screen: curses.window, row: int, column: int, text: str, colour: int) -> None:
    for line in range(5):
        x = column
        for char in text:
            for cell in DIGITS[char][line]:
                attr = curses.color_pair(colour) | curses.A_REVERSE if cell == "#" else 0
                screen.addstr(row + line, x, "  ", attr)
                x += 2
            x += 2


def run(screen: curses.window, seconds: float) -> None:
    curses.curs_set(0)
    curses.start_color()
    curses.use_default_colors()
    for pair, colour in enumerate((curses.COLOR_CYAN, curses.COLOR_GREEN, curses.COLOR_YELLOW), 1):
        curses.init_pair(pair, colour, -1)
    screen.nodelay(True)
    rows, columns = screen.getmaxyx()
    start = time.monotonic()
    tick = 0
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= seconds or screen.getch() == ord("q"):
            return
        screen.erase()
        screen.addstr(0, 0, " clock.py ".center(columns), curses.A_REVERSE | curses.A_BOLD)
        draw_big(screen, 2, 4, time.strftime("%H:%M:%S"), 1)
        screen.addstr(8, 4, f"stopwatch {elapsed:8.1f} s   {SPINNER[tick % 4]}", curses.A_BOLD)
        width = columns - 16
        done = int(width * elapsed / seconds)
        screen.addstr(10, 4, "[" + "=" * done + ">" + " " * (width - done) + "]")
        screen.addstr(10, columns - 10, f"{100 * elapsed / seconds:5.1f} %", curses.color_pair(3))
        for line in range(min(8, rows - 14)):
            value = (tick * (line + 3)) % 1000
            bar = "#" * (value * 40 // 1000)
            screen.addstr(12 + line, 4, f"worker {line}  {value:4d} ", curses.color_pair(2))
            screen.addstr(12 + line, 20, bar)
        screen.addstr(rows - 1, 0, "q quits"[: columns - 1], curses.A_DIM)
        screen.refresh()
        tick += 1
        time.sleep(max(0.0, start + tick * 0.1 - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    curses.wrapper(run, args.seconds)


if __name__ == "__main__":
    main()
