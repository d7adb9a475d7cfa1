"""The API server's watch cache: every object and recent change held in memory, fed by one store watch.

Lists and watches are served from here so they do not hit the store every time (as kube-apiserver's
cacher does). One task follows the store's watch over `/registry/` and applies each change to the cache of
its resource prefix; each cache keeps the current objects and a bounded history of events for watches that
resume from a resourceVersion. A watch older than that history gets 410 Expired, as in Kubernetes.
"""
from __future__ import annotations

import asyncio
import bisect
import collections
import logging
from typing import Any, AsyncIterator, Callable

import orjson

from ..api import errors
from ..store.interface import Compacted, Event, Store

log = logging.getLogger(__name__)

HISTORY = 10_000          # events kept per resource for watch resumption (--watch-cache-size)
WATCHER_BACKLOG = 50_000  # a watcher this far behind is closed (it will relist), as Kubernetes closes slow watchers


def decode(value: bytes, revision: int) -> dict[str, Any]:
    """A stored object with its resourceVersion filled in from the store revision."""
    obj = orjson.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj


class WatchEvent:
    """One change as watchers see it; its JSON line is built once and shared by every watcher."""

    __slots__ = ("type", "obj", "prev", "revision", "_line")

    def __init__(self, type: str, obj: dict[str, Any], prev: dict[str, Any] | None, revision: int) -> None:
        self.type = type
        self.obj = obj
        self.prev = prev
        self.revision = revision
        self._line: bytes | None = None

    def json_line(self) -> bytes:
        if self._line is None:
            self._line = orjson.dumps({"type": self.type, "object": self.obj}) + b"\n"
        return self._line


Filter = Callable[[dict[str, Any]], bool]
CLOSED = WatchEvent("CLOSED", {}, None, 0)


