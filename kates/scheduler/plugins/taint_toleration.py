"""TaintToleration: NoSchedule/NoExecute taints keep out pods that do not tolerate them; untolerated
PreferNoSchedule taints only lower a node's score."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..framework import NODE, SKIP, ActionType, ClusterEvent, Code, CycleState, NodeInfo, PodInfo, Status
from ..nodeinfo import tolerates
from .helpers import default_normalize_score

STATE_KEY = "PreScoreTaintToleration"


def untolerated_taint_reason(taint: dict[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


class TaintToleration:
    name = "TaintToleration"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        self.handle = handle

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        taints = node.filter_taints
        if not taints:
            return None
        tolerations = pod.tolerations
        for taint in taints:
            if not tolerates(tolerations, taint):
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, untolerated_taint_reason(taint))
        return None

    def filter_nodes(self, state: CycleState, pod: PodInfo,
                     nodes: list[NodeInfo]) -> tuple[list[NodeInfo], list[tuple[NodeInfo, Status]]]:
        if self.handle is not None and not self.handle.snapshot.has_tainted_nodes():
            return nodes, []            # no NoSchedule/NoExecute taint anywhere
        if not [n for n in nodes if n.filter_taints]:
            return nodes, []
        passed, rejected = [], []
        for n in nodes:
            st = self.filter(state, pod, n) if n.filter_taints else None
            if st is None:
                passed.append(n)
            else:
                rejected.append((n, st))
        return passed, rejected

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        if self.handle is not None and not self.handle.snapshot.has_prefer_no_schedule_taints():
            return SKIP     # every node would score the same
        if not [n for n in nodes if n.prefer_no_schedule_taints]:
            return SKIP
        state.write(STATE_KEY, [t for t in pod.tolerations if t.get("effect") in (None, "", "PreferNoSchedule")])
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        tolerations = state.read(STATE_KEY)
        return sum(1 for t in node.prefer_no_schedule_taints if not tolerates(tolerations, t))

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        default_normalize_score(scores, reverse=True)

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent(NODE, ActionType.ADD | ActionType.UPDATE_NODE_TAINT | ActionType.UPDATE),
                ClusterEvent("Pod", ActionType.UPDATE_POD_TOLERATIONS)]
