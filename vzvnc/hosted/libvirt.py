"""VNC consoles for libvirt LXC domains: ``vzvnc libvirt serve|hook|list|stop-console``.

libvirt gives LXC domains a text console only: its controller (``libvirt_lxc``)
holds the master of a host pty and names the slave in the live XML
(``<console type='pty' tty='/dev/pts/N'>``). Nobody else holds that slave, so a
keeper (``keeper.py``: journal, restartable console server) opens it directly.
It is raw already; end of file means the domain stopped; it keeps working
across a libvirtd restart. Window sizes are set on the container's own console
(init's fd 0, init's pid from libvirt's status file): the host pty's size does
not reach the container. There is no exclusive access, so ``virsh console`` must
not be used at the same time (two readers split the output).

``hook`` is the body of ``/etc/libvirt/hooks/lxc`` (``NAME OPERATION SUB-OPERATION
-``, the domain XML on stdin): ``started`` and ``reconnect`` start a console unless
one runs, ``stopped`` and ``release`` stop it. It never calls libvirt (that would
deadlock), detaches its child completely, and always exits 0 (a failing hook
aborts a start and kills a reconnected domain).

Where a console listens is written into the live domain's metadata
(``virsh dumpxml`` shows ``<vzvnc:console listen='HOST:PORT'/>``) through the
libvirt Python binding (PyPI ``libvirt-python``), when it is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from vzvnc.errors import ConfigError, DomainStateError, VzvncError
from vzvnc.hosted.common import (
    PTY_SLAVE_MAJORS,
    add_serve_options,
    console_settings,
    detach,
    forwarded_options,
    print_result,
    refuse_if_served,
    resize_container_tty,
    run_keeper,
    status_rows,
    stop_console,
)
from vzvnc.hosted.keeper import Keeper, console_name, hosted_root, read_status, stop_keeper

log = logging.getLogger(__name__)

KIND = "libvirt"
DEFAULT_URI = "lxc:///system"
METADATA_URI = "https://vzvnc.dev/xmlns/console/1"
METADATA_KEY = "vzvnc"
STATUS_DIR = Path("/run/libvirt/lxc")
# A domain XML larger than this is not a domain XML.
MAX_XML = 4 * 1024 * 1024


def binding() -> Any | None:
    try:
        return importlib.import_module("libvirt")
    except ImportError:
        return None


def run_dir_for(home: Path, name: str) -> Path:
    return hosted_root(home, KIND) / console_name(name)


def parse_domain_xml(text: str) -> dict[str, str | None]:
    """Name, console pty and root filesystem of a live domain XML."""
    if len(text) > MAX_XML:
        raise ConfigError("domain XML: too large")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ConfigError(f"domain XML: {exc}") from exc
    if root.tag != "domain" or root.get("type") != "lxc":
        raise ConfigError("domain XML: not a libvirt LXC domain")
    console = root.find("./devices/console[@type='pty']")
    tty = None
    if console is not None:
        source = console.find("source")
        tty = console.get("tty") or (source.get("path") if source is not None else None)
    rootfs = None
    for fs in root.findall("./devices/filesystem[@type='mount']"):
        target, source = fs.find("target"), fs.find("source")
        if target is not None and source is not None and target.get("dir") == "/":
            rootfs = source.get("dir")
    return {"name": root.findtext("name"), "tty": tty, "rootfs": rootfs}


def domain_xml(name: str, uri: str) -> str:
    """The live XML of a domain, through the binding or ``virsh``."""
    libvirt = binding()
    if libvirt is not None:
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise DomainStateError(f"cannot connect to libvirt at {uri}: {exc}") from exc
        try:
            try:
                domain = conn.lookupByName(name)
            except libvirt.libvirtError as exc:
                raise DomainStateError(f"libvirt domain {name} does not exist") from exc
            if not domain.isActive():
                raise DomainStateError(f"libvirt domain {name} is not running")
            return str(domain.XMLDesc(0))
        finally:
            conn.close()
    result = subprocess.run(
        ["virsh", "-c", uri, "dumpxml", name], capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        raise DomainStateError(f"libvirt domain {name}: {result.stderr.strip()}")
    return result.stdout


def init_pid(name: str) -> int | None:
    """The container's init, from libvirt's status file (root's, not the container's)."""
    with contextlib.suppress(OSError, ET.ParseError, ValueError, TypeError):
        status = ET.parse(STATUS_DIR / f"{name}.xml").getroot()
        node = status.find("init")
        if node is not None:
            return int(node.get("pid", ""))
    return None


class PtsSource:
    """The host-side pty slave of a libvirt LXC domain's console."""

    def __init__(self, name: str, tty: str, uri: str) -> None:
        self.name = name
        self.tty = tty
        self.uri = uri
        self.description = f"{tty} of libvirt domain {name}"
        self.ended = False
        self.published = False

    def open(self) -> int:
        path = os.path.normpath(self.tty)
        if not path.startswith("/dev/pts/"):
            raise ConfigError(f"console: {self.tty} is not a /dev/pts pty")
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        info = os.fstat(fd)
        if not stat.S_ISCHR(info.st_mode) or os.major(info.st_rdev) not in PTY_SLAVE_MAJORS:
            os.close(fd)
            raise ConfigError(f"console: {self.tty} is not a pty")
        return fd

    def resize(self, fd: int, columns: int, lines: int) -> None:
        pid = init_pid(self.name)
        if pid is not None:
            resize_container_tty(pid, columns, lines)

    async def reopen(self) -> int | None:
        self.ended = True
        return None  # libvirt's controller closed it: the domain stopped

    async def watch(self) -> None:
        import asyncio

        await asyncio.Event().wait()

    def listening(self, host: str, port: int) -> None:
        self._set_metadata(f'<console listen="{host}:{port}"/>')
        self.published = True

    def _set_metadata(self, element: str | None) -> None:
        libvirt = binding()
        if libvirt is None:
            return
        conn = libvirt.open(self.uri)
        try:
            domain = conn.lookupByName(self.name)
            domain.setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                element,
                METADATA_KEY if element else None,
                METADATA_URI,
                libvirt.VIR_DOMAIN_AFFECT_LIVE,
            )
        finally:
            conn.close()

    def saw_output(self) -> None:
        pass

    def close(self) -> None:
        # A console stopped while its domain runs takes its address back out.
        if self.published and not self.ended:
            try:
                self._set_metadata(None)
            except Exception as exc:
                log.warning("cannot remove the console address from the domain: %s", exc)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("libvirt", help="VNC consoles for libvirt LXC domains")
    ops = parser.add_subparsers(dest="op", required=True)
    serve = ops.add_parser(
        "serve",
        help="serve the console of a running libvirt LXC domain",
        usage="vzvnc libvirt serve NAME [-c URI] [--listen HOST:PORT] [--detach] [--json]",
    )
    serve.add_argument("name")
    serve.add_argument("-c", "--connect", default=DEFAULT_URI, help=f"URI (default {DEFAULT_URI})")
    serve.add_argument("--xml-file", help=argparse.SUPPRESS)  # the hook's copy of the XML
    add_serve_options(serve)
    hook = ops.add_parser("hook", help="the body of /etc/libvirt/hooks/lxc (domain XML on stdin)")
    hook.add_argument("name")
    hook.add_argument("operation")
    hook.add_argument("sub_operation")
    hook.add_argument("extra", nargs="*")
    add_serve_options(hook)
    listing = ops.add_parser("list", help="libvirt LXC domains and where their consoles listen")
    listing.add_argument("-c", "--connect", default=DEFAULT_URI)
    listing.add_argument("--json", action="store_true")
    stop = ops.add_parser("stop-console", help="stop serving a domain's console")
    stop.add_argument("name")


