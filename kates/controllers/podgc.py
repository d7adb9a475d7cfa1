"""The pod garbage collector: force-deletes pods no kubelet will ever clean up, and caps finished pods.

Model: `pkg/controller/podgc/gc_controller.go`. One pass every `gc_period` seconds over the pod and node caches:
1. terminated pods (Succeeded/Failed) beyond `options.terminated_pod_gc_threshold` (<= 0: never), evicted ones
   first, then oldest first;
2. orphans: pods bound to a node that does not exist, once it has been missing for `orphan_quarantine` seconds
   and a GET on the API server confirms it (the cache may just be late);
3. terminating pods on a node that is not Ready and carries the `node.kubernetes.io/out-of-service` taint;
4. terminating pods on an unreachable node (Ready Unknown: its kubelet stopped renewing its Lease) whose deletion
   grace period is over by more than `options.node_monitor_grace_period`. This rule is kates' own: Kubernetes
   leaves such pods Terminating until someone force-deletes them. Here, a ReplicaSet's pods evicted from a dead
   node are replaced at once (a terminating pod no longer counts as a replica) and the old ones disappear about
   grace period + node_monitor_grace_period later, without an operator;
5. terminating pods that were never scheduled.
Non-terminal pods are first marked Failed (orphans with a DisruptionTarget condition, reason DeletionByPodGC), then
deleted with gracePeriodSeconds=0.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..api import errors
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory
from ..client.rest import Client, resource
from ..api.timestamps import parse_rfc3339 as parse_time, rfc3339

log = logging.getLogger(__name__)

Obj = dict[str, Any]

OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"
TERMINAL_PHASES = ("Succeeded", "Failed")


def ready_status(node: Obj) -> str | None:
    cond = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    return cond.get("status") if cond else None


def has_taint(node: Obj, key: str) -> bool:
    return any(t.get("key") == key for t in (node.get("spec") or {}).get("taints") or [])


def is_terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def gc_order(pod: Obj) -> tuple[bool, str, str]:
    """Evicted pods first, then by creationTimestamp, then by name."""
    return ((pod.get("status") or {}).get("reason") != "Evicted", pod["metadata"].get("creationTimestamp") or "",
            pod["metadata"]["name"])


class PodGCController(Controller):
    name = "pod-garbage-collector"
    workers = 1
    gc_period = 2.0            # Kubernetes: 20 s; a pass only reads caches, so it is cheap
    orphan_quarantine = 2.0    # Kubernetes: 40 s; a GET confirms the node is gone before anything is deleted
    concurrency = 16

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.pods = informers.informer(resource("pods")).store
        self.node_informer = informers.informer(resource("nodes"))
        self.nodes = self.node_informer.store
        self.missing_since: dict[str, float] = {}
        self.node_informer.add_handler(on_delete=lambda _: self.queue.add("gc"))
        self.queue.add("gc")

    async def sync(self, key: str) -> None:
        try:
            await self.gc()
        finally:
            self.queue.add_after("gc", self.gc_period)

    async def gc(self) -> None:
        pods = self.pods.list()
        doomed: list[tuple[Obj, Obj | None]] = []     # (pod, condition to add before deleting)
        threshold = self.options.terminated_pod_gc_threshold
        if threshold > 0:
            doomed += [(p, None) for p in self.terminated_over_threshold(pods, threshold)]
        doomed += [(p, None) for p in self.terminating_on_lost_nodes(pods)]
        doomed += [(p, {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                        "message": "PodGC: node no longer exists"}) for p in await self.orphaned(pods)]
        doomed += [(p, None) for p in pods if p["metadata"].get("deletionTimestamp") and not p["spec"].get("nodeName")]
        if not doomed:
            return
        seen: set[str] = set()
        slots = asyncio.Semaphore(self.concurrency)

        async def one(pod: Obj, cond: Obj | None) -> None:
            async with slots:
                await self.mark_failed_and_delete(pod, cond)
        jobs = []
        for pod, cond in doomed:
            if pod["metadata"]["uid"] not in seen:
                seen.add(pod["metadata"]["uid"])
                jobs.append(one(pod, cond))
        log.info("pod GC: force-deleting %d pods", len(jobs))
        await asyncio.gather(*jobs)

    def terminated_over_threshold(self, pods: list[Obj], threshold: int) -> list[Obj]:
        terminated = [p for p in pods if is_terminated(p)]
        excess = len(terminated) - threshold
        if excess <= 0:
            return []
        return sorted(terminated, key=gc_order)[:excess]

    def terminating_on_lost_nodes(self, pods: list[Obj]) -> list[Obj]:
        """Terminating pods on out-of-service nodes, or on unreachable nodes once their grace period is well over."""
        now = self.options.clock()
        margin = self.options.node_monitor_grace_period
        out = []
        for pod in pods:
            deletion = pod["metadata"].get("deletionTimestamp")
            node = self.nodes.get(pod["spec"].get("nodeName") or "") if deletion else None
            if node is None:
                continue
            status = ready_status(node)
            if status != "True" and has_taint(node, OUT_OF_SERVICE_TAINT):
                out.append(pod)
            elif status == "Unknown" and now > (parse_time(deletion) or now) + margin:
                out.append(pod)
        return out

    async def orphaned(self, pods: list[Obj]) -> list[Obj]:
        """Pods bound to nodes missing from the cache for the quarantine time and confirmed gone by a GET."""
        now = self.options.clock()
        missing = {p["spec"]["nodeName"] for p in pods
                   if p["spec"].get("nodeName") and self.nodes.get(p["spec"]["nodeName"]) is None}
        for name in list(self.missing_since):
            if name not in missing:
                del self.missing_since[name]
        gone = set()
        for name in missing:
            since = self.missing_since.setdefault(name, now)
            if now - since < self.orphan_quarantine:
                continue
            try:
                await self.client.get(resource("nodes"), name)
            except errors.NotFound:
                gone.add(name)
        return [p for p in pods if p["spec"].get("nodeName") in gone]

    async def mark_failed_and_delete(self, pod: Obj, cond: Obj | None) -> None:
        meta = pod["metadata"]
        pods = resource("pods")
        try:
            if not is_terminated(pod):
                status: Obj = {"phase": "Failed"}
                if cond is not None:
                    status["conditions"] = [{**cond, "lastTransitionTime": rfc3339(self.options.clock())}]
                await self.client.patch(pods, meta["name"], {"status": status}, meta["namespace"],
                                        patch_type="strategic", subresource="status")
            await self.client.delete(pods, meta["name"], meta["namespace"], grace_period_seconds=0,
                                     preconditions={"uid": meta["uid"]})
        except (errors.NotFound, errors.Conflict):
            pass
        except errors.APIError as e:
            log.debug("pod GC: deleting %s/%s: %s", meta["namespace"], meta["name"], e)
