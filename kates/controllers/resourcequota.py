"""The ResourceQuota controller: keeps each quota's `status.used` equal to what its namespace consumes.

Kubernetes splits quota in two (`pkg/controller/resourcequota`, `pkg/quota/v1/evaluator/core`): admission
rejects a create that would exceed a quota (kates: `kates/apiserver/quota.py`), and this controller recomputes
usage from the objects themselves, so deletions, pods finishing and missed updates are reflected. The
evaluators here say what one object uses: a pod its count and, while not terminal, its compute requests and
limits; a Service its count, node ports and load balancers; a PersistentVolumeClaim its count and storage; any
other object one `count/<resource>.<group>`. Quota scopes (Terminating, NotTerminating, BestEffort,
NotBestEffort, PriorityClass) select which pods a quota tracks; a scoped quota tracks nothing but pods.

The evaluators are pure functions of the objects, shared with admission.
"""
from __future__ import annotations

import copy
import logging
from decimal import Decimal
from typing import Any, Callable, Iterable

from ..api import errors
from ..api.resources import BUILTIN, ResourceType
from ..api.validation.quantity import DECIMAL_SI, Quantity, QuantityError, canonical, parse
from ..client.controller import Controller, ControllerOptions
from ..client.informer import Informer, InformerFactory
from ..client.rest import Client, object_key, resource
from ..api.timestamps import parse_rfc3339 as parse_time

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Usage = dict[str, Quantity]

RESYNC_PERIOD = 300.0

# legacy names: the plain resource name counts the objects too
LEGACY_COUNTS = {"pods": "pods", "services": "services", "replicationcontrollers": "replicationcontrollers",
                 "resourcequotas": "resourcequotas", "secrets": "secrets", "configmaps": "configmaps",
                 "persistentvolumeclaims": "persistentvolumeclaims"}
POD_COMPUTE = ("cpu", "memory", "ephemeral-storage")
POD_RESOURCES_PREFIXES = ("requests.", "limits.", "hugepages-")
SCOPED_POD_RESOURCES = {"pods", "count/pods", "cpu", "memory", "ephemeral-storage"}
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"
QOS_RESOURCES = ("cpu", "memory")


def quantity(n: int | Decimal) -> Quantity:
    return Quantity(Decimal(n), DECIMAL_SI)


ZERO = quantity(0)


def add(a: Usage, b: Usage) -> Usage:
    """Sum per resource; the result keeps the format of the left operand, as Kubernetes' quota.Add."""
    out = dict(a)
    for key, q in b.items():
        prev = out.get(key)
        out[key] = q if prev is None else Quantity(prev.value + q.value, prev.format)
    return out


def format_usage(usage: Usage) -> dict[str, str]:
    return {k: canonical(q) for k, q in sorted(usage.items())}


def parse_list(raw: dict[str, Any] | None) -> Usage:
    out: Usage = {}
    for key, value in (raw or {}).items():
        try:
            out[key] = parse(value)
        except QuantityError:
            continue
    return out


def count_name(rt: ResourceType) -> str:
    return f"count/{rt.qualified}"


# -- pods ---------------------------------------------------------------------------------------------

