"""Recording Events about objects, fire-and-forget, as client-go's EventRecorder.

An event never fails or slows the sync that records it: events go on a queue drained by one task, repeats of
the same (object, reason, message) bump `count` and `lastTimestamp` of the existing Event instead of creating
a new one, and errors are only logged.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from typing import Any

from ..api import errors

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventRecorder:
    def __init__(self, client: Any, component: str, host: str = "", max_queued: int = 10_000) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.max_queued = max_queued   # events waiting to be written beyond this are dropped (client-go does too)
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}   # → (event name, count)

    def event(self, obj: dict[str, Any], type: str, reason: str, message: str) -> None:
        """Record `reason` (UpperCamelCase) about `obj`; type is "Normal" or "Warning"."""
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self.max_queued)
            self._task = asyncio.create_task(self._drain(), name=f"events-{self.component}")
        try:
            self._queue.put_nowait((obj, type, reason, message))
        except asyncio.QueueFull:
            log.debug("event queue full; dropping %s %s", reason, message)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _drain(self) -> None:
        from .rest import resource
        events = resource("events")
        assert self._queue is not None
        while True:
            obj, type_, reason, message = await self._queue.get()
            try:
                await self._write(events, obj, type_, reason, message)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("could not record event %s: %s", reason, e)

    async def _write(self, events: Any, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        involved = {"kind": obj.get("kind", ""), "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                    "uid": meta.get("uid", ""), "apiVersion": obj.get("apiVersion", ""),
                    "resourceVersion": meta.get("resourceVersion", "")}
        if not meta.get("namespace"):
            involved.pop("namespace")
        key = (meta.get("uid", ""), reason, message, type_)
        now = _now()
        seen = self._seen.get(key)
        if seen is not None:
            name, count = seen
            try:
                await self.client.patch(events, name, {"count": count + 1, "lastTimestamp": now}, namespace)
                self._seen[key] = (name, count + 1)
                return
            except errors.NotFound:
                pass
        name = f"{meta.get('name', 'unknown')}.{uuid.uuid4().hex[:16]}"
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved, "reason": reason, "message": message[:1024], "type": type_,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "eventTime": None, "reportingComponent": self.component,
                "reportingInstance": self.host or self.component}
        await self.client.create(events, body, namespace)
        if len(self._seen) > 4096:
            self._seen.clear()
        self._seen[key] = (name, 1)
