"""A real libvirtd with its LXC driver, run by hand for integration tests (as root).

``LibvirtHost`` starts ``virtlogd`` and ``libvirtd`` itself (no systemd needed),
defines and starts busybox LXC domains through ``virsh -c lxc:///system`` and, on
exit, undoes everything it did, also when the test failed half way::

    with LibvirtHost(hook=HOOK_SCRIPT) as host:
        make_busybox_rootfs(str(rootfs))
        host.define_busybox("vzvnc-t1", str(rootfs))
        host.start("vzvnc-t1")
        tty = host.console_path("vzvnc-t1")   # "/dev/pts/N", opened directly by a console server

What this works around on a Debian 12 host (libvirt 9.0, hybrid cgroups):

- libvirtd runs in a private mount namespace without ``/sys/fs/cgroup/unified``:
  with that cgroup2 mount visible, starting a domain fails in ``virCgroupV2BindMount``.
  The host's mounts are untouched; ``/dev/pts`` stays shared.
- libvirtd's qemu module refuses to load without a ``libvirt-qemu`` user and ``kvm``
  and ``libvirt-qemu`` groups (normally made by libvirt-daemon-system): they are
  created when missing, and left in place.
- Hooks (``/etc/libvirt/hooks/lxc``) are only looked up when libvirtd starts: pass the
  script to the constructor, or call ``install_hook`` then ``restart_libvirtd``.

Leftovers of a run that was killed (daemons carrying ``MARKER`` in their environment,
domains and the hook listed in ``STATE_DIR``) are cleaned up by the next ``__enter__``.
A libvirtd or virtlogd that this helper did not start is never touched:
``__enter__`` refuses to run next to one.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import TracebackType

URI = "lxc:///system"
LIBVIRTD = "/usr/sbin/libvirtd"
VIRTLOGD = "/usr/sbin/virtlogd"
HOOK_PATH = Path("/etc/libvirt/hooks/lxc")
STATE_DIR = Path("/run/vzvnc-libvirthost")
# Environment variable that marks the daemons started here, so leftovers can be recognised.
MARKER = "VZVNC_LIBVIRTHOST"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Where libvirt keeps a domain's files; removed when the daemon could not do it itself.
DOMAIN_FILES = (
    "/etc/libvirt/lxc/{name}.xml",
    "/etc/libvirt/lxc/autostart/{name}.xml",
    "/run/libvirt/lxc/{name}.xml",
    "/run/libvirt/lxc/{name}.pid",
    "/run/libvirt/lxc/{name}.sock",
    "/var/log/libvirt/lxc/{name}.log",
)
# Empty mount points the controller leaves behind.
DOMAIN_DIRECTORIES = (
    "/run/libvirt/lxc/{name}.dev",
    "/run/libvirt/lxc/{name}.devpts",
    "/run/libvirt/lxc/{name}.fuse",
)
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
VIRSH_TIMEOUT = 60.0

# libvirtd's start command, run under `unshare --mount --propagation private`: drop the
# cgroup2 mount of a hybrid layout in the private namespace only, then become libvirtd
# (so the Popen pid is libvirtd's). On a pure cgroup2 host there is nothing to unmount.
_LIBVIRTD_SCRIPT = (
    "if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 1; fi; "
    'exec "$0" "$@"'
)
_DAEMON_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", MARKER: "1"}


class LibvirtError(RuntimeError):
    """A virsh command or a daemon failed; the message carries its output."""


def libvirt_unavailable_reason() -> str | None:
    """Why ``LibvirtHost`` cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    for binary in (LIBVIRTD, VIRTLOGD, "/usr/lib/libvirt/libvirt_lxc"):
        if not os.access(binary, os.X_OK):
            return f"{binary} missing (apt-get install libvirt-daemon-driver-lxc libvirt-daemon)"
    for tool in ("virsh", "unshare", "mountpoint"):
        if shutil.which(tool) is None:
            return f"{tool} missing"
    return None


