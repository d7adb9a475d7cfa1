"""The node lifecycle controller: notice nodes whose kubelet went silent, taint them, evict what cannot stay.

Model: `pkg/controller/nodelifecycle/node_lifecycle_controller.go` and the NoExecute taint manager
(`pkg/controller/tainteviction/taint_eviction.go`). A kubelet proves it is alive by renewing its Lease in
kube-node-lease (or by posting a new Ready heartbeat). This controller remembers, per node, when it last *saw* either
change on its own clock (so clock skew between machines never matters, and a fresh controller gives every node a full
grace period). A node not seen alive for `options.node_monitor_grace_period`:
- gets its kubelet conditions set to Unknown ("Kubelet stopped posting node status."),
- gets the `node.kubernetes.io/unreachable` taints (NoExecute and NoSchedule; `not-ready` for Ready=False),
- has its pods' Ready condition set to False (endpoints stop sending traffic to them).
When the kubelet comes back, the taints go. Conditions (memory/disk/PID pressure, network) and spec.unschedulable
become the matching NoSchedule taints, as the TaintNodesByCondition pass does.

Taint eviction: a pod on a node with NoExecute taints is deleted (gracefully) at once when it does not tolerate one
of them, or when its toleration's `tolerationSeconds` have passed since the taint's `timeAdded`. The deletion is
graceful, so pods on a dead node stay Terminating until the pod GC force-deletes them (see podgc.py).

Keys: `node:NAME` (health and taints of one node), `evict:NS/NAME` (one pod's eviction deadline) and `monitor`, a
periodic pass that only compares "last seen alive" with the clock and enqueues nodes that just went silent.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ..api import errors
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory
from ..client.rest import Client, object_key, resource, split_key
from ..api.timestamps import parse_rfc3339 as parse_time, rfc3339

log = logging.getLogger(__name__)

Obj = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
# (condition, status) → the NoSchedule taint it implies (TaintNodesByCondition)
NO_SCHEDULE_TAINTS = {
    ("Ready", "False"): NOT_READY_TAINT,
    ("Ready", "Unknown"): UNREACHABLE_TAINT,
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}
MANAGED_TAINTS = {(key, "NoSchedule") for key in NO_SCHEDULE_TAINTS.values()} | {
    (UNSCHEDULABLE_TAINT, "NoSchedule"), (NOT_READY_TAINT, "NoExecute"), (UNREACHABLE_TAINT, "NoExecute")}
NODE_NAME_INDEX = "spec.nodeName"


def condition(obj: Obj, type_: str) -> Obj | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def node_name_index(pod: Obj) -> list[str]:
    name = (pod.get("spec") or {}).get("nodeName")
    return [name] if name else []


# -- taints and tolerations ----------------------------------------------------------------------------------------

def tolerates(toleration: Obj, taint: Obj) -> bool:
    """ToleratesTaint: effect empty or equal; key empty (with Exists) or equal; Exists or Equal value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if not key and operator != "Exists":
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def eviction_time(taints: list[Obj], tolerations: list[Obj], now: float) -> float | None:
    """When a pod must leave a node with these NoExecute taints: `now` if one is not tolerated, None for never.

    Per taint: the smallest tolerationSeconds among the tolerations of it that set one, counted from the taint's
    timeAdded (a toleration without tolerationSeconds only counts when none of them sets any, and then means
    forever); the pod leaves at the earliest of these."""
    deadline: float | None = None
    for taint in taints:
        matching = [t for t in tolerations if tolerates(t, taint)]
        if not matching:
            return now
        seconds = [t["tolerationSeconds"] for t in matching if t.get("tolerationSeconds") is not None]
        if not seconds:
            continue
        added = parse_time(taint.get("timeAdded")) or now
        at = added + max(0, min(int(s) for s in seconds))
        deadline = at if deadline is None else min(deadline, at)
    return deadline


def no_execute_taints(node: Obj | None) -> list[Obj]:
    if node is None:
        return []
    return [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]


