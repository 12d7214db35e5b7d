"""What a domain may be called: its name becomes a cgroup directory, a run directory
and a file name, so it must be one harmless path component."""

from __future__ import annotations

import re

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
