"""NodeResourcesFit: a pod fits where the node's allocatable covers what is already requested plus the pod's
requests (cpu, memory, ephemeral-storage, pods, extended resources); nodes are scored by a strategy:
LeastAllocated spreads (the default), MostAllocated packs (bin packing), RequestedToCapacityRatio follows a shape.

Requests come precomputed on PodInfo: containers summed, init containers as max(init) vs sum(app), sidecars
counted with the app, plus overhead. Scoring counts containers without requests as 100m / 200Mi, as Kubernetes.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ..framework import (ASSIGNED_POD, NODE, ActionType, ClusterEvent, Code, CycleState, NodeInfo, PodInfo, Status,
                         MAX_NODE_SCORE)
from ..nodeinfo import CPU, EPHEMERAL_STORAGE, MEMORY
from .helpers import ScoreMemo

LEAST_ALLOCATED, MOST_ALLOCATED, REQUESTED_TO_CAPACITY_RATIO = (
    "LeastAllocated", "MostAllocated", "RequestedToCapacityRatio")
TOO_MANY_PODS = "Too many pods"
_TOO_MANY_PODS = Status(Code.UNSCHEDULABLE, TOO_MANY_PODS)
_INSUFFICIENT_CPU = Status(Code.UNSCHEDULABLE, "Insufficient cpu")
_INSUFFICIENT_MEMORY = Status(Code.UNSCHEDULABLE, "Insufficient memory")


def insufficient_resources(pod: PodInfo, node: NodeInfo, ignored: frozenset[str] = frozenset()) -> list[str]:
    """Every reason `pod` does not fit `node`, in Kubernetes' order and wording."""
    reasons = []
    alloc, used, req = node.allocatable, node.requested, pod.requests
    if len(node.pods) + 1 > alloc.pods:
        reasons.append(TOO_MANY_PODS)
    if req.milli_cpu > 0 and req.milli_cpu > alloc.milli_cpu - used.milli_cpu:
        reasons.append("Insufficient cpu")
    if req.memory > 0 and req.memory > alloc.memory - used.memory:
        reasons.append("Insufficient memory")
    if req.ephemeral_storage > 0 and req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage:
        reasons.append("Insufficient ephemeral-storage")
    for name, amount in req.scalar.items():
        if amount > 0 and name not in ignored and amount > alloc.scalar.get(name, 0) - used.scalar.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


