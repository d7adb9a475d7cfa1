"""NodePorts: a pod asking for host ports fits only on nodes where those ports are free."""
from __future__ import annotations

from typing import Any, Mapping

from ..framework import (ASSIGNED_POD, NODE, SKIP, ActionType, ClusterEvent, Code, CycleState, NodeInfo, PodInfo,
                         Status)

ERR_REASON = "node(s) didn't have free ports for the requested pod ports"
_CONFLICT = Status(Code.UNSCHEDULABLE, ERR_REASON)
STATE_KEY = "PreFilterNodePorts"


class NodePorts:
    name = "NodePorts"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        pass

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        if not pod.host_ports:
            return SKIP
        state.write(STATE_KEY, pod.host_ports)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        ports = state.get(STATE_KEY, pod.host_ports)
        if not node.used_ports:
            return None
        for port in ports:
            if node.port_conflict(port):
                return _CONFLICT
        return None

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent(ASSIGNED_POD, ActionType.DELETE), ClusterEvent(NODE, ActionType.ADD | ActionType.UPDATE)]
