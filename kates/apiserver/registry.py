"""Generic storage for every resource: create, read, update, patch, delete, over the store with CAS.

Kubernetes' generic registry (`staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go`) is the model:
server-owned metadata on create, optimistic concurrency on update (a stale resourceVersion is 409 Conflict),
no-op updates that write nothing, finalizers and deletionTimestamp, graceful deletion of pods bound to nodes,
dry runs that persist nothing. Store errors become API errors here and nowhere else.
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import random
import time
import uuid
from typing import Any, Callable

import orjson

from ..api import defaulting, errors, managedfields, validation
from ..api.resources import ResourceType, object_key, storage_prefix
from ..api.selectors import FieldSelector, LabelSelector, matcher
from ..store.interface import KeyExists, KeyNotFound, RevisionMismatch, Store
from . import quota, strategy
from .allocators import ServiceAllocator
from .catalog import Catalog
from .watchcache import WatchCache, decode

log = logging.getLogger(__name__)

EVENT_TTL = 3600.0
MAX_RETRIES = 64   # compare-and-swap attempts of one write racing others on the same object
GENERATE_NAME_RETRIES = 8
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def _generate_name(base: str) -> str:
    return base[:58] + "".join(random.choice(_NAME_CHARS) for _ in range(5))


def now_rfc3339(clock: Callable[[], float] = time.time) -> str:
    return datetime.datetime.fromtimestamp(clock(), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def deep_copy(obj: Any) -> Any:
    return orjson.loads(orjson.dumps(obj))


def encode(obj: dict[str, Any]) -> bytes:
    """Stored form: the object without its resourceVersion (the store revision is the resourceVersion)."""
    meta = obj.get("metadata", {})
    rv = meta.pop("resourceVersion", None)
    try:
        return orjson.dumps(obj)
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv


def conflict(rt: ResourceType, name: str) -> errors.Conflict:
    return errors.Conflict(
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details={"name": name, "group": rt.group, "kind": rt.resource} if rt.group else
        {"name": name, "kind": rt.resource})


class ListResult:
    __slots__ = ("items", "revision", "continue_token", "remaining")

    def __init__(self, items: list[dict[str, Any]], revision: int, continue_token: str = "",
                 remaining: int | None = None) -> None:
        self.items = items
        self.revision = revision
        self.continue_token = continue_token
        self.remaining = remaining


class Registry:
    def __init__(self, store: Store, cache: WatchCache, catalog: Catalog, allocator: ServiceAllocator,
                 clock: Callable[[], float] = time.time, event_ttl: float = EVENT_TTL) -> None:
        self.store = store
        self.cache = cache
        self.catalog = catalog
        self.allocator = allocator
        self.clock = clock
        self.event_ttl = event_ttl
        self.on_write: list[Callable[[ResourceType, dict[str, Any] | None, dict[str, Any] | None], Any]] = []
        self.last_quota_revision = 0   # quota admission waits for the watch cache to hold this
        # admission plugins (kates.apiserver.admission): run on create and update, before defaulting and validation
        self.admission: list[Any] = []
        self.after_defaults: list[Callable[[ResourceType, dict[str, Any]], None]] = []   # create-time, post-reset

    # -- helpers ---------------------------------------------------------------------------------------------
    def schema_of(self, rt: ResourceType) -> dict[str, Any] | None:
        info = self.catalog.custom(rt)
        return info.schema if info else None

    def _ttl(self, rt: ResourceType) -> float | None:
        return self.event_ttl if rt.kind == "Event" else None

    async def _current(self, rt: ResourceType, key: str, name: str) -> tuple[dict[str, Any], int]:
        kv = await self.store.get(key)
        if kv is None:
            raise errors.NotFound.of(rt.resource, name, rt.group)
        return decode(kv.value, kv.mod_revision), kv.mod_revision

    async def _check_namespace(self, rt: ResourceType, namespace: str | None, name: str) -> None:
        if not rt.namespaced:
            return
        ns_rt = self.catalog.lookup("", "v1", "namespaces")
        assert ns_rt is not None
        # as Kubernetes' NamespaceLifecycle admission: the cache first, a live read only when it has no answer
        key = object_key(ns_rt, None, namespace or "")
        ns = self.cache.cache(storage_prefix(ns_rt)).objects.get(key)
        if ns is None:
            kv = await self.store.get(key)
            if kv is None:
                raise errors.NotFound.of("namespaces", namespace or "")
            ns = decode(kv.value, kv.mod_revision)
        if ns.get("metadata", {}).get("deletionTimestamp") or ns.get("status", {}).get("phase") == "Terminating":
            raise errors.Forbidden(
                f'{rt.resource} "{name}" is forbidden: unable to create new content in namespace {namespace} '
                "because it is being terminated",
                details={"causes": [{"reason": "NamespaceTerminating",
                                     "message": f"namespace {namespace} is being terminated",
                                     "field": "metadata.namespace"}]})

    # -- reads -----------------------------------------------------------------------------------------------
    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        await self.cache.fresh()
        obj = self.cache.cache(storage_prefix(rt)).objects.get(object_key(rt, namespace, name))
        if obj is None:
            raise errors.NotFound.of(rt.resource, name, rt.group)
        return obj

    async def list(self, rt: ResourceType, namespace: str | None, labels: LabelSelector, fields: FieldSelector,
                   *, limit: int = 0, continue_token: str = "", resource_version: str = "") -> ListResult:
        match = matcher(labels, fields)
        name = fields.exact("metadata.name")
        start = ""
        revision = 0
        if continue_token:
            revision, start = _decode_continue(continue_token)
        cache = self.cache.cache(storage_prefix(rt))
        if revision and revision != self.cache.revision:
            return await self._list_from_store(rt, namespace, match, limit, revision, start)
        if not revision:
            if resource_version in ("", None):
                await self.cache.fresh()
            elif resource_version != "0":
                await self.cache.wait_for(_parse_rv(resource_version))
            revision = self.cache.revision
        items: list[dict[str, Any]] = []
        next_key = ""
        remaining = 0
        pairs = cache.list(namespace, start)
        for i, (key, obj) in enumerate(pairs):
            if name is not None and obj["metadata"].get("name") != name:
                continue
            if match is not None and not match(obj):
                continue
            if limit and len(items) >= limit:
                next_key = key
                remaining = len(pairs) - i
                break
            items.append(obj)
        token = _encode_continue(revision, next_key) if next_key else ""
        return ListResult(items, revision, token, remaining if token else None)

    async def _list_from_store(self, rt: ResourceType, namespace: str | None, match: Any, limit: int,
                               revision: int, start: str) -> ListResult:
        from ..store.interface import Compacted
        prefix = storage_prefix(rt) + (f"{namespace}/" if namespace is not None else "")
        try:
            _, kvs = await self.store.list(prefix, revision=revision, start=start)
        except Compacted:
            raise errors.Expired("The provided continue parameter is too old to display a consistent list "
                                 "result. You can start a new list without the continue parameter.") from None
        items: list[dict[str, Any]] = []
        next_key = ""
        remaining = 0
        for i, kv in enumerate(kvs):
            obj = decode(kv.value, kv.mod_revision)
            if match is not None and not match(obj):
                continue
            if limit and len(items) >= limit:
                next_key, remaining = kv.key, len(kvs) - i
                break
            items.append(obj)
        token = _encode_continue(revision, next_key) if next_key else ""
        return ListResult(items, revision, token, remaining if token else None)

    # -- create ----------------------------------------------------------------------------------------------
    async def create(self, rt: ResourceType, namespace: str | None, obj: dict[str, Any], *, dry_run: bool = False,
                     manager: str = "", managed: bool = True) -> dict[str, Any]:
        """Store a new object; `managed=False` when the caller (server-side apply) already set managedFields."""
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.BadRequest("metadata must be an object")
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on "
                                        "the request")
            meta["namespace"] = namespace = namespace or body_ns or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = _generate_name(meta["generateName"])
            else:
                raise errors.Invalid(rt.kind, "", [errors.cause("metadata.name", "name or generateName is required",
                                                               "FieldValueRequired")], rt.group)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        for field in strategy.SERVER_METADATA:
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339(self.clock)
        strategy.prepare_for_create(rt, obj)
        await self._check_namespace(rt, namespace, meta["name"])   # NamespaceLifecycle: the first admission step
        for plugin in self.admission:
            await plugin.admit(rt, obj, None)
        if rt.definition is not None:
            defaulting.apply_defaults(rt, obj)
            defaulting.prepare_for_create(rt, obj)
        for step in self.after_defaults:
            step(rt, obj)
        validation.validate_create(rt, obj)
        held = await quota.admit(self, rt, obj)   # the namespace's quota lock, when a quota applies
        try:
            return await self._write_new(rt, namespace, obj, dry_run=dry_run, manager=manager, managed=managed)
        finally:
            if held is not None:
                held.release()   # only now: the next create in the namespace counts this one

    async def _write_new(self, rt: ResourceType, namespace: str | None, obj: dict[str, Any], *, dry_run: bool,
                         manager: str, managed: bool) -> dict[str, Any]:
        """The store write of `create`, once the object is admitted, defaulted and valid."""
        meta = obj["metadata"]
        key = object_key(rt, namespace, meta["name"])
        if dry_run:
            if await self.store.get(key) is not None:
                raise errors.AlreadyExists.of(rt.resource, meta["name"], rt.group)
            await self._allocate(rt, obj, None, dry_run=True)
            return obj
        if managed:
            obj = managedfields.update_managed_fields(None, obj, manager=manager or "unknown", operation="Update",
                                                      definition=rt.definition, schema=self.schema_of(rt),
                                                      now=now_rfc3339(self.clock),
                                                      reset_fields=strategy.reset_fields(rt, ""))
        release = await self._allocate(rt, obj, None)
        try:
            for attempt in range(GENERATE_NAME_RETRIES):
                try:
                    rev = await self.store.create(key, encode(obj), ttl=self._ttl(rt))
                    break
                except KeyExists:
                    # a generated name that collided is drawn again, as Kubernetes 1.32 does (RetryGenerateName)
                    if not meta.get("generateName") or attempt == GENERATE_NAME_RETRIES - 1:
                        raise errors.AlreadyExists.of(rt.resource, meta["name"], rt.group) from None
                    meta["name"] = _generate_name(meta["generateName"])
                    key = object_key(rt, namespace, meta["name"])
        except BaseException:
            await release()
            raise
        obj["metadata"]["resourceVersion"] = str(rev)
        self._notify(rt, None, obj)
        return obj

    # -- update / patch --------------------------------------------------------------------------------------
    async def update(self, rt: ResourceType, namespace: str | None, name: str,
                     mutate: Callable[[dict[str, Any]], dict[str, Any]], *, subresource: str = "",
                     dry_run: bool = False, manager: str = "", operation: str = "Update",
                     create: Callable[[], dict[str, Any]] | None = None,
                     managed: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
                     ) -> dict[str, Any]:
        """Read, mutate a copy, write back with CAS; retried on races unless the caller pinned a resourceVersion.

        `mutate` gets a private copy of the live object and returns the desired one. `create` (server-side apply)
        supplies the object to create when none exists. `managed` replaces the default managedFields bookkeeping.
        """
        key = object_key(rt, namespace, name)
        for attempt in range(MAX_RETRIES):
            if attempt >= 4:   # heavy contention on one object: spread the retries out a little
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))
            kv = await self.store.get(key)
            if kv is None:
                if create is None:
                    raise errors.NotFound.of(rt.resource, name, rt.group)
                return await self.create(rt, namespace, create(), dry_run=dry_run, manager=manager,
                                         managed=managed is None)
            old = decode(kv.value, kv.mod_revision)
            new = mutate(deep_copy(old))
            new_meta = new.setdefault("metadata", {})
            if not isinstance(new_meta, dict):
                raise errors.BadRequest("metadata must be an object")
            if new_meta.get("name", name) != name:
                raise errors.BadRequest(f"the name of the object ({new_meta.get('name')}) does not match the name "
                                        f"on the URL ({name})")
            if rt.namespaced and new_meta.get("namespace", namespace) != namespace:
                raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on "
                                        "the request")
            wanted_rv = new_meta.get("resourceVersion")
            if wanted_rv and wanted_rv != str(kv.mod_revision):
                raise conflict(rt, name)
            new_meta["name"] = name
            if rt.namespaced:
                new_meta["namespace"] = namespace
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            strategy.prepare_for_update(rt, new, old, subresource)
            if subresource == "":
                for plugin in self.admission:
                    await plugin.admit(rt, new, old)
            if rt.definition is not None and subresource != "status":
                defaulting.apply_defaults(rt, new)
                if subresource == "":
                    defaulting.prepare_for_update(rt, new, old)
            if subresource == "status":
                validation.validate_status_update(rt, new, old)
            elif subresource != "binding":   # binding is the one way to set a pod's nodeName
                validation.validate_update(rt, new, old)
            stamp = now_rfc3339(self.clock)
            if managed is not None:
                new = managed(old, new)
            else:
                new = managedfields.update_managed_fields(old, new, manager=manager or "unknown",
                                                          operation=operation, definition=rt.definition,
                                                          schema=self.schema_of(rt), now=stamp,
                                                          subresource=subresource,
                                                          reset_fields=strategy.reset_fields(rt, subresource))
            new["metadata"]["resourceVersion"] = str(kv.mod_revision)
            if _same(new, old):
                return old
            if dry_run:
                await self._allocate(rt, new, old, dry_run=True)
                return new
            if _ready_to_remove(rt, new):
                await self._remove(rt, key, old, kv.mod_revision)
                return new
            release = await self._allocate(rt, new, old)
            try:
                rev = await self.store.update(key, encode(new), kv.mod_revision, ttl=self._ttl(rt))
            except RevisionMismatch:
                await release()
                if wanted_rv:
                    raise conflict(rt, name) from None
                continue
            except KeyNotFound:
                await release()
                raise errors.NotFound.of(rt.resource, name, rt.group) from None
            await self._release_unused(rt, new, old)
            new["metadata"]["resourceVersion"] = str(rev)
            self._notify(rt, old, new)
            return new
        raise errors.Conflict(f"too many concurrent updates to {rt.qualified} \"{name}\"; try again")

    # -- delete ----------------------------------------------------------------------------------------------
    async def delete(self, rt: ResourceType, namespace: str | None, name: str, options: dict[str, Any],
                     *, dry_run: bool = False) -> dict[str, Any]:
        key = object_key(rt, namespace, name)
        for _ in range(MAX_RETRIES):
            obj, rev = await self._current(rt, key, name)
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != obj["metadata"].get("uid"):
                raise errors.Conflict(
                    f'Precondition failed: UID in precondition: {pre["uid"]}, UID in object meta: '
                    f'{obj["metadata"].get("uid")}', details={"name": name, "kind": rt.resource})
            if pre.get("resourceVersion") and pre["resourceVersion"] != str(rev):
                raise errors.Conflict(
                    f'Precondition failed: ResourceVersion in precondition: {pre["resourceVersion"]}, '
                    f'ResourceVersion in object meta: {rev}', details={"name": name, "kind": rt.resource})
            new = deep_copy(obj)
            meta = new["metadata"]
            graceful = self._grace(rt, new, options)
            policy = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else None)
            finalizers = list(meta.get("finalizers") or [])
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            elif policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if policy in ("Background", "Foreground"):
                finalizers = [f for f in finalizers if f != "orphan" or policy != "Background"]
            if rt.group == "" and rt.kind == "Namespace":
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = now_rfc3339(self.clock)
                    meta["deletionGracePeriodSeconds"] = 0
                    new.setdefault("status", {})["phase"] = "Terminating"
                if new.get("spec", {}).get("finalizers") or finalizers:
                    meta["finalizers"] = finalizers or meta.get("finalizers")
                    if not meta["finalizers"]:
                        meta.pop("finalizers")
                    marked = await self._write_deletion(rt, key, obj, new, rev, dry_run)
                    if marked is None:
                        continue
                    return marked
            elif finalizers or graceful is not None:
                if finalizers:
                    meta["finalizers"] = finalizers
                if graceful is not None:
                    if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds", 0) <= graceful:
                        return obj   # already terminating with a shorter grace
                    meta["deletionTimestamp"] = now_rfc3339(lambda: self.clock() + graceful)
                    meta["deletionGracePeriodSeconds"] = graceful
                elif not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = now_rfc3339(self.clock)
                    meta["deletionGracePeriodSeconds"] = 0
                if new == obj:
                    return obj
                marked = await self._write_deletion(rt, key, obj, new, rev, dry_run)
                if marked is None:
                    continue
                return marked
            if dry_run:
                return obj
            try:
                await self._remove(rt, key, obj, rev)
            except RevisionMismatch:
                continue
            except KeyNotFound:   # a concurrent delete won the race
                raise errors.NotFound.of(rt.resource, name, rt.group) from None
            return obj
        raise errors.Conflict(f"too many concurrent updates to {rt.qualified} \"{name}\"; try again")

    def _grace(self, rt: ResourceType, obj: dict[str, Any], options: dict[str, Any]) -> int | None:
        """Seconds of graceful termination for a pod on a node; None means delete without waiting for a kubelet."""
        if not (rt.group == "" and rt.kind == "Pod"):
            return None
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return None
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        grace = int(grace)
        if grace <= 0:
            return None
        return grace

    async def _write_deletion(self, rt: ResourceType, key: str, old: dict[str, Any], new: dict[str, Any],
                              rev: int, dry_run: bool) -> dict[str, Any] | None:
        """Mark the object deleted; None when another write got there first (the caller reads again)."""
        if dry_run:
            return new
        try:
            new_rev = await self.store.update(key, encode(new), rev, ttl=self._ttl(rt))
        except RevisionMismatch:
            return None
        new["metadata"]["resourceVersion"] = str(new_rev)
        self._notify(rt, old, new)
        return new

    async def _remove(self, rt: ResourceType, key: str, obj: dict[str, Any], rev: int) -> None:
        deleted_at = await self.store.delete(key, rev)
        await self._release_unused(rt, None, obj)
        if rt.group == "" and rt.resource == "resourcequotas":
            self.last_quota_revision = max(self.last_quota_revision, deleted_at)
        self._notify(rt, obj, None)

    # -- side effects ----------------------------------------------------------------------------------------
    async def _allocate(self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any] | None, *,
                        dry_run: bool = False) -> Callable[[], Any]:
        """Give a Service its clusterIP and nodePorts; returns an undo for when the write fails."""
        async def nothing() -> None:
            return None
        if not (rt.group == "" and rt.kind == "Service"):
            return nothing
        from .services import allocate
        return await allocate(self.allocator, new, old, dry_run=dry_run)

    async def _release_unused(self, rt: ResourceType, new: dict[str, Any] | None, old: dict[str, Any]) -> None:
        if rt.group == "" and rt.kind == "Service":
            from .services import release_unused
            await release_unused(self.allocator, new, old)

    def _notify(self, rt: ResourceType, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if rt.group == "" and rt.resource == "resourcequotas":
            self.last_quota_revision = max(self.last_quota_revision, int(
                (new or old or {}).get("metadata", {}).get("resourceVersion") or 0))
        for hook in self.on_write:
            try:
                hook(rt, old, new)
            except Exception:
                log.exception("write hook failed")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from managedFields timestamps: such an update writes nothing, as in Kubernetes."""
    if a == b:
        return True
    ma, mb = a.get("metadata", {}), b.get("metadata", {})
    if {k: v for k, v in a.items() if k != "metadata"} != {k: v for k, v in b.items() if k != "metadata"}:
        return False
    strip = lambda m: {k: v for k, v in m.items() if k != "managedFields"}
    if strip(ma) != strip(mb):
        return False
    fields = lambda m: [{k: v for k, v in e.items() if k != "time"} for e in m.get("managedFields") or []]
    return fields(ma) == fields(mb)


def _ready_to_remove(rt: ResourceType, obj: dict[str, Any]) -> bool:
    """Deleted, and nothing holds it: no finalizers, no pod grace period running, no namespace finalizers."""
    meta = obj["metadata"]
    if not meta.get("deletionTimestamp") or meta.get("finalizers"):
        return False
    if rt.group == "" and rt.kind == "Pod" and (meta.get("deletionGracePeriodSeconds") or 0) > 0:
        return False
    if rt.group == "" and rt.kind == "Namespace" and (obj.get("spec") or {}).get("finalizers"):
        return False
    return True


def _parse_rv(rv: str) -> int:
    try:
        value = int(rv)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise errors.BadRequest(f'invalid resource version "{rv}"') from None


def _encode_continue(revision: int, start: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        return int(data["rv"]), str(data["start"])
    except Exception:
        raise errors.BadRequest("continue key is not valid: incorrect encoded start resourceVersion "
                                "(version meta.k8s.io/v1)") from None
