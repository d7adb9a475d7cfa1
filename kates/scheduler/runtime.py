"""The framework runtime: one profile's plugins, run at each extension point, and the handle plugins get.

`schedule_pod` is one scheduling cycle's decision (pkg/scheduler/schedule_one.go: schedulePod): PreFilter once,
Filter over the nodes starting from a rotating index until enough feasible nodes are found (adaptive
percentageOfNodesToScore), PreScore and Score over those, weighted sum, highest total wins with a random
tie-break. It is synchronous and touches no network, so it runs between two awaits of the scheduler loop and
sees a consistent cache.
"""
from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any, Callable, Mapping, Sequence

from ..api.selectors import LabelSelector
from .cache import Snapshot
from .framework import (Code, CycleState, Diagnosis, FitError, NodeInfo, PodInfo, Plugin, PostFilterResult, Profile,
                        Registry, Status)
from .queue import Nominator

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
NO_NODES_AVAILABLE = "no nodes available to schedule pods"


class SchedulingError(Exception):
    """A cycle failed for a reason other than "no node fits" (a plugin error, no nodes at all)."""


@dataclasses.dataclass
class ScheduleResult:
    suggested_host: str
    evaluated_nodes: int
    feasible_nodes: int


def num_feasible_nodes_to_find(num_all_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes to look for before scoring. Adaptive (percentage 0): every node below 100, then
    from 50% at 100 nodes down linearly to 5% at 5,000 and beyond, never fewer than 100 nodes."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    if percentage <= 0:
        percentage = 50 - 45 * (num_all_nodes - 100) // 4900
        percentage = max(percentage, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    if percentage >= 100:
        return num_all_nodes
    return max(num_all_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


class WaitingPod:
    """A pod a Permit plugin asked to wait: allowed when every waiting plugin allows it, or rejected."""

    def __init__(self, pod: PodInfo, plugins: dict[str, float]) -> None:
        self.pod = pod
        self.pending = set(plugins)
        self.timeout = min(plugins.values()) if plugins else 0.0
        self.result: asyncio.Future[Status | None] = asyncio.get_running_loop().create_future()

    def allow(self, plugin: str) -> None:
        self.pending.discard(plugin)
        if not self.pending and not self.result.done():
            self.result.set_result(None)

    def reject(self, plugin: str, message: str) -> None:
        if not self.result.done():
            self.result.set_result(Status(Code.UNSCHEDULABLE, message, plugin=plugin))


class Framework:
    """Runs a profile's plugins, and is the handle they are built with (snapshot, listers, client)."""

    def __init__(self, profile: Profile, registry: Registry | None = None, *, snapshot: Snapshot | None = None,
                 client: Any = None, nominator: Nominator | None = None,
                 namespaces: Callable[[], Mapping[str, Mapping[str, str]]] | None = None,
                 pdbs: Callable[[], list[dict[str, Any]]] | None = None, rng: random.Random | None = None) -> None:
        if registry is None:
            from .plugins import REGISTRY
            registry = REGISTRY
        self.profile = profile
        self.snapshot = snapshot if snapshot is not None else Snapshot()
        self.client = client
        self.nominator = nominator if nominator is not None else Nominator()
        self._namespaces = namespaces or (lambda: {})
        self._pdbs = pdbs or (lambda: [])
        self.rng = rng or random.Random()
        self.plugins: dict[str, Plugin] = {}
        for name in profile.plugins:
            if name not in registry:
                raise ValueError(f"profile {profile.scheduler_name!r}: unknown plugin {name!r}")
            self.plugins[name] = registry[name](profile.plugin_args.get(name, {}), self)
        self.pre_enqueue_plugins = profile.enabled("pre_enqueue", self.plugins)
        queue_sort = profile.enabled("queue_sort", self.plugins)
        self.queue_sort_plugin = queue_sort[0] if queue_sort else None
        self.pre_filter_plugins = profile.enabled("pre_filter", self.plugins)
        self.filter_plugins = profile.enabled("filter", self.plugins)
        self.post_filter_plugins = profile.enabled("post_filter", self.plugins)
        self.pre_score_plugins = profile.enabled("pre_score", self.plugins)
        self.score_plugins = profile.enabled("score", self.plugins)
        self.reserve_plugins = profile.enabled("reserve", self.plugins)
        self.permit_plugins = profile.enabled("permit", self.plugins)
        self.bind_plugins = profile.enabled("bind", self.plugins)
        self.waiting_pods: dict[str, WaitingPod] = {}
        self.next_start_node_index = 0

    # -- handle: what plugins may read ------------------------------------------------------------------------
    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return self._namespaces().get(namespace, {})

    def namespaces_matching(self, selector: LabelSelector) -> set[str]:
        return {name for name, labels in self._namespaces().items() if selector.matches(labels)}

    def pdbs(self) -> list[dict[str, Any]]:
        return self._pdbs()

    def events_to_register(self) -> dict[str, list[Any]]:
        return {name: p.events_to_register() for name, p in self.plugins.items()   # type: ignore[attr-defined]
                if hasattr(p, "events_to_register")}

    # -- PreEnqueue -------------------------------------------------------------------------------------------
    def run_pre_enqueue(self, pod: PodInfo) -> Status | None:
        for p in self.pre_enqueue_plugins:
            st = p.pre_enqueue(pod)   # type: ignore[attr-defined]
            if st is not None and st.code != Code.SUCCESS:
                return st.with_plugin(p.name)
        return None

    # -- PreFilter / Filter -----------------------------------------------------------------------------------
    def run_pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        skipped: set[str] = set()
        for p in self.pre_filter_plugins:
            st = p.pre_filter(state, pod)   # type: ignore[attr-defined]
            if st is None or st.code == Code.SUCCESS:
                continue
            if st.code == Code.SKIP:
                skipped.add(p.name)
                continue
            st = st.with_plugin(p.name)
            if st.is_rejected:
                return st
            return Status(Code.ERROR, f"running PreFilter plugin {p.name!r}: {st.message}", plugin=p.name)
        state.skip_filter_plugins = skipped
        return None

    def run_pre_filter_extension_add_pod(self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo,
                                         node: NodeInfo) -> Status | None:
        for p in self.pre_filter_plugins:
            if p.name not in state.skip_filter_plugins and hasattr(p, "add_pod"):
                st = p.add_pod(state, pod, pod_to_add, node)   # type: ignore[attr-defined]
                if st is not None and st.code != Code.SUCCESS:
                    return st.with_plugin(p.name)
        return None

    def run_pre_filter_extension_remove_pod(self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo,
                                            node: NodeInfo) -> Status | None:
        for p in self.pre_filter_plugins:
            if p.name not in state.skip_filter_plugins and hasattr(p, "remove_pod"):
                st = p.remove_pod(state, pod, pod_to_remove, node)   # type: ignore[attr-defined]
                if st is not None and st.code != Code.SUCCESS:
                    return st.with_plugin(p.name)
        return None

    def run_filter_plugins(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        skip = state.skip_filter_plugins
        for p in self.filter_plugins:
            if p.name in skip:
                continue
            st = p.filter(state, pod, node)   # type: ignore[attr-defined]
            if st is not None and st.code != Code.SUCCESS:
                return st.with_plugin(p.name)
        return None

    def _add_nominated_pods(self, state: CycleState, pod: PodInfo,
                            node: NodeInfo) -> tuple[bool, CycleState, NodeInfo]:
        """Pretend pods of equal or higher priority nominated to this node are already there."""
        nominated = [p for p in self.nominator.pods_for_node(node.name)
                     if p.priority >= pod.priority and p.uid != pod.uid and p.uid not in node.pods]
        if not nominated:
            return False, state, node
        state_out, node_out = state.clone(), node.clone()
        for p in nominated:
            p = p.with_node(node.name)
            node_out.add_pod(p)
            self.run_pre_filter_extension_add_pod(state_out, pod, p, node_out)
        return True, state_out, node_out

    def run_filter_plugins_with_nominated_pods(self, state: CycleState, pod: PodInfo,
                                               node: NodeInfo) -> Status | None:
        """Filter twice when pods are nominated here: with them (they get the room first) and without (affinity
        to them must not count before they are there)."""
        added, state_with, node_with = self._add_nominated_pods(state, pod, node)
        status = self.run_filter_plugins(state_with, pod, node_with)
        if not added or status is not None:
            return status
        return self.run_filter_plugins(state, pod, node)

    def _filter_each(self, plugin: Plugin, state: CycleState, pod: PodInfo,
                     nodes: list[NodeInfo]) -> tuple[list[NodeInfo], list[tuple[NodeInfo, Status]]]:
        f = plugin.filter   # type: ignore[attr-defined]
        passed: list[NodeInfo] = []
        rejected: list[tuple[NodeInfo, Status]] = []
        for node in nodes:
            st = f(state, pod, node)
            if st is None or st.code == Code.SUCCESS:
                passed.append(node)
            else:
                rejected.append((node, st))
        return passed, rejected

    def _record(self, diagnosis: Diagnosis, node: NodeInfo, status: Status, plugin: str) -> None:
        if status.code == Code.ERROR:
            raise SchedulingError(f"running Filter plugin {plugin!r} on node {node.name!r}: {status.message}")
        diagnosis.node_to_status[node.name] = status.with_plugin(plugin)
        if status.code == Code.PENDING:
            diagnosis.pending_plugins.add(plugin)
        else:
            diagnosis.unschedulable_plugins.add(plugin)

    def _filter_chunk(self, state: CycleState, pod: PodInfo, chunk: list[NodeInfo], filters: list[Plugin],
                      diagnosis: Diagnosis) -> list[NodeInfo]:
        """The nodes of `chunk` that pass every filter, in order; rejections go to the diagnosis."""
        survivors = chunk
        for p in filters:
            batch = getattr(p, "filter_nodes", None)
            survivors, rejected = (batch(state, pod, survivors) if batch is not None
                                   else self._filter_each(p, state, pod, survivors))
            for node, st in rejected:
                self._record(diagnosis, node, st, p.name)
            if not survivors:
                break
        return survivors

    def find_nodes_that_pass_filters(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo],
                                     diagnosis: Diagnosis) -> list[NodeInfo]:
        """Filter nodes from the rotating start index, a chunk at a time, until enough are feasible."""
        n = len(nodes)
        if n == 0:
            return []
        to_find = num_feasible_nodes_to_find(n, self.profile.percentage_of_nodes_to_score)
        skip = state.skip_filter_plugins
        filters = [p for p in self.filter_plugins if p.name not in skip]
        nominated = set(self.nominator.nodes()) if self.nominator else None
        start = self.next_start_node_index % n
        feasible: list[NodeInfo] = []
        pos = 0
        while pos < n and len(feasible) < to_find:
            size = min(max(to_find - len(feasible), 32), n - pos)
            lo = (start + pos) % n
            chunk = list(nodes[lo:lo + size])
            if len(chunk) < size:
                chunk += nodes[:size - len(chunk)]
            pos += size
            if nominated:
                plain = [nd for nd in chunk if nd.name not in nominated]
                passed = set(map(id, self._filter_chunk(state, pod, plain, filters, diagnosis)))
                for nd in chunk:
                    if nd.name in nominated:
                        st = self.run_filter_plugins_with_nominated_pods(state, pod, nd)
                        if st is None:
                            passed.add(id(nd))
                        else:
                            self._record(diagnosis, nd, st, st.plugin)
                feasible.extend(nd for nd in chunk if id(nd) in passed)
            else:
                feasible.extend(self._filter_chunk(state, pod, chunk, filters, diagnosis))
        del feasible[to_find:]
        self.next_start_node_index = (start + pos) % n
        return feasible

    # -- PostFilter -------------------------------------------------------------------------------------------
    def run_post_filter(self, state: CycleState, pod: PodInfo,
                        statuses: Mapping[str, Status]) -> tuple[PostFilterResult | None, Status | None]:
        result: PostFilterResult | None = None
        messages = []
        for p in self.post_filter_plugins:
            r, st = p.post_filter(state, pod, statuses)   # type: ignore[attr-defined]
            if st is None or st.code == Code.SUCCESS:
                return r, None
            if r is not None:
                result = r
            if st.code == Code.ERROR:
                return None, st.with_plugin(p.name)
            messages.append(st.message)
        return result, Status(Code.UNSCHEDULABLE, *messages) if messages else Status(Code.UNSCHEDULABLE)

    # -- PreScore / Score -------------------------------------------------------------------------------------
    def run_pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        skipped: set[str] = set()
        for p in self.pre_score_plugins:
            st = p.pre_score(state, pod, nodes)   # type: ignore[attr-defined]
            if st is None or st.code == Code.SUCCESS:
                continue
            if st.code == Code.SKIP:
                skipped.add(p.name)
                continue
            return Status(Code.ERROR, f"running PreScore plugin {p.name!r}: {st.message}", plugin=p.name)
        state.skip_score_plugins = skipped
        return None

    def run_score_plugins(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """Weighted, normalized score totals, in node order."""
        totals = [0] * len(nodes)
        skip = state.skip_score_plugins
        for p in self.score_plugins:
            if p.name in skip:
                continue
            batch = getattr(p, "score_nodes", None)
            if batch is not None:
                scores = batch(state, pod, nodes)
            else:
                score = p.score   # type: ignore[attr-defined]
                scores = [score(state, pod, node) for node in nodes]
            normalize = getattr(p, "normalize_score", None)
            if normalize is not None:
                normalize(state, pod, scores)
            weight = self.profile.weight(p.name)
            if weight == 1:
                totals = [t + s for t, s in zip(totals, scores)]
            else:
                totals = [t + s * weight for t, s in zip(totals, scores)]
        return totals

    def prioritize(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        st = self.run_pre_score(state, pod, nodes)
        if st is not None:
            raise SchedulingError(st.message)
        return self.run_score_plugins(state, pod, nodes)

    def select_host(self, nodes: Sequence[NodeInfo], totals: Sequence[int]) -> NodeInfo:
        best = max(totals)
        ties = [i for i, t in enumerate(totals) if t == best]
        return nodes[ties[0] if len(ties) == 1 else self.rng.choice(ties)]

    # -- one cycle's decision ---------------------------------------------------------------------------------
    def schedule_pod(self, state: CycleState, pod: PodInfo) -> ScheduleResult:
        """Pick a node for `pod`, or raise FitError (no node fits) / SchedulingError."""
        nodes = self.snapshot.node_infos()
        if not nodes:
            raise SchedulingError(NO_NODES_AVAILABLE)
        diagnosis = Diagnosis()
        status = self.run_pre_filter(state, pod)
        if status is not None:
            if status.code == Code.ERROR:
                raise SchedulingError(status.message)
            diagnosis.pre_filter_msg = status.message
            diagnosis.unschedulable_plugins.add(status.plugin)
            for n in nodes:
                diagnosis.node_to_status[n.name] = status
            raise FitError(pod, len(nodes), diagnosis)
        nominated = pod.nominated_node_name
        if nominated:
            node = self.snapshot.get(nominated)
            if node is not None and self.run_filter_plugins_with_nominated_pods(state, pod, node) is None:
                return ScheduleResult(nominated, 1, 1)
        feasible = self.find_nodes_that_pass_filters(state, pod, nodes, diagnosis)
        if not feasible:
            raise FitError(pod, len(nodes), diagnosis)
        evaluated = len(feasible) + len(diagnosis.node_to_status)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, evaluated, 1)
        totals = self.prioritize(state, pod, feasible)
        return ScheduleResult(self.select_host(feasible, totals).name, evaluated, len(feasible))

    # -- Reserve / Permit / Bind ------------------------------------------------------------------------------
    def run_reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        for p in self.reserve_plugins:
            st = p.reserve(state, pod, node_name)   # type: ignore[attr-defined]
            if st is not None and st.code != Code.SUCCESS:
                return st.with_plugin(p.name)
        return None

    def run_unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None:
        for p in reversed(self.reserve_plugins):
            p.unreserve(state, pod, node_name)   # type: ignore[attr-defined]

    def run_permit(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        """None to go ahead, a rejection, or WAIT (the pod is parked in waiting_pods until allowed)."""
        waits: dict[str, float] = {}
        for p in self.permit_plugins:
            st, timeout = p.permit(state, pod, node_name)   # type: ignore[attr-defined]
            if st is None or st.code == Code.SUCCESS:
                continue
            if st.code == Code.WAIT:
                waits[p.name] = timeout
                continue
            return st.with_plugin(p.name)
        if waits:
            self.waiting_pods[pod.uid] = WaitingPod(pod, waits)
            return Status(Code.WAIT)
        return None

    async def wait_on_permit(self, pod: PodInfo) -> Status | None:
        waiting = self.waiting_pods.get(pod.uid)
        if waiting is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(waiting.result), waiting.timeout)
        except asyncio.TimeoutError:
            return Status(Code.UNSCHEDULABLE, "rejected due to timeout after waiting at permit")
        finally:
            self.waiting_pods.pop(pod.uid, None)

    async def run_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        for p in self.bind_plugins:
            st = await p.bind(state, pod, node_name)   # type: ignore[attr-defined]
            if st is not None and st.code == Code.SKIP:
                continue
            return None if st is None or st.code == Code.SUCCESS else st.with_plugin(p.name)
        return Status(Code.SKIP, "no bind plugin handled the pod")
