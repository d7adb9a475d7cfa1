"""Store benchmark: creates/s and latency with concurrent writers, gets/s, and listing 10,000 keys.

Why it exists: the SQLite driver promises group commit (>= 1,000 creates/s with 32 writers on 2 cores) and fast
prefix lists; this measures both drivers the same way so regressions show up as numbers.

    .venv/bin/python bench/bench_store.py [--keys 10000] [--writers 32] [--drivers memory,sqlite]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time

from kates.store import MemoryStore, SQLiteStore

VALUE = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"default"},"data":{"k":"' \
        + b"v" * 300 + b'"}}'
PREFIX = "/registry/core/configmaps/"


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def bench_creates(store: MemoryStore | SQLiteStore, keys: int, writers: int) -> list[str]:
    latencies: list[float] = []
    names = [f"{PREFIX}default/cm-{i:06d}" for i in range(keys)]

    async def writer(w: int) -> None:
        for name in names[w::writers]:
            t0 = time.perf_counter()
            await store.create(name, VALUE)
            latencies.append(time.perf_counter() - t0)

    transactions = getattr(store, "transactions", 0)
    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - t0
    print(f"  creates: {keys / elapsed:8.0f}/s with {writers} writers; latency p50 "
          f"{statistics.median(latencies) * 1e3:.2f} ms, p99 {percentile(latencies, 99) * 1e3:.2f} ms")
    if isinstance(store, SQLiteStore):
        print(f"  group commit: {keys / (store.transactions - transactions):.1f} creates per transaction")
    return names


async def bench_updates(store: MemoryStore | SQLiteStore, names: list[str], writers: int) -> None:
    sample = names[: len(names) // 2]

    async def writer(w: int) -> None:
        for name in sample[w::writers]:
            kv = await store.get(name)
            assert kv is not None
            await store.update(name, VALUE + b" ", kv.mod_revision)

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - t0
    print(f"  get+update (CAS): {len(sample) / elapsed:8.0f}/s with {writers} writers")


async def bench_gets(store: MemoryStore | SQLiteStore, names: list[str], readers: int) -> None:
    picks = random.Random(1).choices(names, k=len(names))

    async def reader(r: int) -> None:
        for name in picks[r::readers]:
            assert await store.get(name) is not None

    t0 = time.perf_counter()
    await asyncio.gather(*(reader(r) for r in range(readers)))
    concurrent = len(picks) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for name in picks[:2000]:
        await store.get(name)
    serial = 2000 / (time.perf_counter() - t0)
    print(f"  gets: {concurrent:8.0f}/s with {readers} readers, {serial:.0f}/s one at a time")


async def bench_lists(store: MemoryStore | SQLiteStore, keys: int, past_revision: int) -> None:
    def timed(runs: list[float]) -> str:
        return f"median {statistics.median(runs) * 1e3:.1f} ms, max {max(runs) * 1e3:.1f} ms"

    now_runs, past_runs = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        _, items = await store.list(PREFIX)
        now_runs.append(time.perf_counter() - t0)
        assert len(items) == keys, len(items)
        t0 = time.perf_counter()
        _, items = await store.list(PREFIX, revision=past_revision)
        past_runs.append(time.perf_counter() - t0)
    print(f"  list {keys} keys: {timed(now_runs)}; at a past revision: {timed(past_runs)}")
    t0 = time.perf_counter()
    revision, start, pages = 0, "", 0
    while True:
        revision, items = await store.list(PREFIX, revision=revision, start=start, limit=500)
        pages += 1
        if len(items) < 500:
            break
        start = items[-1].key + "\x00"
    print(f"  paginated list (limit 500, {pages} pages at one revision): {(time.perf_counter() - t0) * 1e3:.1f} ms")
    t0 = time.perf_counter()
    n = await store.count(PREFIX)
    print(f"  count {n} keys: {(time.perf_counter() - t0) * 1e3:.1f} ms")


async def run(driver: str, keys: int, writers: int, directory: str) -> None:
    if driver == "memory":
        store: MemoryStore | SQLiteStore = MemoryStore()
    else:
        synchronous = driver.partition(":")[2] or "FULL"
        store = SQLiteStore(os.path.join(directory, f"bench-{synchronous}.db"), synchronous=synchronous)
    print(f"{driver}:")
    await store.start()
    names = await bench_creates(store, keys, writers)
    past = await store.current_revision()
    await bench_updates(store, names, writers)
    await bench_gets(store, names, writers)
    await bench_lists(store, keys, past)
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--drivers", default="memory,sqlite,sqlite:NORMAL",
                        help="comma-separated: memory, sqlite (synchronous=FULL), sqlite:NORMAL")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {args.keys} keys, {args.writers} concurrent writers, "
          f"{len(VALUE)}-byte values")
    with tempfile.TemporaryDirectory(prefix="kates-bench-") as directory:
        for driver in args.drivers.split(","):
            asyncio.run(run(driver, args.keys, args.writers, directory))


if __name__ == "__main__":
    main()
