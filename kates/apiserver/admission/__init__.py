"""Admission: the API server's mutating and validating plugins that need more than the object itself.

Kubernetes runs an admission chain between decoding a request and validating/storing it
(`staging/src/k8s.io/apiserver/pkg/admission`). kates runs Priority and ServiceAccount from the registry's create and
update paths before defaulting (they only fill fields users leave unset), and LimitRanger after defaulting (it must see
a container's limits already copied to its requests); both before validation, as Kubernetes runs mutating admission
before validation. ResourceQuota admission (kates.apiserver.quota) comes last, after validation. A plugin is an object
with `name` and `async admit(rt, obj, old)` (`old` is None on create) that may mutate `obj` or raise an API error
(usually Forbidden); plugins read other objects from the watch cache, falling back to a live store read.

`kates server` enables LimitRanger, Priority and ServiceAccount, as kube-apiserver's default plugin list, but leaves
ServiceAccount admission off when it does not run the serviceaccount controller (`--disable-controllers`, or
`--controllers` without it): nothing would create the `default` ServiceAccounts the plugin requires, so every pod would
be refused, which is what kube-apiserver does without its controller manager and what no one running it that way wants
(`--enable-admission-plugins ServiceAccount` keeps it on regardless, `--disable-admission-plugins` drops any). An
APIServer embedded in a test, with no controllers, has LimitRanger and Priority (ServerConfig.admission_plugins).
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Protocol

from ...api.resources import ResourceType

log = logging.getLogger(__name__)

DEFAULT_PLUGINS = ("LimitRanger", "Priority", "ServiceAccount")
KNOWN_PLUGINS = ("LimitRanger", "Priority", "ServiceAccount")


class Plugin(Protocol):
    name: str

    async def admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None: ...


def build(registry: Any, names: Iterable[str]) -> list[Plugin]:
    """The plugins named that run before defaulting, in Kubernetes' order (ServiceAccount before Priority); unknown
    names are an error."""
    from .priority import PriorityAdmission
    from .serviceaccount import ServiceAccountAdmission
    known: dict[str, Any] = {"ServiceAccount": ServiceAccountAdmission, "Priority": PriorityAdmission}
    wanted = set(names)
    unknown = wanted - set(KNOWN_PLUGINS)
    if unknown:
        raise ValueError(f"unknown admission plugins: {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(KNOWN_PLUGINS)})")
    return [known[n](registry) for n in known if n in wanted]


def build_after_defaults(registry: Any, names: Iterable[str]) -> list[Any]:
    """The steps the registry runs on a new object after defaulting: LimitRanger (needs defaulted containers) when
    named, then the pod strategy's create-time additions (always)."""
    from .limitranger import LimitRanger
    steps: list[Any] = [LimitRanger(registry)] if "LimitRanger" in set(names) else []
    return steps + [prepare_for_create]


def prepare_for_create(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Create-time steps of Kubernetes' pod strategy that kates' strategy lacks, run by the registry after its own
    status reset (so: not admission, always on). applySchedulingGatedCondition: a pod created with schedulingGates
    starts with PodScheduled=False reason SchedulingGated, so `kubectl get` shows SchedulingGated with no scheduler."""
    if rt.group != "" or rt.resource != "pods":
        return
    spec = obj.get("spec")
    if not isinstance(spec, dict) or not spec.get("schedulingGates"):
        return
    status = obj.setdefault("status", {})
    if not isinstance(status, dict):
        return
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        conditions = status["conditions"] = []
    if any(isinstance(c, dict) and c.get("type") == "PodScheduled" for c in conditions):
        return
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions.append({"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                       "lastTransitionTime": now, "reason": "SchedulingGated",
                       "message": "Scheduling is blocked due to non-empty scheduling gates"})


def forbidden(rt: ResourceType, name: str, message: str) -> Any:
    """`pods "x" is forbidden: <message>`, the shape of admission.NewForbidden."""
    from ...api import errors
    details: dict[str, Any] = {"name": name, "kind": rt.resource}
    if rt.group:
        details["group"] = rt.group
    return errors.Forbidden(f'{rt.qualified} "{name}" is forbidden: {message}', details=details)


async def lookup(registry: Any, group: str, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    """An object from the watch cache, or from the store when the cache has not seen it yet."""
    from ...api.resources import object_key, storage_prefix
    from ..watchcache import decode
    rt = registry.catalog.lookup(group, "v1", resource)
    if rt is None:
        return None
    key = object_key(rt, namespace, name)
    obj = registry.cache.cache(storage_prefix(rt)).objects.get(key)
    if obj is not None:
        return obj
    kv = await registry.store.get(key)
    return decode(kv.value, kv.mod_revision) if kv is not None else None
