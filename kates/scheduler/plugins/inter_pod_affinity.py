"""InterPodAffinity: place pods relative to other pods at a topology (node, zone...): required affinity and
anti-affinity filter nodes (including existing pods' anti-affinity towards the incoming pod), preferred terms score.

PreFilter counts, per (topology key, value), the pods matching each side's terms once over the cluster; Filter is
then a few dict lookups per node. Pods without any affinity skip the plugin unless an existing pod has required
anti-affinity (it might repel them).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from ..framework import (ASSIGNED_POD, NODE, SKIP, ActionType, ClusterEvent, Code, CycleState, NodeInfo, PodInfo,
                         Status, MAX_NODE_SCORE)
from ..nodeinfo import AffinityTerm

ERR_REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
ERR_REASON_AFFINITY = "node(s) didn't match pod affinity rules"
ERR_REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
_AFFINITY = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_AFFINITY)
_ANTI_AFFINITY = Status(Code.UNSCHEDULABLE, ERR_REASON_ANTI_AFFINITY)
_EXISTING_ANTI_AFFINITY = Status(Code.UNSCHEDULABLE, ERR_REASON_EXISTING_ANTI_AFFINITY)
PRE_FILTER_KEY = "PreFilterInterPodAffinity"
PRE_SCORE_KEY = "PreScoreInterPodAffinity"

Counts = dict[tuple[str, str], int]


def _update(counts: Counts, node: NodeInfo, topology_key: str, delta: int) -> None:
    value = node.labels.get(topology_key)
    if value is None:
        return
    pair = (topology_key, value)
    n = counts.get(pair, 0) + delta
    if n:
        counts[pair] = n
    else:
        counts.pop(pair, None)


def matches_all(terms: Sequence[AffinityTerm], pod: PodInfo) -> bool:
    """Does `pod` fall under every term? (Terms of the incoming pod have their namespace selector resolved.)"""
    return bool(terms) and all(t.matches(pod, None) for t in terms)


class _FilterState:
    __slots__ = ("pod", "affinity", "anti_affinity", "namespace_labels", "existing_anti_affinity_counts",
                 "affinity_counts", "anti_affinity_counts")

    def __init__(self, pod: PodInfo, affinity: list[AffinityTerm], anti_affinity: list[AffinityTerm],
                 namespace_labels: Mapping[str, str]) -> None:
        self.pod = pod
        self.affinity = affinity
        self.anti_affinity = anti_affinity
        self.namespace_labels = namespace_labels
        self.existing_anti_affinity_counts: Counts = {}
        self.affinity_counts: Counts = {}
        self.anti_affinity_counts: Counts = {}

    def clone(self) -> "_FilterState":
        c = _FilterState(self.pod, self.affinity, self.anti_affinity, self.namespace_labels)
        c.existing_anti_affinity_counts = dict(self.existing_anti_affinity_counts)
        c.affinity_counts = dict(self.affinity_counts)
        c.anti_affinity_counts = dict(self.anti_affinity_counts)
        return c

    def update_with_pod(self, other: PodInfo, node: NodeInfo, delta: int) -> None:
        for t in other.required_anti_affinity:
            if t.matches(self.pod, self.namespace_labels):
                _update(self.existing_anti_affinity_counts, node, t.topology_key, delta)
        if matches_all(self.affinity, other):
            for t in self.affinity:
                _update(self.affinity_counts, node, t.topology_key, delta)
        for t in self.anti_affinity:
            if t.matches(other, None):
                _update(self.anti_affinity_counts, node, t.topology_key, delta)


class InterPodAffinity:
    name = "InterPodAffinity"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        args = args or {}
        self.handle = handle
        self.hard_pod_affinity_weight = int(args.get("hardPodAffinityWeight", 1))
        self.ignore_preferred_terms_of_existing_pods = bool(args.get("ignorePreferredTermsOfExistingPods", False))

    def _resolve(self, terms: Iterable[AffinityTerm]) -> list[AffinityTerm]:
        """Fold each term's namespace selector into its namespace set, as Kubernetes does for the incoming pod."""
        out = []
        for t in terms:
            if t.namespace_selector is None:
                out.append(t)
                continue
            namespaces = t.namespaces | self.handle.namespaces_matching(t.namespace_selector)
            out.append(AffinityTerm(t.selector, frozenset(namespaces), None, t.topology_key, t.weight))
        return out

    # -- filter -----------------------------------------------------------------------------------------------
    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        snapshot = self.handle.snapshot
        with_anti = snapshot.have_pods_with_required_anti_affinity()
        if not pod.required_affinity and not pod.required_anti_affinity and not with_anti:
            return SKIP
        s = _FilterState(pod, self._resolve(pod.required_affinity), self._resolve(pod.required_anti_affinity),
                         self.handle.namespace_labels(pod.namespace))
        for node in with_anti:
            for existing in node.pods_with_required_anti_affinity.values():
                for t in existing.required_anti_affinity:
                    if t.matches(pod, s.namespace_labels):
                        _update(s.existing_anti_affinity_counts, node, t.topology_key, 1)
        if s.affinity or s.anti_affinity:
            for node in snapshot.node_infos():
                for existing in node.pods.values():
                    if s.affinity and matches_all(s.affinity, existing):
                        for t in s.affinity:
                            _update(s.affinity_counts, node, t.topology_key, 1)
                    for t in s.anti_affinity:
                        if t.matches(existing, None):
                            _update(s.anti_affinity_counts, node, t.topology_key, 1)
        state.write(PRE_FILTER_KEY, s)
        return None

    def add_pod(self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo, node: NodeInfo) -> Status | None:
        s = state.get(PRE_FILTER_KEY)
        if s is not None:
            s.update_with_pod(pod_to_add, node, 1)
        return None

    def remove_pod(self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo, node: NodeInfo) -> Status | None:
        s = state.get(PRE_FILTER_KEY)
        if s is not None:
            s.update_with_pod(pod_to_remove, node, -1)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        s: _FilterState = state.read(PRE_FILTER_KEY)
        labels = node.labels
        if s.affinity:
            exist = True
            for t in s.affinity:
                value = labels.get(t.topology_key)
                if value is None:
                    return _AFFINITY
                if s.affinity_counts.get((t.topology_key, value), 0) <= 0:
                    exist = False
            # the first pod of a group with affinity to itself may go anywhere its topology keys exist
            if not exist and not (not s.affinity_counts and matches_all(s.affinity, pod)):
                return _AFFINITY
        if s.anti_affinity_counts:
            for t in s.anti_affinity:
                value = labels.get(t.topology_key)
                if value is not None and s.anti_affinity_counts.get((t.topology_key, value), 0) > 0:
                    return _ANTI_AFFINITY
        if s.existing_anti_affinity_counts:
            counts = s.existing_anti_affinity_counts
            for pair in labels.items():
                if counts.get(pair, 0) > 0:
                    return _EXISTING_ANTI_AFFINITY
        return None

    # -- score ------------------------------------------------------------------------------------------------
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        has_constraints = bool(pod.preferred_affinity or pod.preferred_anti_affinity)
        if self.ignore_preferred_terms_of_existing_pods and not has_constraints:
            return SKIP
        snapshot = self.handle.snapshot
        all_nodes = snapshot.node_infos() if has_constraints else snapshot.have_pods_with_affinity()
        if not all_nodes:
            return SKIP
        preferred = self._resolve(pod.preferred_affinity)
        preferred_anti = self._resolve(pod.preferred_anti_affinity)
        ns_labels = self.handle.namespace_labels(pod.namespace)
        scores: dict[str, dict[str, int]] = {}

        def process(terms: Iterable[AffinityTerm], target: PodInfo, target_ns_labels: Mapping[str, str] | None,
                    node: NodeInfo, multiplier: int, weight: int | None = None) -> None:
            for t in terms:
                if t.matches(target, target_ns_labels):
                    value = node.labels.get(t.topology_key)
                    if value is not None:
                        by_value = scores.setdefault(t.topology_key, {})
                        by_value[value] = by_value.get(value, 0) + (t.weight if weight is None else weight) * multiplier

        for node in all_nodes:
            if not node.labels:
                continue
            existing_pods = node.pods if has_constraints else node.pods_with_affinity
            for existing in existing_pods.values():
                process(preferred, existing, None, node, 1)
                process(preferred_anti, existing, None, node, -1)
                if self.hard_pod_affinity_weight > 0:
                    process(existing.required_affinity, pod, ns_labels, node, 1, self.hard_pod_affinity_weight)
                process(existing.preferred_affinity, pod, ns_labels, node, 1)
                process(existing.preferred_anti_affinity, pod, ns_labels, node, -1)
        if not scores:
            return SKIP
        state.write(PRE_SCORE_KEY, scores)
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        total = 0
        labels = node.labels
        for key, by_value in state.read(PRE_SCORE_KEY).items():
            value = labels.get(key)
            if value is not None:
                total += by_value.get(value, 0)
        return total

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        if not scores:
            return
        lo, hi = min(scores), max(scores)
        diff = hi - lo
        for i, s in enumerate(scores):
            scores[i] = int(MAX_NODE_SCORE * ((s - lo) / diff)) if diff > 0 else 0

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent(ASSIGNED_POD, ActionType.ADD | ActionType.UPDATE_POD_LABEL | ActionType.DELETE),
                ClusterEvent(NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL | ActionType.UPDATE),
                ClusterEvent("Namespace", ActionType.ADD | ActionType.UPDATE)]