def libvirt_available() -> bool:
    """True when a real libvirtd can be run: root, and libvirt's LXC driver installed."""
    return libvirt_unavailable_reason() is None


def virsh(*args: str, check: bool = True, timeout: float = VIRSH_TIMEOUT) -> str:
    """Run ``virsh -c lxc:///system ARGS`` and return its stdout."""
    command = ["virsh", "-c", URI, *args]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise LibvirtError(
            f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def busybox_domain_xml(
    name: str, rootfs: str, init: str = "/sbin/init", memory_mib: int = 64
) -> str:
    """The XML of an LXC domain booting ``init`` from ``rootfs``, console on a host pty.

    ``<privnet/>`` gives it its own (empty) network namespace: without interfaces
    libvirt would otherwise share the host's.
    """
    domain = ET.Element("domain", type="lxc")
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = str(memory_mib)
    os_element = ET.SubElement(domain, "os")
    ET.SubElement(os_element, "type").text = "exe"
    ET.SubElement(os_element, "init").text = init
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "privnet")
    devices = ET.SubElement(domain, "devices")
    filesystem = ET.SubElement(devices, "filesystem", type="mount")
    ET.SubElement(filesystem, "source", dir=os.path.abspath(rootfs))
    ET.SubElement(filesystem, "target", dir="/")
    ET.SubElement(devices, "console", type="pty")
    return ET.tostring(domain, encoding="unicode")


