"""The namespace controller: empties a namespace being deleted, then lets the API server remove it.

Deleting a Namespace only marks it (deletionTimestamp, status.phase Terminating); its `spec.finalizers` keeps
"kubernetes" until this controller (pkg/controller/namespace/deletion/namespaced_resources_deleter.go) has
deleted every namespaced object in it, of every resource the server serves (found by discovery, so custom
resources too). While content remains (pods terminating through their kubelet, objects with finalizers) it
reports why in the namespace's status conditions and looks again shortly; once nothing remains it removes
"kubernetes" through the `finalize` subresource and the API server deletes the namespace.

No new object can be created in a terminating namespace (the API server refuses), so a resource found empty
once stays empty: later passes skip it, and one full pass confirms the namespace is empty before finalizing.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
from typing import Any

from ..api import errors
from ..api.resources import ResourceType
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory
from ..client.rest import Client, resource
from .garbagecollector import METADATA_LIST_ACCEPT, get_as

log = logging.getLogger(__name__)

Obj = dict[str, Any]

FINALIZER = "kubernetes"
DISCOVERY_ACCEPT = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
NAMESPACES = resource("namespaces")

# condition type → (reason, message) when all is well, in the order Kubernetes lists them
OK_CONDITIONS: dict[str, tuple[str, str]] = {
    "NamespaceDeletionDiscoveryFailure": ("ResourcesDiscovered", "All resources successfully discovered"),
    "NamespaceDeletionGroupVersionParsingFailure": ("ParsedGroupVersions",
                                                    "All legacy kube types successfully parsed"),
    "NamespaceDeletionContentFailure": ("ContentDeleted",
                                        "All content successfully deleted, may be waiting on finalization"),
    "NamespaceContentRemaining": ("ContentRemoved", "All content successfully removed"),
    "NamespaceFinalizersRemaining": ("ContentRemoved", "All content successfully removed"),
}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def discover_namespaced_resources(client: Client) -> list[ResourceType]:
    """Every namespaced resource the server serves (preferred version of each group) that can be deleted."""
    found: list[ResourceType] = []
    for root in ("/api", "/apis"):
        doc = await get_as(client, root, DISCOVERY_ACCEPT)
        for group in doc.get("items") or []:
            name = (group.get("metadata") or {}).get("name") or ""
            versions = group.get("versions") or []
            if not versions:
                continue
            preferred = versions[0]
            for r in preferred.get("resources") or []:
                verbs = tuple(r.get("verbs") or ())
                if r.get("scope") != "Namespaced" or "list" not in verbs:
                    continue
                if "delete" not in verbs and "deletecollection" not in verbs:
                    continue
                kind = (r.get("responseKind") or {}).get("kind", "")
                found.append(ResourceType(name, preferred["version"], r["resource"], kind, True, verbs=verbs))
    return found


@dataclasses.dataclass
class ContentTotals:
    """What one pass over a namespace's content found."""

    remaining: dict[str, int] = dataclasses.field(default_factory=dict)      # resource → objects left
    finalizers: dict[str, int] = dataclasses.field(default_factory=dict)     # finalizer → objects holding it
    failures: list[str] = dataclasses.field(default_factory=list)
    emptied: set[str] = dataclasses.field(default_factory=set)               # resources found empty
    estimate: float = 0.0     # seconds until terminating pods should be gone

    @property
    def done(self) -> bool:
        return not self.remaining and not self.failures


def content_conditions(totals: ContentTotals, discovery_error: str | None = None) -> list[dict[str, Any]]:
    """The namespace deletion conditions for one pass: the failing ones True with why, the others False."""
    bad: dict[str, tuple[str, str]] = {}
    if discovery_error:
        bad["NamespaceDeletionDiscoveryFailure"] = ("DiscoveryFailed", discovery_error)
    if totals.failures:
        bad["NamespaceDeletionContentFailure"] = (
            "ContentDeletionFailed",
            f"Failed to delete all resource types, {len(totals.failures)} remaining: "
            + ", ".join(sorted(totals.failures)))
    if totals.remaining:
        bad["NamespaceContentRemaining"] = (
            "SomeResourcesRemain", "Some resources are remaining: " + ", ".join(
                sorted(f"{r} has {n} resource instances" for r, n in totals.remaining.items())))
    if totals.finalizers:
        bad["NamespaceFinalizersRemaining"] = (
            "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: " + ", ".join(
                sorted(f"{f} in {n} resource instances" for f, n in totals.finalizers.items())))
    out = []
    for ctype, ok in OK_CONDITIONS.items():
        status, (reason, message) = ("True", bad[ctype]) if ctype in bad else ("False", ok)
        out.append({"type": ctype, "status": status, "reason": reason, "message": message})
    return out


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    """`new` over `old`, keeping lastTransitionTime where the status did not change."""
    by_type = {c.get("type"): c for c in old}
    merged = [c for c in old if c.get("type") not in {n["type"] for n in new}]
    for cond in new:
        prev = by_type.get(cond["type"])
        stamp = prev.get("lastTransitionTime") if prev and prev.get("status") == cond["status"] else now
        merged.append({**cond, "lastTransitionTime": stamp or now})
    return merged


