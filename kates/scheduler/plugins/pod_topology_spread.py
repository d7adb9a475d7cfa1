"""PodTopologySpread: keep matching pods evenly spread over topology domains (zones, nodes...).

A DoNotSchedule constraint filters: placing the pod in a domain must not make that domain exceed the least
populated one by more than maxSkew. A ScheduleAnyway constraint scores: domains with fewer matching pods score
higher. Only nodes the pod could go to (its node affinity: nodeAffinityPolicy Honor; taints only with
nodeTaintsPolicy Honor) define the domains, as in Kubernetes.

System default constraints (spreading pods of one Service/ReplicaSet even without constraints) are not applied
unless the profile passes `defaultConstraints` with `defaultingType: List`; then the pod's own labels select
its peers (in Kubernetes the selector comes from the owning Services and controllers).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ...api.selectors import LabelSelector, Requirement, selector_from_label_selector
from ..framework import (ASSIGNED_POD, NODE, SKIP, ActionType, ClusterEvent, Code, CycleState, NodeInfo, PodInfo,
                         Status, MAX_NODE_SCORE)
from ..nodeinfo import HOSTNAME_LABEL, RequiredNodeAffinity, tolerates

ERR_REASON_CONSTRAINTS_NOT_MATCH = "node(s) didn't match pod topology spread constraints"
ERR_REASON_NODE_LABEL_NOT_MATCH = ERR_REASON_CONSTRAINTS_NOT_MATCH + " (missing required label)"
_NOT_MATCH = Status(Code.UNSCHEDULABLE, ERR_REASON_CONSTRAINTS_NOT_MATCH)
_LABEL_NOT_MATCH = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_NODE_LABEL_NOT_MATCH)
PRE_FILTER_KEY = "PreFilterPodTopologySpread"
PRE_SCORE_KEY = "PreScorePodTopologySpread"
DO_NOT_SCHEDULE, SCHEDULE_ANYWAY = "DoNotSchedule", "ScheduleAnyway"


class Constraint:
    __slots__ = ("max_skew", "topology_key", "selector", "min_domains", "honor_affinity", "honor_taints")

    def __init__(self, c: Mapping[str, Any], pod: PodInfo) -> None:
        self.max_skew = int(c.get("maxSkew") or 1)
        self.topology_key: str = c.get("topologyKey", "")
        selector = selector_from_label_selector(c.get("labelSelector"))
        keys = [k for k in c.get("matchLabelKeys") or () if k in pod.labels]
        if selector is not None and keys:
            selector = LabelSelector(selector.requirements + tuple(
                Requirement(k, "in", frozenset([pod.labels[k]])) for k in keys))
        self.selector: LabelSelector | None = selector
        self.min_domains = int(c.get("minDomains") or 1)
        self.honor_affinity = (c.get("nodeAffinityPolicy") or "Honor") == "Honor"
        self.honor_taints = (c.get("nodeTaintsPolicy") or "Ignore") == "Honor"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.selector is not None and self.selector.matches(labels)

    def includes_node(self, pod: PodInfo, node: NodeInfo, affinity: RequiredNodeAffinity | None) -> bool:
        """nodeAffinityPolicy / nodeTaintsPolicy: does this node's domain count for the pod?"""
        if self.honor_affinity and affinity is not None and not affinity.matches(node.labels, node.name):
            return False
        if self.honor_taints and any(not tolerates(pod.tolerations, t) for t in node.filter_taints):
            return False
        return True


def count_matching(node: NodeInfo, constraint: Constraint, namespace: str) -> int:
    """Pods on the node in `namespace`, not terminating, matched by the constraint's selector."""
    n = 0
    for p in node.pods.values():
        if p.namespace == namespace and not p.deleting and constraint.matches(p.labels):
            n += 1
    return n


def has_all_keys(labels: Mapping[str, str], constraints: Sequence[Constraint]) -> bool:
    return all(c.topology_key in labels for c in constraints)


class _FilterState:
    __slots__ = ("constraints", "counts", "minimums", "affinity")

    def __init__(self, constraints: list[Constraint], affinity: RequiredNodeAffinity | None) -> None:
        self.constraints = constraints
        self.counts: list[dict[str, int]] = [{} for _ in constraints]    # per constraint: domain → matching pods
        self.minimums: list[int] = [0] * len(constraints)
        self.affinity = affinity

    def clone(self) -> "_FilterState":
        c = _FilterState(self.constraints, self.affinity)
        c.counts = [dict(m) for m in self.counts]
        c.minimums = list(self.minimums)
        return c

    def recompute_minimums(self) -> None:
        for i, c in enumerate(self.constraints):
            counts = self.counts[i]
            self.minimums[i] = 0 if len(counts) < c.min_domains or not counts else min(counts.values())

    def update_with_pod(self, pod: PodInfo, other: PodInfo, node: NodeInfo, delta: int) -> None:
        if not has_all_keys(node.labels, self.constraints) or other.namespace != pod.namespace:
            return
        for i, c in enumerate(self.constraints):
            if not c.includes_node(pod, node, self.affinity) or not c.matches(other.labels):
                continue
            value = node.labels[c.topology_key]
            self.counts[i][value] = self.counts[i].get(value, 0) + delta
        self.recompute_minimums()