class LibvirtHost:
    """virtlogd + libvirtd started by hand, and the LXC domains defined through them.

    Use as a context manager. Every domain defined through ``define_busybox`` (or
    ``define_xml``) is destroyed and undefined on exit, its cgroups removed; the
    daemons are stopped and the hook restored.
    """

    def __init__(self, hook: str | None = None) -> None:
        """``hook``: an ``/etc/libvirt/hooks/lxc`` script, installed before libvirtd starts."""
        self.workdir = Path(tempfile.mkdtemp(prefix="vzvnc-libvirthost-"))
        self.domains: list[str] = []
        self.libvirtd: subprocess.Popen[bytes] | None = None
        self.virtlogd: subprocess.Popen[bytes] | None = None
        self._hook = hook
        self._hook_installed = False
        self._cgroup_partitions_before: set[Path] = set()

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> LibvirtHost:
        try:
            self._clean_leftovers_of_killed_run()
            _ensure_qemu_accounts()
            STATE_DIR.mkdir(mode=0o700, exist_ok=True)
            # Which cgroup partitions ("machine") existed before any run of ours: kept on exit.
            before = STATE_DIR / "partitions-before"
            if not before.exists():
                before.write_text("".join(f"{p}\n" for p in _cgroup_partitions()))
            self._cgroup_partitions_before = {Path(p) for p in _read_lines(before)}
            if self._hook is not None:
                self.install_hook(self._hook)
            self.virtlogd = self._spawn([VIRTLOGD], "virtlogd.log")
            self._start_libvirtd()
            # Domains of a run that died before its cleanup are reloaded by libvirtd: remove them.
            leftovers = _read_lines(STATE_DIR / "domains")
            if leftovers:
                self.domains = list(dict.fromkeys(leftovers))
                self._cleanup_domains()
                for name in self.domains:
                    _purge_domain(name)
                self.domains = []
                os.unlink(STATE_DIR / "domains")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Destroy and undefine our domains, stop the daemons, remove what was left.

        Safe to call more than once, and after any partial failure.
        """
        errors: list[str] = []
        # Processes that must be gone when close returns (checked last: zombies take a moment).
        pids = [pid for name in self.domains for pid in _domain_pids(name)]
        try:
            errors += self._cleanup_domains()
        finally:
            self._stop(self.libvirtd)
            self.libvirtd = None
            self._stop(self.virtlogd)
            self.virtlogd = None
            for name in self.domains:
                _purge_domain(name)
            for pid in pids:
                _wait_gone(pid)
            self.domains.clear()
            for partition in _cgroup_partitions():
                if partition not in self._cgroup_partitions_before:
                    _rmdir_tree(partition)
            self.remove_hook()
            for state in ("domains", "partitions-before"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(STATE_DIR / state)
            with contextlib.suppress(OSError):
                STATE_DIR.rmdir()
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            # Not raised: cleanup went on without libvirt's help. Visible with -rA / on failure.
            print("libvirthost cleanup:", *errors, sep="\n  ")

    def restart_libvirtd(self) -> None:
        """Stop libvirtd only (domains and virtlogd keep running) and start it again."""
        self._stop(self.libvirtd)
        self.libvirtd = None
        self._start_libvirtd()

    def libvirtd_log(self) -> str:
        """What libvirtd printed (all its starts), for failure messages."""
        return _read_text(self.workdir / "libvirtd.log")

    # ----------------------------------------------------------------- hooks

    def install_hook(self, script_text: str) -> None:
        """Write ``/etc/libvirt/hooks/lxc`` (mode 0755); the previous one is restored on exit.

        libvirtd only notices hooks when it starts: call this before ``__enter__`` (or pass
        ``hook=`` to the constructor), or call ``restart_libvirtd`` afterwards.
        """
        HOOK_PATH.parent.mkdir(parents=True, exist_ok=True)
        backup = STATE_DIR / "hook.orig"
        marker = STATE_DIR / "hook.installed"
        STATE_DIR.mkdir(mode=0o700, exist_ok=True)
        if not marker.exists():
            if HOOK_PATH.exists():
                shutil.copy2(HOOK_PATH, backup)
            marker.write_text("1\n")
        temporary = HOOK_PATH.with_name(HOOK_PATH.name + ".vzvnc-new")
        temporary.write_text(script_text)
        os.chmod(temporary, 0o755)
        os.replace(temporary, HOOK_PATH)
        self._hook_installed = True

    def remove_hook(self) -> None:
        """Put back the hook that was there before ``install_hook`` (or remove ours)."""
        _restore_hook()
        self._hook_installed = False

    # ----------------------------------------------------------------- domains

    def define_xml(self, name: str, xml: str) -> None:
        """``virsh define`` a domain (named ``name`` in ``xml``); undefined on exit."""
        self._remember(name)
        path = self.workdir / f"{name}.xml"
        path.write_text(xml)
        virsh("define", str(path))

    def define_busybox(
        self, name: str, rootfs: str, init: str = "/sbin/init", memory_mib: int = 64
    ) -> None:
        """Define an LXC domain running ``init`` from a busybox ``rootfs``.

        ``rootfs`` comes from ``vzvnc.domain.rootfs.make_busybox_rootfs``. Its busybox
        ``/sbin/init`` has no inittab: it asks "Please press Enter to activate this
        console" and then runs a shell on the console. The container's hostname is
        the domain's name (libvirt sets it).
        """
        self.define_xml(name, busybox_domain_xml(name, rootfs, init, memory_mib))

    def start(self, name: str) -> None:
        virsh("start", name)

    def destroy(self, name: str) -> None:
        """Stop the domain hard (it stays defined)."""
        virsh("destroy", name)

    def undefine(self, name: str) -> None:
        virsh("undefine", name)
        self._forget(name)

    def state(self, name: str) -> str:
        """``virsh domstate``: "running", "shut off", ..."""
        return virsh("domstate", name).strip()

    def dumpxml(self, name: str) -> ET.Element:
        return ET.fromstring(virsh("dumpxml", name))

    def console_path(self, name: str) -> str:
        """The host pty of the running domain's console (``/dev/pts/N``)."""
        console = self.dumpxml(name).find("./devices/console[@type='pty']")
        tty = None if console is None else console.get("tty")
        if not tty:
            raise LibvirtError(f"domain {name} has no pty console in its XML (not running?)")
        return tty

    def controller_pid(self, name: str) -> int:
        """PID of the domain's ``libvirt_lxc`` controller (holds the console pty master)."""
        return int(_read_text(Path(f"/run/libvirt/lxc/{name}.pid")).strip())

    def init_pid(self, name: str) -> int:
        """Host PID of the container's init (its pid 1), from libvirt's status XML."""
        status = ET.fromstring(_read_text(Path(f"/run/libvirt/lxc/{name}.xml")))
        init = status.find("./init")
        if init is None or not init.get("pid"):
            raise LibvirtError(f"no <init pid=...> in libvirt's status of {name}")
        return int(init.get("pid", ""))

    def domain_log(self, name: str) -> str:
        """libvirt's log of the domain (controller messages, start errors)."""
        return _read_text(Path(f"/var/log/libvirt/lxc/{name}.log"))

    # ----------------------------------------------------------------- internals

    def _remember(self, name: str) -> None:
        if name not in self.domains:
            self.domains.append(name)
        STATE_DIR.mkdir(mode=0o700, exist_ok=True)
        with open(STATE_DIR / "domains", "a") as f:
            f.write(name + "\n")

    def _forget(self, name: str) -> None:
        if name in self.domains:
            self.domains.remove(name)
        (STATE_DIR / "domains").write_text("".join(n + "\n" for n in self.domains))

    def _cleanup_domains(self) -> list[str]:
        """destroy + undefine every domain of ours through libvirtd, while it runs."""
        errors: list[str] = []
        if self.libvirtd is None or self.libvirtd.poll() is not None:
            return errors
        try:
            existing = set(virsh("list", "--all", "--name").split())
        except (LibvirtError, subprocess.TimeoutExpired) as exc:
            return [str(exc)]
        for name in reversed(self.domains):
            if name not in existing:
                continue
            # destroy fails on a stopped domain: the state decides, errors are reported.
            if virsh("domstate", name, check=False).strip() not in ("shut off", ""):
                try:
                    virsh("destroy", name)
                except (LibvirtError, subprocess.TimeoutExpired) as exc:
                    errors.append(str(exc))
            try:
                virsh("undefine", name)
            except (LibvirtError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        return errors

    def _spawn(self, command: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.workdir / log_name, "ab") as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_DAEMON_ENV,
            )

    def _start_libvirtd(self) -> None:
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _LIBVIRTD_SCRIPT]
        self.libvirtd = self._spawn([*command, LIBVIRTD], "libvirtd.log")
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.libvirtd.poll() is not None:
                raise LibvirtError(
                    f"libvirtd exited {self.libvirtd.returncode}:\n{self.libvirtd_log()}"
                )
            try:
                result = subprocess.run(
                    ["virsh", "-c", URI, "version"],
                    capture_output=True,
                    timeout=5,
                    stdin=subprocess.DEVNULL,
                )
                if result.returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise LibvirtError(
                    f"libvirtd not answering after {READY_TIMEOUT} s:\n{self.libvirtd_log()}"
                )
            time.sleep(0.1)

    @staticmethod
    def _stop(process: subprocess.Popen[bytes] | None) -> None:
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @staticmethod
    def _clean_leftovers_of_killed_run() -> None:
        """Kill daemons a killed run of this helper left; refuse to run beside foreign ones."""
        for pid, comm in _processes_named("libvirtd", "virtlogd"):
            if _has_marker(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid)
            else:
                raise LibvirtError(
                    f"a {comm} not started by tests/libvirthost.py is running (pid {pid}); "
                    "stop it first"
                )
        if (STATE_DIR / "hook.installed").exists():
            # Our hook survived a killed run: restore the one that was there before.
            _restore_hook()


