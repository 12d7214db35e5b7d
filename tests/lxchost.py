"""Real LXC containers (Debian 12's lxc 5.0) for integration tests, as root.

``LxcHost`` makes busybox containers from LXC's own template in a private lxcpath,
with a private config fit for this kind of host (no bridge, no AppArmor, cgroups
nested under ours); on exit it stops and destroys every one of them and removes
what LXC leaves behind (``lxc.monitor.*``/``lxc.payload.*`` cgroup directories),
also when the test failed half way::

    with LxcHost(tmp_path) as host:
        host.create("vzt-abc123")
        host.start("vzt-abc123")
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

CONFIG = (
    "lxc.net.0.type = empty\n"
    "lxc.apparmor.profile = unconfined\n"
    # Nested under our own cgroup, not at every hierarchy's root.
    "lxc.cgroup.relative = 1\n"
)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def lxc_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "LXC containers need root"
    for tool in ("lxc-create", "lxc-start", "lxc-stop", "lxc-destroy", "lxc-info"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install lxc)"
    return None


def new_name() -> str:
    return f"vzt-{secrets.token_hex(3)}"


def run(*argv: str, timeout: float = 60) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


class LxcHost:
    def __init__(self, tmp_path: Path) -> None:
        self.lxcpath = str(tmp_path / "lxc")
        self.config = tmp_path / "lxc-default.conf"
        self.names: list[str] = []

    def __enter__(self) -> LxcHost:
        os.makedirs(self.lxcpath, exist_ok=True)
        self.config.write_text(CONFIG)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def create(self, name: str, extra_config: str = "") -> Path:
        """A busybox container; ``extra_config`` lines are appended to its config."""
        self.names.append(name)
        run(
            "lxc-create", "-P", self.lxcpath, "-f", str(self.config), "-t", "busybox", "-n", name
        )  # fmt: skip
        config = Path(self.lxcpath) / name / "config"
        if extra_config:
            with config.open("a") as f:
                f.write(extra_config)
        return config

    def start(self, name: str, env: dict[str, str] | None = None) -> None:
        subprocess.run(
            ["lxc-start", "-P", self.lxcpath, "-n", name, "-d"],
            check=True,
            env={**os.environ, **(env or {})},
            timeout=60,
        )

    def stop(self, name: str, kill: bool = True) -> None:
        argv = ["lxc-stop", "-P", self.lxcpath, "-n", name]
        subprocess.run([*argv, "-k"] if kill else argv, capture_output=True, timeout=60)

    def state(self, name: str) -> str:
        out = subprocess.run(
            ["lxc-info", "-P", self.lxcpath, "-n", name, "-sH"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip() or "UNKNOWN"

    def wait_state(self, name: str, state: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.state(name) != state:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} is {self.state(name)}, not {state}")
            time.sleep(0.1)

    def init_pid(self, name: str) -> int:
        return int(run("lxc-info", "-P", self.lxcpath, "-n", name, "-pH").strip())

    def close(self) -> None:
        problems = []
        for name in self.names:
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["lxc-unfreeze", "-P", self.lxcpath, "-n", name],
                    capture_output=True,
                    timeout=30,
                )
            self.stop(name)
            result = subprocess.run(
                ["lxc-destroy", "-P", self.lxcpath, "-n", name, "-f"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if result.returncode != 0 and (Path(self.lxcpath) / name).exists():
                problems.append(result.stderr.strip())
            remove_leftover_cgroups(name)
        self.names.clear()
        if problems:
            print("LxcHost cleanup:", *problems, sep="\n  ")


def remove_leftover_cgroups(name: str, timeout: float = 20.0) -> None:
    """LXC leaves ``lxc.monitor.NAME``, ``lxc.payload.NAME`` (and ``-N`` variants) behind
    after runs that did not end cleanly, and a monitor still exiting holds its own for
    a moment: remove them, deepest first, waiting while they are busy."""
    prefixes = (f"lxc.monitor.{name}", f"lxc.payload.{name}")
    found = []
    for dirpath, dirnames, _ in os.walk(CGROUP_ROOT):
        depth = Path(dirpath).relative_to(CGROUP_ROOT).parts
        if len(depth) > 6:
            dirnames.clear()
            continue
        for dirname in list(dirnames):
            if dirname.startswith(prefixes):
                found.append(Path(dirpath) / dirname)
                dirnames.remove(dirname)
    deadline = time.monotonic() + timeout
    for top in found:
        for path in [*sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True), top]:
            if not path.is_dir():
                continue
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