class PodTopologySpread:
    name = "PodTopologySpread"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        args = args or {}
        self.handle = handle
        self.default_constraints: list[Mapping[str, Any]] = (
            list(args.get("defaultConstraints") or []) if args.get("defaultingType") == "List" else [])

    def _constraints(self, pod: PodInfo, when: str) -> list[Constraint]:
        raw = pod.spec.get("topologySpreadConstraints") or []
        if not raw and self.default_constraints and pod.labels:
            selector = {"matchLabels": dict(pod.labels)}
            raw = [dict(c, labelSelector=selector) for c in self.default_constraints]
        return [Constraint(c, pod) for c in raw if (c.get("whenUnsatisfiable") or DO_NOT_SCHEDULE) == when]

    # -- filter -----------------------------------------------------------------------------------------------
    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        constraints = self._constraints(pod, DO_NOT_SCHEDULE)
        if not constraints:
            return SKIP
        s = _FilterState(constraints, pod.required_node_affinity)
        for node in self.handle.snapshot.node_infos():
            if not has_all_keys(node.labels, constraints):
                continue
            for i, c in enumerate(constraints):
                if not c.includes_node(pod, node, s.affinity):
                    continue
                value = node.labels[c.topology_key]
                s.counts[i][value] = s.counts[i].get(value, 0) + count_matching(node, c, pod.namespace)
        s.recompute_minimums()
        state.write(PRE_FILTER_KEY, s)
        return None

    def add_pod(self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo, node: NodeInfo) -> Status | None:
        s = state.get(PRE_FILTER_KEY)
        if s is not None:
            s.update_with_pod(pod, pod_to_add, node, 1)
        return None

    def remove_pod(self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo, node: NodeInfo) -> Status | None:
        s = state.get(PRE_FILTER_KEY)
        if s is not None:
            s.update_with_pod(pod, pod_to_remove, node, -1)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        s: _FilterState = state.read(PRE_FILTER_KEY)
        labels = node.labels
        for i, c in enumerate(s.constraints):
            value = labels.get(c.topology_key)
            if value is None:
                return _LABEL_NOT_MATCH
            self_match = 1 if c.matches(pod.labels) else 0
            skew = s.counts[i].get(value, 0) + self_match - s.minimums[i]
            if skew > c.max_skew:
                return _NOT_MATCH
        return None

    # -- score ------------------------------------------------------------------------------------------------
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        constraints = self._constraints(pod, SCHEDULE_ANYWAY)
        if not constraints:
            return SKIP
        affinity = pod.required_node_affinity
        ignored: set[int] = set()
        pair_counts: dict[tuple[str, str], int] = {}
        sizes = [0] * len(constraints)
        for idx, node in enumerate(nodes):
            if not has_all_keys(node.labels, constraints):
                ignored.add(idx)
                continue
            for i, c in enumerate(constraints):
                if c.topology_key == HOSTNAME_LABEL:
                    continue
                pair = (c.topology_key, node.labels[c.topology_key])
                if pair not in pair_counts:
                    pair_counts[pair] = 0
                    sizes[i] += 1
        weights = []
        for i, c in enumerate(constraints):
            size = len(nodes) - len(ignored) if c.topology_key == HOSTNAME_LABEL else sizes[i]
            weights.append(math.log(size + 2))
        for node in self.handle.snapshot.node_infos():
            if not has_all_keys(node.labels, constraints):
                continue
            for c in constraints:
                if c.topology_key == HOSTNAME_LABEL or not c.includes_node(pod, node, affinity):
                    continue
                pair = (c.topology_key, node.labels[c.topology_key])
                if pair in pair_counts:
                    pair_counts[pair] += count_matching(node, c, pod.namespace)
        state.write(PRE_SCORE_KEY, (constraints, pair_counts, weights, ignored, [n.name for n in nodes]))
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        constraints, pair_counts, weights, ignored, _ = state.read(PRE_SCORE_KEY)
        total = 0.0
        for i, c in enumerate(constraints):
            value = node.labels.get(c.topology_key)
            if value is None:
                continue
            if c.topology_key == HOSTNAME_LABEL:
                count = count_matching(node, c, pod.namespace)
            else:
                count = pair_counts.get((c.topology_key, value), 0)
            total += count * weights[i] + (c.max_skew - 1)
        return math.floor(total + 0.5)     # Go's math.Round: halves away from zero

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        _, _, _, ignored, _ = state.read(PRE_SCORE_KEY)
        valid = [s for i, s in enumerate(scores) if i not in ignored]
        if not valid:
            scores[:] = [0] * len(scores)
            return
        lo, hi = min(valid), max(valid)
        for i, s in enumerate(scores):
            if i in ignored:
                scores[i] = 0
            elif hi == 0:
                scores[i] = MAX_NODE_SCORE
            else:
                scores[i] = MAX_NODE_SCORE * (hi + lo - s) // hi

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent(ASSIGNED_POD, ActionType.ADD | ActionType.UPDATE_POD_LABEL | ActionType.DELETE),
                ClusterEvent(NODE, ActionType.ADD | ActionType.DELETE | ActionType.UPDATE_NODE_LABEL
                             | ActionType.UPDATE_NODE_TAINT | ActionType.UPDATE)]
