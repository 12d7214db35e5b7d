"""The ``vzvnc`` command.

    vzvnc run [--listen HOST:PORT] [--size COLSxROWS] [--password-file FILE]
              [--view-only-password-file FILE] [--name NAME] [--keep-open]
              [--max-fps N] [--fixed-size] [--history N] [--font-scale N]
              [-- CMD ARGS...]
    vzvnc render --size COLSxROWS [--text] [--png FILE] < typescript

Errors that are the user's to fix (bad options, unreadable password file) print
one line and exit with the error's ``os.EX_*`` code; nothing is started.

``vzvnc run`` is normally forked by the user's fork server (``run_client``,
``run_server``), so this module imports its dependencies where they are used:
what it imports at the top is paid by every console's thin client.
"""

from __future__ import annotations

import os
import sys

from vzvnc import __version__

TYPE_CHECKING = False  # typing's costs every vzvnc run client 2 ms to import
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

    from vzvnc.config import ConsoleConfig

DEFAULT_DAEMON_PORT = 16510  # vzvnc daemon's migration port (vzvnc.domain.migrate)


def default_shell() -> list[str]:
    """The user's login shell, started as a login shell."""
    import pwd

    shell = os.environ.get("SHELL") or ""
    if not shell:
        try:
            shell = pwd.getpwuid(os.getuid()).pw_shell
        except KeyError:
            shell = ""
    shell = shell or "/bin/sh"
    return [shell, "-l"]


