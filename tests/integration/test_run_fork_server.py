"""``vzvnc run`` through the user's fork server, with real processes: what the console
inherits from the shell that started it, exit statuses and signals both ways, errors,
who may use the server, stale servers and falling back to running in-process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rfbclient import RfbClient
from vzvnc import run_client

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acts as another user (root only)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 (state) on: [0] state, [1] ppid, [3] session, [4] tty_nr."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    try:
        return stat_fields(pid)[0] != "Z"
    except OSError:
        return False


@dataclass
class Runtime:
    """A private runtime directory of our own, and the environment that points there."""

    dir: Path
    env: dict[str, str]

    def server_pid(self) -> int:
        locks = list(self.dir.glob("run-*.lock"))
        assert len(locks) == 1, locks
        return int(locks[0].read_text())

    def server_pids(self) -> list[int]:
        return [int(lock.read_text()) for lock in self.dir.glob("run-*.lock")]

    def log(self) -> str:
        return "".join(path.read_text() for path in self.dir.glob("run-*.log"))

    def vzvnc(self, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
        """``vzvnc ARGS`` as a shell's foreground job: SIGINT, SIGQUIT and SIGHUP at
        their defaults, even when the suite runs as a background job or under nohup
        (which leave them ignored, and a client keeps an ignored signal ignored)."""
        options: dict[str, object] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        options.update(kwargs)
        options.setdefault("env", self.env)
        setup = options.pop("preexec_fn", None)

        def foreground() -> None:
            for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            if callable(setup):
                setup()

        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            [sys.executable, "-m", "vzvnc", *args], preexec_fn=foreground, **options
        )


def stop_servers(directory: Path, env: dict[str, str]) -> None:
    pids = []
    for lock in directory.glob("run-*.lock"):
        text = lock.read_text().strip()
        if text.isdigit():
            pids.append(int(text))
    subprocess.run(
        [sys.executable, "-m", "vzvnc.run_server", "stop"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    # One stop request reaches one context's server; the others are told by signal.
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for pid in pids:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    directory = tmp_path / "runtime"
    directory.mkdir(mode=0o700)
    env = {**os.environ, "VZVNC_RUNTIME_DIR": str(directory), "VZVNC_FORK_SERVER_IDLE": "60"}
    env.pop("VZVNC_NO_FORK_SERVER", None)
    yield Runtime(directory, env)
    stop_servers(directory, env)


def reporting_program(out: Path) -> list[str]:
    """/bin/sh that writes what it inherited into ``out`` and then waits to be hung up."""
    script = (
        f'cd "$PWD"; echo "$ONLY_IN_CLIENT" > {out}/env; pwd -P > {out}/cwd; umask > {out}/umask; '
        f"echo $$ > {out}/pid; echo $PPID > {out}/ppid; cat /proc/self/stat > {out}/stat; "
        f"tty > {out}/tty; trap 'echo hup > {out}/hup; exit 0' HUP; : > {out}/ready; "
        "while :; do sleep 0.1; done"
    )
    return ["/bin/sh", "-c", script]


def handshake(port: int) -> str:
    """A real RFB 3.8 handshake with the console; the desktop name it announces."""

    async def viewer() -> str:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = await RfbClient.connect(port)
                break
            except ConnectionRefusedError:  # the program starts before the console listens
                assert time.monotonic() < deadline, "the console never listened"
                await asyncio.sleep(0.02)
        name = client.name
        await client.close()
        return name

    return asyncio.run(viewer())


def test_a_forked_console_keeps_the_shells_environment_cwd_and_umask_without_a_terminal(
    runtime: Runtime, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    workdir = tmp_path / "a work dir"
    workdir.mkdir()
    port = free_port()
    env = {**runtime.env, "ONLY_IN_CLIENT": "from-the-shell-42"}
    proc = runtime.vzvnc(
        "run",
        "--listen",
        f"127.0.0.1:{port}",
        "--name",
        "forked",
        "--",
        *reporting_program(out),
        env=env,
        cwd=workdir,
        preexec_fn=lambda: os.umask(0o027),
    )
    try:
        wait_for((out / "ready").exists, "the program started")
        assert handshake(port) == "forked"
        assert (out / "env").read_text().strip() == "from-the-shell-42"
        assert (out / "cwd").read_text().strip() == str(workdir)
        assert (out / "umask").read_text().strip() == "0027"
        console = int((out / "ppid").read_text())
        # The console is forked by the server: not the client, nor its child.
        assert console != proc.pid
        assert int(stat_fields(console)[1]) == runtime.server_pid()
        client_session = os.getsid(proc.pid)
        assert int(stat_fields(console)[3]) != client_session
        assert int(stat_fields(console)[3]) == console  # its own session's leader
        assert int(stat_fields(console)[4]) == 0  # and no controlling terminal
        # The program's controlling terminal is the console's pty.
        program_stat = (out / "stat").read_text().rsplit(")", 1)[1].split()
        assert int(program_stat[4]) != 0
        assert (out / "tty").read_text().startswith("/dev/pts/")
        program = int((out / "pid").read_text())
        assert int(stat_fields(program)[3]) == program  # a session of its own
        assert f"console {console}: run --listen 127.0.0.1:{port}" in runtime.log()
        # SIGTERM on the client ends the console as it ended a directly run one.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert (out / "hup").read_text().strip() == "hup"
        wait_for(lambda: not alive(console), "the console ended")
    finally:
        proc.kill()
        proc.communicate()


def test_exit_status_and_signals_pass_both_ways(runtime: Runtime, tmp_path: Path) -> None:
    proc = runtime.vzvnc("run", "--listen", f"127.0.0.1:{free_port()}", "--", "sh", "-c", "exit 7")
    assert proc.wait(timeout=20) == 7
    proc.communicate()

    # A console killed by a signal: the client dies of the same signal.
    out = tmp_path / "out"
    out.mkdir()
    proc = runtime.vzvnc(
        "run", "--listen", f"127.0.0.1:{free_port()}", "--", *reporting_program(out)
    )
    try:
        wait_for((out / "ready").exists, "the program started")
        os.kill(int((out / "ppid").read_text()), signal.SIGKILL)
        assert proc.wait(timeout=20) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.communicate()

    # Ctrl+Z stops the console (and the client), fg resumes both; SIGQUIT kills.
    (out / "ready").unlink()
    proc = runtime.vzvnc(
        "run", "--listen", f"127.0.0.1:{free_port()}", "--", *reporting_program(out)
    )
    try:
        wait_for((out / "ready").exists, "the program started")
        console = int((out / "ppid").read_text())
        proc.send_signal(signal.SIGTSTP)
        wait_for(lambda: stat_fields(console)[0] == "T", "the console stopped")
        wait_for(lambda: stat_fields(proc.pid)[0] == "T", "the client stopped")
        proc.send_signal(signal.SIGCONT)
        wait_for(lambda: stat_fields(console)[0] != "T", "the console went on")
        proc.send_signal(signal.SIGQUIT)
        assert proc.wait(timeout=20) == -signal.SIGQUIT
    finally:
        proc.kill()
        proc.communicate()

    # SIGHUP on the client: the console dies of it, as a directly run one would.
    (out / "ready").unlink()
    proc = runtime.vzvnc(
        "run", "--listen", f"127.0.0.1:{free_port()}", "--", *reporting_program(out)
    )
    try:
        wait_for((out / "ready").exists, "the program started")
        console = int((out / "ppid").read_text())
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=20) == -signal.SIGHUP
        wait_for(lambda: not alive(console), "the console ended")
    finally:
        proc.kill()
        proc.communicate()


def test_a_client_killed_outright_takes_its_console_with_it(
    runtime: Runtime, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = runtime.vzvnc(
        "run", "--listen", f"127.0.0.1:{free_port()}", "--", *reporting_program(out)
    )
    try:
        wait_for((out / "ready").exists, "the program started")
        console = int((out / "ppid").read_text())
        proc.kill()
        proc.wait(timeout=20)
        wait_for(lambda: not alive(console), "the console ended")
        assert (out / "hup").read_text().strip() == "hup"
    finally:
        proc.kill()
        proc.communicate()


def test_errors_reach_the_clients_stderr_with_the_usual_status(runtime: Runtime) -> None:
    proc = runtime.vzvnc("run", "--bogus-option", "--", "/bin/true")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert b"unrecognized arguments: --bogus-option" in err

    proc = runtime.vzvnc("run", "--listen", "0.0.0.0:5999", "--", "/bin/true")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == os.EX_CONFIG
    assert b"not loopback" in err

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = runtime.vzvnc("run", "--listen", f"127.0.0.1:{port}", "--", "/bin/true")
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == os.EX_UNAVAILABLE
    assert f"cannot listen on 127.0.0.1:{port}".encode() in err
    log = runtime.log()
    assert "run --bogus-option" in log and f"run --listen 127.0.0.1:{port}" in log


NOBODY_CLIENT = """
import os, socket, sys
path = sys.argv[1]
os.setgroups([]); os.setgid(65534); os.setuid(65534)
request = sys.stdin.buffer.read()
sock = socket.socket(socket.AF_UNIX)
sock.connect(path)
here = os.open("/", os.O_PATH)
try:
    socket.send_fds(sock, [request], [0, 1, 2, here])
