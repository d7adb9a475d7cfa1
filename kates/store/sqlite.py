"""The SQLite store: a durable, log-structured key-value store with etcd semantics, in the style of k3s's kine.

Why it exists: a single-node cluster needs a store that survives restarts without running etcd. SQLite gives a
crash-safe file; this module adds the etcd model on top.

Layout. One table `kv` gets one row appended per change (create, update or delete); the row id is the global
revision, so a row's id is the key's mod_revision. Columns: `name`, `created` and `deleted` flags, the key's
`create_revision`, `prev_revision` (the id of the row this one supersedes, 0 for none), `value`, `old_value`
(the value an update replaced) and `expires_at` (wall clock, for TTL keys). A delete row carries the key's last
value. The current state is, per name, its latest row unless that row is a delete; the state at a past
revision R is, per name, its latest row with id <= R. Rows are never rewritten except for one derived flag:
appending a row sets `superseded` on the row it replaces, in the same transaction, so the current state is
exactly the rows with superseded = 0 AND deleted = 0. A partial index on those serves get, list and count at
the current revision by a plain range scan (a correlated max(id) per name was measured ~40% slower for 10,000
keys); the index on (name, id) serves CAS checks, lists at a past revision and history; a partial index on the
live rows' expires_at serves the TTL sweeper. A small `meta` table holds the compacted revision and the
compactor's progress.

Durability. journal_mode=WAL with synchronous=FULL: every commit fsyncs the WAL before the write is
acknowledged, so an acknowledged write survives `kill -9` and also power loss. FULL costs one fsync per
transaction, which group commit (below) spreads over all writers waiting at that moment, so it is affordable;
`synchronous="NORMAL"` may be passed to trade power-loss safety (process crashes are still survived) for speed.

Threads. The event loop never touches SQLite. All writes go to one writer thread with its own connection. It
takes every write waiting in its queue (up to `max_batch`), applies them one after the other in a single
transaction, commits once, and then hands the results and the new events back to the loop (group commit). The
writer is the only place revisions are assigned, which makes compare-and-swap exact: concurrent writers to one
key are serialised there and never lose an update. Reads run on a small pool of reader threads, each with its
own read-only connection; WAL lets them read while the writer writes, and a multi-statement read runs in one
read transaction so it sees one snapshot. A write cancelled by its caller may still be applied, as with etcd.

Watch. After each commit the loop publishes the batch's events to an in-process `WatchHub`; a watch subscribes,
replays rows with id > after from the table in chunks, then follows the live events (see watch.py). The table
is never polled.

Compaction deletes, for rows with id in (done, target], the rows they superseded and the delete rows
themselves, 500 revisions per transaction, queued to the writer like any write so writers never stall. Listing
or watching below the compacted revision raises Compacted. TTL keys are hidden from reads once expired and are
deleted by a background sweeper that writes ordinary delete rows, so watchers see a delete event.

Opening is lazy: the constructor only records settings, the first call (or `await store.start()`) opens the
database. `start_background_tasks()` starts the TTL sweeper and the periodic compactor; `close()` stops
everything and ends every watch. One process owns a database file at a time (an flock on `<path>.lock`).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from typing import Any, AsyncIterator, Callable, Iterator, NamedTuple

from .interface import (Compacted, Event, FutureRevision, KeyExists, KeyNotFound, KeyValue, RevisionMismatch,
                        StoreError)
from .watch import DEFAULT_WATCH_BUFFER, WatchHub, follow

log = logging.getLogger(__name__)

DEFAULT_TTL_SWEEP_INTERVAL = 1.0
DEFAULT_COMPACT_INTERVAL = 300.0
DEFAULT_COMPACT_KEEP = 1000
COMPACT_STEP = 500          # revisions examined per compaction transaction
REPLAY_CHUNK = 1000         # history rows read per watch-replay transaction
SWEEP_BATCH = 500           # expired keys deleted per sweeper transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB,
    expires_at REAL,
    superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE INDEX IF NOT EXISTS kv_live ON kv (name) WHERE superseded = 0 AND deleted = 0;
CREATE INDEX IF NOT EXISTS kv_live_expires_at ON kv (expires_at)
    WHERE superseded = 0 AND deleted = 0 AND expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('compact_revision', 0), ('compact_done', 0);
"""

ROW = "id, name, created, deleted, create_revision, value, old_value, expires_at"


