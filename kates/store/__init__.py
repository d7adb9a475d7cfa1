"""The store: where the API server keeps every object, behind one etcd-like interface with several drivers.

`open_store(url)` picks the driver by URL scheme:

- ``memory://`` - `MemoryStore`, nothing kept across restarts (tests, hollow clusters);
- ``sqlite:///abs/path/state.db`` or ``sqlite://relative/state.db`` - `SQLiteStore`, durable.

Constructing a store is cheap and does no I/O: the database opens on the first call. Callers that want open
errors up front `await store.start()`; the API server calls `store.start_background_tasks()` (TTL sweeper,
periodic compaction) once its loop runs, and `await store.close()` at shutdown.
"""
from __future__ import annotations

from .interface import (Compacted, Event, FutureRevision, KeyExists, KeyNotFound, KeyValue, RevisionMismatch,
                        Store, StoreError)
from .memory import MemoryStore
from .sqlite import SQLiteStore

SUPPORTED_SCHEMES = ("memory://", "sqlite://")

__all__ = ["Compacted", "Event", "FutureRevision", "KeyExists", "KeyNotFound", "KeyValue", "MemoryStore",
           "RevisionMismatch", "SQLiteStore", "Store", "StoreError", "open_store"]


def open_store(url: str) -> MemoryStore | SQLiteStore:
    """The (unopened) store a URL names. Raises ValueError for an unknown or unsupported scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"store URL {url!r} has no scheme; supported: {', '.join(SUPPORTED_SCHEMES)}")
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        return SQLiteStore(_sqlite_path(url, rest))
    if scheme in ("etcd", "etcds"):
        raise ValueError(f"the etcd store driver is not implemented yet ({url!r}); "
                         f"supported: {', '.join(SUPPORTED_SCHEMES)}")
    raise ValueError(f"unknown store scheme {scheme + '://'!r}; supported: {', '.join(SUPPORTED_SCHEMES)}")


def _sqlite_path(url: str, rest: str) -> str:
    path = rest.split("?", 1)[0]
    if not path or path == "/":
        raise ValueError(f"store URL {url!r} names no database file")
    if path == ":memory:":
        raise ValueError("an in-memory SQLite database cannot be shared by the store's threads; use memory://")
    return path