def pod_counts_for_quota(pod: Obj, now: float) -> bool:
    """Kubernetes' QuotaV1Pod: terminal pods, and pods past their deletion grace period, use nothing."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod["metadata"]
    deleted = parse_time(meta.get("deletionTimestamp"))
    if deleted is not None and meta.get("deletionGracePeriodSeconds") is not None:
        if now > deleted + int(meta["deletionGracePeriodSeconds"]):
            return False
    return True


def _container_list(container: Obj, kind: str) -> Usage:
    return parse_list((container.get("resources") or {}).get(kind))


def _max(a: Usage, b: Usage) -> Usage:
    out = dict(a)
    for key, q in b.items():
        if key not in out or q.value > out[key].value:
            out[key] = q
    return out


def pod_resources(pod: Obj, kind: str) -> Usage:
    """Requests (or limits) of the whole pod: containers summed, init containers as their peak, plus overhead."""
    spec = pod.get("spec") or {}
    total: Usage = {}
    for c in spec.get("containers") or []:
        total = add(total, _container_list(c, kind))
    restartable: Usage = {}
    init_peak: Usage = {}
    for c in spec.get("initContainers") or []:
        own = _container_list(c, kind)
        if c.get("restartPolicy") == "Always":      # sidecars run alongside everything after them
            total = add(total, own)
            restartable = add(restartable, own)
            init_peak = _max(init_peak, restartable)
        else:
            init_peak = _max(init_peak, add(dict(restartable), own))
    total = _max(total, init_peak)
    if spec.get("overhead"):
        total = add(total, parse_list(spec["overhead"]))
    return total


def is_extended_resource(name: str) -> bool:
    return "/" in name and not name.startswith("kubernetes.io/") and not name.startswith("requests.")


def pod_usage(pod: Obj, now: float) -> Usage:
    """What one pod uses: `count/pods` always, the rest only while it is not terminal."""
    usage: Usage = {"count/pods": quantity(1)}
    if not pod_counts_for_quota(pod, now):
        return usage
    usage["pods"] = quantity(1)
    requests, limits = pod_resources(pod, "requests"), pod_resources(pod, "limits")
    for name in POD_COMPUTE:
        if name in requests:
            usage[name] = requests[name]
            usage[f"requests.{name}"] = requests[name]
        if name in limits:
            usage[f"limits.{name}"] = limits[name]
    for name, q in requests.items():
        if name.startswith("hugepages-"):
            usage[name] = q
            usage[f"requests.{name}"] = q
        elif is_extended_resource(name):
            usage[f"requests.{name}"] = q
    return usage


def is_best_effort(pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        resources = c.get("resources") or {}
        for kind in ("requests", "limits"):
            if any(name in QOS_RESOURCES for name in (resources.get(kind) or {})):
                return False
    return True


def pod_matches_scope(pod: Obj, scope: str, operator: str = "Exists", values: Iterable[str] = ()) -> bool:
    spec = pod.get("spec") or {}
    if scope == "Terminating":
        return spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] >= 0
    if scope == "NotTerminating":
        return spec.get("activeDeadlineSeconds") is None
    if scope == "BestEffort":
        return is_best_effort(pod)
    if scope == "NotBestEffort":
        return not is_best_effort(pod)
    if scope == "PriorityClass":
        name = spec.get("priorityClassName") or ""
        values = set(values)
        if operator == "In":
            return name in values
        if operator == "NotIn":
            return name not in values
        if operator == "DoesNotExist":
            return not name
        return bool(name)   # Exists
    if scope == "CrossNamespacePodAffinity":
        affinity = spec.get("affinity") or {}
        for kind in ("podAffinity", "podAntiAffinity"):
            terms = affinity.get(kind) or {}
            for term in (terms.get("requiredDuringSchedulingIgnoredDuringExecution") or []) + \
                    [t.get("podAffinityTerm") or {} for t in
                     terms.get("preferredDuringSchedulingIgnoredDuringExecution") or []]:
                if term.get("namespaces") or term.get("namespaceSelector") is not None:
                    return True
        return False
    return False


def quota_scopes(quota: Obj) -> list[tuple[str, str, list[str]]]:
    spec = quota.get("spec") or {}
    scopes = [(s, "Exists", []) for s in spec.get("scopes") or []]
    for expr in (spec.get("scopeSelector") or {}).get("matchExpressions") or []:
        scopes.append((expr.get("scopeName", ""), expr.get("operator", "Exists"), list(expr.get("values") or [])))
    return scopes


def quota_matches_pod(quota: Obj, pod: Obj) -> bool:
    return all(pod_matches_scope(pod, *scope) for scope in quota_scopes(quota))


def is_pod_resource(name: str) -> bool:
    return name in SCOPED_POD_RESOURCES or name.startswith(POD_RESOURCES_PREFIXES) or is_extended_resource(name)


# -- other kinds --------------------------------------------------------------------------------------

def service_usage(svc: Obj) -> Usage:
    spec = svc.get("spec") or {}
    usage: Usage = {"services": quantity(1), "count/services": quantity(1)}
    ports = spec.get("ports") or []
    if spec.get("type") == "NodePort":
        usage["services.nodeports"] = quantity(len(ports))
    elif spec.get("type") == "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is False:
            usage["services.nodeports"] = quantity(sum(1 for p in ports if p.get("nodePort")))
        else:
            usage["services.nodeports"] = quantity(len(ports))
        usage["services.loadbalancers"] = quantity(1)
    return usage


def pvc_usage(pvc: Obj) -> Usage:
    spec = pvc.get("spec") or {}
    usage: Usage = {"persistentvolumeclaims": quantity(1), "count/persistentvolumeclaims": quantity(1)}
    storage_class = spec.get("storageClassName") or \
        (pvc["metadata"].get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class") or ""
    if storage_class:
        usage[f"{storage_class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"] = quantity(1)
    requested = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if requested is not None:
        try:
            q = parse(requested)
        except QuantityError:
            return usage
        allocated = ((pvc.get("status") or {}).get("allocatedResources") or {}).get("storage")
        if allocated is not None:
            try:
                a = parse(allocated)
                q = a if a.value > q.value else q
            except QuantityError:
                pass
        usage["requests.storage"] = q
        if storage_class:
            usage[f"{storage_class}{STORAGE_CLASS_SUFFIX}requests.storage"] = q
    return usage


def object_usage(rt: ResourceType, obj: Obj, now: float) -> Usage:
    """What one object of type `rt` uses, in every resource name a quota could limit it by."""
    if rt.group == "" and rt.resource == "pods":
        return pod_usage(obj, now)
    if rt.group == "" and rt.resource == "services":
        return service_usage(obj)
    if rt.group == "" and rt.resource == "persistentvolumeclaims":
        return pvc_usage(obj)
    usage = {count_name(rt): quantity(1)}
    if rt.group == "" and rt.resource in LEGACY_COUNTS:
        usage[rt.resource] = quantity(1)
    return usage


def tracked_by(rt: ResourceType, hard: Iterable[str]) -> bool:
    """Whether a quota with these hard limits has anything to count in objects of type `rt`."""
    names = set(hard)
    if rt.group == "" and rt.resource == "pods":
        return any(is_pod_resource(n) for n in names)
    if rt.group == "" and rt.resource == "services":
        return bool(names & {"services", "count/services", "services.nodeports", "services.loadbalancers"})
    if rt.group == "" and rt.resource == "persistentvolumeclaims":
        return any(n in ("persistentvolumeclaims", "count/persistentvolumeclaims", "requests.storage")
                   or STORAGE_CLASS_SUFFIX in n for n in names)
    return count_name(rt) in names or (rt.group == "" and rt.resource in names and rt.resource in LEGACY_COUNTS)


def usage_for_quota(quota: Obj, rt: ResourceType, objects: Iterable[Obj], now: float) -> Usage:
    """The usage of `objects` (all of type `rt`, in the quota's namespace) counted against `quota`'s hard keys."""
    hard = set(((quota.get("spec") or {}).get("hard") or {}))
    scoped = bool(quota_scopes(quota))
    is_pods = rt.group == "" and rt.resource == "pods"
    if scoped and not is_pods:
        return {}
    total: Usage = {}
    for obj in objects:
        if is_pods and scoped and not quota_matches_pod(quota, obj):
            continue
        total = add(total, {k: v for k, v in object_usage(rt, obj, now).items() if k in hard})
    return total


def resource_for_hard_key(key: str) -> ResourceType | None:
    """The resource type a `count/<resource>.<group>` key counts (built-in types; None for unknown ones)."""
    if not key.startswith("count/"):
        return None
    name = key[len("count/"):]
    resource_name, _, group = name.partition(".")
    return next((rt for rt in BUILTIN if rt.resource == resource_name and rt.group == group and rt.namespaced), None)


def types_for_quota(hard: Iterable[str]) -> set[ResourceType]:
    """Every resource type whose objects a quota with these hard keys counts."""
    out: set[ResourceType] = set()
    for key in hard:
        for rt in CORE_TYPES:
            if tracked_by(rt, [key]):
                out.add(rt)
        rt = resource_for_hard_key(key)
        if rt is not None:
            out.add(rt)
    return out


CORE_TYPES = tuple(resource(n) for n in ("pods", "services", "configmaps", "secrets", "persistentvolumeclaims",
                                         "replicationcontrollers", "resourcequotas"))


# -- the controller -----------------------------------------------------------------------------------

class ResourceQuotaController(Controller):
    name = "resourcequota-controller"
    workers = 2

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.quota_rt = resource("resourcequotas")
        self.quotas = informers.informer(self.quota_rt)
        self.quotas.add_handler(self.enqueue, self.on_quota_update, None)
        self.watched: dict[str, Informer] = {}
        for rt in CORE_TYPES:
            self.watch(rt)

    def watch(self, rt: ResourceType) -> Informer:
        inf = self.watched.get(rt.qualified)
        if inf is None:
            inf = self.watched[rt.qualified] = self.informers.informer(rt)
            relevant = _relevance(rt)
            inf.add_handler(self.on_object, lambda old, new: relevant(old) != relevant(new) and self.on_object(new),
                            self.on_object)
        return inf

    # -- handlers ------------------------------------------------------------------------------------
    def on_quota_update(self, old: Obj, new: Obj) -> None:
        if old.get("spec") != new.get("spec") or (new.get("status") or {}).get("hard") != (new.get("spec") or {}).get(
                "hard"):
            self.enqueue(new)

    def on_object(self, obj: Obj) -> None:
        """Any change to a counted object re-counts the quotas of its namespace (the queue collapses repeats)."""
        namespace = obj["metadata"].get("namespace")
        if not namespace:
            return
        for quota in self.quotas.store.in_namespace(namespace):
            self.queue.add(object_key(quota))

    # -- sync ----------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        quota = self.quotas.store.get(key)
        if quota is None:
            return
        try:
            await self.sync_resource_quota(quota)
        finally:
            self.queue.add_after(key, RESYNC_PERIOD)

    async def sync_resource_quota(self, quota: Obj) -> None:
        namespace = quota["metadata"]["namespace"]
        hard_raw = (quota.get("spec") or {}).get("hard") or {}
        now = self.options.clock()
        used: Usage = {}
        for rt in types_for_quota(hard_raw):
            inf = await self.informer_for(rt)
            used = add(used, usage_for_quota(quota, rt, inf.store.in_namespace(namespace), now))
        for key in hard_raw:
            if key.startswith("count/") and resource_for_hard_key(key) is None:
                count = await self.count_custom(key, namespace)
                if count is not None:
                    used[key] = quantity(count)
        used = {k: used.get(k, ZERO) for k in hard_raw if k in used or _tracked_key(k)}
        status = {"hard": {k: canonical(parse(v)) if _parses(v) else v for k, v in hard_raw.items()},
                  "used": format_usage(used)}
        current = quota.get("status") or {}
        if (current.get("hard") or {}) == status["hard"] and (current.get("used") or {}) == status["used"]:
            return
        updated = copy.deepcopy(quota)
        updated["status"] = {**current, **status}
        await self.client.update_status(self.quota_rt, updated)

    async def informer_for(self, rt: ResourceType) -> Informer:
        """The informer of a counted type; `count/` keys for other built-in types start one on first use."""
        inf = self.watch(rt)
        if not inf.has_synced:
            inf.start()
            await inf.wait_synced(timeout=30)
        return inf

    async def count_custom(self, key: str, namespace: str) -> int | None:
        """`count/<resource>.<group>` of a custom resource: found through discovery, counted by a live list."""
        resource_name, _, group = key[len("count/"):].partition(".")
        if not group:
            return None
        try:
            info = await self.client.request("GET", f"/apis/{group}")
            version = (info.get("preferredVersion") or {}).get("groupVersion")
            if not version:
                return None
            total, token = 0, ""
            while True:
                page = await self.client.request("GET", f"/apis/{version}/namespaces/{namespace}/{resource_name}",
                                                 params={"limit": 500, "continue": token})
                total += len(page.get("items") or [])
                token = (page.get("metadata") or {}).get("continue") or ""
                if not token:
                    return total
        except errors.APIError:
            return None


def _parses(raw: Any) -> bool:
    try:
        parse(raw)
        return True
    except QuantityError:
        return False


def _tracked_key(key: str) -> bool:
    """Hard keys some evaluator counts: they show `0` in status.used before anything uses them."""
    if key.startswith("count/"):
        return True
    return any(tracked_by(rt, [key]) for rt in CORE_TYPES)


def _relevance(rt: ResourceType) -> Callable[[Obj], Any]:
    """What of an object changes its usage: an update changing none of it re-counts nothing."""
    if rt.group == "" and rt.resource == "pods":
        return lambda p: ((p.get("status") or {}).get("phase"), p["metadata"].get("deletionTimestamp"),
                          (p.get("spec") or {}).get("activeDeadlineSeconds"),
                          [c.get("resources") for c in (p.get("spec") or {}).get("containers") or []])
    if rt.group == "" and rt.resource == "services":
        return lambda s: ((s.get("spec") or {}).get("type"), len((s.get("spec") or {}).get("ports") or []))
    if rt.group == "" and rt.resource == "persistentvolumeclaims":
        return lambda c: ((c.get("spec") or {}).get("resources"), (c.get("status") or {}).get("allocatedResources"))
    return lambda o: None