def build_parser(*, hosted: bool = True) -> argparse.ArgumentParser:
    """The command line; without ``hosted`` the lxc and libvirt commands are left out
    (``vzvnc run`` skips importing them: 12 ms of every console's start)."""
    import argparse

    parser = argparse.ArgumentParser(prog="vzvnc", description="Serve a terminal to VNC viewers.")
    parser.add_argument("--version", action="version", version=f"vzvnc {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run a program (default: your login shell) in a terminal served over VNC",
        description="Run CMD in a new pty and serve its screen over RFB (VNC).",
    )
    run.add_argument(
        "--listen",
        default="127.0.0.1:5900",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:5900; non-loopback needs a password)",
    )
    run.add_argument("--size", default="80x25", metavar="COLSxROWS", help="terminal size")
    run.add_argument("--password-file", metavar="FILE", help="file holding the VNC password")
    run.add_argument(
        "--view-only-password-file", metavar="FILE", help="file holding a view-only password"
    )
    run.add_argument("--name", help="desktop name shown by viewers (default: the command)")
    run.add_argument("--max-fps", type=float, default=60.0, help="update rate cap (default 60)")
    run.add_argument(
        "--keep-open",
        action="store_true",
        help="keep serving the final screen after the program exits (stop with SIGTERM)",
    )
    run.add_argument(
        "--fixed-size",
        action="store_true",
        help="refuse viewers' resize requests (SetDesktopSize); the size stays --size",
    )
    run.add_argument("--history", type=int, default=2000, help="scrollback lines (default 2000)")
    run.add_argument(
        "--max-viewers", type=int, default=0, help="most viewers at once (default 0: no limit)"
    )
    run.add_argument(
        "--sharing",
        choices=("request", "always", "refuse"),
        default="request",
        help="a viewer asking for exclusive access: disconnects the others (request, the "
        "default), is treated as shared (always), or is refused while others are connected",
    )
    run.add_argument(
        "--idle-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="drop a viewer that sends nothing this long (default 0: never)",
    )
    run.add_argument(
        "--handshake-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="drop a client that has not finished the RFB handshake (and authentication) "
        "this long after connecting (default 10)",
    )
    run.add_argument("--tls-cert", metavar="FILE", help="PEM certificate: VeNCrypt X509 subtypes")
    run.add_argument("--tls-key", metavar="FILE", help="the certificate's PEM key")
    run.add_argument(
        "--anonymous-tls",
        action="store_true",
        help="also offer VeNCrypt's anonymous TLS subtypes (no defence against a man in the "
        "middle)",
    )
    run.add_argument(
        "--users-file", metavar="FILE", help="users for VeNCrypt Plain, over TLS (vzvnc passwd)"
    )
    run.add_argument(
        "--insecure-vnc-auth",
        action="store_true",
        help="allow VNC Authentication without TLS on a non-loopback address",
    )
    run.add_argument(
        "--no-websocket",
        action="store_true",
        help="serve RFB only: no WebSocket clients (noVNC) on the port, and no wait to tell",
    )
    run.add_argument(
        "--font-scale", type=int, default=1, help="integer font scale for HiDPI (default 1)"
    )
    run.add_argument(
        "--no-fork-server",
        action="store_true",
        help="run the console in this process, not forked by the user's fork server "
        "(as VZVNC_NO_FORK_SERVER=1 does)",
    )
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    render = commands.add_parser(
        "render",
        help="render a byte stream (a program's output) as a viewer would see it",
        description=(
            "Read a terminal byte stream on stdin and write the final screen as text "
            "lines (--text, the default) and/or a PNG (--png FILE)."
        ),
    )
    render.add_argument("--size", default="80x25", metavar="COLSxROWS", help="terminal size")
    render.add_argument("--text", action="store_true", help="print the screen as text lines")
    render.add_argument("--png", metavar="FILE", help="write the screen as a PNG")
    render.add_argument("--font-scale", type=int, default=1, help="integer font scale")
    add_domain_commands(commands)
    passwd = commands.add_parser(
        "passwd",
        help="add or change a user in a users file (VeNCrypt Plain)",
        description="Read the password from stdin (asked twice on a terminal) and store "
        "its salted scrypt hash for USER in FILE (created with mode 0600).",
    )
    passwd.add_argument("file")
    passwd.add_argument("user")
    passwd.add_argument("--view-only", action="store_true", help="this user may only look")
    if hosted:
        from vzvnc.hosted import libvirt, lxc

        lxc.add_commands(commands)
        libvirt.add_commands(commands)
    daemon = commands.add_parser(
        "daemon",
        help="the host daemon: autostart, restore saved domains, receive migrations",
        description=(
            "Serve $VZVNC_HOME: restore saved domains, start autostart ones, and accept "
            "live migrations from other hosts' vzvnc until SIGTERM."
        ),
    )
    daemon.add_argument(
        "--listen",
        default=f"127.0.0.1:{DEFAULT_DAEMON_PORT}",
        metavar="HOST:PORT",
        help=f"migration address (default 127.0.0.1:{DEFAULT_DAEMON_PORT}); off loopback "
        "needs --tls-cert/--tls-key and --secret-file or --tls-ca",
    )
    daemon.add_argument("--secret-file", metavar="FILE", help="shared secret for migrations")
    daemon.add_argument("--tls-cert", metavar="FILE", help="TLS certificate (PEM)")
    daemon.add_argument("--tls-key", metavar="FILE", help="TLS private key (PEM)")
    daemon.add_argument(
        "--tls-ca", metavar="FILE", help="CA that client certificates must be signed by"
    )
    daemon.add_argument(
        "--storage-dir",
        metavar="DIR",
        help="where copied root filesystems go (default $VZVNC_HOME/storage)",
    )
    rootfs = commands.add_parser("rootfs", help="make root filesystems for domains")
    rootfs_kinds = rootfs.add_subparsers(dest="kind", required=True)
    busybox = rootfs_kinds.add_parser("busybox", help="a minimal rootfs from busybox-static")
    busybox.add_argument("dir")
    return parser


_parsers: dict[bool, argparse.ArgumentParser] = {}


def parser_for(words: Sequence[str]) -> argparse.ArgumentParser:
    """The parser for ``words``, built once per process: the run fork server builds it
    before it forks, so no console spends 4 ms of its start on it."""
    from vzvnc.run_client import command_index

    words = list(words)
    index = command_index(words)
    hosted = words[index : index + 1] != ["run"]
    if hosted not in _parsers:
        _parsers[hosted] = build_parser(hosted=hosted)
    return _parsers[hosted]


