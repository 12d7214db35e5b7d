"""A curses screen with boxes, colours and attributes, for the recordings.

It draws once, then waits for a key (q quits).
"""

import curses


def main(stdscr: curses.window) -> None:
    curses.curs_set(0)
    curses.start_color()
    curses.use_default_colors()
    for n in range(1, 8):
        curses.init_pair(n, n, -1)
    curses.init_pair(8, curses.COLOR_WHITE, curses.COLOR_BLUE)
    curses.init_pair(9, curses.COLOR_BLACK, curses.COLOR_YELLOW)
    if curses.COLORS >= 256:
        for n in range(16):
            curses.init_pair(10 + n, -1, 16 + n * 13)
    rows, cols = stdscr.getmaxyx()
    stdscr.bkgd(" ", curses.color_pair(0))
    stdscr.box()
    title = " curses demo "
    stdscr.addstr(0, (cols - len(title)) // 2, title, curses.A_BOLD | curses.color_pair(8))
    styles = [
        ("normal", curses.A_NORMAL),
        ("bold", curses.A_BOLD),
        ("dim", curses.A_DIM),
        ("underline", curses.A_UNDERLINE),
        ("reverse", curses.A_REVERSE),
        ("standout", curses.A_STANDOUT),
        ("blink", curses.A_BLINK),
        ("italic", curses.A_ITALIC),
    ]
    for i, (name, attr) in enumerate(styles):
        stdscr.addstr(2 + i, 2, f"{name:<10}", attr)
        stdscr.addstr(2 + i, 13, "colour", attr | curses.color_pair(1 + i % 7))
    win = curses.newwin(6, cols // 2 - 4, 2, cols // 2)
    win.bkgd(" ", curses.color_pair(8))
    win.box()
    win.addstr(0, 2, " window ", curses.A_REVERSE)
    win.addstr(2, 2, "white on blue", curses.color_pair(8))
    win.addstr(3, 2, "black on yellow", curses.color_pair(9) | curses.A_BOLD)
    win.noutrefresh()
    y = 11
    stdscr.hline(y, 1, curses.ACS_HLINE, cols - 2)
    stdscr.addch(y, 0, curses.ACS_LTEE)
    stdscr.addch(y, cols - 1, curses.ACS_RTEE)
    if curses.COLORS >= 256:
        for n in range(16):
            stdscr.addstr(y + 1, 2 + n * 3, "   ", curses.color_pair(10 + n))
    acs = [curses.ACS_DIAMOND, curses.ACS_CKBOARD, curses.ACS_DEGREE, curses.ACS_PLMINUS]
    acs += [curses.ACS_BULLET, curses.ACS_PLUS, curses.ACS_LEQUAL, curses.ACS_GEQUAL]
    acs += [curses.ACS_PI, curses.ACS_NEQUAL, curses.ACS_STERLING, curses.ACS_S1]
    for i, ch in enumerate(acs):
        stdscr.addch(y + 3, 2 + i * 2, ch)
    stdscr.addstr(y + 4, 2, "wide: 日本語テキスト, umlauts: äöü ß", curses.color_pair(6))
    stdscr.addstr(rows - 2, 2, "press q to quit", curses.A_BOLD | curses.A_UNDERLINE)
    stdscr.noutrefresh()
    curses.doupdate()
    while stdscr.getch() != ord("q"):
        pass


curses.wrapper(main)