except BrokenPipeError:  # refused before it was all sent: the answer is still there
    pass
print(sock.recv(100).decode().strip())
"""


@pytest.fixture
def open_runtime() -> Iterator[Runtime]:
    """A runtime directory straight under /tmp, whose doors a test may open to others."""
    directory = Path(tempfile.mkdtemp(prefix="vzvnc-test-runtime-", dir="/tmp"))
    env = {**os.environ, "VZVNC_RUNTIME_DIR": str(directory), "VZVNC_FORK_SERVER_IDLE": "60"}
    env.pop("VZVNC_NO_FORK_SERVER", None)
    try:
        yield Runtime(directory, env)
    finally:
        directory.chmod(0o700)
        stop_servers(directory, env)
        shutil.rmtree(directory, ignore_errors=True)


@needs_root
def test_a_client_of_another_uid_is_refused(open_runtime: Runtime, tmp_path: Path) -> None:
    # Start the server, then open its doors wide: the directory (0700) is the first
    # line of defence, the peer's uid (SO_PEERCRED) the second, tested here.
    runtime = open_runtime
    proc = runtime.vzvnc("run", "--listen", f"127.0.0.1:{free_port()}", "--", "/bin/true")
    assert proc.wait(timeout=30) == 0
    proc.communicate()
    context = run_client.context()
    sock_path = run_client.socket_path(str(runtime.dir), context)
    runtime.dir.chmod(0o711)
    os.chmod(sock_path, 0o666)
    marker = tmp_path / "forked"
    words = ["run", "--listen", f"127.0.0.1:{free_port()}", "--", "touch", str(marker)]
    request = run_client.run_request(words, run_client.version(), context)
    result = subprocess.run(
        [sys.executable, "-c", NOBODY_CLIENT, sock_path],
        input=request,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.stdout.decode().strip() == "refused uid", result.stderr
    assert f"uid {NOBODY} gid {NOBODY} are not ours" in runtime.log()
    time.sleep(0.5)  # the console, had it been forked, would have touched the marker
    assert not marker.exists()


@pytest.mark.parametrize(
    ("mode", "owner", "complaint"),
    [
        (0o755, os.geteuid(), b"mode 755"),
        pytest.param(0o700, NOBODY, b"belongs to uid 65534", marks=needs_root),
    ],
)
def test_a_directory_others_can_enter_is_refused(
    runtime: Runtime, tmp_path: Path, mode: int, owner: int, complaint: bytes
) -> None:
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    unsafe.chmod(mode)
    os.chown(unsafe, owner, -1)
    out = tmp_path / "out"
    out.mkdir()
    env = {**runtime.env, "VZVNC_RUNTIME_DIR": str(unsafe)}
    port = free_port()
    proc = runtime.vzvnc(
        "run", "--listen", f"127.0.0.1:{port}", "--", *reporting_program(out), env=env
    )
    try:
        wait_for((out / "ready").exists, "the program started")
        handshake(port)
        assert int((out / "ppid").read_text()) == proc.pid  # run in-process
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        _, err = proc.communicate()
        assert b"not using the fork server" in err and complaint in err
        assert not list(unsafe.iterdir())
    finally:
        proc.kill()
        proc.communicate()


def test_an_idle_server_exits_by_itself(runtime: Runtime, tmp_path: Path) -> None:
    env = {**runtime.env, "VZVNC_FORK_SERVER_IDLE": "1"}
    proc = runtime.vzvnc("run", "--listen", f"127.0.0.1:{free_port()}", "--", "true", env=env)
    assert proc.wait(timeout=30) == 0
    proc.communicate()
    server = runtime.server_pid()
    wait_for(lambda: not alive(server), "the idle server exited", timeout=30)
    assert not list(runtime.dir.glob("run-*.sock"))
    assert "with no console: exiting" in runtime.log()


def console_of(
    runtime: Runtime, tmp_path: Path, *extra: str, cwd: Path | None = None, **env: str
) -> tuple[int, int, int]:
    """(the client's pid, the console's, the console's parent's) for one console that is
    started, shaken hands with and stopped again."""
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    port = free_port()
    proc = runtime.vzvnc(
        "run",
        *extra,
        "--listen",
        f"127.0.0.1:{port}",
        "--",
        *reporting_program(out),
        env={**runtime.env, **env},
        cwd=cwd,
    )
    try:
        wait_for((out / "ready").exists, "the program started")
        handshake(port)  # it listens (and so has its signal handlers)
        console = int((out / "ppid").read_text())
        parent = int(stat_fields(console)[1])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        return proc.pid, console, parent
    finally:
        proc.kill()
        proc.communicate()


def test_fallback_and_opting_out_run_the_console_in_process(
    runtime: Runtime, tmp_path: Path
) -> None:
    client, console, _ = console_of(runtime, tmp_path, VZVNC_NO_FORK_SERVER="1")
    assert console == client
    client, console, _ = console_of(runtime, tmp_path, "--no-fork-server")
    assert console == client
    assert not list(runtime.dir.glob("run-*.sock"))  # nothing was started
    # A server that cannot start (its lock is not a file): in-process, no error.
    lock = Path(run_client.lock_path(str(runtime.dir), run_client.context()))
    lock.mkdir()
    client, console, _ = console_of(runtime, tmp_path)
    assert console == client
    lock.rmdir()
    # A socket nobody listens on (its server was killed): a fresh server is started.
    client, console, parent = console_of(runtime, tmp_path)
    first = runtime.server_pid()
    assert console != client and parent == first
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), "the first server died")
    assert list(runtime.dir.glob("run-*.sock"))
    client, console, parent = console_of(runtime, tmp_path)
    assert console != client and parent == runtime.server_pid() != first


def test_a_server_started_from_other_files_is_not_used(runtime: Runtime, tmp_path: Path) -> None:
    # A copy of the package (its own installation, its own server), edited between runs.
    copy = tmp_path / "install"
    shutil.copytree(REPO / "vzvnc", copy / "vzvnc", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**runtime.env, "PYTHONPATH": str(copy)}
    _, _, parent = console_of(runtime, tmp_path, cwd=tmp_path, PYTHONPATH=str(copy))
    old = runtime.server_pid()
    assert parent == old
    edited = copy / "vzvnc" / "run_server.py"
    edited.write_text(edited.read_text() + "\n# edited\n")
    proc = subprocess.run(
        [sys.executable, "-c", "import vzvnc; print(vzvnc.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == str(copy / "vzvnc" / "__init__.py")
    _, _, parent = console_of(runtime, tmp_path, cwd=tmp_path, PYTHONPATH=str(copy))
    new = runtime.server_pid()
    assert parent == new != old
    wait_for(lambda: not alive(old), "the stale server exited")
    assert "stepping aside" in runtime.log()


def test_a_shell_of_another_context_gets_a_server_of_its_own(
    runtime: Runtime, tmp_path: Path
) -> None:
    # A niced shell's console must run niced, as it would have run directly: a server
    # started from a shell at nice 0 cannot give it that.
    _, _, plain_server = console_of(runtime, tmp_path)
    out = tmp_path / "niced"
    out.mkdir()
    port = free_port()
    proc = runtime.vzvnc(
        "run",
        "--listen",
        f"127.0.0.1:{port}",
        "--",
        *reporting_program(out),
        preexec_fn=lambda: os.nice(5),
    )
    try:
        wait_for((out / "ready").exists, "the program started")
        handshake(port)
        console = int((out / "ppid").read_text())
        niced_server = int(stat_fields(console)[1])
        assert console != proc.pid and niced_server not in (plain_server, proc.pid)
        assert int(stat_fields(console)[16]) == min(19, os.nice(0) + 5)  # field 19, nice
        assert len(list(runtime.dir.glob("run-*.sock"))) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_a_client_outlives_a_killed_server_and_still_stops_its_console(
    runtime: Runtime, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = runtime.vzvnc(
        "run", "--listen", f"127.0.0.1:{free_port()}", "--", *reporting_program(out)
    )
    try:
        wait_for((out / "ready").exists, "the program started")
        console = int((out / "ppid").read_text())
        server = runtime.server_pid()
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: int(stat_fields(console)[1]) != server, "the console was reparented")
        assert proc.poll() is None and alive(console)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == run_client.UNKNOWN_EXIT
        assert b"lost the fork server" in err
        wait_for(lambda: not alive(console), "the console ended")
        assert (out / "hup").read_text().strip() == "hup"
    finally:
        proc.kill()
        proc.communicate()
