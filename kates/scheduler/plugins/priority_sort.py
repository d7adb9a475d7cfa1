"""PrioritySort: the active queue tries higher-priority pods first, then the ones waiting longest."""
from __future__ import annotations

from typing import Any, Mapping


class PrioritySort:
    name = "PrioritySort"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        pass

    def sort_key(self, queued: Any) -> tuple[int, float]:
        return (-queued.pod_info.priority, queued.timestamp)
