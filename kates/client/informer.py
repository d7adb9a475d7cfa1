"""Informers: a local, indexed copy of one resource kept current by list + watch.

Like client-go's Reflector + Indexer + SharedInformer in one class: it lists, then watches from the list's
resourceVersion; after a 410 or a broken watch it relists and turns the difference into update/delete
notifications, so handlers never miss a deletion. Handlers must be quick: they enqueue keys, nothing more.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable

from ..api import errors
from ..api.resources import ResourceType
from .rest import Client, object_key

log = logging.getLogger(__name__)

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], list[str]]


def namespace_index(obj: Obj) -> list[str]:
    return [obj["metadata"].get("namespace", "")]


def owner_uid_index(obj: Obj) -> list[str]:
    return [ref["uid"] for ref in obj["metadata"].get("ownerReferences") or []]


def controller_ref(obj: Obj) -> dict[str, Any] | None:
    """The ownerReference with controller: true, if any."""
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


class Indexer:
    """Objects by key, plus named secondary indexes (namespace, owner uid, node name...)."""

    def __init__(self) -> None:
        self.items: dict[str, Obj] = {}
        self._funcs: dict[str, IndexFunc] = {"namespace": namespace_index}
        self._indexes: dict[str, dict[str, set[str]]] = {"namespace": {}}

    def add_index(self, name: str, func: IndexFunc) -> None:
        self._funcs[name] = func
        index: dict[str, set[str]] = {}
        for key, obj in self.items.items():
            for value in func(obj):
                index.setdefault(value, set()).add(key)
        self._indexes[name] = index

    def get(self, key: str) -> Obj | None:
        return self.items.get(key)

    def list(self) -> list[Obj]:
        return list(self.items.values())

    def keys(self) -> list[str]:
        return list(self.items)

    def by_index(self, name: str, value: str) -> list[Obj]:
        return [self.items[k] for k in self._indexes[name].get(value, ())]

    def in_namespace(self, namespace: str) -> list[Obj]:
        return self.by_index("namespace", namespace)

    def put(self, key: str, obj: Obj) -> Obj | None:
        old = self.items.get(key)
        if old is not None:
            self._unindex(key, old)
        self.items[key] = obj
        for name, func in self._funcs.items():
            for value in func(obj):
                self._indexes[name].setdefault(value, set()).add(key)
        return old

    def remove(self, key: str) -> Obj | None:
        old = self.items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, func in self._funcs.items():
            for value in func(obj):
                keys = self._indexes[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._indexes[name][value]


class Handler:
    def __init__(self, on_add: Callable[[Obj], None] | None = None,
                 on_update: Callable[[Obj, Obj], None] | None = None,
                 on_delete: Callable[[Obj], None] | None = None) -> None:
        self.on_add = on_add
        self.on_update = on_update
        self.on_delete = on_delete


class Informer:
    def __init__(self, client: Client, rt: ResourceType, namespace: str | None = None, *,
                 label_selector: str = "", field_selector: str = "", resync_seconds: float = 0) -> None:
        self.client = client
        self.rt = rt
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_seconds = resync_seconds
        self.store = Indexer()
        self.handlers: list[Handler] = []
        self.resource_version = ""
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add_handler(self, on_add: Callable[[Obj], None] | None = None,
                    on_update: Callable[[Obj, Obj], None] | None = None,
                    on_delete: Callable[[Obj], None] | None = None) -> None:
        h = Handler(on_add, on_update, on_delete)
        self.handlers.append(h)
        for obj in self.store.list():   # late handlers see what is already cached
            if h.on_add:
                h.on_add(obj)

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"informer-{self.rt.qualified}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # -- the reflector loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                if not self.resource_version:
                    await self._relist()
                await self._watch()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except errors.Expired:
                self.resource_version = ""
            except errors.Gone:
                self.resource_version = ""
            except Exception as e:   # an API server restart or a network blip: back off and resume
                log.debug("informer %s: %s; retrying in %.1fs", self.rt.qualified, e, backoff)
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 10.0)

    async def _relist(self) -> None:
        items: list[Obj] = []
        token = ""
        while True:
            page = await self.client.list(self.rt, self.namespace, label_selector=self.label_selector,
                                          field_selector=self.field_selector, limit=500, continue_token=token)
            kind = self.rt.kind
            for obj in page["items"]:
                obj.setdefault("kind", kind)
                obj.setdefault("apiVersion", self.rt.api_version)
                items.append(obj)
            token = page["metadata"].get("continue", "")
            if not token:
                break
        self.resource_version = page["metadata"]["resourceVersion"]
        seen = set()
        for obj in items:
            key = object_key(obj)
            seen.add(key)
            self._apply("ADDED", key, obj)
        for key in [k for k in self.store.keys() if k not in seen]:
            old = self.store.remove(key)
            if old is not None:
                self._notify_delete(old)
        self._synced.set()

    async def _watch(self) -> None:
        timeout = random.randint(240, 360)
        async for ev_type, obj in self.client.watch(self.rt, self.namespace, resource_version=self.resource_version,
                                                    label_selector=self.label_selector,
                                                    field_selector=self.field_selector, timeout_seconds=timeout):
            rv = obj.get("metadata", {}).get("resourceVersion")
            if ev_type == "BOOKMARK":
                if rv:
                    self.resource_version = rv
                continue
            self._apply(ev_type, object_key(obj), obj)
            if rv:
                self.resource_version = rv

    def _apply(self, ev_type: str, key: str, obj: Obj) -> None:
        if ev_type == "DELETED":
            old = self.store.remove(key)
            self._notify_delete(old or obj)
            return
        old = self.store.put(key, obj)
        for h in self.handlers:
            try:
                if old is None:
                    if h.on_add:
                        h.on_add(obj)
                elif h.on_update:
                    h.on_update(old, obj)
            except Exception:
                log.exception("informer %s handler failed", self.rt.qualified)

    def _notify_delete(self, obj: Obj) -> None:
        for h in self.handlers:
            if h.on_delete:
                try:
                    h.on_delete(obj)
                except Exception:
                    log.exception("informer %s delete handler failed", self.rt.qualified)


class InformerFactory:
    """One informer per resource, shared by every controller in a process (client-go's SharedInformerFactory)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.informers: dict[str, Informer] = {}

    def informer(self, rt: ResourceType) -> Informer:
        inf = self.informers.get(rt.qualified)
        if inf is None:
            inf = self.informers[rt.qualified] = Informer(self.client, rt)
        return inf

    def start(self) -> None:
        for inf in self.informers.values():
            inf.start()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(inf.wait_synced(timeout) for inf in self.informers.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(inf.stop() for inf in self.informers.values()))
