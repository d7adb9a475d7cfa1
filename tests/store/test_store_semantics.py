"""The etcd semantics every store driver must share, checked on the memory and the SQLite driver alike."""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import pytest

from kates.store import (Compacted, Event, FutureRevision, KeyExists, KeyNotFound, KeyValue, MemoryStore,
                         RevisionMismatch, SQLiteStore)

Store = MemoryStore | SQLiteStore


def make_store(driver: str, tmp_path, **options) -> Store:
    if driver == "memory":
        return MemoryStore(**options)
    return SQLiteStore(str(tmp_path / "state.db"), **options)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path) -> AsyncIterator[Store]:
    s = make_store(request.param, tmp_path, ttl_sweep_interval=0.05)
    yield s
    await s.close()


class Watcher:
    """Drains a watch into a queue from a task of its own, so a test can wait with a timeout without
    cancelling (and so ending) the watch itself."""

    def __init__(self, events: AsyncIterator[Event]) -> None:
        self.events = events
        self.queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            async for ev in self.events:
                self.queue.put_nowait(ev)
            self.queue.put_nowait(None)
        except Exception as exc:
            self.queue.put_nowait(exc)

    async def next(self, timeout: float = 5.0) -> Event | None:
        item = await asyncio.wait_for(self.queue.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def take(self, n: int, timeout: float = 5.0) -> list[Event]:
        return [await self.next(timeout) for _ in range(n)]

    async def nothing_more(self, wait: float = 0.2) -> bool:
        await asyncio.sleep(wait)
        return self.queue.empty()

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def take(events: AsyncIterator[Event], n: int, timeout: float = 5.0) -> list[Event]:
    """The first n events of a watch, which is then closed."""
    watcher = Watcher(events)
    try:
        return await watcher.take(n, timeout)
    finally:
        await watcher.close()


# -- CRUD and compare-and-swap --------------------------------------------------------------------------------
async def test_create_get_update_delete(store: Store) -> None:
    r1 = await store.create("/registry/core/pods/default/a", b"v1")
    assert await store.get("/registry/core/pods/default/a") == KeyValue("/registry/core/pods/default/a", b"v1", r1, r1)
    with pytest.raises(KeyExists):
        await store.create("/registry/core/pods/default/a", b"again")

    r2 = await store.update("/registry/core/pods/default/a", b"v2", r1)
    assert r2 == r1 + 1
    kv = await store.get("/registry/core/pods/default/a")
    assert (kv.value, kv.create_revision, kv.mod_revision) == (b"v2", r1, r2)

    r3 = await store.delete("/registry/core/pods/default/a", r2)
    assert r3 == r2 + 1
    assert await store.get("/registry/core/pods/default/a") is None

    r4 = await store.create("/registry/core/pods/default/a", b"v3")
    kv = await store.get("/registry/core/pods/default/a")
    assert (kv.value, kv.create_revision, kv.mod_revision) == (b"v3", r4, r4)
    assert await store.current_revision() == r4


async def test_compare_and_swap_failures_carry_the_current_value(store: Store) -> None:
    r1 = await store.create("/k", b"one")
    r2 = await store.update("/k", b"two", r1)

    with pytest.raises(RevisionMismatch) as stale_update:
        await store.update("/k", b"lost", r1)
    assert stale_update.value.current == KeyValue("/k", b"two", r1, r2)

    with pytest.raises(RevisionMismatch) as stale_delete:
        await store.delete("/k", r1)
    assert stale_delete.value.current == KeyValue("/k", b"two", r1, r2)

    assert (await store.get("/k")).value == b"two"          # neither failed write changed anything
    assert await store.current_revision() == r2

    with pytest.raises(KeyNotFound):
        await store.update("/missing", b"x", 1)
    with pytest.raises(KeyNotFound):
        await store.delete("/missing")
    await store.delete("/k")                                 # unconditional delete
    with pytest.raises(KeyNotFound):
        await store.delete("/k")


async def test_concurrent_cas_increments_never_lose_an_update(store: Store) -> None:
    r0 = await store.create("/counter", b"0")
    tasks, per_task = 32, 10
    conflicts = 0

    async def increment() -> None:
        nonlocal conflicts
        for _ in range(per_task):
            while True:
                kv = await store.get("/counter")
                try:
                    await store.update("/counter", str(int(kv.value) + 1).encode(), kv.mod_revision)
                    break
                except RevisionMismatch:
                    conflicts += 1

    await asyncio.gather(*(increment() for _ in range(tasks)))
    kv = await store.get("/counter")
    assert int(kv.value) == tasks * per_task
    assert kv.mod_revision == r0 + tasks * per_task          # exactly one revision per successful update
    if isinstance(store, SQLiteStore):
        assert conflicts > 0                                 # the writers really raced


# -- lists ----------------------------------------------------------------------------------------------------
async def test_list_prefix_sorted_with_start_and_limit(store: Store) -> None:
    for name in ["c", "a", "e", "b", "d"]:
        await store.create(f"/registry/core/pods/ns/{name}", name.encode())
    await store.create("/registry/core/pods/ns2/x", b"other namespace")
    await store.create("/registry/core/podsx/ns/a", b"other resource")
    rev = await store.current_revision()

    at, items = await store.list("/registry/core/pods/ns/")
    assert at == rev
    assert [kv.value for kv in items] == [b"a", b"b", b"c", b"d", b"e"]
    _, page = await store.list("/registry/core/pods/ns/", start="/registry/core/pods/ns/b", limit=2)
    assert [kv.value for kv in page] == [b"b", b"c"]
    _, items = await store.list("/registry/core/pods/")
    assert len(items) == 6
    assert await store.count("/registry/core/pods/ns/") == 5
    assert await store.count("/registry/") == 7


async def test_list_at_a_past_revision_returns_the_old_state(store: Store) -> None:
    ra = await store.create("/p/a", b"a1")
    rb = await store.create("/p/b", b"b1")
    await store.create("/p/c", b"c1")
    past = await store.current_revision()
    await store.update("/p/a", b"a2", ra)
    await store.delete("/p/b", rb)
    await store.create("/p/d", b"d1")
    await store.delete("/p/c")
    await store.create("/p/c", b"c2")

    at, items = await store.list("/p/", revision=past)
    assert at == past
    assert [(kv.key, kv.value, kv.mod_revision) for kv in items] == [
        ("/p/a", b"a1", ra), ("/p/b", b"b1", rb), ("/p/c", b"c1", past)]
    _, page = await store.list("/p/", revision=past, start="/p/b", limit=1)
    assert [kv.key for kv in page] == ["/p/b"]

    _, now = await store.list("/p/")
    assert [(kv.key, kv.value) for kv in now] == [("/p/a", b"a2"), ("/p/c", b"c2"), ("/p/d", b"d1")]
    with pytest.raises(FutureRevision):
        await store.list("/p/", revision=await store.current_revision() + 1)


async def test_paginating_at_one_revision_is_consistent_while_writes_go_on(store: Store) -> None:
    for i in range(10):
        await store.create(f"/q/{i:02d}", b"before")
    revision, first = await store.list("/q/", limit=4)
    for i in range(10):
        kv = await store.get(f"/q/{i:02d}")
        await store.update(kv.key, b"after", kv.mod_revision)
    await store.create("/q/00a", b"new")
    pages = [first]
    while len(pages[-1]) == 4:
        _, page = await store.list("/q/", revision=revision, start=pages[-1][-1].key + "\x00", limit=4)
        pages.append(page)
    items = [kv for page in pages for kv in page]
    assert [kv.key for kv in items] == [f"/q/{i:02d}" for i in range(10)]
    assert {kv.value for kv in items} == {b"before"}


# -- watch ----------------------------------------------------------------------------------------------------
async def test_watch_replays_exactly_the_missed_events_then_live_ones(store: Store) -> None:
    r1 = await store.create("/w/a", b"a1")
    seen = await store.current_revision()
    r2 = await store.update("/w/a", b"a2", r1)
    await store.create("/other/x", b"not watched")
    r4 = await store.create("/w/b", b"b1")
    r5 = await store.delete("/w/a")

    watcher = Watcher(store.watch("/w/", seen))
    assert await watcher.take(3) == [
        Event("update", "/w/a", b"a2", r2, r1, b"a1"),
        Event("create", "/w/b", b"b1", r4, r4),
        Event("delete", "/w/a", b"a2", r5, r1, b"a2"),
    ]
    assert await watcher.nothing_more()

    r6 = await store.update("/w/b", b"b2", r4)
    await store.create("/other/y", b"not watched")
    r8 = await store.create("/w/c", b"c1")
    assert await watcher.take(2) == [Event("update", "/w/b", b"b2", r6, r4, b"b1"),
                                     Event("create", "/w/c", b"c1", r8, r8)]
    assert await watcher.nothing_more()
    await watcher.close()


async def test_watch_started_during_a_write_storm_sees_each_change_once(store: Store) -> None:
    await store.create("/s/seed", b"")
    after = await store.current_revision()

    async def storm() -> None:
        await asyncio.gather(*(store.create(f"/s/{i:03d}", b"x") for i in range(200)))

    writer = asyncio.create_task(storm())
    await asyncio.sleep(0)
    events = await take(store.watch("/s/", after), 200)
    await writer
    revisions = [ev.revision for ev in events]
    assert revisions == list(range(after + 1, after + 201))
    assert sorted(ev.key for ev in events) == [f"/s/{i:03d}" for i in range(200)]


async def test_a_slow_watcher_loses_nothing_and_blocks_no_writer(tmp_path, driver_name: str) -> None:
    store = make_store(driver_name, tmp_path, watch_buffer=10)
    try:
        after = await store.current_revision()
        events = store.watch("/slow/", after)
        first = await asyncio.wait_for(asyncio.gather(events.__anext__(), store.create("/slow/000", b"")), 5)
        # the watcher now sits idle while writers go far past its 10-event buffer
        await asyncio.wait_for(asyncio.gather(*(store.create(f"/slow/{i:03d}", b"") for i in range(1, 100))), 10)
        watcher = Watcher(events)
        rest = await watcher.take(99)
        assert [ev.key for ev in [first[0], *rest]] == [f"/slow/{i:03d}" for i in range(100)]
        assert [ev.revision for ev in rest] == sorted({ev.revision for ev in rest})
        assert await watcher.nothing_more()
        await watcher.close()
    finally:
        await store.close()


@pytest.fixture(params=["memory", "sqlite"])
def driver_name(request) -> str:
    return request.param


async def test_watch_and_list_at_a_compacted_revision_raise_compacted(store: Store) -> None:
    r1 = await store.create("/c/a", b"1")
    r2 = await store.update("/c/a", b"2", r1)
    r3 = await store.update("/c/a", b"3", r2)
    await store.create("/c/b", b"b")
    await store.compact(r3)

    with pytest.raises(Compacted) as err:
        await store.watch("/c/", r2).__anext__()
    assert err.value.compact_revision == r3
    with pytest.raises(Compacted):
        await store.list("/c/", revision=r2)

    _, at_compacted = await store.list("/c/", revision=r3)
    assert [(kv.key, kv.value) for kv in at_compacted] == [("/c/a", b"3")]
    replay = await take(store.watch("/c/", r3), 1)
    assert [(ev.type, ev.key) for ev in replay] == [("create", "/c/b")]
    assert (await store.get("/c/a")).value == b"3"           # current values survive compaction


async def test_close_ends_open_watches(store: Store) -> None:
    await store.create("/e/a", b"")
    watcher = Watcher(store.watch("/e/", 0))
    assert (await watcher.next()).key == "/e/a"
    await store.close()
    assert await watcher.next() is None                     # the watch ended cleanly


# -- TTL ------------------------------------------------------------------------------------------------------
async def test_expired_keys_are_swept_with_a_delete_event(store: Store) -> None:
    rev = await store.create("/registry/core/events/ns/e1", b"event", ttl=0.3)
    await store.create("/registry/core/events/ns/keep", b"event")
    kv = await store.get("/registry/core/events/ns/e1")
    assert kv is not None and kv.expires_at == pytest.approx(time.time() + 0.3, abs=0.25)

    watcher = Watcher(store.watch("/registry/core/events/", await store.current_revision()))
    store.start_background_tasks()
    (deleted,) = await watcher.take(1)
    assert (deleted.type, deleted.key, deleted.value, deleted.create_revision) == (
        "delete", "/registry/core/events/ns/e1", b"event", rev)
    assert await store.get("/registry/core/events/ns/e1") is None
    _, items = await store.list("/registry/core/events/")
    assert [kv.key for kv in items] == ["/registry/core/events/ns/keep"]
    assert await watcher.nothing_more()
    await watcher.close()


async def test_expired_keys_are_hidden_before_the_sweeper_runs(store: Store) -> None:
    r1 = await store.create("/t/a", b"old", ttl=0.15)
    await store.update("/t/a", b"refreshed but still expiring", r1)   # an update without ttl keeps the deadline
    await asyncio.sleep(0.3)
    assert await store.get("/t/a") is None
    assert (await store.list("/t/"))[1] == []
    assert await store.count("/t/") == 0
    with pytest.raises(KeyNotFound):
        await store.update("/t/a", b"x", r1 + 1)

    after = await store.current_revision()
    r = await store.create("/t/a", b"new")                  # the expired key is deleted first, then created
    events = await take(store.watch("/t/", after), 2)
    assert [(ev.type, ev.value) for ev in events] == [("delete", b"refreshed but still expiring"), ("create", b"new")]
    assert events[1].revision == r
    assert (await store.get("/t/a")).value == b"new"