def command(args: argparse.Namespace) -> int:
    from vzvnc.supervisor import vzvnc_home

    home = vzvnc_home()
    if args.op == "hook":
        return hook(args, home)
    if args.op == "list":
        return list_command(args, home)
    run_dir = run_dir_for(home, args.name)
    if args.op == "stop-console":
        return stop_console(run_dir, f"libvirt domain {args.name}")
    refuse_if_served(run_dir, f"libvirt domain {args.name}")
    text = read_xml_file(args.xml_file) if args.xml_file else domain_xml(args.name, args.connect)
    described = parse_domain_xml(text)
    if described["name"] != args.name:
        raise ConfigError(f"domain XML: it describes {described['name']!r}, not {args.name!r}")
    tty = described["tty"]
    if not tty:
        raise DomainStateError(f"libvirt domain {args.name} has no pty console (is it running?)")
    settings = console_settings(args.name, described["rootfs"], args)
    if args.detach:
        argv = ["libvirt", "serve", args.name, "-c", args.connect, *forwarded_options(args)]
        if args.xml_file:
            argv += ["--xml-file", os.path.abspath(args.xml_file)]
        result = detach(argv, log_path(run_dir), run_dir, wait=True)
        result.update(name=args.name)
        print_result(args, result, f"{args.name}: VNC at {result['vnc']}")
        return 0

    def keeper() -> Keeper:
        source = PtsSource(args.name, tty, args.connect)
        extra = {"uri": args.connect, "tty": tty}
        return Keeper(KIND, args.name, home, run_dir, settings, source, extra)

    return run_keeper(keeper)