def _same_conditions(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    strip = lambda cs: sorted((c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in cs)
    return strip(a) == strip(b)


class NamespaceController(Controller):
    name = "namespace"
    workers = 4
    initial_delay = 0.1    # first look again after this many seconds while content remains; doubles
    max_delay = 5.0

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.namespaces = informers.informer(NAMESPACES)
        self.namespaces.add_handler(on_add=self._namespace_changed,
                                    on_update=lambda old, new: self._namespace_changed(new),
                                    on_delete=self._namespace_gone)
        self._passes: dict[str, int] = {}          # namespace uid → passes made while content remained
        self._emptied: dict[str, set[str]] = {}    # namespace uid → resources found empty

    def _namespace_changed(self, ns: Obj) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.enqueue(ns)

    def _namespace_gone(self, ns: Obj) -> None:
        uid = ns["metadata"].get("uid", "")
        self._passes.pop(uid, None)
        self._emptied.pop(uid, None)

    async def sync(self, key: str) -> None:
        cached = self.namespaces.store.get(key)
        if cached is None or not cached["metadata"].get("deletionTimestamp"):
            return
        try:
            ns = await self.client.get(NAMESPACES, key)
        except errors.NotFound:
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return   # our part is done; other finalizers hold it
        uid = ns["metadata"]["uid"]
        try:
            resources = await discover_namespaced_resources(self.client)
        except errors.APIError as e:
            await self.update_conditions(ns, content_conditions(ContentTotals(), f"Discovery failed: {e}"))
            raise
        skipped = self._emptied.get(uid, set())
        totals = await self.delete_all_content(key, resources, skipped)
        if totals.done and skipped:
            totals = await self.delete_all_content(key, resources, set())   # confirm with nothing skipped
        self._emptied[uid] = totals.emptied
        await self.update_conditions(ns, content_conditions(totals))
        if not totals.done:
            passes = self._passes.get(uid, 0)
            self._passes[uid] = passes + 1
            delay = min(self.initial_delay * 2 ** passes, self.max_delay)
            if totals.estimate:
                delay = min(delay, totals.estimate)
            self.queue.add_after(key, delay)
            return
        await self.finalize(ns)

    # -- deleting content --------------------------------------------------------------------------------------
    async def delete_all_content(self, namespace: str, resources: list[ResourceType],
                                 emptied: set[str]) -> ContentTotals:
        totals = ContentTotals(emptied=set(emptied))
        for rt in resources:
            if rt.qualified in emptied:
                continue
            try:
                await self.delete_resource(namespace, rt, totals)
            except errors.APIError as e:
                totals.failures.append(f"{rt.qualified}: {e}")
        return totals

    async def _list_metadata(self, namespace: str, rt: ResourceType) -> list[Obj]:
        page = await get_as(self.client, self.client.path(rt, namespace), METADATA_LIST_ACCEPT)
        return page.get("items") or []

    async def delete_resource(self, namespace: str, rt: ResourceType, totals: ContentTotals) -> None:
        """Delete one resource's objects in the namespace, and count what is left (and which finalizers hold it)."""
        items = await self._list_metadata(namespace, rt)
        if not items:
            totals.emptied.add(rt.qualified)
            return
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if "deletecollection" in rt.verbs:
            await self.client.request("DELETE", self.client.path(rt, namespace), body=options)
        else:
            for obj in items:
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await self.client.delete(rt, obj["metadata"]["name"], namespace, propagation_policy="Background")
                except errors.NotFound:
                    pass
        left = await self._list_metadata(namespace, rt)
        if not left:
            totals.emptied.add(rt.qualified)
            return
        totals.remaining[rt.qualified] = len(left)
        for obj in left:
            meta = obj["metadata"]
            for f in meta.get("finalizers") or []:
                totals.finalizers[f] = totals.finalizers.get(f, 0) + 1
            grace = meta.get("deletionGracePeriodSeconds")
            if rt.group == "" and rt.resource == "pods" and grace:
                totals.estimate = max(totals.estimate, float(grace))

    # -- status and finalization -------------------------------------------------------------------------------
    async def update_conditions(self, ns: Obj, conditions: list[dict[str, Any]]) -> None:
        old = (ns.get("status") or {}).get("conditions") or []
        if _same_conditions(old, merge_conditions(old, conditions, "")):
            return
        updated = copy.deepcopy(ns)
        updated.setdefault("status", {})["conditions"] = merge_conditions(old, conditions, _now())
        try:
            fresh = await self.client.update_status(NAMESPACES, updated)
        except errors.NotFound:
            return
        ns["metadata"]["resourceVersion"] = fresh["metadata"]["resourceVersion"]
        ns["status"] = fresh.get("status")

    async def finalize(self, ns: Obj) -> None:
        """Remove our finalizer through the finalize subresource; the API server then deletes the namespace."""
        body = copy.deepcopy(ns)
        body["spec"]["finalizers"] = [f for f in body["spec"].get("finalizers") or [] if f != FINALIZER]
        try:
            await self.client.update(NAMESPACES, body, subresource="finalize")
        except errors.NotFound:
            return
        log.info("namespace %s: content deleted, finalized", ns["metadata"]["name"])
