"""What the scheduler knows about pods and nodes, parsed once: `PodInfo`, `NodeInfo`, `Resource`, affinity terms.

Pods and nodes arrive as raw JSON dicts from informers. Plugins look at them thousands of times per second, so
everything they need (requests in milli-CPU and bytes, host ports, parsed affinity terms, taints by effect) is
computed once when a pod or node enters the cache, and per-node aggregates (requested resources, used ports, pods
with affinity) are kept incrementally as pods come and go, as Kubernetes' `framework.NodeInfo` does.
"""
from __future__ import annotations

import itertools
import math
from decimal import Decimal
from typing import Any, Iterable, Mapping

from ..api.selectors import LabelSelector, Requirement, selector_from_label_selector
from ..api.validation import quantity

Obj = dict[str, Any]

CPU, MEMORY, EPHEMERAL_STORAGE, PODS = "cpu", "memory", "ephemeral-storage", "pods"
DEFAULT_MILLI_CPU_REQUEST = 100                 # what scoring assumes for a container without a cpu request
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024      # ... and without a memory request
HOSTNAME_LABEL = "kubernetes.io/hostname"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

# -- quantities -------------------------------------------------------------------------------------------------

_VALUES: dict[Any, int] = {}
_MILLI_VALUES: dict[Any, int] = {}


def _parse(raw: Any) -> Decimal:
    try:
        return quantity.parse(raw).value
    except quantity.QuantityError:
        return Decimal(0)


def value(raw: Any) -> int:
    """A quantity as an integer, rounded up (Quantity.Value)."""
    v = _VALUES.get(raw)
    if v is None:
        v = _VALUES[raw] = math.ceil(_parse(raw))
    return v


def milli_value(raw: Any) -> int:
    """A quantity in thousandths, rounded up (Quantity.MilliValue): how CPU is counted."""
    v = _MILLI_VALUES.get(raw)
    if v is None:
        v = _MILLI_VALUES[raw] = math.ceil(_parse(raw) * 1000)
    return v