class _Row(NamedTuple):
    id: int
    name: str
    created: int
    deleted: int
    create_revision: int
    value: bytes
    old_value: bytes | None
    expires_at: float | None

    def key_value(self) -> KeyValue:
        return KeyValue(self.name, self.value, self.create_revision, self.id, self.expires_at)

    def event(self) -> Event:
        if self.created:
            return Event("create", self.name, self.value, self.id, self.create_revision)
        if self.deleted:
            return Event("delete", self.name, self.value, self.id, self.create_revision, self.value)
        return Event("update", self.name, self.value, self.id, self.create_revision, self.old_value)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def live(self, now: float) -> bool:
        return not self.deleted and not self.expired(now)


# -- SQL helpers ------------------------------------------------------------------------------------------------
def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no upper bound)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None


def _name_range(prefix: str, start: str = "") -> tuple[str, list[Any]]:
    """A WHERE fragment on `name` for keys under `prefix` from `start`, and its parameters."""
    end = _prefix_end(prefix)
    low = max(prefix, start)
    if end is None:
        return "name >= ?", [low]
    return "name >= ? AND name < ?", [low, end]


def _latest(conn: sqlite3.Connection, name: str) -> _Row | None:
    row = conn.execute(f"SELECT {ROW} FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1", (name,)).fetchone()
    return _Row(*row) if row else None


def _meta(conn: sqlite3.Connection, name: str) -> int:
    return conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0]