def desired_taints(node: Obj, ready_status: str | None, now: float) -> list[Obj]:
    """The node's taints with the managed ones replaced by what its conditions call for (keeping timeAdded)."""
    want: list[tuple[str, str]] = []
    if ready_status == "False":
        want.append((NOT_READY_TAINT, "NoExecute"))
    elif ready_status == "Unknown":
        want.append((UNREACHABLE_TAINT, "NoExecute"))
    statuses = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
    if ready_status is not None:
        statuses["Ready"] = ready_status
    for (cond, status), key in NO_SCHEDULE_TAINTS.items():
        if statuses.get(cond) == status:
            want.append((key, "NoSchedule"))
    if (node.get("spec") or {}).get("unschedulable"):
        want.append((UNSCHEDULABLE_TAINT, "NoSchedule"))
    current = (node.get("spec") or {}).get("taints") or []
    out = [t for t in current if (t.get("key"), t.get("effect")) not in MANAGED_TAINTS]
    existing = {(t.get("key"), t.get("effect")): t for t in current}
    for key, effect in want:
        taint = existing.get((key, effect))
        if taint is None:
            taint = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = rfc3339(now)
        out.append(taint)
    return out


def same_taints(a: list[Obj], b: list[Obj]) -> bool:
    key = lambda t: (t.get("key"), t.get("effect"), t.get("value") or "")
    return sorted(map(key, a)) == sorted(map(key, b))


# -- the controller ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Probe:
    signature: tuple[str | None, str | None]   # (lease renewTime, Ready lastHeartbeatTime) as last seen
    seen_at: float                             # our clock when the signature last changed


