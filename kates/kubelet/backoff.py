"""Restart and image-pull back-off, as the kubelet's `flowcontrol.Backoff`: 10 s doubling to 5 min per key.

A key (pod uid + container name, or pod uid + image) enters back-off when its container exits or its pull fails;
while `in_backoff_since(key, event_time)` the kubelet waits (CrashLoopBackOff, ImagePullBackOff) instead of acting.
An entry not touched for twice the cap (10 min, e.g. a container that ran that long) starts over at the initial
delay, which is how a container that ran for 10 minutes gets a fresh 10 s after its next crash.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable


@dataclasses.dataclass
class _Entry:
    delay: float
    last_update: float


class Backoff:
    def __init__(self, initial: float = 10.0, cap: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self.initial = initial
        self.cap = cap
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    def _expired(self, entry: _Entry, at: float) -> bool:
        return at - entry.last_update > 2 * self.cap

    def get(self, key: str) -> float:
        """The current delay of `key` (0 when it is not backing off)."""
        entry = self._entries.get(key)
        return entry.delay if entry else 0.0

    def next(self, key: str, at: float | None = None) -> float:
        """Record one more failure of `key` at time `at`: the delay doubles (up to the cap) or starts over."""
        at = self.clock() if at is None else at
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, at):
            entry = self._entries[key] = _Entry(self.initial, at)
        else:
            entry.delay = min(entry.delay * 2, self.cap)
            entry.last_update = at
        return entry.delay

    def seed(self, key: str, failures: int, at: float) -> None:
        """Rebuild the entry of `key` after `failures` restarts (an agent restart forgets its back-off; the
        restart count in the runtime remembers it)."""
        if key not in self._entries and failures > 0:
            self._entries[key] = _Entry(min(self.initial * 2 ** (failures - 1), self.cap), at)

    def in_backoff_since(self, key: str, event_time: float) -> bool:
        """Whether, counting from `event_time` (the container's exit), `key` must still wait."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, event_time):
            return False
        return self.clock() - event_time < entry.delay

    def remaining(self, key: str, event_time: float) -> float:
        """Seconds until `key` may act again, counting from `event_time`."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(0.0, event_time + entry.delay - self.clock())

    def in_backoff_since_update(self, key: str) -> bool:
        """Whether `key` must still wait, counting from its last failure (image pulls)."""
        return self.remaining_since_update(key) > 0

    def remaining_since_update(self, key: str) -> float:
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.last_update + entry.delay - self.clock())

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        """Drop every key of one pod (its uid is the prefix) when the pod goes away."""
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    def gc(self) -> None:
        """Drop entries idle for longer than twice the cap."""
        now = self.clock()
        for key in [k for k, e in self._entries.items() if self._expired(e, now)]:
            del self._entries[key]
