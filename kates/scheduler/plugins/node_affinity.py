"""NodeAffinity: `nodeSelector` and required node affinity filter nodes; preferred node affinity scores them."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..framework import NODE, SKIP, ActionType, ClusterEvent, Code, CycleState, NodeInfo, PodInfo, Status
from ..nodeinfo import NodeSelectorTerm
from .helpers import default_normalize_score

ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector"
_MISMATCH = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_POD)
PRE_FILTER_KEY = "PreFilterNodeAffinity"
PRE_SCORE_KEY = "PreScoreNodeAffinity"


class NodeAffinity:
    name = "NodeAffinity"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        pass

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        required = pod.required_node_affinity
        if required is None:
            return SKIP
        state.write(PRE_FILTER_KEY, required)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        required = state.get(PRE_FILTER_KEY) or pod.required_node_affinity
        if required is not None and not required.matches(node.labels, node.name):
            return _MISMATCH
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        preferred = (((pod.spec.get("affinity") or {}).get("nodeAffinity") or {})
                     .get("preferredDuringSchedulingIgnoredDuringExecution")) or []
        terms = [(int(p.get("weight") or 0), NodeSelectorTerm(p.get("preference") or {})) for p in preferred]
        terms = [(w, t) for w, t in terms if w]
        if not terms:
            return SKIP
        state.write(PRE_SCORE_KEY, terms)
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return sum(w for w, term in state.read(PRE_SCORE_KEY) if term.matches(node.labels, node.name))

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        default_normalize_score(scores)

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent(NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL | ActionType.UPDATE),
                ClusterEvent("Pod", ActionType.UPDATE)]
