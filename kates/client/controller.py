"""The controller loop every kates controller shares: workers take keys from a queue and call `sync(key)`.

A controller subclass sets `name`, registers informer handlers that only enqueue keys, and implements
`sync(key)`, which reads listers, compares desired with observed state, and acts. It is level-triggered and
idempotent: which event woke it never matters. Errors requeue the key with back-off up to `max_retries`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any, Callable

from ..api import errors
from .events import EventRecorder
from .informer import InformerFactory
from .rest import Client, object_key
from .workqueue import WorkQueue

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ControllerOptions:
    """Settings shared by the controllers of one controller manager (its command-line flags)."""

    node_monitor_grace_period: float = 15.0     # a node whose Lease is older than this is NotReady
    terminated_pod_gc_threshold: int = 12500    # terminated pods kept before the pod GC deletes the oldest
    clock: Callable[[], float] = time.time      # injectable, so tests control time (CronJobs, TTLs, leases)


class Controller:
    name = "controller"
    workers = 2
    max_retries = 15

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        self.client = client
        self.informers = informers
        self.options = options or ControllerOptions()
        self.queue = WorkQueue(self.name)
        self.recorder = EventRecorder(client, self.name)
        self._tasks: list[asyncio.Task[None]] = []

    def enqueue(self, obj: dict[str, Any]) -> None:
        self.queue.add(object_key(obj))

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        """Start the workers and wait until cancelled; the caller starts and syncs the informers first."""
        self._tasks = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
                       for i in range(self.workers)]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            self.queue.shutdown()
            for t in self._tasks:
                t.cancel()
            await self.recorder.close()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            if key is None:
                return
            try:
                await self.sync(key)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except errors.Conflict:
                # someone wrote the object since our cache saw it: retry soon with fresher state
                self.queue.add_rate_limited(key)
            except Exception as e:
                if self.queue.retries(key) < self.max_retries:
                    level = logging.DEBUG if isinstance(e, errors.APIError) else logging.WARNING
                    log.log(level, "%s: sync %s failed: %s", self.name, key, e, exc_info=level == logging.WARNING)
                    self.queue.add_rate_limited(key)
                else:
                    log.warning("%s: dropping %s after %d retries: %s", self.name, key, self.max_retries, e)
                    self.queue.forget(key)
            finally:
                self.queue.done(key)
