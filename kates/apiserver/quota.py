"""ResourceQuota admission: a create that would take a namespace over one of its quotas is refused (403).

Kubernetes' quota admission plugin (`staging/src/k8s.io/apiserver/pkg/admission/plugin/resourcequota`) checks
each create against every quota of the namespace: the object's usage (as the quota evaluators count it) added
to the namespace's current usage must stay within `hard`, for every resource the quota limits; a quota on cpu
or memory also requires every container of a pod to state that request or limit. Kubernetes reads the current
usage from the quotas' status and updates it in the same step; kates counts it from the watch cache, which is
what the ResourceQuota controller will write into the status anyway (the evaluators are shared with it).

Wiring: the registry calls `await quota.admit(self, rt, obj)` in `create`, after defaulting and validation and
before the store write. When the namespace has quotas, admission takes the namespace's quota lock and returns it
held; the registry releases it once the object is written (or the write failed). So two creates racing in one
namespace are serialized: the second counts the first, and a quota with room for one admits exactly one. Kubernetes
gets the same effect from a compare-and-swap on the quota's status.used; namespaces without quotas never lock.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..api import errors
from ..api.resources import ResourceType, storage_prefix
from ..api.validation.quantity import canonical
from ..controllers.resourcequota import (ZERO, Usage, add, object_usage, parse_list, quota_matches_pod,
                                         quota_scopes, usage_for_quota)

# a quota on any of these makes every container state it (Kubernetes' "backward compatibility requirement")
REQUIRED_PER_CONTAINER = ("cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory")


def pretty(usage: Usage) -> str:
    return ",".join(f"{k}={canonical(q)}" for k, q in sorted(usage.items()))


def missing_container_resources(pod: dict[str, Any], required: set[str]) -> str:
    """`limits.cpu for: a,b; requests.memory for: c` for the containers not stating a required resource."""
    spec = pod.get("spec") or {}
    missing: dict[str, set[str]] = {}
    for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        resources = c.get("resources") or {}
        have = {k for k in resources.get("requests") or {}} | {f"requests.{k}" for k in resources.get("requests") or {}}
        have |= {f"limits.{k}" for k in resources.get("limits") or {}}
        for name in required - have:
            missing.setdefault(name, set()).add(c.get("name", ""))
    return "; ".join(sorted(f"{name} for: {','.join(sorted(names))}" for name, names in missing.items()))


def _forbidden(rt: ResourceType, name: str, message: str) -> errors.Forbidden:
    details: dict[str, Any] = {"name": name, "kind": rt.resource}
    if rt.group:
        details["group"] = rt.group
    return errors.Forbidden(f'{rt.qualified} "{name}" is forbidden: {message}', details=details)


def _lock(registry: Any, namespace: str) -> asyncio.Lock:
    locks: dict[str, asyncio.Lock] | None = getattr(registry, "_quota_locks", None)
    if locks is None:
        locks = registry._quota_locks = {}
    lock = locks.get(namespace)
    if lock is None:
        lock = locks[namespace] = asyncio.Lock()
    return lock


async def admit(registry: Any, rt: ResourceType, obj: dict[str, Any]) -> asyncio.Lock | None:
    """Raise Forbidden if creating `obj` (of type `rt`) would exceed a ResourceQuota of its namespace. With quotas to
    enforce, return the namespace's quota lock, held: the caller releases it after the store write."""
    if not rt.namespaced:
        return None
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    quota_rt = registry.catalog.lookup("", "v1", "resourcequotas")
    if quota_rt is None:
        return None
    await registry.cache.wait_for(registry.last_quota_revision)
    if not registry.cache.cache(storage_prefix(quota_rt)).list(namespace):
        return None
    lock = _lock(registry, namespace)
    await lock.acquire()
    try:
        await _check(registry, rt, obj)
    except BaseException:
        lock.release()
        raise
    return lock


async def _check(registry: Any, rt: ResourceType, obj: dict[str, Any]) -> None:
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace") or "", meta.get("name") or ""
    quota_rt = registry.catalog.lookup("", "v1", "resourcequotas")
    if quota_rt is None:
        return
    # a quota written just before this object must be seen: wait for the cache to hold the last quota write
    # this server made (waiting for every write, with fresh(), cost a third of create throughput)
    await registry.cache.wait_for(registry.last_quota_revision)
    quotas = [q for _, q in registry.cache.cache(storage_prefix(quota_rt)).list(namespace)]
    if not quotas:
        return
    # usage is counted from the cache: with quotas to enforce, it must hold every write made so far
    await registry.cache.fresh()
    quotas = [q for _, q in registry.cache.cache(storage_prefix(quota_rt)).list(namespace)]
    now = registry.clock()
    delta = object_usage(rt, obj, now)
    is_pod = rt.group == "" and rt.resource == "pods"
    objects: list[dict[str, Any]] | None = None
    for quota in sorted(quotas, key=lambda q: q["metadata"]["name"]):
        hard = parse_list((quota.get("spec") or {}).get("hard"))
        scoped = bool(quota_scopes(quota))
        if scoped and not (is_pod and quota_matches_pod(quota, obj)):
            continue
        if is_pod and "pods" in delta:   # terminal pods are not held to compute quotas
            required = set(hard) & set(REQUIRED_PER_CONTAINER)
            missing = missing_container_resources(obj, required) if required else ""
            if missing:
                raise _forbidden(rt, name, f"failed quota: {quota['metadata']['name']}: must specify {missing}")
        requested = {k: q for k, q in delta.items() if k in hard}
        if not requested:
            continue
        if objects is None:
            objects = [o for _, o in registry.cache.cache(storage_prefix(rt)).list(namespace)
                       if (o.get("metadata") or {}).get("name") != name]
        used = usage_for_quota(quota, rt, objects, now)
        new = add(used, requested)
        exceeded = sorted(k for k in requested if new[k].value > hard[k].value)
        if exceeded:
            raise _forbidden(rt, name, (
                f"exceeded quota: {quota['metadata']['name']}, "
                f"requested: {pretty({k: requested[k] for k in exceeded})}, "
                f"used: {pretty({k: used.get(k, ZERO) for k in exceeded})}, "
                f"limited: {pretty({k: hard[k] for k in exceeded})}"))
