"""CustomResourceDefinitions: each one becomes served resource types, and its status says so.

Like apiextensions-apiserver, the API server itself follows CRDs: when one is written it checks the names,
registers a `ResourceType` per served version (with its structural schema and printer columns), and sets the
`NamesAccepted` and `Established` conditions kubectl waits for.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..api import errors
from ..api.resources import ResourceType, Subresource, ALL_VERBS, storage_prefix
from .catalog import Catalog, CustomInfo
from .registry import Registry, now_rfc3339

log = logging.getLogger(__name__)


def resource_types(crd: dict[str, Any]) -> list[tuple[ResourceType, CustomInfo]]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs: list[Subresource] = []
        declared = v.get("subresources") or {}
        if "status" in declared:
            subs.append(Subresource("status", names["kind"], spec["group"], v["name"]))
        if "scale" in declared:
            subs.append(Subresource("scale", "Scale", "autoscaling", "v1"))
        rt = ResourceType(spec["group"], v["name"], names["plural"], names["kind"],
                          spec.get("scope", "Namespaced") == "Namespaced",
                          tuple(names.get("shortNames") or ()), tuple(names.get("categories") or ()),
                          ALL_VERBS, tuple(subs), None)
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        out.append((rt, CustomInfo(schema, list(v.get("additionalPrinterColumns") or []), bool(v.get("storage")),
                                   crd["metadata"]["name"])))
    return out


class CRDController:
    """Keeps the catalog in step with the stored CRDs and marks them Established."""

    def __init__(self, registry: Registry, catalog: Catalog) -> None:
        self.registry = registry
        self.catalog = catalog
        self.crd_rt = catalog.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        self._task: asyncio.Task[None] | None = None

    def load_all(self) -> None:
        assert self.crd_rt is not None
        cache = self.registry.cache.cache(storage_prefix(self.crd_rt))
        for crd in list(cache.objects.values()):
            self._register(crd)

    def _register(self, crd: dict[str, Any]) -> None:
        try:
            self.catalog.set_custom(crd["metadata"]["name"], resource_types(crd))
        except (KeyError, TypeError):
            log.warning("CRD %s is malformed; not served", crd.get("metadata", {}).get("name"))

    async def start(self) -> None:
        assert self.crd_rt is not None
        self.load_all()
        cache = self.registry.cache.cache(storage_prefix(self.crd_rt))
        watcher = cache.watch(None, None, None, None, initial=True)
        self._task = asyncio.create_task(self._follow(watcher), name="crd-controller")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _follow(self, watcher: Any) -> None:
        async for ev in watcher.events():
            name = ev.obj["metadata"]["name"]
            if ev.type == "DELETED":
                self.catalog.set_custom(name, [])
                continue
            self._register(ev.obj)
            if ev.obj["metadata"].get("deletionTimestamp"):
                await self._finish_deletion(ev.obj)
                continue
            if not _established(ev.obj):
                try:
                    await self._establish(name)
                except errors.APIError as e:
                    log.warning("could not establish CRD %s: %s", name, e.message)

    async def _establish(self, name: str) -> None:
        assert self.crd_rt is not None
        stamp = now_rfc3339(self.registry.clock)

        def mutate(crd: dict[str, Any]) -> dict[str, Any]:
            status = crd.setdefault("status", {})
            conditions = [c for c in status.get("conditions") or [] if c.get("type") not in
                          ("NamesAccepted", "Established")]
            conditions += [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": stamp},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": stamp}]
            status["conditions"] = conditions
            status["acceptedNames"] = crd["spec"]["names"]
            status["storedVersions"] = [v["name"] for v in crd["spec"].get("versions") or [] if v.get("storage")]
            return crd
        await self.registry.update(self.crd_rt, None, name, mutate, subresource="status",
                                   manager="kates-apiextensions")

    async def _finish_deletion(self, crd: dict[str, Any]) -> None:
        """Delete every custom resource of a deleted CRD, then let the CRD go."""
        assert self.crd_rt is not None
        for rt, _ in resource_types(crd):
            cache = self.registry.cache.cache(storage_prefix(rt))
            for key, obj in list(cache.objects.items()):
                meta = obj["metadata"]
                try:
                    await self.registry.store.delete(key)
                except Exception:
                    log.debug("custom resource %s already gone", meta.get("name"))

        def drop(c: dict[str, Any]) -> dict[str, Any]:
            c["metadata"]["finalizers"] = [f for f in c["metadata"].get("finalizers") or []
                                           if f != "customresourcecleanup.apiextensions.k8s.io"]
            return c
        try:
            await self.registry.update(self.crd_rt, None, crd["metadata"]["name"], drop,
                                       manager="kates-apiextensions")
        except errors.NotFound:
            pass


def _established(crd: dict[str, Any]) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])
