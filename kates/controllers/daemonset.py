"""The DaemonSet controller: one pod on every node that should run it.

Modelled on Kubernetes' `pkg/controller/daemon` (daemon_controller.go, update.go, util/). A node should run the
DaemonSet's pod when the template's nodeSelector and required node affinity match it and every NoSchedule or
NoExecute taint on it is tolerated; DaemonSet pods tolerate the node-condition taints (not-ready, unreachable,
disk/memory/pid pressure, unschedulable) that Kubernetes adds for them. A pod already running may stay on a
node that only gained a NoSchedule taint.

The controller places pods itself, as Kubernetes has since 1.12: each pod gets a required node affinity
`matchFields metadata.name In [node]`, and the default scheduler binds it there. It follows nodes (an informer)
so a new node gets a pod and a node that stops qualifying loses it; unscheduled pods aimed at a node that is gone
are deleted, as are pods left bound to a deleted node. Template changes are recorded as ControllerRevisions;
pods carry the revision's hash in `controller-revision-hash`, and a RollingUpdate replaces old pods within
maxUnavailable (delete, then create) or maxSurge (create, then delete). Creates and deletes go through
expectations so a sync never acts twice on a cache that has not caught up with its own writes.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from typing import Any, Callable

from ..api import errors
from ..api.selectors import LabelSelector, selector_from_label_selector
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory, controller_ref
from ..client.rest import Client, resource
from . import history
from .history import Obj, is_terminating, phase

log = logging.getLogger(__name__)

DAEMON_SETS = resource("daemonsets.apps")
PODS = resource("pods")
NODES = resource("nodes")
REVISIONS = history.REVISIONS

HASH_LABEL = history.REVISION_HASH_LABEL
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
BURST_REPLICAS = 250
EXPECTATIONS_TTL = 300.0

# Taints DaemonSet pods tolerate whatever their template says (util.AddOrUpdateDaemonPodTolerations).
DEFAULT_TOLERATIONS: tuple[tuple[str, str], ...] = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
NETWORK_UNAVAILABLE = ("node.kubernetes.io/network-unavailable", "NoSchedule")


# -- which nodes should run the pod ------------------------------------------------------------------------------

def _requirement_matches(req: Obj, values: dict[str, str]) -> bool:
    op, key, wanted = req.get("operator"), req.get("key", ""), req.get("values") or []
    have = values.get(key)
    if op == "In":
        return have is not None and have in wanted
    if op == "NotIn":
        return have is None or have not in wanted
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt") and have is not None and len(wanted) == 1:
        try:
            a, b = int(have), int(wanted[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_selector_term_matches(term: Obj, node: Obj) -> bool:
    """All of a term's expressions (labels) and fields (metadata.name); an empty term matches nothing."""
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    node_fields = {"metadata.name": node["metadata"]["name"]}
    return (all(_requirement_matches(r, labels) for r in expressions)
            and all(_requirement_matches(r, node_fields) for r in fields))


