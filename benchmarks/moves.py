"""Suspend, save, restore and live migration of a busybox domain: times and sizes.

Two "hosts" on this machine: network namespaces joined by a veth pair, each with
its own ``vzvnc daemon`` and home (TLS and a shared secret between them, as off
loopback). The domain runs an interactive shell with a background loop writing
a line every 10 ms, so there is always console output in flight.

Measured, each repeated and reported as median (min-max):

- suspend + resume: ``Supervisor.suspend`` (freeze, drain, state into the
  rootfs) then ``resume``;
- save: ``vzvnc domain save`` as a library call (suspend, CRIU dump, stop), and
  the image size; restore: ``start`` of the saved domain, until its VNC answers;
- live migration, shared and copied storage, there and back: downtime (freeze
  at the source to thaw at the destination), time until the destination's
  console serves, total time, bytes sent.

The reference, in the same run: CRIU alone on a similar process tree (a shell
and its loop, no namespaces, no console), ``criu dump`` then ``criu restore``:
the floor any CRIU-based move pays. Ratio = vzvnc / reference.

    sudo .venv/bin/python benchmarks/moves.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vzvnc.domain import channel_io, criu, migrate
from vzvnc.domain.rootfs import make_busybox_rootfs
from vzvnc.supervisor import Supervisor

PORT = 16510
SUBNET = "10.232.9"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def summary(values: list[float], scale: float = 1000.0) -> str:
    ms = [v * scale for v in values]
    return f"{statistics.median(ms):8.1f} ({min(ms):.1f}-{max(ms):.1f})"


def raw_criu(tmp: Path, rounds: int) -> tuple[list[float], list[float], int]:
    """CRIU alone: dump and restore a detached shell with a writing loop (a shell and
    no more: the floor under a container's shell, which has its namespaces too)."""
    binary = criu.find_criu()
    dumps, restores, size = [], [], 0
    for n in range(rounds):
        log = tmp / f"loop-{n}"
        process = subprocess.Popen(
            # No child processes (a reaped child's pid may still be taken at restore):
            # bash waits on a FIFO with a timeout instead of running sleep.
            [
                "setsid",
                "bash",
                "-c",
                f"mkfifo {log}.fifo; exec 3<>{log}.fifo; "
                f"while :; do echo x >> {log}; read -t 0.01 -u 3; done",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.2)
        images = tmp / f"raw-{n}"
        images.mkdir()
        began = time.monotonic()
        subprocess.run(
            [binary, "dump", "-t", str(process.pid), "-D", str(images), "--shell-job",
             "--network-lock", "skip", "-o", "dump.log"],
            check=True,
        )  # fmt: skip
        dumps.append(time.monotonic() - began)
        process.wait()
        size = sum(f.stat().st_size for f in images.iterdir())
        began = time.monotonic()
        subprocess.run(
            [binary, "restore", "-D", str(images), "-d", "--shell-job", "-o", "restore.log",
             "--pidfile", str(images / "pid")],
            check=True,
        )  # fmt: skip
        restores.append(time.monotonic() - began)
        os.kill(int((images / "pid").read_text()), signal.SIGKILL)
    return dumps, restores, size


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    criu.find_criu()
    tmp = Path(tempfile.mkdtemp(prefix="vzvnc-moves-"))
    tag = f"vzb{os.getpid() % 100000}"
    names = {"a": f"{tag}a", "b": f"{tag}b"}
    addresses = {"a": f"{SUBNET}.1", "b": f"{SUBNET}.2"}
    daemons: list[subprocess.Popen[bytes]] = []
    homes = {side: tmp / f"home-{side}" for side in names}
    try:
        for ns in names.values():
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", f"{tag}va", "type", "veth", "peer", "name", f"{tag}vb")
        for side, ns in names.items():
            veth = f"{tag}v{side}"
            ip("link", "set", veth, "netns", ns)
            ip("-n", ns, "addr", "add", f"{addresses[side]}/24", "dev", veth)
            ip("-n", ns, "link", "set", veth, "up")
        secret = tmp / "secret"
        secret.write_text("benchmark secret, long enough\n")
        cert, key = tmp / "cert.pem", tmp / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-subj", "/CN=bench", "-days", "1"],
            check=True, capture_output=True,
        )  # fmt: skip
        for side, ns in names.items():
            homes[side].mkdir()
            daemons.append(
                subprocess.Popen(
                    [
                        "nsenter",
                        f"--net=/run/netns/{ns}",
                        sys.executable,
                        "-m",
                        "vzvnc",
                        "daemon",
                        "--listen",
                        f"{addresses[side]}:{PORT}",
                        "--secret-file",
                        str(secret),
                        "--tls-cert",
                        str(cert),
                        "--tls-key",
                        str(key),
                    ],
                    env={**os.environ, "VZVNC_HOME": str(homes[side])},
                    stdout=subprocess.DEVNULL,
                    stderr=open(tmp / f"daemon-{side}.log", "w"),  # noqa: SIM115
                )
            )
        time.sleep(2)
        rootfs = tmp / "rootfs"
        make_busybox_rootfs(str(rootfs))
        (rootfs / "etc/loop").write_text(
            "while :; do echo tick; sleep 0.01; done > /dev/console &\n"
        )
        sups = {side: Supervisor(home) for side, home in homes.items()}
        definition = tmp / "bench.toml"
        definition.write_text(
            f'name = "bench"\nrootfs = "{rootfs}"\nstop_timeout = 1\n'
            'init = ["/bin/sh", "-c", ". /etc/loop; exec /bin/sh"]\n'
        )
        a = sups["a"]
        a.define_file(definition)
        a.start("bench")
        time.sleep(0.5)

        suspends = []
        for _ in range(args.rounds * 2):
            began = time.monotonic()
            a.suspend("bench")
            a.resume("bench")
            suspends.append(time.monotonic() - began)

        saves, restores, image_bytes = [], [], 0
        for _ in range(args.rounds):
            result = a.save("bench")
            saves.append(result["seconds"])
            image_bytes = result["image_bytes"]
            began = time.monotonic()
            a.start("bench")
            restores.append(time.monotonic() - began)

        ssl_context = channel_io.client_tls(str(cert))
        results: dict[str, dict[str, list[float]]] = {}
        where = "a"
        for storage in ("shared", "copy"):
            rows = results.setdefault(
                storage, {"downtime": [], "back": [], "total": [], "bytes": []}
            )
            for _ in range(args.rounds):
                there = "b" if where == "a" else "a"

                async def move(src: str = where, dst: str = there, how: str = storage) -> dict:
                    channel = await channel_io.connect(
                        addresses[dst], PORT, secret=secret.read_bytes().strip(), tls=ssl_context
                    )
                    async with channel:
                        return await migrate.migrate(sups[src], "bench", channel, storage=how)

                # The source's side runs in its namespace's network: enter it on this thread.
                summary_ = in_netns(names[where], lambda m=move: asyncio.run(m()))
                rows["downtime"].append(summary_["downtime"])
                rows["back"].append(summary_["console_back"])
                rows["total"].append(summary_["seconds"])
                rows["bytes"].append(summary_["bytes"])
                if storage == "copy":  # the source keeps its copy: not wanted here
                    shutil.rmtree(homes[where] / "storage", ignore_errors=True)
                where = there
                time.sleep(0.3)
        raw_dumps, raw_restores, raw_size = raw_criu(tmp, args.rounds)
        floor = [d + r for d, r in zip(raw_dumps, raw_restores, strict=True)]
        floor_median = statistics.median(floor)

        print(f"rounds: {args.rounds}; times in ms, median (min-max)")
        print(f"{'measure':44} {'vzvnc':>24} {'ratio':>6}")
        print(f"{'suspend + resume':44} {summary(suspends):>24}")
        print(f"{'save (suspend, dump, stop)':44} {summary(saves):>24}")
        print(f"{'restore (start until VNC answers)':44} {summary(restores):>24}")
        print(f"{'save image bytes':44} {image_bytes:>24}")
        for storage, rows in results.items():
            down = statistics.median(rows["downtime"])
            print(f"{'migrate ' + storage + ': downtime':44} {summary(rows['downtime']):>24} "
                  f"{down / floor_median:6.2f}")  # fmt: skip
            print(
                f"{'migrate ' + storage + ': console serving again':44} {summary(rows['back']):>24}"
            )
            print(f"{'migrate ' + storage + ': total':44} {summary(rows['total']):>24}")
            sent = int(statistics.median(rows["bytes"]))
            print(f"{'migrate ' + storage + ': bytes sent':44} {sent:>24}")
        print(f"{'reference: criu dump + restore (floor)':44} {summary(floor):>24}")
        print(f"{'reference: criu dump':44} {summary(raw_dumps):>24}")
        print(f"{'reference: criu restore':44} {summary(raw_restores):>24}")
        print(f"{'reference: image bytes':44} {raw_size:>24}")
        return 0
    finally:
        for daemon in daemons:
            daemon.terminate()
            daemon.wait(10)
        for home in homes.values():
            if home.exists():
                sup = Supervisor(home)
                for name in sup.names():
                    sup.stop(name, timeout=1)
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for side in names:
            log = tmp / f"daemon-{side}.log"
            if log.exists():
                shutil.copy(log, f"/tmp/bench-daemon-{side}.log")
        shutil.rmtree(tmp, ignore_errors=True)


def in_netns(netns: str, work: object) -> dict:
    """Run ``work`` on a thread that entered ``netns`` (setns is per thread)."""
    import ctypes
    import threading

    result: list[object] = []

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            libc.setns(fd, 0x40000000)
        finally:
            os.close(fd)
        try:
            result.append(work())  # type: ignore[operator]
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]  # type: ignore[return-value]


if __name__ == "__main__":
    sys.exit(main())
