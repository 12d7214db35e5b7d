"""Locking out an address that keeps failing authentication (in the style of
TigerVNC's ``Blacklist``), sans-IO: the caller passes ``now``.

After ``threshold`` failures in a row from one address, that address is refused
for ``initial`` seconds. A failure after that time (its first try back) locks it
out again at once, for twice as long, up to ``maximum``. A success forgets the
address. Only addresses with failures are kept, and at most ``capacity`` of them
(the oldest entries go first), so a scan from many addresses costs bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    next_timeout: float = 0.0


class Lockout:
    def __init__(
        self,
        threshold: int = 5,
        initial: float = 10.0,
        maximum: float = 3600.0,
        capacity: int = 10_000,
    ) -> None:
        self.threshold = threshold
        self.initial = initial
        self.maximum = maximum
        self.capacity = capacity
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def blocked_for(self, address: str, now: float) -> float:
        """Seconds ``address`` must still wait (0 if it may try)."""
        record = self._records.get(address)
        if record is None or self.threshold <= 0:
            return 0.0
        return max(0.0, record.blocked_until - now)

    def failed(self, address: str, now: float) -> float:
        """Count a failure; returns the lockout it starts (seconds), or 0."""
        if self.threshold <= 0:
            return 0.0
        record = self._records.pop(address, None) or _Record(next_timeout=self.initial)
        self._records[address] = record
        while len(self._records) > self.capacity:
            self._records.popitem(last=False)
        record.failures += 1
        if record.failures < self.threshold:
            return 0.0
        timeout = record.next_timeout
        record.blocked_until = now + timeout
        record.next_timeout = min(timeout * 2, self.maximum)
        return timeout

    def succeeded(self, address: str) -> None:
        self._records.pop(address, None)