class Resource:
    """A vector of resource amounts: milli-CPU, bytes of memory and ephemeral storage, pods, extended resources."""

    __slots__ = ("milli_cpu", "memory", "ephemeral_storage", "pods", "scalar")

    def __init__(self, milli_cpu: int = 0, memory: int = 0, ephemeral_storage: int = 0, pods: int = 0,
                 scalar: dict[str, int] | None = None) -> None:
        self.milli_cpu = milli_cpu
        self.memory = memory
        self.ephemeral_storage = ephemeral_storage
        self.pods = pods
        self.scalar: dict[str, int] = scalar if scalar is not None else {}

    @classmethod
    def from_list(cls, resources: Mapping[str, Any] | None) -> "Resource":
        r = cls()
        for name, raw in (resources or {}).items():
            r.set(name, raw)
        return r

    def set(self, name: str, raw: Any) -> None:
        if name == CPU:
            self.milli_cpu = milli_value(raw)
        elif name == MEMORY:
            self.memory = value(raw)
        elif name == EPHEMERAL_STORAGE:
            self.ephemeral_storage = value(raw)
        elif name == PODS:
            self.pods = value(raw)
        elif is_scalar_resource(name):
            self.scalar[name] = value(raw)

    def get(self, name: str) -> int:
        if name == CPU:
            return self.milli_cpu
        if name == MEMORY:
            return self.memory
        if name == EPHEMERAL_STORAGE:
            return self.ephemeral_storage
        if name == PODS:
            return self.pods
        return self.scalar.get(name, 0)

    def add(self, other: "Resource", sign: int = 1) -> None:
        self.milli_cpu += sign * other.milli_cpu
        self.memory += sign * other.memory
        self.ephemeral_storage += sign * other.ephemeral_storage
        self.pods += sign * other.pods
        if other.scalar:
            for name, amount in other.scalar.items():
                self.scalar[name] = self.scalar.get(name, 0) + sign * amount

    def set_max(self, other: "Resource") -> None:
        self.milli_cpu = max(self.milli_cpu, other.milli_cpu)
        self.memory = max(self.memory, other.memory)
        self.ephemeral_storage = max(self.ephemeral_storage, other.ephemeral_storage)
        self.pods = max(self.pods, other.pods)
        for name, amount in other.scalar.items():
            self.scalar[name] = max(self.scalar.get(name, 0), amount)

    def copy(self) -> "Resource":
        return Resource(self.milli_cpu, self.memory, self.ephemeral_storage, self.pods, dict(self.scalar))

    def is_zero(self) -> bool:
        return not (self.milli_cpu or self.memory or self.ephemeral_storage or any(self.scalar.values()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resource) and (
            (self.milli_cpu, self.memory, self.ephemeral_storage, self.pods, self.scalar)
            == (other.milli_cpu, other.memory, other.ephemeral_storage, other.pods, other.scalar))

    def __repr__(self) -> str:
        extra = f", {self.scalar}" if self.scalar else ""
        return (f"Resource(cpu={self.milli_cpu}m, memory={self.memory}, eph={self.ephemeral_storage}, "
                f"pods={self.pods}{extra})")


def is_scalar_resource(name: str) -> bool:
    """Extended resources (`example.com/gpu`), hugepages and attachable volumes: counted like cpu and memory."""
    return "/" in name or name.startswith("hugepages-") or name.startswith("attachable-volumes-")


def _container_requests(container: Obj, non_zero: bool) -> Resource:
    requests = (container.get("resources") or {}).get("requests") or {}
    r = Resource.from_list(requests)
    if non_zero:
        if CPU not in requests:
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST
        if MEMORY not in requests:
            r.memory = DEFAULT_MEMORY_REQUEST
    return r


def pod_requests(spec: Obj, non_zero: bool = False) -> Resource:
    """What a pod asks of a node: the sum of its containers (and sidecars), or the largest init container if bigger,
    plus the pod overhead. With `non_zero`, containers without a cpu/memory request count as 100m / 200Mi (scoring
    uses this so best-effort pods still spread)."""
    total = Resource()
    for c in spec.get("containers") or ():
        total.add(_container_requests(c, non_zero))
    init_containers = spec.get("initContainers")
    if init_containers:
        sidecars = Resource()
        init_max = Resource()
        for c in init_containers:
            reqs = _container_requests(c, non_zero)
            if c.get("restartPolicy") == "Always":     # a sidecar: keeps running next to the app containers
                total.add(reqs)
                sidecars.add(reqs)
                reqs = sidecars.copy()
            else:
                reqs.add(sidecars)
            init_max.set_max(reqs)
        total.set_max(init_max)
    overhead = spec.get("overhead")
    if overhead:
        total.add(Resource.from_list(overhead))
    return total


# -- selectors --------------------------------------------------------------------------------------------------

class NodeSelectorRequirement:
    """One `matchExpressions` / `matchFields` entry of a NodeSelectorTerm."""

    __slots__ = ("key", "operator", "values", "number")

    def __init__(self, expr: Obj) -> None:
        self.key: str = expr.get("key", "")
        self.operator: str = expr.get("operator", "")
        self.values = frozenset(expr.get("values") or ())
        self.number: int | None = None
        if self.operator in ("Gt", "Lt") and len(self.values) == 1:
            try:
                self.number = int(next(iter(self.values)))
            except ValueError:
                self.number = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        present = self.key in labels
        if op == "In":
            return present and labels[self.key] in self.values
        if op == "NotIn":
            return not present or labels[self.key] not in self.values
        if op == "Exists":
            return present
        if op == "DoesNotExist":
            return not present
        if op in ("Gt", "Lt"):
            if not present or self.number is None:
                return False
            try:
                v = int(labels[self.key])
            except ValueError:
                return False
            return v > self.number if op == "Gt" else v < self.number
        return False


class NodeSelectorTerm:
    """Requirements ANDed together; a term with none matches no node (as in Kubernetes)."""

    __slots__ = ("expressions", "fields")

    def __init__(self, term: Obj) -> None:
        self.expressions = [NodeSelectorRequirement(e) for e in term.get("matchExpressions") or ()]
        self.fields = [NodeSelectorRequirement(e) for e in term.get("matchFields") or ()
                       if e.get("key") == "metadata.name"]

    def matches(self, labels: Mapping[str, str], name: str) -> bool:
        if not self.expressions and not self.fields:
            return False
        for r in self.expressions:
            if not r.matches(labels):
                return False
        if self.fields:
            fields = {"metadata.name": name}
            for r in self.fields:
                if not r.matches(fields):
                    return False
        return True


class RequiredNodeAffinity:
    """A pod's `nodeSelector` and required node affinity, compiled: `matches(node)` is what NodeAffinity filters on."""

    __slots__ = ("node_selector", "terms")

    def __init__(self, node_selector: Mapping[str, str] | None, terms: list[NodeSelectorTerm] | None) -> None:
        self.node_selector = dict(node_selector or {})
        self.terms = terms          # None: no required affinity; []: matches nothing

    @classmethod
    def of(cls, spec: Obj) -> "RequiredNodeAffinity | None":
        selector = spec.get("nodeSelector") or None
        required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                    .get("requiredDuringSchedulingIgnoredDuringExecution"))
        terms = None
        if required is not None:
            terms = [NodeSelectorTerm(t) for t in required.get("nodeSelectorTerms") or ()]
        if not selector and terms is None:
            return None
        return cls(selector, terms)

    def matches(self, labels: Mapping[str, str], name: str) -> bool:
        for k, v in self.node_selector.items():
            if labels.get(k) != v:
                return False
        if self.terms is not None:
            return any(t.matches(labels, name) for t in self.terms)
        return True


