"""The scheduling queue: which pod to try next, and when to try a failed one again.

Three places a pending pod can be (pkg/scheduler/backend/queue/scheduling_queue.go):
- the active queue, a heap ordered by the profile's QueueSort plugin (priority, then time in queue);
- the backoff queue, for pods that failed recently: 1 s after the first failure, doubling up to 10 s;
- the unschedulable pods, which wait for a cluster event that could help them: the plugins that rejected a pod
  register the events they care about (a node added, an assigned pod deleted...), and only those move it. Pods
  left there longer than `unschedulable_timeout` (60 s) are flushed back anyway, in case an event was missed.
Pods whose PreEnqueue plugins object (scheduling gates) wait among the unschedulable ones until an update clears
them. Events that happen while a pod is being scheduled are remembered, so a pod that fails just after the event
that would have helped it goes to backoff instead of waiting for the next one.

The queue also keeps the nominator: pods nominated to a node by preemption, which lower-priority pods must leave
room for.
"""
from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import time
from typing import Any, Callable, Iterable, Mapping

from .framework import EVENT_UNSCHEDULABLE_TIMEOUT, WILDCARD, ClusterEvent, Status
from .nodeinfo import PodInfo

DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 10.0
DEFAULT_UNSCHEDULABLE_TIMEOUT = 60.0


@dataclasses.dataclass(eq=False)
class QueuedPodInfo:
    pod_info: PodInfo
    timestamp: float                      # when it (re)entered the queue; also the time of its last failure
    initial_attempt_timestamp: float | None = None
    attempts: int = 0
    unschedulable_plugins: frozenset[str] = frozenset()
    pending_plugins: frozenset[str] = frozenset()
    gated: bool = False
    gating_status: Status | None = None
    cycle: int = 0                        # the scheduling cycle of its latest attempt

    @property
    def uid(self) -> str:
        return self.pod_info.uid


class Nominator:
    """Pods nominated to nodes by preemption, by node."""

    def __init__(self) -> None:
        self._by_node: dict[str, dict[str, PodInfo]] = {}
        self._node_of: dict[str, str] = {}

    def add(self, pi: PodInfo, node_name: str) -> None:
        self.delete(pi.uid)
        if not node_name:
            return
        self._by_node.setdefault(node_name, {})[pi.uid] = pi
        self._node_of[pi.uid] = node_name

    def delete(self, uid: str) -> None:
        node = self._node_of.pop(uid, None)
        if node is not None:
            pods = self._by_node.get(node)
            if pods is not None:
                pods.pop(uid, None)
                if not pods:
                    del self._by_node[node]

    def update(self, pi: PodInfo) -> None:
        """Follow a pod's status.nominatedNodeName (an empty one clears the nomination)."""
        self.add(pi, pi.nominated_node_name)

    def pods_for_node(self, node_name: str) -> list[PodInfo]:
        return list(self._by_node.get(node_name, {}).values())

    def node_of(self, uid: str) -> str:
        return self._node_of.get(uid, "")

    def __bool__(self) -> bool:
        return bool(self._node_of)

    def nodes(self) -> Iterable[str]:
        return self._by_node.keys()


class UnschedulablePods:
    """Pods waiting for a cluster event, grouped by the plugins that rejected them, so an event (there is one per
    binding) costs one relevance check per group rather than one per waiting pod. Gated pods form their own group
    (key None) that events never move."""

    def __init__(self) -> None:
        self._pods: dict[str, QueuedPodInfo] = {}
        self._groups: dict[frozenset[str] | None, dict[str, QueuedPodInfo]] = {}
        self._key_of: dict[str, frozenset[str] | None] = {}

    @staticmethod
    def key(qpi: QueuedPodInfo) -> frozenset[str] | None:
        return None if qpi.gated else qpi.unschedulable_plugins | qpi.pending_plugins

    def add(self, qpi: QueuedPodInfo) -> None:
        self.pop(qpi.uid)
        key = self.key(qpi)
        self._pods[qpi.uid] = qpi
        self._groups.setdefault(key, {})[qpi.uid] = qpi
        self._key_of[qpi.uid] = key

    def pop(self, uid: str) -> QueuedPodInfo | None:
        qpi = self._pods.pop(uid, None)
        if qpi is None:
            return None
        key = self._key_of.pop(uid)
        group = self._groups[key]
        del group[uid]
        if not group:
            del self._groups[key]
        return qpi

    def get(self, uid: str) -> QueuedPodInfo | None:
        return self._pods.get(uid)

    def groups(self) -> list[tuple[frozenset[str] | None, list[QueuedPodInfo]]]:
        return [(key, list(group.values())) for key, group in self._groups.items()]

    def values(self) -> list[QueuedPodInfo]:
        return list(self._pods.values())

    def __contains__(self, uid: object) -> bool:
        return uid in self._pods

    def __len__(self) -> int:
        return len(self._pods)


