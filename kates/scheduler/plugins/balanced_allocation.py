"""NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory would be used in similar proportions after
placing the pod (1 − standard deviation of the requested fractions). Best-effort pods are not scored by it."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..framework import SKIP, CycleState, NodeInfo, PodInfo, Status, MAX_NODE_SCORE
from ..nodeinfo import CPU, MEMORY
from .helpers import ScoreMemo


class NodeResourcesBalancedAllocation:
    name = "NodeResourcesBalancedAllocation"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        resources = (args or {}).get("resources") or [{"name": CPU, "weight": 1}, {"name": MEMORY, "weight": 1}]
        self.resources = [r["name"] for r in resources]
        self._cpu_memory_only = self.resources == [CPU, MEMORY]
        self._memo = ScoreMemo()

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        if all(pod.requests.get(r) == 0 for r in self.resources):
            return SKIP
        return None

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        if not self._cpu_memory_only:
            return [self.score(state, pod, n) for n in nodes]
        pc, pm = pod.requests.milli_cpu, pod.requests.memory
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
            else:
                # fraction requested after placing the pod, capped at 1; the std of two values is half their distance
                fc = (ac - n.free_cpu + pc) / ac
                fm = (am - n.free_memory + pm) / am
                if fc > 1.0:
                    fc = 1.0
                if fm > 1.0:
                    fm = 1.0
                s = int((1 - (fc - fm if fc > fm else fm - fc) / 2) * MAX_NODE_SCORE)
            memo[g] = s
            append(s)
        return out

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        alloc, used, req = node.allocatable, node.requested, pod.requests
        if self._cpu_memory_only and alloc.milli_cpu and alloc.memory:
            fc = min((used.milli_cpu + req.milli_cpu) / alloc.milli_cpu, 1.0)
            fm = min((used.memory + req.memory) / alloc.memory, 1.0)
            return int((1 - abs(fc - fm) / 2) * MAX_NODE_SCORE)
        fractions = []
        for name in self.resources:
            capacity = alloc.get(name)
            if capacity == 0:
                continue
            fractions.append(min((used.get(name) + req.get(name)) / capacity, 1.0))
        std = 0.0
        if len(fractions) == 2:
            std = abs(fractions[0] - fractions[1]) / 2
        elif len(fractions) > 2:
            mean = sum(fractions) / len(fractions)
            std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
        return int((1 - std) * MAX_NODE_SCORE)
