"""The store interface: a key-value log with etcd semantics, under which every driver sits.

There is one global revision that every write bumps; each key remembers the revision that created it and the
revision of its last change. Writes are compare-and-swap on that revision. Reads can be at a past revision until
it is compacted, and a watch replays every change after a given revision, then follows live. The API server
uses the revision as `resourceVersion`.
"""
from __future__ import annotations

import dataclasses
from typing import AsyncIterator, Literal, Protocol


class StoreError(Exception):
    pass


class KeyExists(StoreError):
    pass


class KeyNotFound(StoreError):
    pass


class RevisionMismatch(StoreError):
    """A compare-and-swap failed: the key changed since the revision the caller read."""

    def __init__(self, key: str, current: "KeyValue | None") -> None:
        super().__init__(f"revision mismatch on {key}")
        self.current = current


class Compacted(StoreError):
    """The revision asked for is older than the oldest one kept."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(f"revision {requested} is compacted (oldest kept: {compact_revision})")
        self.requested = requested
        self.compact_revision = compact_revision


class FutureRevision(StoreError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    expires_at: float | None = None   # wall-clock seconds, for keys written with a TTL


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One change. For `delete`, `value` is the last value the key had and `revision` is the delete's."""

    type: Literal["create", "update", "delete"]
    key: str
    value: bytes
    revision: int
    create_revision: int
    prev_value: bytes | None = None


class Store(Protocol):
    async def start(self) -> None:
        """Open now (constructors do no I/O), so open errors surface at start-up."""

    def start_background_tasks(self) -> None:
        """Start the TTL sweeper and periodic compaction; `close()` stops them."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def create(self, key: str, value: bytes, *, ttl: float | None = None) -> int:
        """Write a new key; returns the new revision. Raises KeyExists."""

    async def update(self, key: str, value: bytes, revision: int, *, ttl: float | None = None) -> int:
        """Replace the value if the key's mod_revision is `revision`. Raises KeyNotFound, RevisionMismatch."""

    async def delete(self, key: str, revision: int | None = None) -> int:
        """Delete (if at `revision` when given); returns the delete's revision. Raises KeyNotFound, RevisionMismatch."""

    async def list(self, prefix: str, *, revision: int = 0, start: str = "", limit: int = 0
                   ) -> tuple[int, list[KeyValue]]:
        """Keys under `prefix`, sorted, from `start` (inclusive), at `revision` (0 = now).

        Returns (the revision read at, the key-values). Raises Compacted, FutureRevision."""

    async def count(self, prefix: str) -> int: ...

    def watch(self, prefix: str, after: int) -> AsyncIterator[Event]:
        """Every change under `prefix` with revision > `after`, in order, then live ones. Raises Compacted."""

    async def current_revision(self) -> int: ...

    async def compact(self, revision: int) -> None:
        """Forget history at and before `revision` (current values are kept)."""

    async def close(self) -> None: ...