def required_affinity_matches(pod_spec: Obj, node: Obj) -> bool:
    """nodeSelector and requiredDuringSchedulingIgnoredDuringExecution (nodeaffinity.GetRequiredNodeAffinity)."""
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    return any(node_selector_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def tolerates(toleration: Obj, taint: Obj) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(taints: list[Obj], tolerations: list[Obj], effects: tuple[str, ...]) -> Obj | None:
    for taint in taints:
        if taint.get("effect") in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def with_daemon_tolerations(pod_spec: Obj) -> Obj:
    """A copy of the pod spec with the default DaemonSet tolerations added where missing."""
    spec = copy.deepcopy(pod_spec)
    tolerations = spec.setdefault("tolerations", [])
    wanted = list(DEFAULT_TOLERATIONS) + ([NETWORK_UNAVAILABLE] if spec.get("hostNetwork") else [])
    for key, effect in wanted:
        if not any(t.get("key") == key and t.get("effect") == effect and t.get("operator") == "Exists"
                   for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": effect})
    return spec


def node_should_run_daemon_pod(node: Obj, ds: Obj) -> tuple[bool, bool]:
    """(should run, should continue running) for `ds` on `node` (NodeShouldRunDaemonPod)."""
    spec = with_daemon_tolerations(ds["spec"]["template"].get("spec") or {})
    if spec.get("nodeName") and spec["nodeName"] != node["metadata"]["name"]:
        return False, False
    if not required_affinity_matches(spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = spec.get("tolerations") or []
    if untolerated_taint(taints, tolerations, ("NoSchedule", "NoExecute")) is not None:
        return False, untolerated_taint(taints, tolerations, ("NoExecute",)) is None
    return True, True


def with_node_affinity(affinity: Obj | None, node_name: str) -> Obj:
    """Pin a pod to one node: `matchFields metadata.name In [node]` in every required term
    (util.ReplaceDaemonSetPodNodeNameNodeAffinity)."""
    affinity = copy.deepcopy(affinity) if affinity else {}
    pin = [{"key": "metadata.name", "operator": "In", "values": [node_name]}]
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    terms = (required or {}).get("nodeSelectorTerms") or []
    if not terms:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [{"matchFields": pin}]}
        return affinity
    for term in terms:
        term["matchFields"] = copy.deepcopy(pin)
    required["nodeSelectorTerms"] = terms
    return affinity


def target_node(pod: Obj) -> str | None:
    """The node a daemon pod is for: where it is bound, else the node its affinity pins (GetTargetNodeName)."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if (field.get("key") == "metadata.name" and field.get("operator") == "In"
                    and len(field.get("values") or []) == 1):
                return field["values"][0]
    return None


def is_pod_updated(pod: Obj, hash_: str, generation: str | None) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return (generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == generation) or \
        labels.get(HASH_LABEL) == hash_


def oldest_first(pods: list[Obj]) -> list[Obj]:
    """Bound pods first, then by creation time and name (podByCreationTimestampAndPhase)."""
    return sorted(pods, key=lambda p: (not (p.get("spec") or {}).get("nodeName"),
                                       p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))


# -- expectations ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Expected:
    adds: int
    deletes: int
    at: float


class Expectations:
    """Creates and deletes a DaemonSet is waiting to see in its informer (controller.ControllerExpectations)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._items: dict[str, _Expected] = {}

    def expect(self, key: str, adds: int, deletes: int) -> None:
        self._items[key] = _Expected(adds, deletes, self.clock())

    def observed(self, key: str, adds: int = 0, deletes: int = 0) -> None:
        item = self._items.get(key)
        if item is not None:
            item.adds -= adds
            item.deletes -= deletes

    def satisfied(self, key: str) -> bool:
        item = self._items.get(key)
        return (item is None or (item.adds <= 0 and item.deletes <= 0)
                or self.clock() - item.at > EXPECTATIONS_TTL)

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


class _Backoff:
    """Per (DaemonSet, node) back-off for deleting failed pods, so the controller does not fight a kubelet."""

    def __init__(self, clock: Callable[[], float], initial: float = 1.0, cap: float = 900.0) -> None:
        self.clock, self.initial, self.cap = clock, initial, cap
        self._entries: dict[str, tuple[float, float]] = {}     # key → (delay, last update)

    def in_backoff(self, key: str) -> float:
        """Seconds still to wait, or 0."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        delay, at = entry
        return max(0.0, at + delay - self.clock())

    def next(self, key: str) -> None:
        delay, at = self._entries.get(key, (0.0, 0.0))
        now = self.clock()
        if delay and now - at > 2 * self.cap:
            delay = 0.0
        self._entries[key] = (min(self.cap, delay * 2) if delay else self.initial, now)


# -- the controller ---------------------------------------------------------------------------------------------

class DaemonSetController(Controller):
    name = "daemonset-controller"

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.daemon_sets = informers.informer(DAEMON_SETS).store
        self.pods = informers.informer(PODS).store
        self.nodes = informers.informer(NODES).store
        self.revisions = informers.informer(REVISIONS).store
        self.expectations = Expectations(self.options.clock)
        self.failed_pods_backoff = _Backoff(self.options.clock)
        informers.informer(DAEMON_SETS).add_handler(self.enqueue, lambda old, new: self.enqueue(new),
                                                    self._daemon_set_deleted)
        informers.informer(PODS).add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        informers.informer(NODES).add_handler(self._node_changed, self._node_updated, self._node_changed)
        informers.informer(REVISIONS).add_handler(self._owner_changed, lambda old, new: self._owner_changed(new),
                                                  self._owner_changed)

    # -- event handlers: they only record observations and enqueue ---------------------------------------------
    def _daemon_set_deleted(self, ds: Obj) -> None:
        self.expectations.forget(f"{ds['metadata']['namespace']}/{ds['metadata']['name']}")
        self.enqueue(ds)

    def _owner_key(self, obj: Obj) -> str | None:
        ref = controller_ref(obj)
        if ref is None or ref.get("kind") != "DaemonSet":
            return None
        return f"{obj['metadata']['namespace']}/{ref['name']}"

    def _owner_changed(self, obj: Obj) -> None:
        key = self._owner_key(obj)
        if key is not None:
            self.queue.add(key)

    def _pod_added(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            if is_terminating(pod):
                self.expectations.observed(key, deletes=1)
            else:
                self.expectations.observed(key, adds=1)
            self.queue.add(key)
        elif controller_ref(pod) is None and not is_terminating(pod):
            self._enqueue_selecting(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = self._owner_key(new)
        if key is not None and is_terminating(new) and not is_terminating(old):
            self.expectations.observed(key, deletes=1)
        old_key = self._owner_key(old)
        if old_key is not None and old_key != key:
            self.queue.add(old_key)
        if key is not None:
            self.queue.add(key)
        elif controller_ref(new) is None and (old["metadata"].get("labels") != new["metadata"].get("labels")
                                              or controller_ref(old) is not None):
            self._enqueue_selecting(new)

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            if not is_terminating(pod):
                self.expectations.observed(key, deletes=1)
            self.queue.add(key)

    def _enqueue_selecting(self, pod: Obj) -> None:
        labels = pod["metadata"].get("labels") or {}
        for ds in self.daemon_sets.in_namespace(pod["metadata"].get("namespace", "")):
            selector = selector_from_label_selector(ds["spec"].get("selector"))
            if selector is not None and not selector.empty and selector.matches(labels):
                self.enqueue(ds)

    def _node_changed(self, node: Obj) -> None:
        for ds in self.daemon_sets.list():
            self.enqueue(ds)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        def relevant(n: Obj) -> Any:
            return (n["metadata"].get("labels"), (n.get("spec") or {}).get("taints"),
                    (n.get("spec") or {}).get("unschedulable"))
        if relevant(old) != relevant(new):
            self._node_changed(new)

    # -- sync --------------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        ds = self.daemon_sets.get(key)
        if ds is None:
            self.expectations.forget(key)
            return
        ds = {**ds, "apiVersion": "apps/v1", "kind": "DaemonSet"}
        selector = selector_from_label_selector(ds["spec"].get("selector"))
        if selector is None or selector.empty:
            self.recorder.event(ds, "Warning", "SelectingAll",
                                "This daemon set is selecting all pods. A non-empty selector is required.")
            return
        if is_terminating(ds):
            return   # its pods and history may be going away: no status can be computed reliably
        nodes = self.nodes.list()
        current, old = await self.construct_history(ds, selector)
        hash_ = current["metadata"]["labels"][HASH_LABEL]
        if not self.expectations.satisfied(key):
            await self.update_status(ds, nodes, hash_, selector, observed=False)
            return
        try:
            await self.manage(ds, nodes, hash_, selector)
            if self.expectations.satisfied(key):
                strategy = (ds["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
                if strategy == "RollingUpdate":
                    await self.rolling_update(ds, nodes, hash_, selector)
            await self.cleanup_history(ds, old, selector)
        finally:
            await self.update_status(ds, nodes, hash_, selector, observed=True)

    async def claim_pods(self, ds: Obj, selector: LabelSelector) -> list[Obj]:
        """Pods this DaemonSet controls: adopting matching orphans, releasing pods it no longer selects."""
        claimed = []
        for pod in self.pods.in_namespace(ds["metadata"]["namespace"]):
            matches = selector.matches(pod["metadata"].get("labels"))
            ref = controller_ref(pod)
            if ref is not None:
                if ref.get("uid") != ds["metadata"]["uid"]:
                    continue
                if matches or is_terminating(pod):
                    claimed.append(pod)
                else:
                    await history.release(self.client, PODS, pod, ds)
            elif matches and not is_terminating(pod):
                try:
                    claimed.append(await history.adopt(self.client, PODS, pod, ds))
                except (errors.NotFound, errors.Conflict):
                    continue
        return claimed

    async def nodes_to_daemon_pods(self, ds: Obj, selector: LabelSelector,
                                   include_deleted_terminal: bool = False) -> dict[str, list[Obj]]:
        by_node: dict[str, list[Obj]] = {}
        for pod in await self.claim_pods(ds, selector):
            if (not include_deleted_terminal and is_terminating(pod)
                    and phase(pod) in ("Failed", "Succeeded")):
                continue
            node = target_node(pod)
            if node is not None:
                by_node.setdefault(node, []).append(pod)
        return by_node

    async def manage(self, ds: Obj, nodes: list[Obj], hash_: str, selector: LabelSelector) -> None:
        """Create pods on nodes that should have one; delete pods from nodes that should not."""
        node_to_pods = await self.nodes_to_daemon_pods(ds, selector)
        needing: list[str] = []
        to_delete: list[Obj] = []
        for node in nodes:
            create, delete = self.pods_should_be_on_node(node, node_to_pods, ds, hash_)
            needing += create
            to_delete += delete
        gone = await self.pods_on_missing_nodes(nodes, node_to_pods)
        await self.sync_nodes(ds, to_delete + gone, needing, hash_)

    def pods_should_be_on_node(self, node: Obj, node_to_pods: dict[str, list[Obj]], ds: Obj,
                               hash_: str) -> tuple[list[str], list[Obj]]:
        should_run, should_continue = node_should_run_daemon_pod(node, ds)
        name = node["metadata"]["name"]
        pods = node_to_pods.get(name)
        if should_run and not pods:
            return [name], []
        if not pods:
            return [], []
        if not should_continue:
            return [], [p for p in pods if not is_terminating(p)]
        to_delete: list[Obj] = []
        running: list[Obj] = []
        for pod in pods:
            if is_terminating(pod):
                continue
            if phase(pod) == "Failed":
                backoff_key = f"{ds['metadata']['uid']}/{ds.get('status', {}).get('observedGeneration', 0)}/{name}"
                wait = self.failed_pods_backoff.in_backoff(backoff_key)
                if wait > 0:
                    self.queue.add_after(self._key(ds), wait)
                    continue
                self.failed_pods_backoff.next(backoff_key)
                self.recorder.event(ds, "Warning", "FailedDaemonPod",
                                    f"Found failed daemon pod {pod['metadata']['namespace']}/"
                                    f"{pod['metadata']['name']} on node {name}, will try to kill it")
                to_delete.append(pod)
            elif phase(pod) == "Succeeded":
                self.recorder.event(ds, "Normal", "SucceededDaemonPod",
                                    f"Found succeeded daemon pod {pod['metadata']['namespace']}/"
                                    f"{pod['metadata']['name']} on node {name}, will try to delete it")
                to_delete.append(pod)
            else:
                running.append(pod)
        if not allows_surge(ds):
            return [], to_delete + oldest_first(running)[1:]
        if len(running) <= 1:
            return ([name] if not running and should_run else []), to_delete
        # surging: keep the oldest new pod, and the oldest old pod only while it is ready and the new one is not
        oldest_new = oldest_old = None
        for pod in oldest_first(running):
            is_new = (pod["metadata"].get("labels") or {}).get(HASH_LABEL) == hash_
            if is_new and oldest_new is None:
                oldest_new = pod
            elif not is_new and oldest_old is None:
                oldest_old = pod
            else:
                to_delete.append(pod)
        if oldest_new is not None and oldest_old is not None:
            min_ready = int(ds["spec"].get("minReadySeconds") or 0)
            if (not history.is_pod_ready(oldest_old)
                    or history.is_pod_available(oldest_new, min_ready, self.options.clock())):
                to_delete.append(oldest_old)
        return [], to_delete

    async def pods_on_missing_nodes(self, nodes: list[Obj], node_to_pods: dict[str, list[Obj]]) -> list[Obj]:
        """Pods aimed at, or bound to, a node that no longer exists: nothing else will ever run or remove them."""
        known = {n["metadata"]["name"] for n in nodes}
        missing = []
        for node_name, pods in node_to_pods.items():
            if node_name in known:
                continue
            live = [p for p in pods if not is_terminating(p) or (p.get("spec") or {}).get("nodeName")]
            if not live:
                continue
            try:    # the node informer may lag behind a node the scheduler just used: ask the API server
                await self.client.get(NODES, node_name)
                continue
            except errors.NotFound:
                missing += live
        return missing

    async def sync_nodes(self, ds: Obj, to_delete: list[Obj], nodes_needing: list[str], hash_: str) -> None:
        """Create a pinned pod on each node needing one and delete the given pods, under expectations."""
        key = self._key(ds)
        nodes_needing = nodes_needing[:BURST_REPLICAS]
        to_delete = to_delete[:BURST_REPLICAS]
        self.expectations.expect(key, len(nodes_needing), len(to_delete))
        template = self.pod_template(ds, hash_)
        errs: list[BaseException] = []

        async def create(i: int) -> None:
            pod = copy.deepcopy(template)
            pod["spec"]["affinity"] = with_node_affinity(pod["spec"].get("affinity"), nodes_needing[i])
            try:
                created = await self.client.create(PODS, pod, ds["metadata"]["namespace"])
            except errors.APIError as e:
                self.expectations.observed(key, adds=1)
                if isinstance(e, errors.Forbidden) and "being terminated" in str(e):
                    return   # the namespace is going away
                self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {e}")
                raise
            self.recorder.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

        try:
            done = await history.slow_start_batch(len(nodes_needing), create)
        except BaseException as e:     # noqa: BLE001 — re-raised below, after the deletes
            errs.append(e)
            done = len(nodes_needing)
        skipped = len(nodes_needing) - done
        if skipped > 0:
            self.expectations.observed(key, adds=skipped)
        for pod in to_delete:
            try:
                await self.delete_pod(ds, pod)
            except errors.APIError as e:
                errs.append(e)
        if errs:
            raise errs[0]

    async def delete_pod(self, ds: Obj, pod: Obj) -> None:
        key = self._key(ds)
        node = (pod.get("spec") or {}).get("nodeName")
        gone = bool(node) and node not in {n["metadata"]["name"] for n in self.nodes.list()}
        try:
            # a pod bound to a vanished node has no kubelet to finish a graceful deletion
            await self.client.delete(PODS, pod["metadata"]["name"], pod["metadata"]["namespace"],
                                     grace_period_seconds=0 if gone else None,
                                     preconditions={"uid": pod["metadata"]["uid"]})
        except (errors.NotFound, errors.Conflict):
            self.expectations.observed(key, deletes=1)
            return
        except errors.APIError as e:
            self.expectations.observed(key, deletes=1)
            self.recorder.event(ds, "Warning", "FailedDelete", f"Error deleting: {e}")
            raise
        self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")

    def pod_template(self, ds: Obj, hash_: str) -> Obj:
        """The pod every node gets: the template, the default tolerations, the revision labels, our ownership."""
        template = ds["spec"]["template"]
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels[HASH_LABEL] = hash_
        generation = template_generation(ds)
        if generation is not None:
            labels[TEMPLATE_GENERATION_LABEL] = generation
        meta: Obj = {"generateName": f"{ds['metadata']['name']}-", "namespace": ds["metadata"]["namespace"],
                     "labels": labels, "ownerReferences": [history.new_controller_ref(ds)]}
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        if tmeta.get("finalizers"):
            meta["finalizers"] = list(tmeta["finalizers"])
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                "spec": with_daemon_tolerations(template.get("spec") or {})}

    # -- rolling update (update.go) ----------------------------------------------------------------------------
    async def rolling_update(self, ds: Obj, nodes: list[Obj], hash_: str, selector: LabelSelector) -> None:
        node_to_pods = await self.nodes_to_daemon_pods(ds, selector)
        max_surge, max_unavailable = self.desired_counts(ds, nodes)
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        now = self.options.clock()
        generation = template_generation(ds)

        def available(pod: Obj) -> bool:
            return history.is_pod_available(pod, min_ready, now)

        if max_surge == 0:
            unavailable = 0
            replace: list[Obj] = []
            candidates: list[Obj] = []
            for node_name in sorted(node_to_pods):
                new, old, ok = updated_pods_on_node(node_to_pods[node_name], hash_, generation)
                if not ok or (new is None) == (old is None):
                    unavailable += 1          # the manage loop is still creating or pruning here
                elif new is not None:
                    unavailable += not available(new)
                elif not available(old):
                    replace.append(old)
                elif unavailable < max_unavailable:
                    candidates.append(old)
            budget = max(0, min(max_unavailable - unavailable, len(candidates)))
            await self.sync_nodes(ds, replace + candidates[:budget], [], hash_)
            return

        surge = 0
        to_delete: list[Obj] = []
        allowed: list[str] = []
        surge_candidates: list[str] = []
        for node_name in sorted(node_to_pods):
            new, old, ok = updated_pods_on_node(node_to_pods[node_name], hash_, generation)
            if not ok:
                surge += 1
            elif old is None:
                continue
            elif new is None:
                if not available(old):
                    allowed.append(node_name)
                elif surge < max_surge:
                    surge_candidates.append(node_name)
            elif not available(new):
                surge += 1
            else:
                to_delete.append(old)
        budget = max(0, min(max_surge - surge, len(surge_candidates)))
        await self.sync_nodes(ds, to_delete, allowed + surge_candidates[:budget], hash_)

    def desired_counts(self, ds: Obj, nodes: list[Obj]) -> tuple[int, int]:
        """(maxSurge, maxUnavailable) scaled to the number of nodes that should run the pod."""
        desired = sum(1 for n in nodes if node_should_run_daemon_pod(n, ds)[0])
        rolling = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        max_unavailable = history.scaled_value(rolling.get("maxUnavailable", 1), desired, True)
        max_surge = history.scaled_value(rolling.get("maxSurge", 0), desired, True)
        if desired > 0 and max_unavailable == 0 and max_surge == 0:
            max_unavailable = 1
        return max_surge, max_unavailable

    # -- history -----------------------------------------------------------------------------------------------
    async def claim_revisions(self, ds: Obj, selector: LabelSelector) -> list[Obj]:
        claimed = []
        for rev in self.revisions.in_namespace(ds["metadata"]["namespace"]):
            ref = controller_ref(rev)
            if ref is not None:
                if ref.get("uid") == ds["metadata"]["uid"]:
                    claimed.append(rev)
            elif selector.matches(rev["metadata"].get("labels")):
                try:
                    claimed.append(await history.adopt(self.client, REVISIONS, rev, ds))
                except (errors.NotFound, errors.Conflict):
                    continue
        return claimed

    async def construct_history(self, ds: Obj, selector: LabelSelector) -> tuple[Obj, list[Obj]]:
        """The revision matching the current template (created or renumbered as needed) and the older ones."""
        data = history.template_patch(ds)
        matching: list[Obj] = []
        old: list[Obj] = []
        for rev in await self.claim_revisions(ds, selector):
            if HASH_LABEL not in (rev["metadata"].get("labels") or {}):
                meta = rev["metadata"]
                rev = await self.client.patch(REVISIONS, meta["name"], {"metadata": {"labels": {
                    HASH_LABEL: meta["name"]}}}, meta["namespace"])
            if history.canonical_json(rev.get("data")) == history.canonical_json(data):
                matching.append(rev)
            else:
                old.append(rev)
        number = max((r.get("revision", 0) for r in old), default=0) + 1
        if not matching:
            return await self.snapshot(ds, data, number), old
        current = await self.dedup_current(ds, matching, selector)
        if current.get("revision", 0) < number:
            current = await history.renumber_revision(self.client, current, number)
        return current, old

    async def snapshot(self, ds: Obj, data: Obj, number: int) -> Obj:
        collision_count = int((ds.get("status") or {}).get("collisionCount") or 0)
        hash_ = history.compute_hash(ds["spec"]["template"], collision_count)
        revision = history.new_revision(ds, data, number, hash_)
        try:
            return await self.client.create(REVISIONS, revision)
        except errors.AlreadyExists:
            existing = await self.client.get(REVISIONS, revision["metadata"]["name"], ds["metadata"]["namespace"])
            if history.equal_revision(existing, revision):
                return existing
            # a different template hashed to the same name: salt the hash and come back
            fresh = await self.client.get(DAEMON_SETS, ds["metadata"]["name"], ds["metadata"]["namespace"])
            fresh.setdefault("status", {})["collisionCount"] = collision_count + 1
            await self.client.update_status(DAEMON_SETS, fresh)
            raise

    async def dedup_current(self, ds: Obj, matching: list[Obj], selector: LabelSelector) -> Obj:
        """Several revisions with the current template: keep the newest, relabel its pods, delete the rest."""
        keep = max(matching, key=lambda r: r.get("revision", 0))
        keep_hash = keep["metadata"]["labels"][HASH_LABEL]
        for rev in matching:
            if rev is keep:
                continue
            for pod in await self.claim_pods(ds, selector):
                if (pod["metadata"].get("labels") or {}).get(HASH_LABEL) != keep_hash:
                    await self.client.patch(PODS, pod["metadata"]["name"],
                                            {"metadata": {"labels": {HASH_LABEL: keep_hash}}},
                                            pod["metadata"]["namespace"])
            await history.delete_revision(self.client, rev)
        return keep

    async def cleanup_history(self, ds: Obj, old: list[Obj], selector: LabelSelector) -> None:
        """Delete the oldest revisions no pod uses, beyond revisionHistoryLimit."""
        limit = ds["spec"].get("revisionHistoryLimit")
        to_kill = len(old) - (10 if limit is None else int(limit))
        if to_kill <= 0:
            return
        node_to_pods = await self.nodes_to_daemon_pods(ds, selector, include_deleted_terminal=True)
        live = {(p["metadata"].get("labels") or {}).get(HASH_LABEL) for pods in node_to_pods.values() for p in pods}
        for rev in history.sort_revisions(old):
            if to_kill <= 0:
                break
            if rev["metadata"]["labels"].get(HASH_LABEL) in live:
                continue
            await history.delete_revision(self.client, rev)
            to_kill -= 1

    # -- status ------------------------------------------------------------------------------------------------
    async def update_status(self, ds: Obj, nodes: list[Obj], hash_: str, selector: LabelSelector,
                            observed: bool) -> None:
        node_to_pods = await self.nodes_to_daemon_pods(ds, selector)
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        now = self.options.clock()
        generation = template_generation(ds)
        counts = dict.fromkeys(("desiredNumberScheduled", "currentNumberScheduled", "numberMisscheduled",
                                "numberReady", "updatedNumberScheduled", "numberAvailable"), 0)
        for node in nodes:
            should_run, _ = node_should_run_daemon_pod(node, ds)
            pods = node_to_pods.get(node["metadata"]["name"]) or []
            if not should_run:
                counts["numberMisscheduled"] += bool(pods)
                continue
            counts["desiredNumberScheduled"] += 1
            if not pods:
                continue
            counts["currentNumberScheduled"] += 1
            pod = oldest_first(pods)[0]
            if history.is_pod_ready(pod):
                counts["numberReady"] += 1
                counts["numberAvailable"] += history.is_pod_available(pod, min_ready, now)
            counts["updatedNumberScheduled"] += is_pod_updated(pod, hash_, generation)
        counts["numberUnavailable"] = counts["desiredNumberScheduled"] - counts["numberAvailable"]
        old = ds.get("status") or {}
        generation_seen = int(old.get("observedGeneration") or 0) >= int(ds["metadata"].get("generation") or 0)
        if generation_seen and all(int(old.get(k) or 0) == v for k, v in counts.items()):
            pass
        else:
            fresh = copy.deepcopy(ds)
            fresh["status"] = {**old, **counts}
            if observed:
                fresh["status"]["observedGeneration"] = ds["metadata"].get("generation", 0)
            await self.client.update_status(DAEMON_SETS, fresh)
        if min_ready > 0 and counts["numberReady"] != counts["numberAvailable"]:
            self.queue.add_after(self._key(ds), float(min_ready))

    @staticmethod
    def _key(ds: Obj) -> str:
        return f"{ds['metadata']['namespace']}/{ds['metadata']['name']}"


def template_generation(ds: Obj) -> str | None:
    return (ds["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)


def allows_surge(ds: Obj) -> bool:
    strategy = ds["spec"].get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return False
    return history.scaled_value((strategy.get("rollingUpdate") or {}).get("maxSurge"), 1, True) > 0


def updated_pods_on_node(pods: list[Obj], hash_: str, generation: str | None) -> tuple[Obj | None, Obj | None, bool]:
    """(new pod, old pod, ok) among a node's live pods; not ok when there are two of either."""
    new = old = None
    for pod in pods:
        if is_terminating(pod):
            continue
        if is_pod_updated(pod, hash_, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True