def _restore_hook() -> None:
    marker = STATE_DIR / "hook.installed"
    if not marker.exists():
        return
    backup = STATE_DIR / "hook.orig"
    if backup.exists():
        os.replace(backup, HOOK_PATH)
    else:
        with contextlib.suppress(FileNotFoundError):
            HOOK_PATH.unlink()
        # The hooks directory goes too if it is empty (libvirt-daemon-system would ship it).
        with contextlib.suppress(OSError):
            HOOK_PATH.parent.rmdir()
    marker.unlink()


def _ensure_qemu_accounts() -> None:
    """libvirtd's qemu module will not load without these (see the module docstring)."""
    for group in ("kvm", "libvirt-qemu"):
        try:
            grp.getgrnam(group)
        except KeyError:
            subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/var/lib/libvirt",
                "--shell",
                "/usr/sbin/nologin",
                "--gid",
                "libvirt-qemu",
                "--groups",
                "kvm",
                "libvirt-qemu",
            ],
            check=True,
            capture_output=True,
        )


def _processes_named(*names: str) -> list[tuple[int, str]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = _read_text(Path(f"/proc/{entry}/comm")).strip()
        except OSError:
            continue
        if comm in names:
            found.append((int(entry), comm))
    return found


def _has_marker(pid: int) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER}=1".encode() in environ.split(b"\0")


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (this host's PID 1 reaps late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    # Our own dead children are reaped; others vanish once their parent reaps them.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _cgroup_partitions() -> list[Path]:
    """Every ``machine`` (or ``machine.slice``) cgroup libvirt uses as its partition."""
    found = []
    for hierarchy in CGROUP_ROOT.iterdir():
        if not hierarchy.is_dir():
            continue
        for directory, subdirectories, _ in os.walk(hierarchy):
            for sub in subdirectories:
                if sub in ("machine", "machine.slice"):
                    found.append(Path(directory, sub))
            # Partitions sit next to the cgroup of libvirtd; no need to look inside them.
            subdirectories[:] = [s for s in subdirectories if s not in ("machine", "machine.slice")]
    return found


def _domain_cgroups(name: str) -> list[Path]:
    """The cgroups libvirt made for domain ``name`` (``*NAME.libvirt-lxc``), in any hierarchy."""
    found = []
    for partition in _cgroup_partitions():
        for child in partition.iterdir():
            if child.is_dir() and (
                child.name == f"{name}.libvirt-lxc" or child.name.endswith(f"-{name}.libvirt-lxc")
            ):
                found.append(child)
    return found


def _purge_domain(name: str) -> None:
    """Whatever libvirt could not remove of a domain: processes, files, cgroups."""
    _kill_domain_processes(name)
    for pattern in DOMAIN_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pattern.format(name=name))
    for pattern in DOMAIN_DIRECTORIES:
        with contextlib.suppress(OSError):
            os.rmdir(pattern.format(name=name))
    _remove_domain_cgroups(name)