def least_requested_score(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def most_requested_score(requested: int, capacity: int) -> int:
    if capacity == 0:
        return 0
    return min(requested, capacity) * MAX_NODE_SCORE // capacity


def broken_linear(shape: list[tuple[int, int]]) -> Callable[[int], int]:
    """A piecewise-linear function through (utilization %, score) points, flat outside them."""
    def f(p: int) -> int:
        for i, (x, y) in enumerate(shape):
            if p <= x:
                if i == 0:
                    return shape[0][1]
                x0, y0 = shape[i - 1]
                return y0 + (y - y0) * (p - x0) // (x - x0)
        return shape[-1][1]
    return f


class NodeResourcesFit:
    name = "NodeResourcesFit"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        args = args or {}
        strategy = args.get("scoringStrategy") or {}
        self.strategy: str = strategy.get("type") or LEAST_ALLOCATED
        resources = strategy.get("resources") or [{"name": CPU, "weight": 1}, {"name": MEMORY, "weight": 1}]
        self.resources: list[tuple[str, int]] = [(r["name"], int(r.get("weight") or 1)) for r in resources]
        self.ignored: frozenset[str] = frozenset(args.get("ignoredResources") or ())
        self.ignored_groups: frozenset[str] = frozenset(args.get("ignoredResourceGroups") or ())
        shape = ((strategy.get("requestedToCapacityRatio") or {}).get("shape")
                 or [{"utilization": 0, "score": 10}, {"utilization": 100, "score": 0}])
        self._shape = broken_linear([(int(p["utilization"]), int(p["score"]) * MAX_NODE_SCORE // 10)
                                     for p in shape])
        if self.strategy == MOST_ALLOCATED:
            self._resource_score: Callable[[int, int], int] = most_requested_score
        elif self.strategy == REQUESTED_TO_CAPACITY_RATIO:
            self._resource_score = self._ratio_score
        else:
            self._resource_score = least_requested_score
        self._cpu_memory_only = self.resources == [(CPU, 1), (MEMORY, 1)]
        self._memo = ScoreMemo()

    # -- filter -----------------------------------------------------------------------------------------------
    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        req = pod.requests
        if (node.free_pods > 0
                and (req.milli_cpu <= 0 or req.milli_cpu <= node.free_cpu)
                and (req.memory <= 0 or req.memory <= node.free_memory)
                and (req.ephemeral_storage <= 0 or req.ephemeral_storage <= node.free_storage)
                and not req.scalar):
            return None
        reasons = insufficient_resources(pod, node, self._ignored_for(pod))
        if not reasons:
            return None
        if len(reasons) == 1:
            r = reasons[0]
            if r == TOO_MANY_PODS:
                return _TOO_MANY_PODS
            if r == "Insufficient cpu":
                return _INSUFFICIENT_CPU
            if r == "Insufficient memory":
                return _INSUFFICIENT_MEMORY
        return Status(Code.UNSCHEDULABLE, *reasons)

    def filter_nodes(self, state: CycleState, pod: PodInfo,
                     nodes: list[NodeInfo]) -> tuple[list[NodeInfo], list[tuple[NodeInfo, Status]]]:
        req = pod.requests
        cpu, memory, storage = req.milli_cpu, req.memory, req.ephemeral_storage
        if req.scalar or cpu <= 0 or memory <= 0:
            passed = [n for n in nodes if self.filter(state, pod, n) is None]
        elif storage > 0:
            passed = [n for n in nodes if n.free_pods > 0 and cpu <= n.free_cpu and memory <= n.free_memory
                      and storage <= n.free_storage]
        else:
            passed = [n for n in nodes if n.free_pods > 0 and cpu <= n.free_cpu and memory <= n.free_memory]
        if len(passed) == len(nodes):
            return passed, []
        ok = set(map(id, passed))
        rejected = []
        for n in nodes:
            if id(n) not in ok:
                st = self.filter(state, pod, n)
                if st is not None:
                    rejected.append((n, st))
        return passed, rejected

    def _ignored_for(self, pod: PodInfo) -> frozenset[str]:
        if not self.ignored_groups:
            return self.ignored
        return self.ignored | {n for n in pod.requests.scalar if n.split("/", 1)[0] in self.ignored_groups}

    # -- score ------------------------------------------------------------------------------------------------
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        alloc = node.allocatable
        if self._cpu_memory_only:
            f = self._resource_score
            ac, am = alloc.milli_cpu, alloc.memory
            if ac and am:
                return (f(node.non_zero_cpu + pod.non_zero_cpu, ac)
                        + f(node.non_zero_memory + pod.non_zero_memory, am)) // 2
        total = weights = 0
        for name, weight in self.resources:
            requested, capacity = self._requested(pod, node, name)
            if capacity == 0:
                continue
            total += self._resource_score(requested, capacity) * weight
            weights += weight
        return total // weights if weights else 0

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        if not self._cpu_memory_only or self.strategy == REQUESTED_TO_CAPACITY_RATIO:
            return [self.score(state, pod, n) for n in nodes]
        pc, pm = pod.non_zero_cpu, pod.non_zero_memory
        most = self.strategy == MOST_ALLOCATED
        memo = self._memo.for_shape((pc, pm), 4 * len(nodes) + 10_000)
        known = memo.get
        out: list[int] = []
        append = out.append
        for n in nodes:
            g = n.generation
            hit = known(g)
            if hit is not None:
                append(hit)
                continue
            ac, am = n.alloc_cpu, n.alloc_memory
            if not ac or not am:
                s = self.score(state, pod, n)
            elif most:
                rc, rm = n.non_zero_cpu + pc, n.non_zero_memory + pm
                s = ((rc if rc < ac else ac) * 100 // ac + (rm if rm < am else am) * 100 // am) // 2
            else:
                fc, fm = ac - n.non_zero_cpu - pc, am - n.non_zero_memory - pm
                s = ((fc * 100 // ac if fc > 0 else 0) + (fm * 100 // am if fm > 0 else 0)) // 2
            memo[g] = s
            append(s)
        return out

    def _requested(self, pod: PodInfo, node: NodeInfo, name: str) -> tuple[int, int]:
        if name == CPU:
            return node.non_zero_cpu + pod.non_zero_cpu, node.allocatable.milli_cpu
        if name == MEMORY:
            return node.non_zero_memory + pod.non_zero_memory, node.allocatable.memory
        if name == EPHEMERAL_STORAGE:
            return node.requested.ephemeral_storage + pod.requests.ephemeral_storage, \
                node.allocatable.ephemeral_storage
        pod_amount = pod.requests.get(name)
        if pod_amount == 0:
            return 0, 0      # extended resources the pod does not use do not count (they would skew scores)
        return node.requested.get(name) + pod_amount, node.allocatable.get(name)

    def _ratio_score(self, requested: int, capacity: int) -> int:
        if capacity == 0 or requested > capacity:
            return self._shape(100)
        return self._shape(requested * 100 // capacity)

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent(ASSIGNED_POD, ActionType.DELETE | ActionType.UPDATE_POD_SCALE_DOWN),
                ClusterEvent(NODE, ActionType.ADD | ActionType.UPDATE_NODE_ALLOCATABLE | ActionType.UPDATE)]