class AffinityTerm:
    """A pod (anti-)affinity term: which pods (label selector, namespaces) and at what topology (node label key)."""

    __slots__ = ("selector", "namespaces", "namespace_selector", "topology_key", "weight")

    def __init__(self, selector: LabelSelector | None, namespaces: frozenset[str],
                 namespace_selector: LabelSelector | None, topology_key: str, weight: int = 0) -> None:
        self.selector = selector
        self.namespaces = namespaces
        self.namespace_selector = namespace_selector
        self.topology_key = topology_key
        self.weight = weight

    @classmethod
    def parse(cls, term: Obj, owner_namespace: str, owner_labels: Mapping[str, str], weight: int = 0) -> "AffinityTerm":
        selector = selector_from_label_selector(term.get("labelSelector"))
        extra: list[Requirement] = []
        for key in term.get("matchLabelKeys") or ():
            if key in owner_labels:
                extra.append(Requirement(key, "in", frozenset([owner_labels[key]])))
        for key in term.get("mismatchLabelKeys") or ():
            if key in owner_labels:
                extra.append(Requirement(key, "notin", frozenset([owner_labels[key]])))
        if extra and selector is not None:
            selector = LabelSelector(selector.requirements + tuple(extra))
        namespaces = frozenset(term.get("namespaces") or ())
        ns_selector = selector_from_label_selector(term.get("namespaceSelector"))
        if not namespaces and ns_selector is None:
            namespaces = frozenset([owner_namespace])
        return cls(selector, namespaces, ns_selector, term.get("topologyKey", ""), weight)

    def matches(self, pod: "PodInfo", namespace_labels: Mapping[str, str] | None) -> bool:
        """Does `pod` (whose namespace has `namespace_labels`) fall under this term?"""
        if pod.namespace not in self.namespaces:
            if self.namespace_selector is None or not self.namespace_selector.matches(namespace_labels or {}):
                return False
        return self.selector is not None and self.selector.matches(pod.labels)


