"""A top-like full-screen redraw for the benchmarks: ``FRAMES`` frames at ``FPS``.

Each frame is what procps ``top`` writes on a refresh: cursor home, then every
line of the screen rewritten in place and ended with erase-to-end-of-line (the
summary lines with bold numbers, a reverse-video column header, and the process
table), in one write. Between frames the clock ticks, the load and CPU figures
drift, processes' CPU, memory and TIME+ change, the table is re-sorted by CPU,
and a row's colour follows its CPU use (green, yellow, red; bold when running).
The random numbers are seeded, so every run writes the same bytes.

    python benchmarks/toplike.py [--frames 50] [--fps 10] [--stats FILE]

With ``--stats`` it writes JSON ``{"frames": [[monotonic_time, bytes], ...]}``
after the last frame: when each frame was written (``time.monotonic()``, the
clock the benchmark's viewer uses) and how many bytes it was. It hides the
cursor while it runs, as top does, and leaves the screen cleared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import dataclass

COLUMNS, LINES = 80, 25
TABLE_ROWS = LINES - 7
_COMMANDS_TEXT = (
    "systemd kthreadd rcu_gp kworker/0:1 sshd nginx postgres python3 Xvnc containerd "
    "dockerd journald rsyslogd cron bash vim less htop node java redis-server "
    "gunicorn chronyd udevd dbus-daemon polkitd agetty top vzvnc"
)
COMMANDS = tuple(_COMMANDS_TEXT.split())
USERS = ("root", "postgres", "www-data", "alice", "bob", "redis", "systemd+")

RESET = "\033[m"
BOLD = "\033[1m"
REVERSE = "\033[7m"
EL = "\033[K"


@dataclass
class Task:
    pid: int
    user: str
    priority: int
    nice: int
    virt: int
    res: int
    shr: int
    cpu: float
    mem: float
    time_cs: int  # TIME+ in hundredths of a second
    command: str


def make_tasks(rng: random.Random, count: int) -> list[Task]:
    tasks = []
    for index in range(count):
        virt = rng.randrange(2_000, 4_000_000)
        res = rng.randrange(500, max(600, virt // 3))
        tasks.append(
            Task(
                pid=rng.randrange(1, 99_999) if index else 1,
                user=rng.choice(USERS),
                priority=rng.choice((20, 20, 20, 0, -51)),
                nice=rng.choice((0, 0, 0, -20, 5)),
                virt=virt,
                res=res,
                shr=rng.randrange(100, res),
                cpu=0.0,
                mem=rng.random() * 5,
                time_cs=rng.randrange(0, 10_000_000),
                command=COMMANDS[index % len(COMMANDS)],
            )
        )
    return tasks


def step(rng: random.Random, tasks: list[Task], interval: float) -> None:
    for task in tasks:
        busy = rng.random()
        task.cpu = 0.0 if busy < 0.7 else round(rng.random() ** 3 * 100, 1)
        task.time_cs += int(task.cpu * interval)
        task.mem = max(0.0, min(99.9, task.mem + rng.uniform(-0.1, 0.1)))
        task.res = max(100, task.res + rng.randrange(-64, 65))


def row_colour(task: Task) -> str:
    if task.cpu >= 20:
        return "\033[31m"
    if task.cpu >= 5:
        return "\033[33m"
    if task.cpu > 0:
        return "\033[32m"
    return ""


def time_plus(cs: int) -> str:
    minutes, cs = divmod(cs, 6000)
    return f"{minutes}:{cs // 100:02d}.{cs % 100:02d}"


def frame(rng: random.Random, tasks: list[Task], now: float) -> bytes:
    clock = time.strftime("%H:%M:%S", time.gmtime(36_000 + now))
    loads = [0.4 + 0.4 * rng.random() for _ in range(3)]
    running = sum(1 for t in tasks if t.cpu > 0)
    us, sy = rng.uniform(0, 30), rng.uniform(0, 10)
    idle = 100 - us - sy
    used = 6000 + rng.randrange(0, 200)

    def bold(value: object) -> str:
        return f"{BOLD}{value}{RESET}"

    lines = [
        f"top - {clock} up 3 days,  4:05,  2 users,  load average: "
        f"{loads[0]:.2f}, {loads[1]:.2f}, {loads[2]:.2f}",
        f"Tasks: {bold(len(tasks) + 212)} total, {bold(running):>3} running, "
        f"{bold(len(tasks) + 212 - running)} sleeping,   {bold(0)} stopped,   {bold(0)} zombie",
        f"%Cpu(s): {bold(f'{us:4.1f}')} us, {bold(f'{sy:4.1f}')} sy,  {bold('0.0')} ni, "
        f"{bold(f'{idle:4.1f}')} id,  {bold('0.0')} wa,  {bold('0.0')} hi,  {bold('0.1')} si",
        f"MiB Mem : {bold('24032.5')} total, {bold(f'{24032.5 - used - 9000:7.1f}')} free, "
        f"{bold(f'{used:7.1f}')} used, {bold('9000.2')} buff/cache",
        f"MiB Swap: {bold('0.0')} total, {bold('0.0')} free, {bold('0.0')} used. "
        f"{bold(f'{24032.5 - used:7.1f}')} avail Mem",
        "",
        REVERSE
        + f"{'PID':>7} {'USER':<9}{'PR':>3} {'NI':>3} {'VIRT':>7} {'RES':>6} {'SHR':>6} S "
        f"{'%CPU':>5} {'%MEM':>5} {'TIME+':>9} {'COMMAND'}".ljust(COLUMNS)[:COLUMNS]
        + RESET,
    ]
    for task in sorted(tasks, key=lambda t: (-t.cpu, t.pid))[:TABLE_ROWS]:
        state = "R" if task.cpu > 0 else "S"
        text = (
            f"{task.pid:>7} {task.user:<9}{task.priority:>3} {task.nice:>3} {task.virt:>7} "
            f"{task.res:>6} {task.shr:>6} {state} {task.cpu:>5.1f} {task.mem:>5.1f} "
            f"{time_plus(task.time_cs):>9} {task.command}"
        )[:COLUMNS]
        colour = row_colour(task) + (BOLD if state == "R" else "")
        lines.append(f"{colour}{text}{RESET}" if colour else text)
    out = "\033[H" + "\r\n".join(line + EL for line in lines[:-1]) + "\r\n" + lines[-1] + EL
    return out.encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--stats", help="write frame times and sizes here (JSON)")
    args = parser.parse_args()
    rng = random.Random(4)
    tasks = make_tasks(rng, 40)
    interval = 1.0 / args.fps
    os.write(1, b"\033[?25l\033[H\033[2J")
    written: list[tuple[float, int]] = []
    start = time.monotonic()
    try:
        for index in range(args.frames):
            target = start + index * interval
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            step(rng, tasks, interval * 100)
            data = frame(rng, tasks, target)
            now = time.monotonic()
            os.write(1, data)
            written.append((now, len(data)))
        time.sleep(interval)
    finally:
        os.write(1, b"\033[m\033[H\033[2J\033[?25h")
    if args.stats:
        with open(args.stats, "w") as stats:
            json.dump({"frames": written}, stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