def read_xml_file(path: str) -> str:
    with open(path) as f:
        return f.read(MAX_XML + 1)


def log_path(run_dir: Path) -> Path:
    return run_dir.parent / f"{run_dir.name}.log"


def hook(args: argparse.Namespace, home: Path) -> int:
    """``/etc/libvirt/hooks/lxc NAME OPERATION SUB-OPERATION -``: never fails."""
    try:
        text = sys.stdin.read(MAX_XML + 1)
        run_dir = run_dir_for(home, args.name)
        if args.operation in ("started", "reconnect"):
            if read_status(run_dir) is None:
                described = parse_domain_xml(text)
                if described["name"] != args.name or not described["tty"]:
                    raise ConfigError(f"no pty console in the XML of {args.name}")
                xml_file = run_dir.parent / f"{run_dir.name}.xml"
                xml_file.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                fd = os.open(xml_file, flags, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                argv = ["libvirt", "serve", args.name, "--xml-file", str(xml_file)]
                detach([*argv, *forwarded_options(args)], log_path(run_dir), run_dir, wait=False)
        elif args.operation in ("stopped", "release"):
            stop_keeper(run_dir)
    except (VzvncError, OSError) as exc:
        print(f"vzvnc libvirt hook: {exc}", file=sys.stderr)
    return 0


def list_command(args: argparse.Namespace, home: Path) -> int:
    served = {row.get("name"): row for row in status_rows(hosted_root(home, KIND))}
    rows: dict[str, dict[str, Any]] = {}
    libvirt = binding()
    if libvirt is not None:
        with contextlib.suppress(libvirt.libvirtError):
            conn = libvirt.open(args.connect)
            try:
                for domain in conn.listAllDomains(0):
                    active = bool(domain.isActive())
                    state = "running" if active else "shut off"
                    rows[domain.name()] = {"name": domain.name(), "state": state}
            finally:
                conn.close()
    for name in served:
        rows.setdefault(str(name), {"name": name, "state": "running"})
    result = []
    for name in sorted(rows):
        row = served.get(name, {})
        result.append(
            {
                **rows[name],
                "vnc": row.get("vnc"),
                "viewers": row.get("viewers", 0),
                "keeper_pid": row.get("pid"),
            }
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'NAME':20} {'STATE':9} {'VNC':22} VIEWERS")
        for item in result:
            print(f"{item['name']:20} {item['state']:9} {item['vnc'] or '-':22} {item['viewers']}")
    return 0