def _revision(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kv'").fetchone()
    return row[0] if row else 0


def _connect(path: str, *, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


# -- the writer thread ------------------------------------------------------------------------------------------
class _Txn:
    """One write transaction: assigns revisions and collects the events its rows make."""

    def __init__(self, conn: sqlite3.Connection, revision: int) -> None:
        self.conn = conn
        self.revision = revision
        self.events: list[Event] = []
        self.now = time.time()

    def append(self, name: str, value: bytes, *, created: bool = False, deleted: bool = False,
               create_revision: int = 0, prev: _Row | None = None, expires_at: float | None = None) -> int:
        self.revision += 1
        rev = self.revision
        old_value = prev.value if prev is not None and not created and not deleted else None
        row = _Row(rev, name, int(created), int(deleted), create_revision or rev, value, old_value, expires_at)
        self.conn.execute(
            "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, value, old_value,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rev, name, row.created, row.deleted, row.create_revision, prev.id if prev else 0, value, old_value,
             expires_at))
        if prev is not None:
            self.conn.execute("UPDATE kv SET superseded = 1 WHERE id = ?", (prev.id,))
        self.events.append(row.event())
        return rev

    def delete_row(self, row: _Row) -> int:
        return self.append(row.name, row.value, deleted=True, create_revision=row.create_revision, prev=row)

    def deadline(self, ttl: float | None) -> float | None:
        return self.now + ttl if ttl else None


Job = Callable[[_Txn], Any]


def _create(key: str, value: bytes, ttl: float | None) -> Job:
    def run(txn: _Txn) -> int:
        row = _latest(txn.conn, key)
        if row is not None and row.live(txn.now):
            raise KeyExists(key)
        if row is not None and not row.deleted:       # expired but not swept yet: delete it first
            txn.delete_row(row)
            row = _latest(txn.conn, key)
        return txn.append(key, value, created=True, prev=row, expires_at=txn.deadline(ttl))
    return run


def _update(key: str, value: bytes, revision: int, ttl: float | None) -> Job:
    def run(txn: _Txn) -> int:
        row = _latest(txn.conn, key)
        if row is None or not row.live(txn.now):
            raise KeyNotFound(key)
        if row.id != revision:
            raise RevisionMismatch(key, row.key_value())
        expires_at = txn.deadline(ttl) if ttl else row.expires_at
        return txn.append(key, value, create_revision=row.create_revision, prev=row, expires_at=expires_at)
    return run


def _delete(key: str, revision: int | None) -> Job:
    def run(txn: _Txn) -> int:
        row = _latest(txn.conn, key)
        if row is None or not row.live(txn.now):
            raise KeyNotFound(key)
        if revision is not None and row.id != revision:
            raise RevisionMismatch(key, row.key_value())
        return txn.delete_row(row)
    return run


def _expire(keys: list[str]) -> Job:
    def run(txn: _Txn) -> int:
        swept = 0
        for key in keys:
            row = _latest(txn.conn, key)
            if row is not None and not row.deleted and row.expired(txn.now):
                txn.delete_row(row)
                swept += 1
        return swept
    return run


def _compact_step(target: int, done: int, upto: int) -> Job:
    """Forget the rows superseded by rows in (done, upto], and the delete rows there; record progress."""
    def run(txn: _Txn) -> None:
        conn = txn.conn
        conn.execute("UPDATE meta SET value = max(value, ?) WHERE name = 'compact_revision'", (target,))
        conn.execute("DELETE FROM kv WHERE id IN (SELECT prev_revision FROM kv"
                     " WHERE id > ? AND id <= ? AND prev_revision > 0)", (done, upto))
        conn.execute("DELETE FROM kv WHERE id > ? AND id <= ? AND deleted = 1", (done, upto))
        conn.execute("UPDATE meta SET value = ? WHERE name = 'compact_done'", (upto,))
    return run


class _Writer(threading.Thread):
    """Owns the write connection; applies queued jobs in batches, one transaction (and one fsync) per batch."""

    _STOP = object()

    def __init__(self, path: str, synchronous: str, max_batch: int, loop: asyncio.AbstractEventLoop,
                 deliver: Callable[[list[tuple[asyncio.Future[Any], bool, Any]], list[Event], int], None]) -> None:
        super().__init__(name="kates-sqlite-writer", daemon=True)
        self._path = path
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._loop = loop
        self._deliver = deliver
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._opened: concurrent.futures.Future[tuple[int, int, int]] = concurrent.futures.Future()
        self.revision = 0
        self.transactions = 0        # committed batches, to see group commit at work

    def submit(self, job: Job, future: asyncio.Future[Any]) -> None:
        self._jobs.put((job, future))

    def stop(self) -> None:
        self._jobs.put(self._STOP)

    async def opened(self) -> tuple[int, int, int]:
        """(revision, compact_revision, compact_done) once the database is open and migrated."""
        return await asyncio.wrap_future(self._opened)

    def run(self) -> None:
        try:
            conn = self._open()
        except BaseException as exc:
            self._opened.set_exception(exc)
            return
        try:
            while (batch := self._take_batch()) is not None:
                self._run_batch(conn, batch)
        finally:
            conn.close()

    def _open(self) -> sqlite3.Connection:
        conn = _connect(self._path, synchronous=self._synchronous)
        conn.executescript(SCHEMA)
        self.revision = _revision(conn)
        self._opened.set_result((self.revision, _meta(conn, "compact_revision"), _meta(conn, "compact_done")))
        return conn

    def _take_batch(self) -> list[tuple[Job, asyncio.Future[Any]]] | None:
        """Block for one job, then take whatever else is already waiting. None once stopped and drained."""
        first = self._jobs.get()
        if first is self._STOP:
            return None
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is self._STOP:
                self._jobs.put(self._STOP)    # finish this batch, then stop
                break
            batch.append(item)
        return batch

    def _run_batch(self, conn: sqlite3.Connection, batch: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        txn = _Txn(conn, self.revision)
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, future in batch:
                try:
                    outcomes.append((future, True, job(txn)))
                except StoreError as exc:         # a failed precondition: nothing was written for this job
                    outcomes.append((future, False, exc))
            conn.execute("COMMIT")
        except BaseException as exc:              # the whole transaction is lost: fail every job in it
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._hand_back([(future, False, exc) for _, future in batch], [], self.revision)
            return
        self.revision = txn.revision
        self.transactions += 1
        self._hand_back(outcomes, txn.events, txn.revision)

    def _hand_back(self, outcomes: list[tuple[asyncio.Future[Any], bool, Any]], events: list[Event],
                   revision: int) -> None:
        with contextlib.suppress(RuntimeError):   # the loop is gone: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._deliver, outcomes, events, revision)


# -- the reader pool --------------------------------------------------------------------------------------------
class _Readers:
    """A few threads, each with its own read-only connection."""

    def __init__(self, path: str, threads: int) -> None:
        self._path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="kates-sqlite-reader")

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self._path, readonly=True)
            with self._lock:
                self._connections.append(conn)
        return conn

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn, args)

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return fn(self._connection(), *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for conn in self._connections:
            conn.close()
        self._connections.clear()


class _Snapshot:
    """A read transaction: every query inside sees the same committed state."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN")
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("COMMIT")


LIVE = "superseded = 0 AND deleted = 0 AND (expires_at IS NULL OR expires_at > ?)"
KEY_VALUE = "name, value, create_revision, id, expires_at"


def _read_get(conn: sqlite3.Connection, key: str) -> KeyValue | None:
    row = conn.execute(f"SELECT {KEY_VALUE} FROM kv WHERE name = ? AND {LIVE}", (key, time.time())).fetchone()
    return KeyValue(*row) if row else None


def _current_query(what: str, prefix: str, start: str, limit: int) -> tuple[str, list[Any]]:
    """The live rows under the prefix from `start`, by name: each name's latest row, not deleted nor expired."""
    where, params = _name_range(prefix, start)
    return f"SELECT {what} FROM kv WHERE {where} AND {LIVE} ORDER BY name{_limit(limit)}", [*params, time.time()]


def _past_query(what: str, prefix: str, start: str, revision: int, limit: int) -> tuple[str, list[Any]]:
    """Per name under the prefix, its latest row at or before `revision`, unless that row is a delete."""
    where, params = _name_range(prefix, start)
    sql = (f"SELECT {what} FROM kv WHERE {where} AND deleted = 0"
           f" AND id = (SELECT max(l.id) FROM kv AS l WHERE l.name = kv.name AND l.id <= ?)"
           f" ORDER BY name{_limit(limit)}")
    return sql, [*params, revision]


def _limit(limit: int) -> str:
    return f" LIMIT {int(limit)}" if limit else ""


def _read_list(conn: sqlite3.Connection, prefix: str, revision: int, start: str, limit: int
               ) -> tuple[int, list[KeyValue]]:
    with _Snapshot(conn):
        now_revision = _revision(conn)
        revision = _check_revision(conn, revision, now_revision)
        if revision == now_revision:
            sql, params = _current_query(KEY_VALUE, prefix, start, limit)
        else:
            sql, params = _past_query(KEY_VALUE, prefix, start, revision, limit)
        rows = conn.execute(sql, params).fetchall()
    return revision, [KeyValue(*r) for r in rows]


def _check_revision(conn: sqlite3.Connection, revision: int, now_revision: int) -> int:
    if revision > now_revision:
        raise FutureRevision(str(revision))
    if revision:
        compacted = _meta(conn, "compact_revision")
        if revision < compacted:
            raise Compacted(revision, compacted)
        return revision
    return now_revision


def _read_count(conn: sqlite3.Connection, prefix: str) -> int:
    sql, params = _current_query("count(*)", prefix, "", 0)
    return conn.execute(sql, params).fetchone()[0]


def _read_history(conn: sqlite3.Connection, prefix: str, after: int) -> list[Event]:
    """Up to REPLAY_CHUNK changes under `prefix` after `after`. Raises Compacted if they may be gone."""
    where, params = _name_range(prefix)
    with _Snapshot(conn):
        compacted = _meta(conn, "compact_revision")
        if after < compacted:
            raise Compacted(after, compacted)
        rows = conn.execute(f"SELECT {ROW} FROM kv WHERE id > ? AND {where} ORDER BY id LIMIT {REPLAY_CHUNK}",
                            [after, *params]).fetchall()
    return [_Row(*r).event() for r in rows]


def _read_expired(conn: sqlite3.Connection, now: float) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM kv WHERE superseded = 0 AND deleted = 0 AND expires_at IS NOT NULL AND expires_at <= ?"
        f" LIMIT {SWEEP_BATCH}", (now,)).fetchall()
    return [r[0] for r in rows]


