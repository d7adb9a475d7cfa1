"""The scheduler: pending pods in, bindings out, one pod at a time (pkg/scheduler/schedule_one.go).

Informers feed two things: the cache (nodes, and pods already on nodes) and the scheduling queue (pods with no
node whose `spec.schedulerName` names one of our profiles). The loop pops the most important pod, runs the
profile's framework synchronously (filter, score, pick), assumes the pod onto the chosen node in the cache and
starts its binding cycle as a task, then goes on with the next pod while a bounded number of bindings are in
flight. A pod that fits nowhere gets PostFilter (preemption), a FailedScheduling event with Kubernetes' per-node
summary, a PodScheduled=False condition, and goes back to the queue to wait for a cluster event that could help.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Any, Iterable

from ..api import errors
from ..client.events import EventRecorder
from ..client.informer import Informer
from ..client.rest import Client, resource
from .cache import SchedulerCache
from .framework import (ASSIGNED_POD, NAMESPACE, NODE, ActionType, ClusterEvent, Code, CycleState,
                        FitError, PodInfo, PostFilterResult, Profile, Status, default_profile)
from .nodeinfo import pod_requests
from .queue import QueuedPodInfo, SchedulingQueue
from .runtime import Framework, SchedulingError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_SCHEDULER_NAME = "default-scheduler"
MAX_BINDS_IN_FLIGHT = 48
YIELD_EVERY = 0.001      # seconds of back-to-back scheduling cycles before the loop lets other tasks run
TERMINAL_PHASES = ("Succeeded", "Failed")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def assigned(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def node_update_actions(old: Obj, new: Obj) -> ActionType | None:
    """What changed about a node that scheduling cares about (heartbeats alone change nothing)."""
    actions = ActionType(0)
    os_, ns_ = old.get("status") or {}, new.get("status") or {}
    if os_.get("allocatable") != ns_.get("allocatable") or os_.get("capacity") != ns_.get("capacity"):
        actions |= ActionType.UPDATE_NODE_ALLOCATABLE
    if old["metadata"].get("labels") != new["metadata"].get("labels"):
        actions |= ActionType.UPDATE_NODE_LABEL
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if (old_spec.get("taints") != new_spec.get("taints")
            or bool(old_spec.get("unschedulable")) != bool(new_spec.get("unschedulable"))):
        actions |= ActionType.UPDATE_NODE_TAINT

    def conditions(status: Obj) -> dict[str, str]:
        return {c.get("type", ""): c.get("status", "") for c in status.get("conditions") or ()}
    if conditions(os_) != conditions(ns_):
        actions |= ActionType.UPDATE_NODE_CONDITION
    if os_.get("images") != ns_.get("images"):
        actions |= ActionType.UPDATE
    return actions or None


def assigned_pod_update_actions(old: Obj, new: Obj) -> ActionType | None:
    actions = ActionType(0)
    if old["metadata"].get("labels") != new["metadata"].get("labels"):
        actions |= ActionType.UPDATE_POD_LABEL
    old_req, new_req = pod_requests(old.get("spec") or {}), pod_requests(new.get("spec") or {})
    if (new_req.milli_cpu < old_req.milli_cpu or new_req.memory < old_req.memory
            or new_req.ephemeral_storage < old_req.ephemeral_storage):
        actions |= ActionType.UPDATE_POD_SCALE_DOWN
    return actions or None


class Scheduler:
    """Schedules pending pods of its profiles' `schedulerName`s. `await run()` until cancelled."""

    def __init__(self, client: Client, profile: Profile | Iterable[Profile] | None = None, *,
                 max_binds_in_flight: int = MAX_BINDS_IN_FLIGHT, clock: Any = time.monotonic,
                 initial_backoff: float = 1.0, max_backoff: float = 10.0,
                 unschedulable_timeout: float = 60.0) -> None:
        profiles = [profile] if isinstance(profile, Profile) else list(profile or [default_profile()])
        self.client = client
        self.cache = SchedulerCache()
        self.pods = Informer(client, resource("pods"), field_selector="status.phase!=Succeeded,status.phase!=Failed")
        self.nodes = Informer(client, resource("nodes"))
        self.priority_classes = Informer(client, resource("priorityclasses.scheduling.k8s.io"))
        self.namespaces = Informer(client, resource("namespaces"))
        self.pdbs = Informer(client, resource("poddisruptionbudgets.policy"))
        self.frameworks: dict[str, Framework] = {}
        first: Framework | None = None
        for p in profiles:
            fw = Framework(p, snapshot=self.cache.snapshot, client=client, namespaces=self._namespace_labels,
                           pdbs=self.pdbs.store.list)
            self.frameworks[p.scheduler_name] = fw
            first = first or fw
        assert first is not None and first.queue_sort_plugin is not None, "a profile needs a QueueSort plugin"
        events: dict[str, list[ClusterEvent]] = {}
        for fw in self.frameworks.values():
            events.update(fw.events_to_register())
        self.queue = SchedulingQueue(first.queue_sort_plugin.sort_key, self._pre_enqueue,   # type: ignore[attr-defined]
                                     events, clock=clock, initial_backoff=initial_backoff,
                                     max_backoff=max_backoff, unschedulable_timeout=unschedulable_timeout)
        for fw in self.frameworks.values():
            fw.nominator = self.queue.nominator
        # at most 1,000 events wait to be written, newer ones dropped when the API server falls behind (client-go's
        # maxQueuedEvents), so a burst of bindings does not turn into thousands of Event writes competing with them
        self.recorder = EventRecorder(client, DEFAULT_SCHEDULER_NAME, max_queued=1000)
        self.bind_slots = asyncio.Semaphore(max_binds_in_flight)
        self.scheduled = 0
        self.failed_attempts = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._register_handlers()

    # -- listers for the frameworks -------------------------------------------------------------------------------
    def _namespace_labels(self) -> dict[str, dict[str, str]]:
        return {ns["metadata"]["name"]: ns["metadata"].get("labels") or {} for ns in self.namespaces.store.list()}

    def _pre_enqueue(self, pi: PodInfo) -> Status | None:
        fw = self.frameworks.get(pi.spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME)
        return fw.run_pre_enqueue(pi) if fw is not None else None

    def pod_priority(self, pod: Obj) -> int:
        """spec.priority as admission resolved it; failing that, the PriorityClass named, or the global default."""
        spec = pod.get("spec") or {}
        if spec.get("priority") is not None:
            return int(spec["priority"])
        name = spec.get("priorityClassName")
        if name:
            pc = self.priority_classes.store.get(name)
            if pc is not None:
                return int(pc.get("value") or 0)
        for pc in self.priority_classes.store.list():
            if pc.get("globalDefault"):
                return int(pc.get("value") or 0)
        return 0

    def pod_info(self, pod: Obj) -> PodInfo:
        return PodInfo(pod, self.pod_priority(pod))

    def responsible_for(self, pod: Obj) -> bool:
        return ((pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER_NAME) in self.frameworks

    # -- informer handlers (quick: update the cache and the queue, nothing more) -----------------------------------
    def _register_handlers(self) -> None:
        self.pods.add_handler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self.nodes.add_handler(self._on_node_add, self._on_node_update, self._on_node_delete)
        self.namespaces.add_handler(
            lambda ns: self._move(ClusterEvent(NAMESPACE, ActionType.ADD)),
            lambda old, new: self._move(ClusterEvent(NAMESPACE, ActionType.UPDATE))
            if old["metadata"].get("labels") != new["metadata"].get("labels") else None)

    def _move(self, event: ClusterEvent) -> None:
        self.queue.move_all_to_active_or_backoff(event)

    def _on_pod_add(self, pod: Obj) -> None:
        if terminal(pod):
            return
        if assigned(pod):
            self.cache.add_pod(self.pod_info(pod))
            self.queue.delete(pod["metadata"].get("uid", ""))
            self._move(ClusterEvent(ASSIGNED_POD, ActionType.ADD))
        elif self.responsible_for(pod) and not pod["metadata"].get("deletionTimestamp"):
            self.queue.add(self.pod_info(pod))
            if (pod.get("spec") or {}).get("schedulingGates"):
                self._mark_gated(pod)

    def _mark_gated(self, pod: Obj) -> None:
        """PodScheduled=False/SchedulingGated, which `kubectl get` shows as the pod's status. Kubernetes' API server
        sets it when a gated pod is created; the scheduler fills it in if the server did not (a no-op otherwise)."""
        condition = {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                     "message": "Scheduling is blocked due to non-empty scheduling gates"}
        self._spawn(self.update_pod_status(pod, condition, None), f"gated-{pod['metadata'].get('name')}")

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        uid = new["metadata"].get("uid", "")
        if terminal(new):
            self._on_pod_delete(new)
            return
        if assigned(new):
            if not assigned(old) or self.cache.get_pod(uid) is None:
                self.queue.delete(uid)
                if not (old.get("spec", {}).get("containers") == new.get("spec", {}).get("containers")
                        and old["metadata"].get("labels") == new["metadata"].get("labels")
                        and self.cache.confirm(uid, new)):
                    self.cache.add_pod(self.pod_info(new))
                self._move(ClusterEvent(ASSIGNED_POD, ActionType.ADD))
                return
            pi = self.cache.get_pod(uid)
            if (pi is not None and old.get("spec") == new.get("spec") and old["metadata"].get("labels")
                    == new["metadata"].get("labels") and old["metadata"].get("deletionTimestamp")
                    == new["metadata"].get("deletionTimestamp")):
                pi.pod = new          # status-only change: nothing the plugins read changed
                return
            self.cache.update_pod(self.pod_info(new))
            actions = assigned_pod_update_actions(old, new)
            if actions is not None:
                self._move(ClusterEvent(ASSIGNED_POD, actions))
            return
        if not self.responsible_for(new):
            return
        if new["metadata"].get("deletionTimestamp"):
            self.queue.delete(uid)
            return
        spec_changed = (old.get("spec") != new.get("spec")
                        or old["metadata"].get("labels") != new["metadata"].get("labels"))
        self.queue.update(self.pod_info(new), spec_changed=spec_changed)

    def _on_pod_delete(self, pod: Obj) -> None:
        uid = pod["metadata"].get("uid", "")
        if self.cache.get_pod(uid) is not None:
            if not self.cache.is_assumed(uid) or assigned(pod):
                self.cache.remove_pod(uid)
            self._move(ClusterEvent(ASSIGNED_POD, ActionType.DELETE))
        self.queue.delete(uid)
        for fw in self.frameworks.values():
            waiting = fw.waiting_pods.get(uid)
            if waiting is not None:
                waiting.reject("", "pod deleted")

    def _on_node_add(self, node: Obj) -> None:
        self.cache.add_node(node)
        self._move(ClusterEvent(NODE, ActionType.ADD))

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        actions = node_update_actions(old, new)
        if actions is None:
            self.cache.refresh_node_object(new)     # a heartbeat: nothing plugins read changed
            return
        self.cache.update_node(new)
        self._move(ClusterEvent(NODE, actions))

    def _on_node_delete(self, node: Obj) -> None:
        self.cache.remove_node(node)

    # -- running ----------------------------------------------------------------------------------------------------
    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start_informers(self, timeout: float | None = 60) -> None:
        for inf in (self.priority_classes, self.namespaces, self.pdbs, self.nodes, self.pods):
            inf.start()
        await asyncio.gather(*(inf.wait_synced(timeout)
                               for inf in (self.priority_classes, self.namespaces, self.pdbs, self.nodes, self.pods)))

    async def run(self, on_synced: Any = None) -> None:
        """Sync the informers, then schedule until cancelled."""
        try:
            await self.start_informers()
            if on_synced is not None:
                on_synced()
            log.info("scheduler running: profiles %s, %d nodes, %d pending pods",
                     ", ".join(self.frameworks), self.cache.snapshot.num_nodes(), len(self.queue))
            flushers = self._spawn(self.queue.run_flushers(), "scheduler-queue-flushers")
            try:
                await self.schedule_loop()
            finally:
                flushers.cancel()
        finally:
            await self.stop()

    async def stop(self) -> None:
        self.queue.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for inf in (self.pods, self.nodes, self.priority_classes, self.namespaces, self.pdbs):
            await inf.stop()
        await self.recorder.close()

    async def schedule_loop(self) -> None:
        last_yield = time.perf_counter()
        while True:
            await self.bind_slots.acquire()
            qpi = await self.queue.pop()
            if qpi is None:
                self.bind_slots.release()
                return
            binding = False
            try:
                binding = self.schedule_one(qpi)
            except Exception:
                log.exception("scheduling %s failed unexpectedly", qpi.pod_info.key)
                self.queue.done(qpi.uid)
            finally:
                if not binding:
                    self.bind_slots.release()
            now = time.perf_counter()
            if now - last_yield >= YIELD_EVERY:
                await asyncio.sleep(0)      # let bindings, watches and events progress between cycles
                last_yield = time.perf_counter()

    # -- one cycle ----------------------------------------------------------------------------------------------------
    def _skip(self, pi: PodInfo) -> bool:
        current = self.pods.store.get(pi.key)
        if current is None or current["metadata"].get("uid") != pi.uid:
            return True                   # deleted (or replaced) since it was queued
        return bool(current["metadata"].get("deletionTimestamp")) or assigned(current) \
            or self.cache.get_pod(pi.uid) is not None

    def schedule_one(self, qpi: QueuedPodInfo) -> bool:
        """One scheduling cycle for the pod; True if a binding cycle was started (it owns a bind slot)."""
        pi = qpi.pod_info
        fw = self.frameworks.get(pi.spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME)
        if fw is None or self._skip(pi):
            self.queue.done(pi.uid)
            return False
        state = CycleState()
        try:
            result = fw.schedule_pod(state, pi)
        except FitError as fit:
            self._post_filter(fw, state, qpi, fit)
            return False
        except SchedulingError as e:
            self.handle_failure(fw, qpi, Status(Code.ERROR, str(e)), reason="SchedulerError")
            self.queue.done(pi.uid)
            return False
        host = result.suggested_host
        assumed = pi.with_node(host)
        self.cache.assume_pod(assumed)
        self.queue.nominator.delete(pi.uid)
        status = fw.run_reserve(state, assumed, host)
        if status is None:
            status = fw.run_permit(state, assumed, host)
            if status is not None and status.code == Code.WAIT:
                status = None
        if status is not None:
            fw.run_unreserve(state, assumed, host)
            self.cache.forget_pod(assumed)
            qpi.unschedulable_plugins = frozenset([status.plugin]) if status.is_rejected else frozenset()
            self.handle_failure(fw, qpi, status, reason="Unschedulable" if status.is_rejected else "SchedulerError")
            self.queue.done(pi.uid)
            return False
        self._spawn(self.binding_cycle(fw, state, qpi, assumed, host), f"bind-{pi.key}")
        return True

    def _post_filter(self, fw: Framework, state: CycleState, qpi: QueuedPodInfo, fit: FitError) -> None:
        pi = qpi.pod_info
        diagnosis = fit.diagnosis
        nominated: str | None = None
        if fw.post_filter_plugins:
            result, status = fw.run_post_filter(state, pi, diagnosis.node_to_status)
            if status is not None and status.message:
                diagnosis.post_filter_msg = status.message
            if result is not None:
                nominated = result.nominated_node_name
                if result.victims:
                    self._spawn(self.prepare_candidate(pi, result), f"preempt-{pi.key}")
        qpi.unschedulable_plugins = frozenset(diagnosis.unschedulable_plugins)
        qpi.pending_plugins = frozenset(diagnosis.pending_plugins)
        self.handle_failure(fw, qpi, Status(Code.UNSCHEDULABLE, str(fit)), reason="Unschedulable",
                            nominated_node=nominated)
        self.queue.done(pi.uid)

    async def binding_cycle(self, fw: Framework, state: CycleState, qpi: QueuedPodInfo, assumed: PodInfo,
                            host: str) -> None:
        try:
            status = await fw.wait_on_permit(assumed)
            if status is None:
                status = await fw.run_bind(state, assumed, host)
            if status is None:
                self.cache.finish_binding(assumed)
                self.scheduled += 1
                self.recorder.event(assumed.pod, "Normal", "Scheduled",
                                    f"Successfully assigned {assumed.namespace}/{assumed.name} to {host}")
                return
            fw.run_unreserve(state, assumed, host)
            self.cache.forget_pod(assumed)
            if "already assigned" in status.message:
                return                    # someone else bound it: the informer will tell us where
            qpi.unschedulable_plugins = frozenset([status.plugin]) if status.is_rejected else frozenset()
            self.handle_failure(fw, qpi, status, reason="SchedulerError" if status.code == Code.ERROR
                                else "Unschedulable")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("binding %s to %s failed unexpectedly", assumed.key, host)
            self.cache.forget_pod(assumed)
        finally:
            self.queue.done(assumed.uid)
            self.bind_slots.release()

    # -- failures -----------------------------------------------------------------------------------------------------
    def handle_failure(self, fw: Framework, qpi: QueuedPodInfo, status: Status, reason: str,
                       nominated_node: str | None = None) -> None:
        """Requeue the pod, record FailedScheduling, set PodScheduled=False (and the nomination) on its status."""
        self.failed_attempts += 1
        pi = qpi.pod_info
        current = self.pods.store.get(pi.key)
        if current is None or current["metadata"].get("uid") != pi.uid or assigned(current):
            return
        if current is not pi.pod:
            qpi.pod_info = pi = self.pod_info(current)
        self.queue.add_unschedulable_if_not_present(qpi)
        if nominated_node is not None:
            self.queue.nominator.add(pi, nominated_node)
        message = status.message
        log.debug("unable to schedule %s: %s", pi.key, message)
        self.recorder.event(current, "Warning", "FailedScheduling", message)
        condition = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message}
        self._spawn(self.update_pod_status(current, condition, nominated_node), f"status-{pi.key}")

    async def update_pod_status(self, pod: Obj, condition: Obj, nominated_node: str | None) -> None:
        status = pod.get("status") or {}
        old = next((c for c in status.get("conditions") or () if c.get("type") == condition["type"]), None)
        patch: Obj = {}
        if old is None or any(old.get(k) != condition[k] for k in ("status", "reason", "message")):
            cond = dict(condition, lastProbeTime=None)
            cond["lastTransitionTime"] = (old.get("lastTransitionTime") if old is not None
                                          and old.get("status") == condition["status"] else _now())
            patch["conditions"] = [cond]
        if nominated_node is not None and (status.get("nominatedNodeName") or "") != nominated_node:
            patch["nominatedNodeName"] = nominated_node or None
        if not patch:
            return
        meta = pod["metadata"]
        try:
            await self.client.patch(resource("pods"), meta["name"], {"metadata": {"uid": meta.get("uid")},
                                                                     "status": patch},
                                    meta.get("namespace"), patch_type="strategic", subresource="status")
        except (errors.NotFound, errors.Conflict):
            pass
        except errors.APIError as e:
            log.debug("could not update status of %s/%s: %s", meta.get("namespace"), meta["name"], e)

    # -- preemption's API calls ---------------------------------------------------------------------------------------
    async def prepare_candidate(self, preemptor: PodInfo, result: PostFilterResult) -> None:
        """Evict the victims (DisruptionTarget condition, then a graceful delete) and clear the nominations of
        lower-priority pods on the node, which may no longer fit there."""
        node = result.nominated_node_name
        pods = resource("pods")
        for victim in result.victims:
            if victim.deleting:
                continue
            try:
                await self.client.patch(pods, victim.name, {"status": {"conditions": [{
                    "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                    "message": f"{DEFAULT_SCHEDULER_NAME}: preempting to accommodate a higher priority pod",
                    "lastTransitionTime": _now()}]}}, victim.namespace, patch_type="strategic",
                                        subresource="status")
                await self.client.delete(pods, victim.name, victim.namespace,
                                         preconditions={"uid": victim.uid} if victim.uid else None)
            except errors.NotFound:
                continue
            except errors.APIError as e:
                log.warning("could not preempt %s for %s: %s", victim.key, preemptor.key, e)
                self.queue.activate([preemptor.uid])
                return
            self.recorder.event(victim.pod, "Normal", "Preempted",
                                f"Preempted by pod {preemptor.uid} on node {node}")
        for other in self.queue.nominator.pods_for_node(node):
            if other.priority < preemptor.priority:
                self.queue.nominator.delete(other.uid)
                try:
                    await self.client.patch(pods, other.name, {"status": {"nominatedNodeName": None}},
                                            other.namespace, patch_type="strategic", subresource="status")
                except errors.APIError:
                    pass
