"""NodeName: a pod that names its node (`spec.nodeName`) fits only there."""
from __future__ import annotations

from typing import Any, Mapping

from ..framework import SKIP, ActionType, ClusterEvent, Code, CycleState, NodeInfo, PodInfo, Status, NODE

ERR_REASON = "node(s) didn't match the requested node name"
_MISMATCH = Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ERR_REASON)


class NodeName:
    name = "NodeName"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        pass

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None if pod.spec.get("nodeName") else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        wanted = pod.spec.get("nodeName")
        if wanted and wanted != node.name:
            return _MISMATCH
        return None

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent(NODE, ActionType.ADD)]