def _domain_pids(name: str) -> list[int]:
    """The domain's controller and container init, if it runs."""
    pids = _controller_pids(name)
    with contextlib.suppress(ET.ParseError, ValueError):
        init = ET.fromstring(_read_text(Path(f"/run/libvirt/lxc/{name}.xml"))).find("./init")
        if init is not None:
            pids.append(int(init.get("pid", "")))
    return pids


def _kill_domain_processes(name: str) -> None:
    """SIGKILL whatever still runs in the domain's cgroups, and its libvirt_lxc controller."""
    for pid in _controller_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for cgroup in _domain_cgroups(name):
        for directory, _, files in os.walk(cgroup):
            if "cgroup.procs" in files:
                for line in _read_lines(Path(directory, "cgroup.procs")):
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(line), signal.SIGKILL)


def _controller_pids(name: str) -> list[int]:
    pids = []
    for pid, _ in _processes_named("libvirt_lxc"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        index = argv.index(b"--name") + 1 if b"--name" in argv else len(argv)
        if index < len(argv) and argv[index] == name.encode():
            pids.append(pid)
    return pids


def _remove_domain_cgroups(name: str) -> None:
    for cgroup in _domain_cgroups(name):
        _rmdir_tree(cgroup)


def _rmdir_tree(top: Path, timeout: float = 5.0) -> None:
    """rmdir a cgroup and its children, deepest first; retried while processes exit."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for directory, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(directory)
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in _read_text(path).splitlines() if line.strip()]