def add_domain_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    domain = commands.add_parser("domain", help="containers with a VNC console each")
    ops = domain.add_subparsers(dest="op", required=True)
    define = ops.add_parser("define", help="define (or redefine) a domain from a TOML file")
    define.add_argument("file")
    create = ops.add_parser(
        "create",
        help="define a domain from options",
        usage="vzvnc domain create NAME --rootfs DIR [--listen HOST:PORT] "
        "[--password-file FILE] [-- INIT ARGS...]",
    )
    create.add_argument("name")
    create.add_argument("--rootfs", required=True)
    create.add_argument(
        "--listen", metavar="HOST:PORT", help="VNC address (default 127.0.0.1:auto)"
    )
    create.add_argument("--password-file")
    start = ops.add_parser("start", help="start a domain (restoring its saved image, if any)")
    start.add_argument("name")
    start.add_argument(
        "--discard-save", action="store_true", help="throw a saved image away and boot afresh"
    )
    save = ops.add_parser(
        "save", help="checkpoint a running domain to disk and stop it; start restores it"
    )
    save.add_argument("name")
    save.add_argument("--remove", action="store_true", help="throw the saved image away")
    save.add_argument("--json", action="store_true", help="print the result as JSON")
    for name, text in (
        ("stop", "stop a domain (cleanly, then by force after its stop_timeout)"),
        ("destroy", "stop a domain and remove its definition"),
    ):
        ops.add_parser(name, help=text).add_argument("name")
    for name, text in (
        ("suspend", "freeze a domain; viewers keep its screen, input is refused"),
        ("resume", "thaw a suspended domain"),
    ):
        op = ops.add_parser(name, help=text)
        op.add_argument("name")
        op.add_argument("--json", action="store_true", help="print the result as JSON")
    listing = ops.add_parser("list", help="all domains with state, pids and VNC address")
    listing.add_argument("--json", action="store_true")
    status = ops.add_parser("status", help="one domain's state")
    status.add_argument("name")
    status.add_argument("--json", action="store_true")
    shot = ops.add_parser("screenshot", help="what a viewer sees, as PNG or text")
    shot.add_argument("name")
    shot.add_argument("-o", "--output", metavar="FILE.png")
    shot.add_argument("--text", action="store_true")
    console = ops.add_parser("console", help="attach this terminal (detach with Ctrl+])")
    console.add_argument("name")
    autostart = ops.add_parser("autostart", help="start this domain when vzvnc daemon starts")
    autostart.add_argument("name")
    autostart.add_argument("--disable", action="store_true", help="no longer autostart it")
    move = ops.add_parser(
        "migrate",
        help="move a domain to another host's vzvnc daemon",
        usage="vzvnc domain migrate NAME HOST:PORT [--secret-file FILE] "
        "[--shared-storage | --copy-storage] [--cold] [--json]",
    )
    move.add_argument("name")
    move.add_argument("destination", metavar="HOST:PORT")
    move.add_argument("--secret-file", metavar="FILE", help="the destination's shared secret")
    storage = move.add_mutually_exclusive_group()
    storage.add_argument(
        "--shared-storage",
        action="store_true",
        help="the rootfs is on storage both hosts see (checked)",
    )
    storage.add_argument(
        "--copy-storage", action="store_true", help="copy the rootfs to the destination"
    )
    move.add_argument(
        "--cold", action="store_true", help="move a stopped or saved domain (no CRIU needed)"
    )
    move.add_argument("--tls-ca", metavar="FILE", help="use TLS; trust this CA (or cert)")
    move.add_argument(
        "--tls-cert", metavar="FILE", help="client certificate, for a daemon with --tls-ca"
    )
    move.add_argument("--tls-key", metavar="FILE", help="the client certificate's key")
    move.add_argument("--json", action="store_true", help="progress and result as JSON lines")


