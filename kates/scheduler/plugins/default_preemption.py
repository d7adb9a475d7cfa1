"""DefaultPreemption: when no node fits, find one where evicting lower-priority pods would make the pod fit.

For each node that failed with a resolvable status (Unschedulable), simulate removing every lower-priority pod,
check the pod fits, then put victims back one by one, most important first (PodDisruptionBudget-protected ones
before the rest), keeping only those that must go. Among candidate nodes pick the one with the fewest PDB
violations, then the lowest highest-victim priority, the smallest priority sum, the fewest victims, the latest
start time. This plugin only decides: the scheduler evicts the victims and nominates the node (the API calls),
so the decision stays table-testable.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Sequence

from ...api.selectors import selector_from_label_selector
from ..framework import (Code, CycleState, Diagnosis, NodeInfo, PodInfo, PostFilterResult, Status,
                         fit_error_message)

NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
MIN_CANDIDATE_NODES_PERCENTAGE = 10
MIN_CANDIDATE_NODES_ABSOLUTE = 100
INT32_SPAN = 2 ** 31
_NO_VICTIMS = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, NO_VICTIMS)


def more_important(a: PodInfo, b: PodInfo) -> bool:
    """Higher priority first, then the pod that started earlier."""
    if a.priority != b.priority:
        return a.priority > b.priority
    return (a.start_time or "~") < (b.start_time or "~")


def importance_key(p: PodInfo) -> tuple[int, str]:
    return (-p.priority, p.start_time or "~")


def terminating_by_preemption(p: PodInfo) -> bool:
    if not p.deleting:
        return False
    for c in (p.pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "DisruptionTarget":
            return c.get("status") == "True" and c.get("reason") == "PreemptionByScheduler"
    return False


def split_by_pdb_violation(pods: Sequence[PodInfo],
                           pdbs: Sequence[Mapping[str, Any]]) -> tuple[list[PodInfo], list[PodInfo]]:
    """Pods whose eviction would exceed a PodDisruptionBudget's allowance, and the others (order kept)."""
    allowed = [int((pdb.get("status") or {}).get("disruptionsAllowed") or 0) for pdb in pdbs]
    selectors = [selector_from_label_selector((pdb.get("spec") or {}).get("selector")) for pdb in pdbs]
    violating, non_violating = [], []
    for p in pods:
        violated = False
        if p.labels:
            for i, pdb in enumerate(pdbs):
                sel = selectors[i]
                if pdb["metadata"].get("namespace") != p.namespace or sel is None or sel.empty:
                    continue
                if not sel.matches(p.labels):
                    continue
                if p.name in ((pdb.get("status") or {}).get("disruptedPods") or {}):
                    continue
                allowed[i] -= 1
                if allowed[i] < 0:
                    violated = True
        (violating if violated else non_violating).append(p)
    return violating, non_violating


class Candidate:
    __slots__ = ("name", "victims", "num_pdb_violations")

    def __init__(self, name: str, victims: list[PodInfo], num_pdb_violations: int) -> None:
        self.name = name
        self.victims = victims
        self.num_pdb_violations = num_pdb_violations


def pick_one_node_for_preemption(candidates: Sequence[Candidate]) -> Candidate | None:
    if not candidates:
        return None

    def earliest_start(c: Candidate) -> str:
        top = c.victims[0].priority
        return min((v.start_time or "~") for v in c.victims if v.priority == top)

    score_funcs: list[Callable[[Candidate], Any]] = [
        lambda c: -c.num_pdb_violations,
        lambda c: -c.victims[0].priority,
        lambda c: -sum(v.priority + INT32_SPAN for v in c.victims),
        lambda c: -len(c.victims),
        earliest_start,                      # later start (bigger timestamp) is better
    ]
    remaining = list(candidates)
    for f in score_funcs:
        scores = [f(c) for c in remaining]
        best = max(scores)
        remaining = [c for c, s in zip(remaining, scores) if s == best]
        if len(remaining) == 1:
            break
    return remaining[0]


