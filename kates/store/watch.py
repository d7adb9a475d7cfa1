"""The in-process watch hub shared by every store driver.

Drivers publish each committed change here, in revision order, right after the commit; watchers never poll the
database. A watch is built by `follow()`: subscribe first, then replay history with revision > `after` from the
driver (its log or its table), then follow the live events, skipping any revision already delivered. Because the
subscription exists before the replay reads anything, a change is either in the replay, in the live queue, or
both (the duplicate is dropped by revision), so nothing is missed or repeated.

Slow watchers never block writers. Each subscription buffers at most `limit` events; when a watcher falls that
far behind its buffer is dropped and the subscription is marked lagged. `follow()` then subscribes again and
replays from the last revision it delivered, straight from the driver's history. So memory per watcher stays
bounded and the watcher still sees every change, unless history it still needs was compacted meanwhile, in
which case the watch ends with `Compacted` (the API server turns that into 410 Gone, and the client re-lists).
"""
from __future__ import annotations

import asyncio
import collections
from typing import AsyncIterator, Callable, Iterable

from .interface import Event

DEFAULT_WATCH_BUFFER = 10_000

Replay = Callable[[str, int], AsyncIterator[Event]]
"""replay(prefix, after): the stored changes under `prefix` with revision > `after`, in revision order."""


class Lagged(Exception):
    """The watcher fell more than its buffer behind the writers; it must replay from history."""


class Subscription:
    """One watcher's buffer of live events under a key prefix."""

    def __init__(self, hub: "WatchHub", prefix: str, limit: int) -> None:
        self.prefix = prefix
        self._hub = hub
        self._limit = limit
        self._events: collections.deque[Event] = collections.deque()
        self._wakeup = asyncio.Event()
        self.lagged = False
        self.closed = False

    def offer(self, event: Event) -> None:
        if self.lagged or self.closed:
            return
        if len(self._events) >= self._limit:
            self.lagged = True
            self._events.clear()
        else:
            self._events.append(event)
        self._wakeup.set()

    def end(self) -> None:
        self.closed = True
        self._wakeup.set()

    async def next(self) -> Event | None:
        """The next live event; None once the hub is closed. Raises Lagged."""
        while not self._events:
            if self.lagged:
                raise Lagged()
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._events.popleft()

    def cancel(self) -> None:
        self._hub.unsubscribe(self)


class WatchHub:
    """Fans committed events out to the subscriptions whose prefix they fall under."""

    def __init__(self, buffer: int = DEFAULT_WATCH_BUFFER) -> None:
        self._buffer = buffer
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    def subscribe(self, prefix: str) -> Subscription:
        sub = Subscription(self, prefix, self._buffer)
        if self._closed:
            sub.end()
        else:
            self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    def publish(self, events: Iterable[Event]) -> None:
        for event in events:
            for sub in self._subscriptions:
                if event.key.startswith(sub.prefix):
                    sub.offer(event)

    def close(self) -> None:
        """End every watch: their iterators finish normally."""
        self._closed = True
        for sub in self._subscriptions:
            sub.end()
        self._subscriptions.clear()

    def __len__(self) -> int:
        return len(self._subscriptions)


async def follow(hub: WatchHub, prefix: str, after: int, replay: Replay) -> AsyncIterator[Event]:
    """Every change under `prefix` after revision `after`: history first, then live, exactly once each."""
    last = after
    while True:
        sub = hub.subscribe(prefix)
        try:
            async for event in replay(prefix, last):
                if event.revision > last:
                    last = event.revision
                    yield event
            while True:
                event = await sub.next()
                if event is None:
                    return
                if event.revision > last:
                    last = event.revision
                    yield event
        except Lagged:
            continue   # resubscribe, then replay what the dropped buffer held
        finally:
            sub.cancel()