class Watcher:
    def __init__(self, cache: "ResourceCache", namespace: str | None, name: str | None, match: Filter | None) -> None:
        self.cache = cache
        self.namespace = namespace
        self.name = name
        self.match = match
        self.queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        # Set by a watch stream once its backlog is written: delivers an event straight to the connection and
        # says whether it could; events it refuses (a full socket) wait in the queue, which keeps their order.
        self.direct: Callable[[WatchEvent], bool] | None = None

    def wants(self, obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        return self.match is None or self.match(obj)

    def offer(self, ev: WatchEvent) -> None:
        """Translate a change into what this watcher sees (selector transitions become ADDED/DELETED)."""
        now = self.wants(ev.obj)
        before = ev.prev is not None and self.wants(ev.prev)
        if ev.type == "MODIFIED":
            if now and not before:
                ev = WatchEvent("ADDED", ev.obj, None, ev.revision)
            elif before and not now:
                ev = WatchEvent("DELETED", ev.obj, None, ev.revision)
            elif not now:
                return
        elif not now:
            return
        if self.direct is not None and self.queue.empty() and self.direct(ev):
            return
        if self.queue.qsize() >= WATCHER_BACKLOG:
            self.close()
            return
        self.queue.put_nowait(ev)

    def close(self) -> None:
        self.cache.watchers.discard(self)
        self.direct = None
        self.queue.put_nowait(CLOSED)

    async def events(self) -> AsyncIterator[WatchEvent]:
        try:
            while True:
                ev = await self.queue.get()
                if ev is CLOSED:
                    return
                yield ev
        finally:
            self.cache.watchers.discard(self)


class ResourceCache:
    """Objects and recent history under one store prefix (one resource type)."""

    def __init__(self, prefix: str, start_revision: int, capacity: int = HISTORY) -> None:
        self.prefix = prefix
        self.capacity = capacity
        self.objects: dict[str, dict[str, Any]] = {}
        self._sorted: list[str] | None = []
        self.history: collections.deque[WatchEvent] = collections.deque()
        self.history_start = start_revision   # events after this revision are all in history
        self.watchers: set[Watcher] = set()

    def sorted_keys(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.objects)
        return self._sorted

    def load(self, key: str, obj: dict[str, Any]) -> None:
        self.objects[key] = obj
        self._sorted = None

    def apply(self, ev: Event) -> None:
        prev = self.objects.get(ev.key)
        if ev.type == "delete":
            obj = decode(ev.value, ev.revision)
            if self.objects.pop(ev.key, None) is not None and self._sorted is not None:
                i = bisect.bisect_left(self._sorted, ev.key)
                if i < len(self._sorted) and self._sorted[i] == ev.key:
                    self._sorted.pop(i)
            wev = WatchEvent("DELETED", obj, prev, ev.revision)
        else:
            obj = decode(ev.value, ev.revision)
            if prev is None and self._sorted is not None:
                bisect.insort(self._sorted, ev.key)
            self.objects[ev.key] = obj
            wev = WatchEvent("ADDED" if prev is None else "MODIFIED", obj, prev, ev.revision)
        self.history.append(wev)
        if len(self.history) > self.capacity:
            self.history_start = self.history.popleft().revision
        for w in list(self.watchers):
            w.offer(wev)

    def list(self, namespace: str | None, start: str = "") -> list[tuple[str, dict[str, Any]]]:
        """(key, object) pairs in key order, from `start` inclusive, optionally in one namespace."""
        prefix = self.prefix + (f"{namespace}/" if namespace is not None else "")
        keys = self.sorted_keys()
        i = bisect.bisect_left(keys, max(prefix, start))
        out = []
        objects = self.objects
        while i < len(keys) and keys[i].startswith(prefix):
            out.append((keys[i], objects[keys[i]]))
            i += 1
        return out

    def watch(self, after: int | None, namespace: str | None, name: str | None, match: Filter | None,
              initial: bool) -> Watcher:
        """A watcher primed with the events it must see first: history after `after`, or the current state."""
        w = Watcher(self, namespace, name, match)
        if initial:
            for _, obj in self.list(namespace):
                if w.wants(obj):
                    w.queue.put_nowait(WatchEvent("ADDED", obj, None, 0))
        elif after is not None:
            if after < self.history_start:
                raise errors.Expired(f"too old resource version: {after} ({self.history_start})")
            revs = [e.revision for e in self.history]
            for ev in list(self.history)[bisect.bisect_right(revs, after):]:
                w.offer(ev)
        self.watchers.add(w)
        return w


class WatchCache:
    """All resource caches, kept current by one store watch."""

    def __init__(self, store: Store, capacity: int = HISTORY) -> None:
        self.store = store
        self.capacity = capacity
        self.caches: dict[str, ResourceCache] = {}
        self.revision = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._start_revision = 0

    async def start(self) -> None:
        rev, items = await self.store.list("/registry/")
        self._start_revision = self.revision = rev
        for kv in items:
            self._cache_for(kv.key).load(kv.key, decode(kv.value, kv.mod_revision))
        self._task = asyncio.create_task(self._follow(rev), name="watch-cache")

    async def stop(self) -> None:
        for cache in self.caches.values():
            for w in list(cache.watchers):
                w.close()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def cache(self, prefix: str) -> ResourceCache:
        c = self.caches.get(prefix)
        if c is None:
            c = self.caches[prefix] = ResourceCache(prefix, self._start_revision, self.capacity)
        return c

    def _cache_for(self, key: str) -> ResourceCache:
        # keys are /registry/<group>/<resource>/[<namespace>/]<name>
        parts = key.split("/", 4)
        return self.cache("/".join(parts[:4]) + "/")

    async def _follow(self, after: int) -> None:
        while True:
            try:
                # every key, so that the revision advances with writes outside /registry/ (allocations) too
                async for ev in self.store.watch("/", after):
                    if ev.key.startswith("/registry/"):
                        self._cache_for(ev.key).apply(ev)
                    after = self.revision = ev.revision
                    if self._waiters:
                        self._wake()
            except Compacted:
                log.error("watch cache fell behind compaction at %d; relisting", after)
                await self._relist()
                after = self.revision
            except asyncio.CancelledError:
                raise
            except Exception:   # keep serving; a broken store watch is retried
                log.exception("watch cache lost its store watch; resuming from %d", after)
                await asyncio.sleep(0.5)

    async def _relist(self) -> None:
        rev, items = await self.store.list("/registry/")
        fresh: dict[str, dict[str, dict[str, Any]]] = {}
        for kv in items:
            fresh.setdefault("/".join(kv.key.split("/", 4)[:4]) + "/", {})[kv.key] = decode(kv.value, kv.mod_revision)
        for prefix, cache in self.caches.items():
            cache.objects = fresh.get(prefix, {})
            cache._sorted = None
            cache.history.clear()
            cache.history_start = rev
            for w in list(cache.watchers):
                w.close()
        self.revision = rev

    def _wake(self) -> None:
        keep = []
        for rev, fut in self._waiters:
            if rev <= self.revision:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((rev, fut))
        self._waiters = keep

    async def wait_for(self, revision: int, timeout: float = 3.0) -> None:
        """Block until the cache has applied `revision` (read-your-writes for lists served from memory)."""
        if self.revision >= revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise errors.Timeout(f"Too large resource version: {revision}, current: {self.revision}",
                                 details={"causes": [{"reason": "ResourceVersionTooLarge",
                                                      "message": "Too large resource version"}],
                                          "retryAfterSeconds": 1}) from None

    async def fresh(self) -> int:
        """Wait for everything written so far and return the revision the cache is at."""
        await self.wait_for(await self.store.current_revision())
        return self.revision
