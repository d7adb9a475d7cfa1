"""An in-memory store: the same semantics as SQLite without durability, for tests and hollow clusters."""
from __future__ import annotations

import asyncio
import bisect
import time
from typing import AsyncIterator

from .interface import Compacted, Event, FutureRevision, KeyExists, KeyNotFound, KeyValue, RevisionMismatch


class MemoryStore:
    def __init__(self) -> None:
        self._revision = 0
        self._compacted = 0
        self._log: list[Event] = []           # every change with revision > _compacted, in order
        self._current: dict[str, KeyValue] = {}
        self._keys: list[str] = []            # sorted keys of _current
        self._subscribers: set[asyncio.Queue[Event | None]] = set()

    # -- writes --------------------------------------------------------------------------------------------
    def _append(self, event: Event) -> None:
        self._log.append(event)
        for q in self._subscribers:
            q.put_nowait(event)

    async def create(self, key: str, value: bytes, *, ttl: float | None = None) -> int:
        existing = self._current.get(key)
        if existing is not None and not self._expired(existing):
            raise KeyExists(key)
        if existing is not None:
            await self._expire(existing)
        self._revision += 1
        rev = self._revision
        self._current[key] = KeyValue(key, value, rev, rev, time.time() + ttl if ttl else None)
        bisect.insort(self._keys, key)
        self._append(Event("create", key, value, rev, rev))
        return rev

    async def update(self, key: str, value: bytes, revision: int, *, ttl: float | None = None) -> int:
        kv = self._live(key)
        if kv is None:
            raise KeyNotFound(key)
        if kv.mod_revision != revision:
            raise RevisionMismatch(key, kv)
        self._revision += 1
        rev = self._revision
        expires = time.time() + ttl if ttl else kv.expires_at
        self._current[key] = KeyValue(key, value, kv.create_revision, rev, expires)
        self._append(Event("update", key, value, rev, kv.create_revision, kv.value))
        return rev

    async def delete(self, key: str, revision: int | None = None) -> int:
        kv = self._live(key)
        if kv is None:
            raise KeyNotFound(key)
        if revision is not None and kv.mod_revision != revision:
            raise RevisionMismatch(key, kv)
        return self._remove(kv)

    def _remove(self, kv: KeyValue) -> int:
        self._revision += 1
        rev = self._revision
        del self._current[kv.key]
        self._keys.pop(bisect.bisect_left(self._keys, kv.key))
        self._append(Event("delete", kv.key, kv.value, rev, kv.create_revision, kv.value))
        return rev

    @staticmethod
    def _expired(kv: KeyValue) -> bool:
        return kv.expires_at is not None and kv.expires_at <= time.time()

    async def _expire(self, kv: KeyValue) -> None:
        self._remove(kv)

    def _live(self, key: str) -> KeyValue | None:
        kv = self._current.get(key)
        if kv is not None and self._expired(kv):
            self._remove(kv)
            return None
        return kv

    # -- reads ---------------------------------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue | None:
        return self._live(key)

    async def list(self, prefix: str, *, revision: int = 0, start: str = "", limit: int = 0
                   ) -> tuple[int, list[KeyValue]]:
        if revision and revision > self._revision:
            raise FutureRevision(str(revision))
        if revision and revision < self._compacted:
            raise Compacted(revision, self._compacted)
        if revision and revision != self._revision:
            state = self._state_at(revision)
            keys = sorted(k for k in state if k.startswith(prefix) and k >= start)
            items = [state[k] for k in keys]
        else:
            revision = self._revision
            i = bisect.bisect_left(self._keys, max(prefix, start))
            items = []
            while i < len(self._keys) and self._keys[i].startswith(prefix):
                kv = self._current[self._keys[i]]
                if not self._expired(kv):
                    items.append(kv)
                    if limit and len(items) >= limit:
                        break
                i += 1
        return revision, items[:limit] if limit else items

    def _state_at(self, revision: int) -> dict[str, KeyValue]:
        """Replay the current state backwards to `revision`."""
        state = dict(self._current)
        for ev in reversed(self._log):
            if ev.revision <= revision:
                break
            if ev.type == "create":
                state.pop(ev.key, None)
            else:
                prev = ev.prev_value if ev.type == "update" else ev.value
                # the previous mod revision is unknown without a scan; find it
                state[ev.key] = KeyValue(ev.key, prev or b"", ev.create_revision,
                                         self._prev_revision(ev.key, ev.revision))
        return state

    def _prev_revision(self, key: str, before: int) -> int:
        for ev in reversed(self._log):
            if ev.revision < before and ev.key == key:
                return ev.revision
        return self._compacted

    async def count(self, prefix: str) -> int:
        return len((await self.list(prefix))[1])

    async def current_revision(self) -> int:
        return self._revision

    async def watch(self, prefix: str, after: int) -> AsyncIterator[Event]:
        if after < self._compacted:
            raise Compacted(after, self._compacted)
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            i = bisect.bisect_right([e.revision for e in self._log], after)
            last = after
            for ev in self._log[i:]:
                if ev.key.startswith(prefix):
                    yield ev
                last = ev.revision
            while True:
                ev = await queue.get()
                if ev is None:
                    return
                if ev.revision > last and ev.key.startswith(prefix):
                    last = ev.revision
                    yield ev
        finally:
            self._subscribers.discard(queue)

    async def compact(self, revision: int) -> None:
        revision = min(revision, self._revision)
        if revision <= self._compacted:
            return
        i = bisect.bisect_right([e.revision for e in self._log], revision)
        del self._log[:i]
        self._compacted = revision

    async def close(self) -> None:
        for q in self._subscribers:
            q.put_nowait(None)
