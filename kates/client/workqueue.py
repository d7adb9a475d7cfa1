"""A rate-limited work queue of keys, as client-go's workqueue.

Duplicate adds collapse (a key is queued once however often it is added), a key is never handed to two workers
at once (re-adds while processing are held until `done`), and failing keys come back after exponential back-off.
"""
from __future__ import annotations

import asyncio
import collections
import time
from typing import Callable


class RateLimiter:
    """Per-item exponential back-off (base doubling to a cap) combined with an overall token bucket."""

    def __init__(self, base: float = 0.005, cap: float = 300.0, qps: float = 50.0, burst: int = 300,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base, self.cap = base, cap
        self.qps, self.burst = qps, burst
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._tokens = float(burst)
        self._last = clock()

    def when(self, key: str) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        item = min(self.base * (2 ** n), self.cap)
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        bucket = 0.0 if self._tokens >= 0 else -self._tokens / self.qps
        return max(item, bucket)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def retries(self, key: str) -> int:
        return self._failures.get(key, 0)


class WorkQueue:
    def __init__(self, name: str = "", rate_limiter: RateLimiter | None = None) -> None:
        self.name = name
        self.limiter = rate_limiter or RateLimiter()
        self._queue: collections.deque[str] = collections.deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._ready = asyncio.Event()
        self._shutdown = False
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._ready.set()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        due = loop.time() + delay
        if existing is not None and existing.when() <= due:
            return
        if existing is not None:
            existing.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)
        self._timers[key] = loop.call_at(due, fire)

    def add_rate_limited(self, key: str) -> None:
        self.add_after(key, self.limiter.when(key))

    def forget(self, key: str) -> None:
        self.limiter.forget(key)

    def retries(self, key: str) -> int:
        return self.limiter.retries(key)

    async def get(self) -> str | None:
        """The next key, or None once shut down. Call `done(key)` when finished with it."""
        while not self._queue:
            if self._shutdown:
                return None
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()

    def shutdown(self) -> None:
        self._shutdown = True
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        self._ready.set()
