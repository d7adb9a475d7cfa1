"""A writer for the kill -9 durability test: creates and updates keys forever from several concurrent tasks and
prints `<revision> <key> <value>` to stdout only after the store acknowledged the write."""
from __future__ import annotations

import asyncio
import sys

from kates.store import SQLiteStore


async def writer(store: SQLiteStore, w: int) -> None:
    i = 0
    while True:
        key = f"/registry/core/configmaps/w{w}/cm-{i:06d}"
        value = f"created-{w}-{i}"
        rev = await store.create(key, value.encode())
        print(rev, key, value, flush=True)
        value = f"updated-{w}-{i}"
        rev = await store.update(key, value.encode(), rev)
        print(rev, key, value, flush=True)
        i += 1


async def main(path: str) -> None:
    store = SQLiteStore(path)
    await store.start()
    print("ready", flush=True)
    await asyncio.gather(*(writer(store, w) for w in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