def _affinity_terms(terms: Iterable[Obj] | None, namespace: str, labels: Mapping[str, str],
                    weighted: bool = False) -> list[AffinityTerm]:
    out = []
    for t in terms or ():
        if weighted:
            inner = t.get("podAffinityTerm") or {}
            out.append(AffinityTerm.parse(inner, namespace, labels, int(t.get("weight") or 0)))
        else:
            out.append(AffinityTerm.parse(t, namespace, labels))
    return out


def tolerates(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """Does any toleration match the taint? An empty effect matches every effect, an empty key with Exists every
    key; the default operator Equal also compares values (v1.Toleration.ToleratesTaint)."""
    key, effect = taint.get("key", ""), taint.get("effect", "")
    for t in tolerations:
        t_effect = t.get("effect") or ""
        if t_effect and t_effect != effect:
            continue
        t_key = t.get("key") or ""
        if t_key and t_key != key:
            continue
        op = t.get("operator") or "Equal"
        if op == "Exists" or (op == "Equal" and (t.get("value") or "") == (taint.get("value") or "")):
            return True
    return False


# -- pods -------------------------------------------------------------------------------------------------------

class PodInfo:
    """A pod plus everything plugins derive from it, computed once."""

    __slots__ = ("pod", "uid", "namespace", "name", "key", "labels", "priority", "requests", "non_zero_cpu",
                 "non_zero_memory", "host_ports", "required_affinity", "required_anti_affinity",
                 "preferred_affinity", "preferred_anti_affinity", "tolerations", "node_name", "deleting",
                 "start_time", "preemption_policy", "images", "_node_affinity", "__weakref__")

    def __init__(self, pod: Obj, priority: int | None = None) -> None:
        meta = pod["metadata"]
        spec = pod.get("spec") or {}
        self.pod = pod
        self.uid: str = meta.get("uid", "")
        self.namespace: str = meta.get("namespace", "")
        self.name: str = meta.get("name", "")
        self.key = f"{self.namespace}/{self.name}"
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.priority: int = int(spec.get("priority") or 0) if priority is None else priority
        self.requests = pod_requests(spec)
        self.requests.pods = 1
        if spec.get("initContainers") or spec.get("overhead") or any(
                CPU not in ((c.get("resources") or {}).get("requests") or {})
                or MEMORY not in ((c.get("resources") or {}).get("requests") or {})
                for c in spec.get("containers") or ()):
            nz = pod_requests(spec, non_zero=True)
            self.non_zero_cpu, self.non_zero_memory = nz.milli_cpu, nz.memory
        else:
            self.non_zero_cpu, self.non_zero_memory = self.requests.milli_cpu, self.requests.memory
        self.host_ports: list[tuple[str, str, int]] = []
        for c in spec.get("containers") or ():
            for p in c.get("ports") or ():
                if p.get("hostPort"):
                    self.host_ports.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP",
                                            int(p["hostPort"])))
        affinity = spec.get("affinity") or {}
        pa = affinity.get("podAffinity") or {}
        paa = affinity.get("podAntiAffinity") or {}
        ns, labels = self.namespace, self.labels
        self.required_affinity = _affinity_terms(pa.get("requiredDuringSchedulingIgnoredDuringExecution"), ns, labels)
        self.required_anti_affinity = _affinity_terms(
            paa.get("requiredDuringSchedulingIgnoredDuringExecution"), ns, labels)
        self.preferred_affinity = _affinity_terms(
            pa.get("preferredDuringSchedulingIgnoredDuringExecution"), ns, labels, weighted=True)
        self.preferred_anti_affinity = _affinity_terms(
            paa.get("preferredDuringSchedulingIgnoredDuringExecution"), ns, labels, weighted=True)
        self.tolerations: list[Obj] = spec.get("tolerations") or []
        self.node_name: str = spec.get("nodeName") or ""
        self.deleting = bool(meta.get("deletionTimestamp"))
        status = pod.get("status") or {}
        self.start_time: str = status.get("startTime") or meta.get("creationTimestamp") or ""
        self.preemption_policy: str = spec.get("preemptionPolicy") or "PreemptLowerPriority"
        self.images = [c.get("image", "") for c in spec.get("containers") or ()]
        self._node_affinity: Any = ...

    @property
    def spec(self) -> Obj:
        return self.pod.get("spec") or {}

    @property
    def has_affinity(self) -> bool:
        return bool(self.required_affinity or self.required_anti_affinity or self.preferred_affinity
                    or self.preferred_anti_affinity)

    @property
    def required_node_affinity(self) -> RequiredNodeAffinity | None:
        if self._node_affinity is ...:
            self._node_affinity = RequiredNodeAffinity.of(self.spec)
        return self._node_affinity

    @property
    def nominated_node_name(self) -> str:
        return (self.pod.get("status") or {}).get("nominatedNodeName") or ""

    def with_node(self, node_name: str) -> "PodInfo":
        """A copy bound to `node_name` (what the cache assumes before the binding is written)."""
        clone = object.__new__(PodInfo)
        for slot in PodInfo.__slots__:
            if slot != "__weakref__":
                setattr(clone, slot, getattr(self, slot))
        clone.node_name = node_name
        return clone

    def __repr__(self) -> str:
        return f"PodInfo({self.key}, node={self.node_name or '-'}, priority={self.priority})"


