"""The garbage collector: deletes objects whose owners are gone, and carries out foreground and orphan deletion.

Kubernetes never deletes dependents in the API server: `ownerReferences` only record who owns what, and this
controller (pkg/controller/garbagecollector/) turns them into cascading deletion. It watches every resource that
can be deleted (built-ins, and custom resources as their CRDs appear), keeps an ownership graph uid → dependents,
and works on two kinds of items:

* `delete:<uid>`: is this object still wanted? Collect it when all its owners are gone (verified with a live
  read, never from a cache), drop references to owners that are gone while others remain, and, for an owner being
  deleted in the foreground, delete its dependents and remove its `foregroundDeletion` finalizer once no
  dependent with `blockOwnerDeletion` remains;
* `orphan:<uid>`: an owner deleted with the `orphan` finalizer: strip the references to it from every dependent,
  then remove the finalizer.

The graph is the collector's own index, updated synchronously by the informer handlers (dictionary work only; the
event loop serialises them as client-go's single graph-builder goroutine does); everything that talks to the API
server happens in workers. Only metadata is needed, so resources no other controller watches are followed as
PartialObjectMetadata, with managedFields and everything else dropped.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from typing import Any, AsyncIterator, Iterable


from ..api import errors
from ..api.resources import ALL_VERBS, BUILTIN, ResourceType
from ..client.controller import Controller, ControllerOptions
from ..client.informer import Informer, InformerFactory
from ..client.rest import Client, resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"

METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"

# Kubernetes' GC ignores events: they are many, short-lived, and never own anything.
IGNORED_RESOURCES = frozenset({"events", "events.events.k8s.io"})

# what the graph keeps of an object's metadata
_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "ownerReferences", "finalizers",
                  "deletionTimestamp", "deletionGracePeriodSeconds")


# -- talking to the API server as PartialObjectMetadata ---------------------------------------------------------------

async def get_as(client: Client, path: str, accept: str, params: dict[str, Any] | None = None) -> Any:
    """One GET whose response comes in another representation (PartialObjectMetadata, aggregated discovery)."""
    return await client.request("GET", path, params=params, accept=accept)


def slim(rt: ResourceType, obj: Obj) -> Obj:
    """The object as the graph needs it: identity, owners, finalizers and deletion state; no managedFields."""
    meta = obj.get("metadata") or {}
    return {"apiVersion": rt.api_version, "kind": rt.kind,
            "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta}}


class MetadataClient(Client):
    """A Client whose list and watch return PartialObjectMetadata: what an Informer needs for metadata only."""

    def __init__(self, base: Client) -> None:
        super().__init__(base.connection, base.user_agent, base.field_manager, base.timeout)

    async def get_metadata(self, rt: ResourceType, name: str, namespace: str | None = None) -> Obj | None:
        """The object's metadata, live; None when it does not exist."""
        try:
            obj = await get_as(self, self.path(rt, namespace, name), METADATA_ACCEPT)
        except errors.NotFound:
            return None
        return slim(rt, obj)

    async def list(self, rt: ResourceType, namespace: str | None = None, *, label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_token: str = "",
                   resource_version: str = "", accept: str | None = None) -> dict[str, Any]:
        page = await super().list(rt, namespace, label_selector=label_selector, field_selector=field_selector,
                                  limit=limit, continue_token=continue_token, resource_version=resource_version,
                                  accept=METADATA_LIST_ACCEPT)
        page["items"] = [slim(rt, o) for o in page.get("items") or []]
        return page

    async def watch(self, rt: ResourceType, namespace: str | None = None, *, resource_version: str = "",
                    label_selector: str = "", field_selector: str = "", timeout_seconds: int = 300,
                    bookmarks: bool = True, accept: str | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        async for ev_type, obj in super().watch(rt, namespace, resource_version=resource_version,
                                                label_selector=label_selector, field_selector=field_selector,
                                                timeout_seconds=timeout_seconds, bookmarks=bookmarks,
                                                accept=METADATA_ACCEPT):
            yield ev_type, (obj if ev_type == "BOOKMARK" else slim(rt, obj))


# -- which resources, and how to find an owner's ---------------------------------------------------------------------

def collectable(rt: ResourceType) -> bool:
    """A resource the collector follows: it can be listed, watched and deleted (so can own and be owned)."""
    return (rt.qualified not in IGNORED_RESOURCES
            and all(v in rt.verbs for v in ("list", "watch", "delete")))


def custom_resource_type(crd: Obj, *, established_only: bool = True) -> ResourceType | None:
    """The resource a CustomResourceDefinition serves (its storage version), once it is established."""
    spec = crd.get("spec") or {}
    conditions = (crd.get("status") or {}).get("conditions") or []
    if established_only and not any(c.get("type") == "Established" and c.get("status") == "True"
                                    for c in conditions):
        return None
    versions = [v for v in spec.get("versions") or [] if v.get("served")]
    if not versions or not spec.get("group"):
        return None
    version = next((v for v in versions if v.get("storage")), versions[0])
    names = spec.get("names") or {}
    return ResourceType(spec["group"], version["name"], names["plural"], names["kind"],
                        spec.get("scope") == "Namespaced", verbs=ALL_VERBS)


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


class RESTMapper:
    """(group, kind) → resource, so an ownerReference (apiVersion, kind, name) can be read from the API.

    The version is ignored: every served version of a resource shows the same object (same uid).
    """

    def __init__(self, types: Iterable[ResourceType] = BUILTIN) -> None:
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        for rt in types:
            self._by_kind.setdefault((rt.group, rt.kind), rt)

    def add(self, rt: ResourceType) -> bool:
        """Map the resource's kind; True when that is news (the kind was unknown or served elsewhere)."""
        old = self._by_kind.get((rt.group, rt.kind))
        self._by_kind[(rt.group, rt.kind)] = rt
        return old != rt

    def remove(self, rt: ResourceType) -> None:
        if self._by_kind.get((rt.group, rt.kind)) == rt:
            del self._by_kind[(rt.group, rt.kind)]

    def lookup(self, api_version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((group_of(api_version), kind))


class AbsentOwnerCache:
    """Owner uids verified gone (by a live read or an observed deletion). Uids are never reused, so an entry never
    goes stale; the cache only saves reads when many dependents share one deleted owner."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._uids: collections.OrderedDict[str, None] = collections.OrderedDict()

    def add(self, uid: str) -> None:
        self._uids[uid] = None
        self._uids.move_to_end(uid)
        while len(self._uids) > self.size:
            self._uids.popitem(last=False)

    def __contains__(self, uid: object) -> bool:
        return uid in self._uids


# -- the ownership graph ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class Node:
    """One object in the graph. A virtual node is an owner named by some ownerReference but not (yet) observed."""

    uid: str
    api_version: str
    kind: str
    name: str
    namespace: str | None
    rt: ResourceType | None = None
    owners: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    dependents: set[str] = dataclasses.field(default_factory=set)
    observed: bool = False
    being_deleted: bool = False
    deleting_dependents: bool = False   # deleted in the foreground: its dependents go first


@dataclasses.dataclass
class Work:
    """What a graph change asks the workers to look at."""

    delete: set[str] = dataclasses.field(default_factory=set)
    orphan: set[str] = dataclasses.field(default_factory=set)
    absent: set[str] = dataclasses.field(default_factory=set)   # uids observed deleted

    def __bool__(self) -> bool:
        return bool(self.delete or self.orphan or self.absent)


def _blocks(ref: dict[str, Any]) -> bool:
    return bool(ref.get("blockOwnerDeletion"))


class OwnershipGraph:
    """uid → Node with owner and dependent links; pure bookkeeping, no I/O (client-go's GraphBuilder state)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, uid: str) -> Node | None:
        return self.nodes.get(uid)

    def observe(self, rt: ResourceType, obj: Obj) -> Work:
        """An object was added or updated: record it, relink its owners, and say what needs a look."""
        work = Work()
        meta = obj["metadata"]
        uid = meta.get("uid")
        if not uid:
            return work
        node = self.nodes.get(uid)
        if node is None:
            node = self.nodes[uid] = Node(uid, rt.api_version, rt.kind, meta["name"], meta.get("namespace"), rt)
        if not node.observed:
            node.api_version, node.kind, node.name, node.namespace, node.rt = (
                rt.api_version, rt.kind, meta["name"], meta.get("namespace"), rt)
            node.observed = True
        self._relink_owners(node, list(meta.get("ownerReferences") or []), work)
        self._transitions(node, meta, work)
        return work

    def _relink_owners(self, node: Node, owners: list[dict[str, Any]], work: Work) -> None:
        old: dict[str, dict[str, Any]] = {r["uid"]: r for r in node.owners if r.get("uid")}
        new: dict[str, dict[str, Any]] = {r["uid"]: r for r in owners if r.get("uid")}
        for uid, ref in new.items():
            owner = self.nodes.get(uid)
            if owner is None:
                # not observed (yet): a virtual owner, whose existence a worker verifies with a live read
                owner = self.nodes[uid] = Node(uid, ref.get("apiVersion", ""), ref.get("kind", ""),
                                               ref.get("name", ""), node.namespace)
                work.delete.add(uid)
            owner.dependents.add(node.uid)
            if owner.deleting_dependents and uid not in old:
                work.delete.add(node.uid)
            if uid in old and _blocks(old[uid]) and not _blocks(ref):
                work.delete.add(uid)   # unblocked: the owner may be able to finish its foreground deletion
        for uid, ref in old.items():
            if uid in new:
                continue
            owner = self.nodes.get(uid)
            if owner is None:
                continue
            owner.dependents.discard(node.uid)
            if owner.deleting_dependents:
                work.delete.add(uid)
            self._drop_if_unreferenced(owner)
        node.owners = owners

    def _transitions(self, node: Node, meta: dict[str, Any], work: Work) -> None:
        finalizers = meta.get("finalizers") or []
        node.being_deleted = bool(meta.get("deletionTimestamp"))
        if node.being_deleted and ORPHAN in finalizers:
            work.orphan.add(node.uid)
        if node.being_deleted and FOREGROUND in finalizers:
            if not node.deleting_dependents:
                node.deleting_dependents = True
                work.delete.update(node.dependents)
            work.delete.add(node.uid)
        else:
            node.deleting_dependents = False

    def remove(self, uid: str) -> Work:
        """An object is gone (observed deletion, or a virtual owner verified absent): its dependents need a look,
        and so do owners waiting in the foreground for it."""
        work = Work()
        node = self.nodes.pop(uid, None)
        if node is None:
            return work
        for ref in node.owners:
            owner = self.nodes.get(ref.get("uid", ""))
            if owner is None:
                continue
            owner.dependents.discard(uid)
            if owner.deleting_dependents:
                work.delete.add(owner.uid)
            self._drop_if_unreferenced(owner)
        if node.dependents:
            work.absent.add(uid)
            work.delete.update(node.dependents)
        return work

    def _drop_if_unreferenced(self, node: Node) -> None:
        if not node.observed and not node.dependents:
            self.nodes.pop(node.uid, None)

    def blocking_dependents(self, owner: Node) -> list[Node]:
        """Dependents whose reference to `owner` has blockOwnerDeletion: foreground deletion waits for them."""
        out = []
        for uid in owner.dependents:
            dep = self.nodes.get(uid)
            if dep is not None and any(r.get("uid") == owner.uid and _blocks(r) for r in dep.owners):
                out.append(dep)
        return out


class UnknownOwnerKind(errors.APIError):
    """An ownerReference names a kind no served resource has; retried (its CRD may come)."""


# -- the controller ---------------------------------------------------------------------------------------------------

class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 8
    sync_timeout = 30.0   # how long run() waits for the monitors to list before starting the workers

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.graph = OwnershipGraph()
        self.mapper = RESTMapper()
        self.absent_owners = AbsentOwnerCache()
        self.metadata = MetadataClient(client)
        self.crds = informers.informer(resource("customresourcedefinitions.apiextensions.k8s.io"))
        self.monitors: dict[str, Informer] = {}    # resource → the informer feeding the graph
        self._private: dict[str, Informer] = {}    # the monitors this controller started (and stops)
        self._stopping: set[asyncio.Task[None]] = set()

    # -- monitors ----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            for rt in BUILTIN:
                if collectable(rt):
                    self.monitor(rt)
            self.crds.add_handler(on_add=self._crd_changed, on_update=lambda old, new: self._crd_changed(new),
                                  on_delete=self._crd_deleted)
            await self._wait_monitors_synced()
            log.info("garbage collector: %d resources monitored, %d objects in the graph",
                     len(self.monitors), len(self.graph))
            await super().run()
        finally:
            await asyncio.gather(*(inf.stop() for inf in self._private.values()), *self._stopping,
                                 return_exceptions=True)
            await self.metadata.close()

    def monitor(self, rt: ResourceType) -> None:
        """Follow a resource: the shared informer if another controller already has one, else a metadata one."""
        if rt.qualified in self.monitors:
            return
        inf = self.informers.informers.get(rt.qualified)
        if inf is None:
            inf = self._private[rt.qualified] = Informer(self.metadata, rt)
            inf.start()
        self.monitors[rt.qualified] = inf
        inf.add_handler(on_add=lambda obj: self._observe(rt, obj),
                        on_update=lambda old, new: self._observe(rt, new),
                        on_delete=lambda obj: self._forget(obj))

    def unmonitor(self, rt: ResourceType) -> None:
        """A custom resource is no longer served: stop following it; its objects are gone."""
        self.monitors.pop(rt.qualified, None)
        inf = self._private.pop(rt.qualified, None)
        if inf is None:
            return
        task = asyncio.create_task(inf.stop(), name=f"{self.name}-unmonitor-{rt.qualified}")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        for obj in inf.store.list():
            self._forget(obj)

    async def _wait_monitors_synced(self) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*(inf.wait_synced() for inf in self.monitors.values())),
                                   self.sync_timeout)
        except asyncio.TimeoutError:
            slow = [name for name, inf in self.monitors.items() if not inf.has_synced]
            log.warning("garbage collector: starting before these resources listed: %s", ", ".join(slow))

    def _crd_changed(self, crd: Obj) -> None:
        try:
            rt = custom_resource_type(crd)
        except (KeyError, TypeError, AttributeError):
            log.warning("garbage collector: cannot follow malformed CRD %s", (crd.get("metadata") or {}).get("name"))
            return
        if rt is None:
            return
        if self.mapper.add(rt):
            # owners of this kind that could not be looked up before can be now
            for node in list(self.graph.nodes.values()):
                if not node.observed and node.kind == rt.kind and group_of(node.api_version) == rt.group:
                    self.queue.add(f"delete:{node.uid}")
        if collectable(rt):
            self.monitor(rt)

    def _crd_deleted(self, crd: Obj) -> None:
        try:
            rt = custom_resource_type(crd, established_only=False)
        except (KeyError, TypeError, AttributeError):
            return
        if rt is None:
            return
        self.mapper.remove(rt)
        self.unmonitor(rt)

    # -- graph changes (handlers: bookkeeping and enqueueing only) ----------------------------------------------
    def _observe(self, rt: ResourceType, obj: Obj) -> None:
        try:
            self._schedule(self.graph.observe(rt, obj))
        except Exception:   # a malformed object must not stop the informer replaying into the graph
            log.exception("garbage collector: cannot observe %s %s", rt.qualified, obj.get("metadata"))

    def _forget(self, obj: Obj) -> None:
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            self._schedule(self.graph.remove(uid))

    def _schedule(self, work: Work) -> None:
        for uid in work.absent:
            self.absent_owners.add(uid)
        for uid in work.delete:
            self.queue.add(f"delete:{uid}")
        for uid in work.orphan:
            self.queue.add(f"orphan:{uid}")

    # -- workers -----------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        action, _, uid = key.partition(":")
        node = self.graph.get(uid)
        if node is None:
            return
        if action == "orphan":
            await self.attempt_to_orphan(node)
        else:
            await self.attempt_to_delete(node)

    async def attempt_to_delete(self, node: Node) -> None:
        """Decide about one object from its live state and its owners' live state (attemptToDeleteItem)."""
        if not node.observed:
            await self.verify_virtual_owner(node)
            return
        if node.being_deleted and not node.deleting_dependents:
            return
        assert node.rt is not None
        latest = await self.metadata.get_metadata(node.rt, node.name, node.namespace)
        if latest is None or latest["metadata"].get("uid") != node.uid:
            return   # already gone: its monitor will report the deletion
        meta = latest["metadata"]
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp") and FOREGROUND in finalizers:
            await self.process_deleting_dependents(node, latest)
            return
        refs = meta.get("ownerReferences") or []
        if not refs:
            return
        solid, dangling, waiting = await self.classify_references(node, refs)
        if solid:
            gone = {r["uid"] for r in dangling + waiting}
            if gone:
                await self.remove_owner_references(node.rt, latest, gone)
            return
        if waiting and node.dependents:
            # its owner waits for it, and it has dependents of its own: delete it in the foreground too, so that
            # they go first; break cycles of foreground deletions by no longer blocking its owners
            if any(d.deleting_dependents for d in map(self.graph.get, node.dependents) if d is not None):
                await self.unblock_owner_references(node.rt, latest)
            await self.delete_object(node.rt, latest, "Foreground")
            return
        policy = "Orphan" if ORPHAN in finalizers else "Foreground" if FOREGROUND in finalizers else "Background"
        await self.delete_object(node.rt, latest, policy)

    async def verify_virtual_owner(self, node: Node) -> None:
        """An owner only named by references: if it does not exist, its dependents are garbage."""
        absent, _ = await self.owner_absent(node.api_version, node.kind, node.name, node.uid, node.namespace)
        if absent:
            self._schedule(self.graph.remove(node.uid))

    async def owner_absent(self, api_version: str, kind: str, name: str, uid: str,
                           namespace: str | None) -> tuple[bool, Obj | None]:
        """Whether the owner a reference names is gone (absent, or replaced by another object of that name)."""
        if uid in self.absent_owners:
            return True, None
        rt = self.mapper.lookup(api_version, kind)
        if rt is None:
            raise UnknownOwnerKind(f"no resource serves {kind} in {api_version}")
        if rt.namespaced and not namespace:
            return True, None   # a cluster-scoped object cannot be owned by a namespaced one
        owner = await self.metadata.get_metadata(rt, name, namespace if rt.namespaced else None)
        if owner is None or owner["metadata"].get("uid") != uid:
            self.absent_owners.add(uid)
            return True, None
        return False, owner

    async def classify_references(self, node: Node, refs: list[dict[str, Any]]) -> tuple[
            list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Split owner references into solid (owner exists), dangling (owner gone) and waiting (owner deleted in
        the foreground, so waiting for its dependents)."""
        solid, dangling, waiting = [], [], []
        for ref in refs:
            absent, owner = await self.owner_absent(ref.get("apiVersion", ""), ref.get("kind", ""),
                                                    ref.get("name", ""), ref.get("uid", ""), node.namespace)
            if absent or owner is None:
                dangling.append(ref)
                continue
            ometa = owner["metadata"]
            if ometa.get("deletionTimestamp") and FOREGROUND in (ometa.get("finalizers") or []):
                waiting.append(ref)
            else:
                solid.append(ref)
        return solid, dangling, waiting

    async def process_deleting_dependents(self, node: Node, latest: Obj) -> None:
        """An owner deleted in the foreground: done when no blocking dependent remains, else push them along."""
        blocking = self.graph.blocking_dependents(node)
        if not blocking:
            assert node.rt is not None
            await self.remove_finalizer(node.rt, latest, FOREGROUND)
            return
        for dep in blocking:
            if not dep.deleting_dependents:
                self.queue.add(f"delete:{dep.uid}")

    async def attempt_to_orphan(self, node: Node) -> None:
        """An owner deleted with the orphan finalizer: its dependents lose their references to it, then it goes."""
        if not node.observed or node.rt is None:
            return
        latest = await self.metadata.get_metadata(node.rt, node.name, node.namespace)
        if latest is None or latest["metadata"].get("uid") != node.uid:
            return
        meta = latest["metadata"]
        if not meta.get("deletionTimestamp") or ORPHAN not in (meta.get("finalizers") or []):
            return
        await asyncio.gather(*(self.orphan_dependent(uid, node.uid) for uid in list(node.dependents)))
        await self.remove_finalizer(node.rt, latest, ORPHAN)

    async def orphan_dependent(self, dependent_uid: str, owner_uid: str) -> None:
        dep = self.graph.get(dependent_uid)
        if dep is None or dep.rt is None:
            return
        cached = {"metadata": {"name": dep.name, "namespace": dep.namespace, "uid": dep.uid,
                               "ownerReferences": dep.owners}}
        try:
            await self.remove_owner_references(dep.rt, cached, {owner_uid})
        except errors.Conflict:
            # the cache was behind: read it live and try again
            live = await self.metadata.get_metadata(dep.rt, dep.name, dep.namespace)
            if live is not None and live["metadata"].get("uid") == dep.uid:
                await self.remove_owner_references(dep.rt, live, {owner_uid})

    # -- writes ------------------------------------------------------------------------------------------------
    async def _json_patch(self, rt: ResourceType, obj: Obj, ops: list[dict[str, Any]]) -> None:
        """A JSON patch guarded by `test`s on the uid (and whatever the ops test): a failed test is a Conflict."""
        meta = obj["metadata"]
        patch = [{"op": "test", "path": "/metadata/uid", "value": meta["uid"]}, *ops]
        try:
            await self.client.patch(rt, meta["name"], patch, meta.get("namespace"), patch_type="json")
        except errors.NotFound:
            return
        except errors.Invalid as e:
            raise errors.Conflict(f"{rt.qualified} {meta['name']} changed: {e}") from e

    async def remove_owner_references(self, rt: ResourceType, obj: Obj, owner_uids: set[str]) -> None:
        refs = obj["metadata"].get("ownerReferences") or []
        kept = [r for r in refs if r.get("uid") not in owner_uids]
        if len(kept) == len(refs):
            return
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/ownerReferences", "value": refs}]
        ops.append({"op": "replace", "path": "/metadata/ownerReferences", "value": kept} if kept
                   else {"op": "remove", "path": "/metadata/ownerReferences"})
        await self._json_patch(rt, obj, ops)

    async def unblock_owner_references(self, rt: ResourceType, obj: Obj) -> None:
        refs = obj["metadata"].get("ownerReferences") or []
        unblocked = [{**r, "blockOwnerDeletion": False} if _blocks(r) else r for r in refs]
        if unblocked != refs:
            await self._json_patch(rt, obj, [
                {"op": "test", "path": "/metadata/ownerReferences", "value": refs},
                {"op": "replace", "path": "/metadata/ownerReferences", "value": unblocked}])

    async def remove_finalizer(self, rt: ResourceType, obj: Obj, finalizer: str) -> None:
        finalizers = obj["metadata"].get("finalizers") or []
        if finalizer not in finalizers:
            return
        await self._json_patch(rt, obj, [
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "replace", "path": "/metadata/finalizers", "value": [f for f in finalizers if f != finalizer]}])

    async def delete_object(self, rt: ResourceType, obj: Obj, policy: str) -> None:
        """Delete exactly what was checked: the uid and resourceVersion read are preconditions."""
        meta = obj["metadata"]
        log.debug("garbage collector: deleting %s %s/%s (%s)", rt.qualified, meta.get("namespace") or "",
                  meta["name"], policy)
        try:
            await self.client.delete(rt, meta["name"], meta.get("namespace"), propagation_policy=policy,
                                     preconditions={"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]})
        except errors.NotFound:
            pass