def domain_command(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from vzvnc.supervisor import Supervisor, create_domain

    supervisor = Supervisor()
    op = args.op
    if op == "define":
        domain = supervisor.define_file(Path(args.file))
        print(f"defined {domain.name}")
    elif op == "create":
        init = list(args.init)
        domain = create_domain(args.name, args.rootfs, init, args.listen, args.password_file)
        supervisor.define(domain)
        print(f"defined {domain.name}")
    elif op == "start":
        restoring = supervisor.saved_images(args.name) is not None and not args.discard_save
        status = supervisor.start(args.name, discard_save=args.discard_save)
        print(f"{'restored' if restoring else 'started'} {args.name}: VNC at {status.vnc}")
    elif op == "save":
        if args.remove:
            removed = supervisor.remove_save(args.name)
            result: dict[str, object] = {"ok": True, "removed": removed}
        else:
            result = supervisor.save(args.name)
        if args.json:
            print(json.dumps({"name": args.name, "operation": "save", **result}))
        elif args.remove:
            print(f"{args.name}: {'saved image removed' if removed else 'no saved image'}")
        else:
            print(f"saved {args.name} ({result['image_bytes']} bytes in {result['seconds']:.2f} s)")
    elif op == "stop":
        supervisor.stop(args.name)
    elif op in ("suspend", "resume"):
        reply = supervisor.suspend(args.name) if op == "suspend" else supervisor.resume(args.name)
        if args.json:
            print(json.dumps({"name": args.name, "operation": op, **reply}))
        else:
            print(f"{args.name}: {'paused' if op == 'suspend' else 'running'}")
    elif op == "destroy":
        supervisor.destroy(args.name)
    elif op in ("list", "status"):
        names = supervisor.names() if op == "list" else [args.name]
        statuses = [supervisor.status(name) for name in names]
        if args.json:
            data = [s.as_dict() for s in statuses]
            print(json.dumps(data if op == "list" else data[0], indent=2))
        else:
            print(f"{'NAME':20} {'STATE':9} {'INIT':>8} {'VNC':22} VIEWERS")
            for s in statuses:
                init_pid = str(s.init_pid) if s.init_pid else "-"
                print(f"{s.name:20} {s.state:9} {init_pid:>8} {s.vnc or '-':22} {s.viewers}")
    elif op == "autostart":
        supervisor.set_autostart(args.name, not args.disable)
        print(f"{args.name}: autostart {'disabled' if args.disable else 'enabled'}")
    elif op == "migrate":
        return migrate_command(supervisor, args)
    elif op == "screenshot":
        from vzvnc.fb.snapshot import render_png

        terminal = supervisor.screen(args.name)
        if args.output:
            Path(args.output).write_bytes(render_png(terminal))
        if args.text or not args.output:
            sys.stdout.write("\n".join(terminal.text_lines()) + "\n")
    elif op == "console":
        from vzvnc.domain.attach import attach
        from vzvnc.term.repaint import repaint

        def paint(offset: int) -> bytes:
            return repaint(supervisor.screen(args.name, upto=offset))

        return attach(supervisor.run_dir(args.name) / "attach.sock", paint)
    return 0


def passwd_command(args: argparse.Namespace) -> int:
    import getpass
    from pathlib import Path

    from vzvnc import users
    from vzvnc.errors import ConfigError

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("password: the two did not match")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise ConfigError("password: empty")
    users.set_user(Path(args.file), args.user, password, args.view_only)
    print(f"{args.user}: password set in {args.file}")
    return 0


def migrate_command(supervisor: Any, args: argparse.Namespace) -> int:
    import asyncio
    import json
    from pathlib import Path

    from vzvnc.config import parse_listen
    from vzvnc.domain import channel_io, migrate
    from vzvnc.errors import ConfigError, VzvncError

    host, port = parse_listen(args.destination)
    if port == 0:
        raise ConfigError("destination: a port is needed")
    secret = channel_io.read_secret(Path(args.secret_file)) if args.secret_file else None
    if args.tls_cert and not args.tls_ca:
        raise ConfigError("tls-cert: a client certificate needs --tls-ca as well")
    tls = channel_io.client_tls(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None
    storage = "shared" if args.shared_storage else "copy" if args.copy_storage else "auto"
    on_terminal = sys.stderr.isatty() and not args.json

    def report(event: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(event), flush=True)
        elif on_terminal and event["event"] in ("phase", "progress"):
            line = f"migrating {args.name}: {event['phase']}"
            if event["event"] == "progress":
                line += f" {event['bytes'] / 1e6:.1f} MB at {event['rate'] / 1e6:.1f} MB/s"
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()

    async def run() -> dict[str, Any]:
        channel = await channel_io.connect(host, port, secret=secret, tls=tls)
        async with channel:
            return await migrate.migrate(
                supervisor, args.name, channel, storage=storage, cold=args.cold, report=report
            )

    try:
        summary = asyncio.run(run())
    except VzvncError as exc:
        if on_terminal:
            sys.stderr.write("\r\033[K")
        if args.json:
            step = getattr(exc, "step", "connect")
            print(json.dumps({"event": "error", "step": step, "message": str(exc)}), flush=True)
        raise
    if on_terminal:
        sys.stderr.write("\r\033[K")
    if not args.json:
        downtime = summary["downtime"]
        pause = f", downtime {downtime * 1000:.0f} ms" if downtime is not None else ""
        print(
            f"migrated {args.name} to {args.destination} in {summary['seconds']:.2f} s{pause}"
            f"; VNC at {summary['vnc'] or '-'} there"
        )
    return 0


def render_command(args: argparse.Namespace) -> int:
    from vzvnc.config import ConsoleConfig, parse_size
    from vzvnc.errors import ConfigError
    from vzvnc.fb.snapshot import render_png
    from vzvnc.term.terminal import Terminal

    columns, lines = parse_size(args.size)
    ConsoleConfig(columns=columns, lines=lines, font_scale=args.font_scale)  # validates
    terminal = Terminal(columns, lines)
    while chunk := sys.stdin.buffer.read(64 * 1024):
        terminal.feed(chunk)
    if args.png:
        try:
            with open(args.png, "wb") as out:
                out.write(render_png(terminal, scale=args.font_scale))
        except OSError as exc:
            raise ConfigError(f"png: cannot write {args.png}: {exc.strerror}") from exc
    if args.text or not args.png:
        sys.stdout.write("\n".join(terminal.text_lines()) + "\n")
    return 0


def config_from_args(args: argparse.Namespace) -> tuple[ConsoleConfig, list[str]]:
    from vzvnc.config import ConsoleConfig, parse_listen, parse_size
    from vzvnc.rfb.auth import read_password_file

    host, port = parse_listen(args.listen)
    columns, lines = parse_size(args.size)
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        cmd = default_shell()
    password = read_password_file(args.password_file) if args.password_file else None
    view_only = (
        read_password_file(args.view_only_password_file) if args.view_only_password_file else None
    )
    config = ConsoleConfig(
        host=host,
        port=port,
        columns=columns,
        lines=lines,
        password=password,
        view_only_password=view_only,
        name=args.name or " ".join(cmd),
        max_fps=args.max_fps,
        keep_open=args.keep_open,
        resizable=not args.fixed_size,
        history=args.history,
        font_scale=args.font_scale,
        websocket=not args.no_websocket,
        max_viewers=args.max_viewers,
        sharing=args.sharing,
        idle_timeout=args.idle_timeout,
        handshake_timeout=args.handshake_timeout,
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
        anonymous_tls=args.anonymous_tls,
        users_file=args.users_file,
        insecure_vnc_auth=args.insecure_vnc_auth,
    )
    return config, cmd


async def run_console(config: ConsoleConfig, cmd: list[str]) -> int:
    import asyncio
    import logging
    import signal

    from vzvnc.console import Console
    from vzvnc.endpoints import PtyProgram
    from vzvnc.errors import ListenError

    pty = PtyProgram.start(cmd, columns=config.columns, lines=config.lines)
    console = Console(pty, config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, console.request_stop, signum)
    try:
        await console.start()
    except OSError as exc:
        pty.kill()
        await pty.wait()
        pty.close()
        raise ListenError(
            f"listen: cannot listen on {config.host}:{config.port}: {exc.strerror}"
        ) from exc
    host, port = console.address
    logging.getLogger("vzvnc").info("serving %r on %s:%d", config.name, host, port)
    return await console.run()


def main(argv: Sequence[str] | None = None, *, fork_server: bool = True) -> int:
    """``vzvnc WORDS``; without ``fork_server`` a ``run`` runs here, not forked by the
    user's fork server (which calls this so in the console it forks)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if fork_server:
        from vzvnc import run_client

        forked = run_client.run(words)
        if forked is not None:
            return forked
    import logging

    from vzvnc.errors import VzvncError

    parser = parser_for(words)
    init: list[str] = []
    if words[:2] == ["domain", "create"] and "--" in words:
        # argparse cannot take options after a positional and then "-- ARGS":
        # everything after "--" is the init command, taken as it is.
        cut = words.index("--")
        words, init = words[:cut], words[cut + 1 :]
    args = parser.parse_args(words)
    args.init = init
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose + 1, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "render":
            return render_command(args)
        if args.command in ("lxc", "libvirt"):
            from vzvnc.hosted import libvirt, lxc

            hosted = lxc if args.command == "lxc" else libvirt
            return int(hosted.command(args))
        if args.command == "domain":
            return domain_command(args)
        if args.command == "daemon":
            from vzvnc import daemon

            return daemon.main(args)
        if args.command == "passwd":
            return passwd_command(args)
        if args.command == "rootfs":
            from vzvnc.domain.rootfs import make_busybox_rootfs

            make_busybox_rootfs(os.path.abspath(args.dir))
            print(f"busybox root filesystem in {args.dir}")
            return 0
        config, cmd = config_from_args(args)
        import uvloop

        return int(uvloop.run(run_console(config, cmd)))
    except VzvncError as exc:
        print(f"vzvnc: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
