"""SchedulingGates: a pod with `spec.schedulingGates` does not enter the active queue until they are all removed."""
from __future__ import annotations

from typing import Any, Mapping

from ..framework import ActionType, ClusterEvent, Code, PodInfo, Status, UNSCHEDULED_POD


class SchedulingGates:
    name = "SchedulingGates"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        pass

    def pre_enqueue(self, pod: PodInfo) -> Status | None:
        gates = pod.spec.get("schedulingGates") or []
        if not gates:
            return None
        names = " ".join(g.get("name", "") for g in gates)
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, f"waiting for scheduling gates: [{names}]")

    def events_to_register(self) -> list[ClusterEvent]:
        return [ClusterEvent(UNSCHEDULED_POD, ActionType.UPDATE_POD_SCHEDULING_GATES_ELIMINATED)]
