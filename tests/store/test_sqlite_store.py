"""What only the SQLite driver promises: durability under kill -9, group commit, persistence across reopen,
stepwise compaction, chunked watch replay, one owner per database file, and open_store's URL handling."""
from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

import kates.store.sqlite as sqlite_driver
from kates.store import Compacted, MemoryStore, SQLiteStore, StoreError, open_store

CHILD = Path(__file__).with_name("sqlite_kill_child.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "state.db"))
    yield s
    await s.close()


def rows_in(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM kv").fetchone()[0]


# -- durability -----------------------------------------------------------------------------------------------
async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    child = await asyncio.create_subprocess_exec(sys.executable, str(CHILD), str(db), cwd=REPO,
                                                 stdout=asyncio.subprocess.PIPE)
    lines: list[bytes] = []
    try:
        assert await asyncio.wait_for(child.stdout.readline(), 20) == b"ready\n"
        while len(lines) < 400:                               # let it get well into its write loop
            lines.append(await asyncio.wait_for(child.stdout.readline(), 10))
    finally:
        child.send_signal(signal.SIGKILL)
    output = b"".join(lines) + await child.stdout.read()
    assert await child.wait() == -signal.SIGKILL

    # everything the child printed before dying, except a line the kill cut short
    acked = [(int(rev), key, value.encode())
             for rev, key, value in (line.decode().split(" ") for line in output.split(b"\n")[:-1])]
    assert len(acked) >= 400

    reopened = SQLiteStore(str(db))
    try:
        latest = await reopened.current_revision()
        assert latest >= max(rev for rev, _, _ in acked) >= 400
        for rev, key, value in acked:
            _, items = await reopened.list(key, revision=rev)
            assert [(kv.key, kv.value, kv.mod_revision) for kv in items if kv.key == key] == [(key, value, rev)]
        # the log itself is whole: every revision up to the last committed one is there, once
        history = reopened.watch("/", 0)
        revisions = [(await history.__anext__()).revision for _ in range(latest)]
        assert revisions == list(range(1, latest + 1))
        await history.aclose()
        assert await reopened.create("/after/restart", b"") == latest + 1
    finally:
        await reopened.close()


async def test_reopening_keeps_revisions_history_and_compaction(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    first = SQLiteStore(path)
    r1 = await first.create("/a", b"1")
    r2 = await first.update("/a", b"2", r1)
    r3 = await first.create("/b", b"b")
    r4 = await first.delete("/b")                            # the newest row is a delete...
    await first.compact(r4)                                  # ...which compaction removes entirely
    await first.close()

    second = SQLiteStore(path)
    try:
        assert await second.current_revision() == r4            # revisions never go back, even so
        assert await second.create("/c", b"c") == r4 + 1
        assert (await second.get("/a")).mod_revision == r2
        with pytest.raises(Compacted):
            await second.list("/", revision=r3)
        _, items = await second.list("/", revision=r4)
        assert [(kv.key, kv.value) for kv in items] == [("/a", b"2")]
    finally:
        await second.close()


async def test_one_process_owns_a_database_file(tmp_path: Path) -> None:
    owner = SQLiteStore(str(tmp_path / "state.db"))
    await owner.start()
    intruder = SQLiteStore(str(tmp_path / "state.db"))
    with pytest.raises(StoreError, match="locked"):
        await intruder.start()
    await owner.close()
    await intruder.close()
    again = SQLiteStore(str(tmp_path / "state.db"))
    await again.start()                                      # the lock goes with its owner
    await again.close()


# -- group commit and speed -----------------------------------------------------------------------------------
async def test_concurrent_writes_share_transactions(store: SQLiteStore) -> None:
    await store.start()
    before = store.transactions
    started = time.perf_counter()

    async def writer(w: int) -> None:
        for i in range(60):
            await store.create(f"/registry/core/pods/w{w}/p{i}", b"x" * 200)

    await asyncio.gather(*(writer(w) for w in range(32)))
    elapsed = time.perf_counter() - started
    transactions = store.transactions - before
    assert await store.count("/registry/core/pods/") == 32 * 60
    assert transactions < 32 * 60 / 4                        # group commit: many creates per fsync
    assert 32 * 60 / elapsed > 1000                          # the floor: 1,000 creates/s


async def test_listing_ten_thousand_keys_is_fast(store: SQLiteStore) -> None:
    await asyncio.gather(*(store.create(f"/registry/core/configmaps/ns{i % 10}/cm-{i:05d}", b"v" * 300)
                           for i in range(10_000)))
    await store.list("/registry/core/configmaps/", limit=1)   # warm the reader threads
    started = time.perf_counter()
    _, items = await store.list("/registry/core/configmaps/")
    elapsed = time.perf_counter() - started
    assert len(items) == 10_000 and items == sorted(items, key=lambda kv: kv.key)
    assert elapsed < 0.25, f"listing 10,000 keys took {elapsed * 1e3:.0f} ms"


# -- compaction -----------------------------------------------------------------------------------------------
async def test_compaction_removes_history_in_steps_while_writers_go_on(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_driver, "COMPACT_STEP", 50)
    path = tmp_path / "state.db"
    store = SQLiteStore(str(path))
    try:
        rev = await store.create("/hot", b"0")
        for i in range(1, 600):
            rev = await store.update("/hot", str(i).encode(), rev)
        for i in range(100):
            await store.create(f"/gone/{i}", b"")
            await store.delete(f"/gone/{i}")
        await store.create("/kept", b"kept")
        target = await store.current_revision()
        assert rows_in(path) == target

        transactions = store.transactions
        finished: list[str] = []

        async def compact() -> None:
            await store.compact(target)
            finished.append("compaction")

        async def keep_writing() -> None:
            for i in range(20):
                await store.create(f"/during/{i}", b"")
                finished.append("write")

        await asyncio.gather(compact(), keep_writing())
        assert store.transactions - transactions >= target // 50   # one small transaction per step
        assert finished.index("compaction") >= 5                    # writers were served between the steps
        assert rows_in(path) == 2 + 20                       # /hot and /kept, plus the creates made meanwhile
        assert (await store.get("/hot")).value == b"599"
        _, items = await store.list("/", revision=target)
        assert [(kv.key, kv.value) for kv in items] == [("/hot", b"599"), ("/kept", b"kept")]
        with pytest.raises(Compacted):
            await store.list("/", revision=target - 1)
    finally:
        await store.close()


async def test_the_background_compactor_keeps_the_last_revisions(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "state.db"), compact_interval=0.05, compact_keep=10)
    try:
        rev = await store.create("/k", b"0")
        for i in range(100):
            rev = await store.update("/k", str(i).encode(), rev)
        store.start_background_tasks()
        deadline = time.monotonic() + 5
        while True:
            try:
                await store.list("/", revision=50)
            except Compacted as err:
                assert err.compact_revision == rev - 10
                break
            assert time.monotonic() < deadline, "the compactor never ran"
            await asyncio.sleep(0.02)
        _, items = await store.list("/", revision=rev - 10)  # the kept window is still readable
        assert items[0].value == b"89"
    finally:
        await store.close()


# -- watch replay ---------------------------------------------------------------------------------------------
async def test_watch_replays_history_in_chunks(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_driver, "REPLAY_CHUNK", 7)
    rev = await store.create("/r/k", b"0")
    for i in range(1, 50):
        rev = await store.update("/r/k", str(i).encode(), rev)
        await store.create(f"/elsewhere/{i}", b"")
    events = store.watch("/r/", 0)
    replayed = [await events.__anext__() for _ in range(50)]
    assert [ev.value for ev in replayed] == [str(i).encode() for i in range(50)]
    live = await asyncio.gather(events.__anext__(), store.update("/r/k", b"live", rev))
    assert live[0].value == b"live" and live[0].revision == live[1]
    await events.aclose()


async def test_a_watch_replaying_history_that_gets_compacted_fails(store: SQLiteStore,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_driver, "REPLAY_CHUNK", 5)
    rev = await store.create("/r/k", b"0")
    for i in range(1, 30):
        rev = await store.update("/r/k", str(i).encode(), rev)
    events = store.watch("/r/", 0)
    first_chunk = [await events.__anext__() for _ in range(5)]
    assert [ev.revision for ev in first_chunk] == [1, 2, 3, 4, 5]
    await store.compact(20)                                  # the rows the watch needs next are gone
    with pytest.raises(Compacted):
        await events.__anext__()


# -- open_store -----------------------------------------------------------------------------------------------
def test_open_store_picks_the_driver_by_url(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    absolute = open_store(f"sqlite://{tmp_path}/state.db")
    assert isinstance(absolute, SQLiteStore) and absolute.path == f"{tmp_path}/state.db"
    relative = open_store("sqlite://data/state.db")
    assert isinstance(relative, SQLiteStore) and relative.path == "data/state.db"
    assert not os.path.exists("data/state.db")               # constructing opens nothing
    with pytest.raises(ValueError, match="etcd"):
        open_store("etcd://127.0.0.1:2379")
    with pytest.raises(ValueError, match="memory://.*sqlite://"):
        open_store("redis://localhost")
    with pytest.raises(ValueError):
        open_store("/var/lib/kates/state.db")
    with pytest.raises(ValueError):
        open_store("sqlite://")