# -- the store --------------------------------------------------------------------------------------------------
class SQLiteStore:
    """The Store protocol on one SQLite file. Construct cheaply; the database opens on first use."""

    def __init__(self, path: str, *, synchronous: str = "FULL", readers: int = 2, max_batch: int = 512,
                 ttl_sweep_interval: float = DEFAULT_TTL_SWEEP_INTERVAL,
                 compact_interval: float = DEFAULT_COMPACT_INTERVAL, compact_keep: int = DEFAULT_COMPACT_KEEP,
                 watch_buffer: int = DEFAULT_WATCH_BUFFER) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = path
        self._synchronous = synchronous.upper()
        self._reader_threads = readers
        self._max_batch = max_batch
        self._ttl_sweep_interval = ttl_sweep_interval
        self._compact_interval = compact_interval
        self._compact_keep = compact_keep
        self._hub = WatchHub(watch_buffer)
        self._opening: asyncio.Task[None] | None = None
        self._writer: _Writer | None = None
        self._readers: _Readers | None = None
        self._lock_file: int | None = None
        self._revision = 0
        self._compact_target = 0             # the compacted revision readers see
        self._compact_done = 0               # how far the compactor has deleted rows
        self._compacting = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the database (idempotent; every call does this implicitly)."""
        self._check_open()
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        if self._opening.done():
            self._opening.result()            # re-raise a failed open
        else:
            await asyncio.shield(self._opening)
            self._check_open()                # closed while it was opening

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    async def _open(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        await asyncio.to_thread(os.makedirs, directory, exist_ok=True)
        self._lock_file = await asyncio.to_thread(_lock, self.path + ".lock")
        writer = _Writer(self.path, self._synchronous, self._max_batch, asyncio.get_running_loop(), self._deliver)
        writer.start()
        try:
            self._revision, self._compact_target, self._compact_done = await writer.opened()
        except BaseException:
            _unlock(self._lock_file)
            self._lock_file = None
            raise
        self._writer = writer
        self._readers = _Readers(self.path, self._reader_threads)

    def start_background_tasks(self) -> None:
        """Start the TTL sweeper and the periodic compactor (keeps the last `compact_keep` revisions)."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._sweep_forever(), name="kates-store-ttl-sweeper"),
                           asyncio.create_task(self._compact_forever(), name="kates-store-compactor")]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._hub.close()
        if self._opening is not None:
            with contextlib.suppress(BaseException):
                await self._opening
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
        if self._readers is not None:
            await asyncio.to_thread(self._readers.close)
        if self._lock_file is not None:
            _unlock(self._lock_file)
            self._lock_file = None

    @property
    def transactions(self) -> int:
        """How many write transactions have committed since the store opened (group commit makes it < writes)."""
        return self._writer.transactions if self._writer is not None else 0

    # -- writes ----------------------------------------------------------------------------------------------
    async def _write(self, job: Job) -> Any:
        await self.start()
        assert self._writer is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writer.submit(job, future)
        return await future

    def _deliver(self, outcomes: list[tuple[asyncio.Future[Any], bool, Any]], events: list[Event],
                 revision: int) -> None:
        """On the loop, after a commit: advance the revision, publish to watchers, then answer the writers."""
        self._revision = max(self._revision, revision)
        self._hub.publish(events)
        for future, ok, result in outcomes:
            if future.done():
                continue
            if ok:
                future.set_result(result)
            else:
                future.set_exception(result)

    async def create(self, key: str, value: bytes, *, ttl: float | None = None) -> int:
        return await self._write(_create(key, value, ttl))

    async def update(self, key: str, value: bytes, revision: int, *, ttl: float | None = None) -> int:
        return await self._write(_update(key, value, revision, ttl))

    async def delete(self, key: str, revision: int | None = None) -> int:
        return await self._write(_delete(key, revision))

    # -- reads -----------------------------------------------------------------------------------------------
    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        await self.start()
        assert self._readers is not None
        return await self._readers.run(fn, *args)

    async def get(self, key: str) -> KeyValue | None:
        return await self._read(_read_get, key)

    async def list(self, prefix: str, *, revision: int = 0, start: str = "", limit: int = 0
                   ) -> tuple[int, list[KeyValue]]:
        return await self._read(_read_list, prefix, revision, start, limit)

    async def count(self, prefix: str) -> int:
        return await self._read(_read_count, prefix)

    async def current_revision(self) -> int:
        await self.start()
        return self._revision

    def watch(self, prefix: str, after: int) -> AsyncIterator[Event]:
        return follow(self._hub, prefix, after, self._replay)

    async def _replay(self, prefix: str, after: int) -> AsyncIterator[Event]:
        await self.start()
        while True:
            events = await self._read(_read_history, prefix, after)
            for event in events:
                yield event
            if len(events) < REPLAY_CHUNK:
                return
            after = events[-1].revision

    # -- maintenance -----------------------------------------------------------------------------------------
    async def compact(self, revision: int) -> None:
        """Forget history at and before `revision`, a few hundred revisions per transaction."""
        await self.start()
        async with self._compacting:
            target = max(min(revision, self._revision), self._compact_target)   # resume an interrupted one
            self._compact_target = target
            while self._compact_done < target:
                upto = min(self._compact_done + COMPACT_STEP, target)
                await self._write(_compact_step(target, self._compact_done, upto))
                self._compact_done = upto

    async def sweep_expired(self) -> int:
        """Delete keys whose TTL ran out (ordinary delete events); returns how many."""
        swept = 0
        while keys := await self._read(_read_expired, time.time()):
            n = await self._write(_expire(keys))
            swept += n
            if n == 0 or len(keys) < SWEEP_BATCH:
                break
        return swept

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_sweep_interval)
            with _logged("sweeping expired keys"):
                await self.sweep_expired()

    async def _compact_forever(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            with _logged("compacting"):
                await self.compact(self._revision - self._compact_keep)


@contextlib.contextmanager
def _logged(doing: str) -> Iterator[None]:
    """Keep a background task alive across a failed round, and say why it failed."""
    try:
        yield
    except Exception:
        log.exception("store: %s failed", doing)


def _lock(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(f"{path} is locked: another process has this database open") from None
    return fd


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