# -- nodes ------------------------------------------------------------------------------------------------------

# Every change to any NodeInfo (or a clone) takes a new generation from one counter, so "same generation" always
# means "same state": plugins may memoize per-node results on it (as Kubernetes' nextGeneration()).
_generations = itertools.count(1)

def normalized_image_name(name: str) -> str:
    """`nginx` and `nginx:latest` are the same image to ImageLocality."""
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        return name + ":latest"
    return name


class NodeInfo:
    """A node and the pods on it (bound or assumed), with incrementally kept aggregates."""

    __slots__ = ("node", "name", "labels", "unschedulable", "taints", "filter_taints", "prefer_no_schedule_taints",
                 "allocatable", "pods", "pods_with_affinity", "pods_with_required_anti_affinity", "used_ports",
                 "requested", "non_zero_cpu", "non_zero_memory", "images", "generation",
                 "alloc_cpu", "alloc_memory", "free_cpu", "free_memory", "free_storage", "free_pods")

    # The flat `alloc_*` / `free_*` fields duplicate `allocatable - requested` for the hot paths (NodeResourcesFit
    # and the scorers read them for hundreds of nodes per pod); `_refresh` keeps them in step.

    def __init__(self, node: Obj | None = None, name: str = "") -> None:
        self.node: Obj | None = None
        self.name = name
        self.labels: dict[str, str] = {}
        self.unschedulable = False
        self.taints: list[Obj] = []
        self.filter_taints: list[Obj] = []            # NoSchedule and NoExecute: what TaintToleration filters on
        self.prefer_no_schedule_taints: list[Obj] = []
        self.allocatable = Resource()
        self.pods: dict[str, PodInfo] = {}
        self.pods_with_affinity: dict[str, PodInfo] = {}
        self.pods_with_required_anti_affinity: dict[str, PodInfo] = {}
        self.used_ports: dict[tuple[str, str, int], int] = {}
        self.requested = Resource()
        self.non_zero_cpu = 0
        self.non_zero_memory = 0
        self.images: dict[str, int] = {}              # normalized image name → size in bytes
        self.generation = next(_generations)
        self._refresh()
        if node is not None:
            self.set_node(node)

    def set_node(self, node: Obj) -> None:
        meta = node["metadata"]
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.node = node
        self.name = meta["name"]
        self.labels = meta.get("labels") or {}
        self.unschedulable = bool(spec.get("unschedulable"))
        self.taints = spec.get("taints") or []
        self.filter_taints = [t for t in self.taints if t.get("effect") in ("NoSchedule", "NoExecute")]
        self.prefer_no_schedule_taints = [t for t in self.taints if t.get("effect") == "PreferNoSchedule"]
        allocatable = status.get("allocatable") or status.get("capacity") or {}
        self.allocatable = Resource.from_list(allocatable)
        images: dict[str, int] = {}
        for image in status.get("images") or ():
            size = int(image.get("sizeBytes") or 0)
            for n in image.get("names") or ():
                images[normalized_image_name(n)] = size
        self.images = images
        self.generation = next(_generations)
        self._refresh()

    def _refresh(self) -> None:
        alloc, used = self.allocatable, self.requested
        self.alloc_cpu, self.alloc_memory = alloc.milli_cpu, alloc.memory
        self.free_cpu = alloc.milli_cpu - used.milli_cpu
        self.free_memory = alloc.memory - used.memory
        self.free_storage = alloc.ephemeral_storage - used.ephemeral_storage
        self.free_pods = alloc.pods - len(self.pods)

    def add_pod(self, pi: PodInfo) -> None:
        self.pods[pi.uid] = pi
        if pi.has_affinity:
            self.pods_with_affinity[pi.uid] = pi
        if pi.required_anti_affinity:
            self.pods_with_required_anti_affinity[pi.uid] = pi
        self.requested.add(pi.requests)
        self.non_zero_cpu += pi.non_zero_cpu
        self.non_zero_memory += pi.non_zero_memory
        for port in pi.host_ports:
            self.used_ports[port] = self.used_ports.get(port, 0) + 1
        self.generation = next(_generations)
        self._refresh()

    def remove_pod(self, uid: str) -> PodInfo | None:
        pi = self.pods.pop(uid, None)
        if pi is None:
            return None
        self.pods_with_affinity.pop(uid, None)
        self.pods_with_required_anti_affinity.pop(uid, None)
        self.requested.add(pi.requests, -1)
        self.non_zero_cpu -= pi.non_zero_cpu
        self.non_zero_memory -= pi.non_zero_memory
        for port in pi.host_ports:
            left = self.used_ports.get(port, 0) - 1
            if left > 0:
                self.used_ports[port] = left
            else:
                self.used_ports.pop(port, None)
        self.generation = next(_generations)
        self._refresh()
        return pi

    def port_conflict(self, port: tuple[str, str, int]) -> bool:
        """Is (ip, protocol, port) already taken here? 0.0.0.0 conflicts with every address."""
        ip, protocol, number = port
        if not self.used_ports:
            return False
        if ip == "0.0.0.0":
            return any(p[1] == protocol and p[2] == number for p in self.used_ports)
        return (ip, protocol, number) in self.used_ports or ("0.0.0.0", protocol, number) in self.used_ports

    def clone(self) -> "NodeInfo":
        """A copy whose pod set can change without touching the cache (preemption's what-if)."""
        c = object.__new__(NodeInfo)
        c.node, c.name, c.labels, c.unschedulable = self.node, self.name, self.labels, self.unschedulable
        c.taints, c.filter_taints = self.taints, self.filter_taints
        c.prefer_no_schedule_taints = self.prefer_no_schedule_taints
        c.allocatable, c.images = self.allocatable, self.images
        c.pods = dict(self.pods)
        c.pods_with_affinity = dict(self.pods_with_affinity)
        c.pods_with_required_anti_affinity = dict(self.pods_with_required_anti_affinity)
        c.used_ports = dict(self.used_ports)
        c.requested = self.requested.copy()
        c.non_zero_cpu, c.non_zero_memory = self.non_zero_cpu, self.non_zero_memory
        c.generation = self.generation
        c._refresh()
        return c

    def __repr__(self) -> str:
        return f"NodeInfo({self.name}, pods={len(self.pods)}, requested={self.requested})"