class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"
    workers = 4
    monitor_period = 1.0

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.node_informer = informers.informer(resource("nodes"))
        self.lease_informer = informers.informer(resource("leases.coordination.k8s.io"))
        self.pod_informer = informers.informer(resource("pods"))
        self.nodes = self.node_informer.store
        self.leases = self.lease_informer.store
        self.pods = self.pod_informer.store
        self.pods.add_index(NODE_NAME_INDEX, node_name_index)
        self.probes: dict[str, Probe] = {}
        self.ready_seen: dict[str, str | None] = {}     # Ready status at the last sync, for NodeReady/NodeNotReady
        self.node_informer.add_handler(self._node_added, self._node_updated, self._node_added)
        self.lease_informer.add_handler(self._lease_changed, lambda _, new: self._lease_changed(new))
        self.pod_informer.add_handler(self._pod_changed, lambda _, new: self._pod_changed(new))
        self.queue.add("monitor")

    # -- handlers: keys only -------------------------------------------------------------------------------------
    def _node_added(self, node: Obj) -> None:
        self.queue.add(f"node:{node['metadata']['name']}")

    def _node_updated(self, old: Obj, new: Obj) -> None:
        self.queue.add(f"node:{new['metadata']['name']}")
        if not same_taints(no_execute_taints(old), no_execute_taints(new)):
            self._enqueue_pods_on(new["metadata"]["name"])

    def _lease_changed(self, lease: Obj) -> None:
        if lease["metadata"].get("namespace") != LEASE_NAMESPACE:
            return
        node = self.nodes.get(lease["metadata"]["name"])
        ready = condition(node, "Ready") if node else None
        if node is not None and (ready is None or ready.get("status") == "Unknown"):
            self.queue.add(f"node:{node['metadata']['name']}")   # may be back: no need to wait for the monitor

    def _pod_changed(self, pod: Obj) -> None:
        node_name = pod["spec"].get("nodeName")
        if node_name and not pod["metadata"].get("deletionTimestamp") and no_execute_taints(self.nodes.get(node_name)):
            self.queue.add(f"evict:{object_key(pod)}")

    def _enqueue_pods_on(self, node_name: str) -> None:
        for pod in self.pods.by_index(NODE_NAME_INDEX, node_name):
            if not pod["metadata"].get("deletionTimestamp"):
                self.queue.add(f"evict:{object_key(pod)}")

    # -- sync ------------------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "monitor":
            self.monitor_node_health()
        elif kind == "node":
            await self.sync_node(rest)
        elif kind == "evict":
            await self.sync_eviction(rest)

    def last_seen_alive(self, node: Obj) -> float:
        name = node["metadata"]["name"]
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
        ready = condition(node, "Ready")
        signature = ((lease or {}).get("spec", {}).get("renewTime"), (ready or {}).get("lastHeartbeatTime"))
        probe = self.probes.get(name)
        if probe is None or probe.signature != signature:
            probe = self.probes[name] = Probe(signature, self.options.clock())
        return probe.seen_at

    def silent(self, node: Obj) -> bool:
        return self.options.clock() - self.last_seen_alive(node) > self.options.node_monitor_grace_period

    def monitor_node_health(self) -> None:
        """Enqueue the nodes that went silent since the last pass (the rest is event-driven)."""
        try:
            for node in self.nodes.list():
                ready = condition(node, "Ready")
                if self.silent(node) and (ready is None or ready.get("status") != "Unknown"):
                    self.queue.add(f"node:{node['metadata']['name']}")
            for name in [n for n in self.probes if self.nodes.get(n) is None]:
                del self.probes[name]
        finally:
            self.queue.add_after("monitor", self.monitor_period)

    async def sync_node(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            self.probes.pop(name, None)
            self.ready_seen.pop(name, None)
            return
        now = self.options.clock()
        if self.silent(node):
            node = await self.mark_unknown(node, now)
        ready_status = (condition(node, "Ready") or {}).get("status")
        taints = desired_taints(node, ready_status, now)
        if not same_taints(taints, (node.get("spec") or {}).get("taints") or []):
            await self.client.patch(resource("nodes"), name, {
                "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]}, "spec": {"taints": taints}})
        if ready_status == "Unknown":
            await self.mark_pods_not_ready(name, now)
        was = self.ready_seen.get(name)
        self.ready_seen[name] = ready_status
        if was is not None and was != ready_status and "True" in (was, ready_status):
            reason = "NodeReady" if ready_status == "True" else "NodeNotReady"
            self.recorder.event(node, "Normal", reason, f"Node {name} status is now: {reason}")

    async def mark_unknown(self, node: Obj, now: float) -> Obj:
        """Set the kubelet's conditions to Unknown (Ready is added when the kubelet never posted it)."""
        changed = []
        for type_ in KUBELET_CONDITIONS:
            cond = condition(node, type_)
            if cond is None and type_ == "Ready":
                changed.append({"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                                "message": "Kubelet never posted node status.", "lastHeartbeatTime": rfc3339(now),
                                "lastTransitionTime": rfc3339(now)})
            elif cond is not None and cond.get("status") != "Unknown":
                changed.append({"type": type_, "status": "Unknown", "reason": "NodeStatusUnknown",
                                "message": "Kubelet stopped posting node status.",
                                "lastHeartbeatTime": cond.get("lastHeartbeatTime"),
                                "lastTransitionTime": rfc3339(now)})
        if not changed:
            return node
        log.info("node %s: no sign of life for %.0fs; marking it Unknown", node["metadata"]["name"],
                 now - self.probes[node["metadata"]["name"]].seen_at)
        return await self.client.patch(resource("nodes"), node["metadata"]["name"],
                                       {"status": {"conditions": changed}}, patch_type="strategic",
                                       subresource="status")

    async def mark_pods_not_ready(self, node_name: str, now: float) -> None:
        """MarkPodsNotReady: pods on an unreachable node stop being Ready (and so stop being endpoints)."""
        for pod in self.pods.by_index(NODE_NAME_INDEX, node_name):
            ready = condition(pod, "Ready")
            if ready is None or ready.get("status") == "False" or \
                    (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            meta = pod["metadata"]
            try:
                await self.client.patch(resource("pods"), meta["name"], {"status": {"conditions": [
                    {"type": "Ready", "status": "False", "lastTransitionTime": rfc3339(now)}]}},
                    meta["namespace"], patch_type="strategic", subresource="status")
            except errors.NotFound:
                pass

    async def sync_eviction(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        taints = no_execute_taints(self.nodes.get(pod["spec"].get("nodeName") or ""))
        if not taints:
            return
        now = self.options.clock()
        at = eviction_time(taints, pod["spec"].get("tolerations") or [], now)
        if at is None:
            return
        if at > now:
            self.queue.add_after(f"evict:{key}", at - now)
            return
        await self.evict(pod, now)

    async def evict(self, pod: Obj, now: float) -> None:
        namespace, name = split_key(object_key(pod))
        pods = resource("pods")
        self.recorder.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {namespace}/{name}")
        try:
            await self.client.patch(pods, name, {"status": {"conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                 "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": rfc3339(now)}]}},
                namespace, patch_type="strategic", subresource="status")
            await self.client.delete(pods, name, namespace, preconditions={"uid": pod["metadata"]["uid"]})
        except errors.NotFound:
            pass     # a Conflict is retried: the next sync reads the pod again