class SchedulingQueue:
    def __init__(self, sort_key: Callable[[QueuedPodInfo], Any],
                 pre_enqueue: Callable[[PodInfo], Status | None] | None = None,
                 plugin_events: Mapping[str, list[ClusterEvent]] | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 initial_backoff: float = DEFAULT_INITIAL_BACKOFF, max_backoff: float = DEFAULT_MAX_BACKOFF,
                 unschedulable_timeout: float = DEFAULT_UNSCHEDULABLE_TIMEOUT) -> None:
        self.sort_key = sort_key
        self.pre_enqueue = pre_enqueue or (lambda pi: None)
        self.plugin_events = dict(plugin_events or {})
        self.clock = clock
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.unschedulable_timeout = unschedulable_timeout
        self.nominator = Nominator()
        self.scheduling_cycle = 0
        self._seq = itertools.count()
        self._active_heap: list[tuple[Any, int, QueuedPodInfo]] = []
        self._active: dict[str, tuple[int, QueuedPodInfo]] = {}    # uid → (seq of its live heap entry, pod)
        self._backoff_heap: list[tuple[float, int, QueuedPodInfo]] = []
        self._backoff: dict[str, tuple[int, QueuedPodInfo]] = {}
        self._unschedulable = UnschedulablePods()
        self._in_flight: dict[str, QueuedPodInfo] = {}
        self._in_flight_events: list[tuple[int, ClusterEvent]] = []
        self._relevance: dict[tuple[frozenset[str], ClusterEvent], bool] = {}
        self._has_active = asyncio.Event()
        self._closed = False

    # -- sizes ------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._active) + len(self._backoff) + len(self._unschedulable)

    def pending_pods(self) -> dict[str, int]:
        return {"active": len(self._active), "backoff": len(self._backoff),
                "unschedulable": len(self._unschedulable), "in_flight": len(self._in_flight)}

    def contains(self, uid: str) -> bool:
        return uid in self._active or uid in self._backoff or uid in self._unschedulable or uid in self._in_flight

    def where(self, uid: str) -> str:
        for name, place in (("active", self._active), ("backoff", self._backoff),
                            ("unschedulable", self._unschedulable), ("in_flight", self._in_flight)):
            if uid in place:
                return name
        return ""

    # -- internal moves ---------------------------------------------------------------------------------------
    def _push_active(self, qpi: QueuedPodInfo) -> None:
        seq = next(self._seq)
        self._active[qpi.uid] = (seq, qpi)
        heapq.heappush(self._active_heap, (self.sort_key(qpi), seq, qpi))
        self._has_active.set()

    def _push_backoff(self, qpi: QueuedPodInfo) -> None:
        seq = next(self._seq)
        self._backoff[qpi.uid] = (seq, qpi)
        heapq.heappush(self._backoff_heap, (self.backoff_expiry(qpi), seq, qpi))

    def _take(self, uid: str) -> QueuedPodInfo | None:
        """Remove a pod from whichever queue holds it (heap entries die lazily)."""
        qpi = self._unschedulable.pop(uid)
        if qpi is not None:
            return qpi
        for index in (self._active, self._backoff):
            entry = index.pop(uid, None)
            if entry is not None:
                return entry[1]
        return None

    def _enqueue_fresh(self, qpi: QueuedPodInfo) -> None:
        """Active, unless a PreEnqueue plugin (scheduling gates) holds the pod back."""
        status = self.pre_enqueue(qpi.pod_info)
        if status is not None:
            qpi.gated = True
            qpi.gating_status = status
            qpi.unschedulable_plugins = frozenset([status.plugin]) if status.plugin else frozenset()
            self._unschedulable.add(qpi)
            return
        qpi.gated = False
        qpi.gating_status = None
        self._push_active(qpi)

    def backoff_duration(self, qpi: QueuedPodInfo) -> float:
        duration = self.initial_backoff
        for _ in range(1, qpi.attempts):
            if duration > self.max_backoff - duration:
                return self.max_backoff
            duration += duration
        return min(duration, self.max_backoff)

    def backoff_expiry(self, qpi: QueuedPodInfo) -> float:
        return qpi.timestamp + self.backoff_duration(qpi)

    def _backing_off(self, qpi: QueuedPodInfo) -> bool:
        return qpi.attempts > 0 and self.backoff_expiry(qpi) > self.clock()

    def _requeue(self, qpi: QueuedPodInfo) -> None:
        """Back to backoff or active, after an event that may help it."""
        if self._backing_off(qpi):
            self._push_backoff(qpi)
        else:
            self._push_active(qpi)

    # -- informer-driven ----------------------------------------------------------------------------------------
    def add(self, pi: PodInfo) -> None:
        """A new pending pod."""
        if self.contains(pi.uid):
            self.update(pi)
            return
        now = self.clock()
        self._enqueue_fresh(QueuedPodInfo(pi, timestamp=now))
        self.nominator.update(pi)

    def update(self, pi: PodInfo, spec_changed: bool = True) -> None:
        """The pending pod changed. A gated pod whose gates are gone, or an unschedulable pod whose spec or labels
        changed, is tried again."""
        uid = pi.uid
        self.nominator.update(pi)
        if uid in self._in_flight:
            self._in_flight[uid].pod_info = pi
            if spec_changed:
                self._note_in_flight_event(ClusterEvent(WILDCARD, EVENT_UNSCHEDULABLE_TIMEOUT.action, "PodUpdate"))
            return
        entry = self._active.get(uid) or self._backoff.get(uid)
        if entry is not None:
            entry[1].pod_info = pi               # priority is immutable: the heap order still holds
            return
        qpi = self._unschedulable.get(uid)
        if qpi is None:
            self.add(pi)
            return
        qpi.pod_info = pi
        if qpi.gated:
            self._unschedulable.pop(uid)
            self._enqueue_fresh(qpi)
        elif spec_changed:
            self._unschedulable.pop(uid)
            self._requeue(qpi)

    def delete(self, uid: str) -> None:
        self._take(uid)
        self._in_flight.pop(uid, None)
        self.nominator.delete(uid)

    # -- the scheduling loop ----------------------------------------------------------------------------------
    async def pop(self) -> QueuedPodInfo | None:
        """The next pod to schedule; waits while the active queue is empty. None once closed."""
        while True:
            if self._closed:
                return None
            while self._active_heap:
                _, seq, qpi = heapq.heappop(self._active_heap)
                live = self._active.get(qpi.uid)
                if live is None or live[0] != seq:
                    continue                      # a stale entry (moved or deleted)
                del self._active[qpi.uid]
                self.scheduling_cycle += 1
                qpi.attempts += 1
                qpi.cycle = self.scheduling_cycle
                if qpi.initial_attempt_timestamp is None:
                    qpi.initial_attempt_timestamp = self.clock()
                self._in_flight[qpi.uid] = qpi
                return qpi
            self._has_active.clear()
            await self._has_active.wait()

    def pop_nowait(self) -> QueuedPodInfo | None:
        """`pop` without waiting (tests)."""
        while self._active_heap:
            _, seq, qpi = heapq.heappop(self._active_heap)
            live = self._active.get(qpi.uid)
            if live is None or live[0] != seq:
                continue
            del self._active[qpi.uid]
            self.scheduling_cycle += 1
            qpi.attempts += 1
            qpi.cycle = self.scheduling_cycle
            self._in_flight[qpi.uid] = qpi
            return qpi
        return None

    def done(self, uid: str) -> None:
        """The attempt for `uid` is over (scheduled, requeued or dropped)."""
        self._in_flight.pop(uid, None)
        if not self._in_flight:
            self._in_flight_events.clear()
        elif len(self._in_flight_events) > 256:
            oldest = min(q.cycle for q in self._in_flight.values())
            self._in_flight_events = [e for e in self._in_flight_events if e[0] >= oldest]

    def add_unschedulable_if_not_present(self, qpi: QueuedPodInfo) -> None:
        """A failed attempt: to backoff if it was an error or something relevant happened meanwhile, otherwise
        to the unschedulable pods until a relevant event."""
        uid = qpi.uid
        if uid in self._active or uid in self._backoff or uid in self._unschedulable:
            return
        if uid not in self._in_flight:
            return                                # deleted while being scheduled
        qpi.timestamp = self.clock()
        rejected = qpi.unschedulable_plugins | qpi.pending_plugins
        if not rejected:
            self._push_backoff(qpi)               # an error: retry after backoff
            return
        if any(cycle >= qpi.cycle and self._relevant(rejected, ev) for cycle, ev in self._in_flight_events):
            self._push_backoff(qpi)
            return
        self._unschedulable.add(qpi)

    def activate(self, uids: Iterable[str]) -> None:
        """Move pods to the active queue now (e.g. after their preemption finished)."""
        for uid in uids:
            if uid in self._unschedulable or uid in self._backoff:
                qpi = self._take(uid)
                if qpi is not None and not qpi.gated:
                    self._push_active(qpi)
                elif qpi is not None:
                    self._unschedulable.add(qpi)

    # -- events -----------------------------------------------------------------------------------------------
    def _relevant(self, plugins: frozenset[str], event: ClusterEvent) -> bool:
        if event.resource == WILDCARD:
            return True
        key = (plugins, event)
        hit = self._relevance.get(key)
        if hit is None:
            hit = not plugins or any(reg.matches(event) for p in plugins for reg in self.plugin_events.get(p, ()))
            if len(self._relevance) > 10_000:
                self._relevance.clear()
            self._relevance[key] = hit
        return hit

    def _note_in_flight_event(self, event: ClusterEvent) -> None:
        if self._in_flight:
            self._in_flight_events.append((self.scheduling_cycle, event))

    def move_all_to_active_or_backoff(self, event: ClusterEvent,
                                      pre_check: Callable[[PodInfo], bool] | None = None) -> int:
        """A cluster event happened: move the unschedulable pods it may help. Returns how many moved."""
        self._note_in_flight_event(event)
        if not self._unschedulable:
            return 0
        moved = 0
        for plugins, pods in self._unschedulable.groups():
            if plugins is None or not self._relevant(plugins, event):
                continue
            for qpi in pods:
                if pre_check is not None and not pre_check(qpi.pod_info):
                    continue
                self._unschedulable.pop(qpi.uid)
                self._requeue(qpi)
                moved += 1
        return moved

    def flush_backoff_completed(self) -> int:
        now = self.clock()
        moved = 0
        while self._backoff_heap and self._backoff_heap[0][0] <= now:
            _, seq, qpi = heapq.heappop(self._backoff_heap)
            live = self._backoff.get(qpi.uid)
            if live is None or live[0] != seq:
                continue
            del self._backoff[qpi.uid]
            self._push_active(qpi)
            moved += 1
        return moved

    def flush_unschedulable_left_over(self) -> int:
        now = self.clock()
        stale = [q for q in self._unschedulable.values()
                 if not q.gated and now - q.timestamp >= self.unschedulable_timeout]
        for qpi in stale:
            self._unschedulable.pop(qpi.uid)
            self._requeue(qpi)
        return len(stale)

    def next_backoff_expiry(self) -> float | None:
        while self._backoff_heap:
            _, seq, qpi = self._backoff_heap[0]
            live = self._backoff.get(qpi.uid)
            if live is not None and live[0] == seq:
                break
            heapq.heappop(self._backoff_heap)
        return self._backoff_heap[0][0] if self._backoff_heap else None

    async def run_flushers(self, backoff_period: float = 1.0, unschedulable_period: float = 5.0) -> None:
        """Periodically move pods whose backoff is over, and pods left unschedulable too long."""
        last_unschedulable = self.clock()
        while not self._closed:
            await asyncio.sleep(backoff_period)
            self.flush_backoff_completed()
            if self.clock() - last_unschedulable >= unschedulable_period:
                last_unschedulable = self.clock()
                self.flush_unschedulable_left_over()

    def close(self) -> None:
        self._closed = True
        self._has_active.set()
