"""NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that tolerate the unschedulable taint."""
from __future__ import annotations

from typing import Any, Mapping

from ..framework import ActionType, ClusterEvent, Code, CycleState, NodeInfo, PodInfo, Status, NODE
from ..nodeinfo import UNSCHEDULABLE_TAINT, tolerates

ERR_REASON_UNSCHEDULABLE = "node(s) were unschedulable"
ERR_REASON_UNKNOWN_CONDITION = "node(s) had unknown conditions"
_UNSCHEDULABLE = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_UNSCHEDULABLE)
_NO_NODE = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON_UNKNOWN_CONDITION)
_TAINT = {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}


class NodeUnschedulable:
    name = "NodeUnschedulable"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        self.handle = handle

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.unschedulable:
            return None if node.node is not None else _NO_NODE
        if tolerates(pod.tolerations, _TAINT):
            return None
        return _UNSCHEDULABLE

    def filter_nodes(self, state: CycleState, pod: PodInfo,
                     nodes: list[NodeInfo]) -> tuple[list[NodeInfo], list[tuple[NodeInfo, Status]]]:
        if self.handle is not None and not self.handle.snapshot.has_unschedulable_nodes():
            return nodes, []            # nothing is cordoned: every node of the snapshot passes
        passed = [n for n in nodes if not n.unschedulable and n.node is not None]
        if len(passed) == len(nodes):
            return passed, []
        passed, rejected = [], []
        for n in nodes:
            st = self.filter(state, pod, n)
            if st is None:
                passed.append(n)
            else:
                rejected.append((n, st))
        return passed, rejected

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent(NODE, ActionType.ADD | ActionType.UPDATE_NODE_TAINT | ActionType.UPDATE),
                ClusterEvent("Pod", ActionType.UPDATE_POD_TOLERATIONS)]
