"""An in-memory store: the same semantics as the SQLite driver without durability, for tests and hollow clusters.

State is a dict of current key-values plus a log of every change since the compacted revision; past revisions
are rebuilt by undoing the log backwards. Everything runs on the event loop, so each call is atomic.
"""
from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import logging
import time
from typing import AsyncIterator

from .interface import (Compacted, Event, FutureRevision, KeyExists, KeyNotFound, KeyValue, RevisionMismatch,
                        StoreError)
from .watch import DEFAULT_WATCH_BUFFER, WatchHub, follow

log = logging.getLogger(__name__)

DEFAULT_TTL_SWEEP_INTERVAL = 1.0
DEFAULT_COMPACT_INTERVAL = 300.0
DEFAULT_COMPACT_KEEP = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class _Change:
    event: Event
    prev: KeyValue | None    # the key-value this change replaced, to undo it when reading the past


class MemoryStore:
    def __init__(self, *, ttl_sweep_interval: float = DEFAULT_TTL_SWEEP_INTERVAL,
                 compact_interval: float = DEFAULT_COMPACT_INTERVAL, compact_keep: int = DEFAULT_COMPACT_KEEP,
                 watch_buffer: int = DEFAULT_WATCH_BUFFER) -> None:
        self._revision = 0
        self._compacted = 0
        self._log: list[_Change] = []          # every change with revision > _compacted, in order
        self._log_revisions: list[int] = []   # the revisions of _log, for bisecting
        self._current: dict[str, KeyValue] = {}
        self._keys: list[str] = []            # sorted keys of _current
        self._hub = WatchHub(watch_buffer)
        self._ttl_sweep_interval = ttl_sweep_interval
        self._compact_interval = compact_interval
        self._compact_keep = compact_keep
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    async def start(self) -> None:
        """Nothing to open; here so every driver can be started the same way."""

    def start_background_tasks(self) -> None:
        """Start the TTL sweeper and the periodic compactor; `close()` stops them."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._sweep_forever(), name="kates-store-ttl-sweeper"),
                           asyncio.create_task(self._compact_forever(), name="kates-store-compactor")]

    # -- writes --------------------------------------------------------------------------------------------
    def _append(self, event: Event, prev: KeyValue | None) -> int:
        self._revision = event.revision
        self._log.append(_Change(event, prev))
        self._log_revisions.append(event.revision)
        self._hub.publish((event,))
        return event.revision

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    async def create(self, key: str, value: bytes, *, ttl: float | None = None) -> int:
        self._check_open()
        existing = self._current.get(key)
        if existing is not None:
            if not _expired(existing, time.time()):
                raise KeyExists(key)
            self._remove(existing)          # expired but not swept yet: its delete event comes first
        rev = self._revision + 1
        self._current[key] = KeyValue(key, value, rev, rev, _deadline(ttl))
        bisect.insort(self._keys, key)
        return self._append(Event("create", key, value, rev, rev), None)

    async def update(self, key: str, value: bytes, revision: int, *, ttl: float | None = None) -> int:
        self._check_open()
        kv = self._live(key)
        if kv is None:
            raise KeyNotFound(key)
        if kv.mod_revision != revision:
            raise RevisionMismatch(key, kv)
        rev = self._revision + 1
        expires = _deadline(ttl) if ttl else kv.expires_at
        self._current[key] = KeyValue(key, value, kv.create_revision, rev, expires)
        return self._append(Event("update", key, value, rev, kv.create_revision, kv.value), kv)

    async def delete(self, key: str, revision: int | None = None) -> int:
        self._check_open()
        kv = self._live(key)
        if kv is None:
            raise KeyNotFound(key)
        if revision is not None and kv.mod_revision != revision:
            raise RevisionMismatch(key, kv)
        return self._remove(kv)

    def _remove(self, kv: KeyValue) -> int:
        rev = self._revision + 1
        del self._current[kv.key]
        self._keys.pop(bisect.bisect_left(self._keys, kv.key))
        return self._append(Event("delete", kv.key, kv.value, rev, kv.create_revision, kv.value), kv)

    def _live(self, key: str) -> KeyValue | None:
        """The current key-value unless its TTL ran out (the sweeper, or a create, deletes it then)."""
        kv = self._current.get(key)
        return None if kv is None or _expired(kv, time.time()) else kv

    def _sweep_expired(self) -> int:
        now = time.time()
        expired = [kv for kv in self._current.values() if _expired(kv, now)]
        for kv in expired:
            self._remove(kv)
        return len(expired)

    # -- reads ---------------------------------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue | None:
        return self._live(key)

    async def list(self, prefix: str, *, revision: int = 0, start: str = "", limit: int = 0
                   ) -> tuple[int, list[KeyValue]]:
        if revision > self._revision:
            raise FutureRevision(str(revision))
        if revision and revision < self._compacted:
            raise Compacted(revision, self._compacted)
        if revision and revision != self._revision:
            state = self._state_at(revision)
            keys = sorted(k for k in state if k.startswith(prefix) and k >= start)
            items = [state[k] for k in keys]
            return revision, items[:limit] if limit else items
        return self._revision, self._list_current(prefix, start, limit)

    def _list_current(self, prefix: str, start: str, limit: int) -> list[KeyValue]:
        now = time.time()
        i = bisect.bisect_left(self._keys, max(prefix, start))
        items: list[KeyValue] = []
        while i < len(self._keys) and self._keys[i].startswith(prefix):
            kv = self._current[self._keys[i]]
            if not _expired(kv, now):
                items.append(kv)
                if limit and len(items) >= limit:
                    break
            i += 1
        return items

    def _state_at(self, revision: int) -> dict[str, KeyValue]:
        """Undo the log backwards from the current state down to `revision`."""
        state = dict(self._current)
        for change in reversed(self._log[bisect.bisect_right(self._log_revisions, revision):]):
            if change.prev is None:
                state.pop(change.event.key, None)
            else:
                state[change.event.key] = change.prev
        return state

    async def count(self, prefix: str) -> int:
        return len((await self.list(prefix))[1])

    async def current_revision(self) -> int:
        return self._revision

    def watch(self, prefix: str, after: int) -> AsyncIterator[Event]:
        return follow(self._hub, prefix, after, self._replay)

    async def _replay(self, prefix: str, after: int) -> AsyncIterator[Event]:
        if after < self._compacted:
            raise Compacted(after, self._compacted)
        history = self._log[bisect.bisect_right(self._log_revisions, after):]   # a snapshot: the log moves on
        for change in history:
            if change.event.key.startswith(prefix):
                yield change.event

    # -- maintenance ---------------------------------------------------------------------------------------
    async def compact(self, revision: int) -> None:
        revision = min(revision, self._revision)
        if revision <= self._compacted:
            return
        i = bisect.bisect_right(self._log_revisions, revision)
        del self._log[:i]
        del self._log_revisions[:i]
        self._compacted = revision

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_sweep_interval)
            self._sweep_expired()

    async def _compact_forever(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                await self.compact(self._revision - self._compact_keep)
            except Exception:
                log.exception("store: compacting failed")

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._hub.close()


def _deadline(ttl: float | None) -> float | None:
    return time.time() + ttl if ttl else None


def _expired(kv: KeyValue, now: float) -> bool:
    return kv.expires_at is not None and kv.expires_at <= now