class DefaultPreemption:
    name = "DefaultPreemption"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        args = args or {}
        self.handle = handle
        self.min_candidate_nodes_percentage = int(args.get("minCandidateNodesPercentage",
                                                           MIN_CANDIDATE_NODES_PERCENTAGE))
        self.min_candidate_nodes_absolute = int(args.get("minCandidateNodesAbsolute", MIN_CANDIDATE_NODES_ABSOLUTE))
        self.rand = random.Random()

    def post_filter(self, state: CycleState, pod: PodInfo,
                    statuses: Mapping[str, Status]) -> tuple[PostFilterResult | None, Status | None]:
        result, status = self.preempt(state, pod, statuses)
        if status is not None and status.message:
            return result, Status(status.code, "preemption: " + status.message)
        return result, status

    def eligible(self, pod: PodInfo, statuses: Mapping[str, Status]) -> str:
        """Why `pod` may not preempt now, or "" if it may."""
        if pod.preemption_policy == "Never":
            return "not eligible due to preemptionPolicy=Never."
        nominated = pod.nominated_node_name
        if nominated:
            st = statuses.get(nominated)
            if st is not None and st.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                return ""
            node = self.handle.snapshot.get(nominated)
            if node is not None and any(p.priority < pod.priority and terminating_by_preemption(p)
                                        for p in node.pods.values()):
                return "not eligible due to a terminating pod on the nominated node."
        return ""

    def preempt(self, state: CycleState, pod: PodInfo,
                statuses: Mapping[str, Status]) -> tuple[PostFilterResult | None, Status | None]:
        why_not = self.eligible(pod, statuses)
        if why_not:
            return None, Status(Code.UNSCHEDULABLE, why_not)
        all_nodes = self.handle.snapshot.node_infos()
        potential = [n for n in all_nodes if (st := statuses.get(n.name)) is not None and st.code == Code.UNSCHEDULABLE]
        candidates, node_statuses = self.find_candidates(state, pod, potential)
        if not candidates:
            for n in all_nodes:
                node_statuses.setdefault(n.name, Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, NOT_HELPFUL))
            message = fit_error_message(len(all_nodes), Diagnosis(node_to_status=node_statuses))
            return PostFilterResult(nominated_node_name=""), Status(Code.UNSCHEDULABLE, message)
        best = pick_one_node_for_preemption(candidates)
        assert best is not None
        return PostFilterResult(nominated_node_name=best.name, victims=best.victims), None

    def num_candidates(self, num_nodes: int) -> int:
        n = num_nodes * self.min_candidate_nodes_percentage // 100
        return min(max(n, self.min_candidate_nodes_absolute), num_nodes)

    def find_candidates(self, state: CycleState, pod: PodInfo,
                        potential: Sequence[NodeInfo]) -> tuple[list[Candidate], dict[str, Status]]:
        """Dry-run preemption on the potential nodes from a random offset until enough candidates are found."""
        statuses: dict[str, Status] = {}
        if not potential:
            return [], statuses
        pdbs = self.handle.pdbs()
        offset = self.rand.randrange(len(potential))
        wanted = self.num_candidates(len(potential))
        non_violating: list[Candidate] = []
        violating: list[Candidate] = []
        for i in range(len(potential)):
            node = potential[(offset + i) % len(potential)]
            if not any(p.priority < pod.priority for p in node.pods.values()):
                statuses[node.name] = _NO_VICTIMS        # nothing to evict: skip copying the node and state
                continue
            victims, num_violations, status = self.select_victims_on_node(state.clone(), pod, node.clone(), pdbs)
            if status is None and victims:
                (violating if num_violations else non_violating).append(Candidate(node.name, victims, num_violations))
                if non_violating and len(non_violating) + len(violating) >= wanted:
                    break
                continue
            if status is None:
                status = Status.error(f"expected at least one victim pod on node {node.name!r}")
            statuses[node.name] = status
        return non_violating + violating, statuses

    def select_victims_on_node(self, state: CycleState, pod: PodInfo, node: NodeInfo,
                               pdbs: Sequence[Mapping[str, Any]]) -> tuple[list[PodInfo], int, Status | None]:
        """The fewest lower-priority pods to evict from `node` (a copy) so that `pod` fits."""
        handle = self.handle
        potential = [p for p in node.pods.values() if p.priority < pod.priority]
        for p in potential:
            node.remove_pod(p.uid)
            handle.run_pre_filter_extension_remove_pod(state, pod, p, node)
        if not potential:
            return [], 0, _NO_VICTIMS
        status = handle.run_filter_plugins_with_nominated_pods(state, pod, node)
        if status is not None:
            return [], 0, status
        potential.sort(key=importance_key)
        violating, non_violating = split_by_pdb_violation(potential, pdbs)
        victims: list[PodInfo] = []

        def reprieve(p: PodInfo) -> bool:
            node.add_pod(p)
            handle.run_pre_filter_extension_add_pod(state, pod, p, node)
            if handle.run_filter_plugins_with_nominated_pods(state, pod, node) is None:
                return True
            node.remove_pod(p.uid)
            handle.run_pre_filter_extension_remove_pod(state, pod, p, node)
            victims.append(p)
            return False

        num_violating = sum(1 for p in violating if not reprieve(p))
        for p in non_violating:
            reprieve(p)
        if violating and non_violating:
            victims.sort(key=importance_key)
        return victims, num_violating, None
