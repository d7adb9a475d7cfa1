"""The ReplicaSet and ReplicationController controllers: keep `spec.replicas` pods of a template alive.

Both kinds run the same loop (Kubernetes converts an RC to an RS and reuses its controller; here both are
subclasses of one class that differ in their resource and in how they read `spec.selector`). A sync claims the
pods of its namespace (adopting matching orphans, releasing owned pods that stopped matching), creates missing pods
in slow-start batches or deletes surplus ones in order of least value, then writes the computed status through
`/status` when it changed. Expectations keep a sync from acting again before the informer has seen its own
creations and deletions.

Also home to the helpers other workload controllers share with it (the Deployment controller uses them):
`ControllerExpectations`, `claim` (adoption and release through ownerReferences) and the pod predicates.
"""
from __future__ import annotations

import asyncio
import copy
import functools
from typing import Any, Awaitable, Callable

from ..api import errors
from ..api.resources import ResourceType
from ..api.selectors import LabelSelector, Requirement, selector_from_label_selector
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory, controller_ref
from ..client.rest import Client, object_key, resource
from ..api.timestamps import parse_rfc3339 as parse_time, rfc3339

Obj = dict[str, Any]

PODS = resource("pods")
BURST_REPLICAS = 500            # at most this many creations or deletions per sync
SLOW_START_INITIAL_BATCH = 1
EXPECTATIONS_TTL = 300.0        # seconds after which unmet expectations are given up
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


# -- time --------------------------------------------------------------------------------------------------------

# -- pod predicates ----------------------------------------------------------------------------------------------

def is_pod_active(pod: Obj) -> bool:
    """Counted by its controller: not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def pod_condition(pod: Obj, type_: str) -> Obj | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def is_pod_ready(pod: Obj) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least `min_ready_seconds`."""
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds < now


def until_next_available(pods: list[Obj], min_ready_seconds: int, now: float) -> float | None:
    """Seconds until the next ready pod has been ready for `min_ready_seconds` (None if none is waiting): when
    to sync again so that availableReplicas goes up on time."""
    if not min_ready_seconds:
        return None
    waits = []
    for pod in pods:
        if is_pod_ready(pod) and not is_pod_available(pod, min_ready_seconds, now):
            since = parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
            waits.append(max(0.0, (since if since is not None else now) + min_ready_seconds - now) + 0.05)
    return min(waits, default=None)


def pod_key(pod: Obj) -> str:
    return object_key(pod)


# -- expectations ------------------------------------------------------------------------------------------------

class _Expectation:
    __slots__ = ("adds", "deletes", "timestamp")

    def __init__(self, adds: int, deletes: set[str], timestamp: float) -> None:
        self.adds = adds
        self.deletes = deletes
        self.timestamp = timestamp


class ControllerExpectations:
    """Creations and deletions a controller has made but its informer has not shown yet, per controller key.

    Deletions are tracked by pod key, so an unrelated pod's deletion cannot satisfy them. Expectations older than
    `ttl` count as satisfied: a lost watch event must not wedge a controller forever.
    """

    def __init__(self, clock: Callable[[], float], ttl: float = EXPECTATIONS_TTL) -> None:
        self.clock = clock
        self.ttl = ttl
        self._items: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        exp = self._items.get(key)
        if exp is None:
            return True
        return (exp.adds <= 0 and not exp.deletes) or self.clock() - exp.timestamp > self.ttl

    def expect_creations(self, key: str, count: int) -> None:
        self._items[key] = _Expectation(count, set(), self.clock())

    def expect_deletions(self, key: str, pod_keys: list[str]) -> None:
        self._items[key] = _Expectation(0, set(pod_keys), self.clock())

    def creation_observed(self, key: str) -> None:
        exp = self._items.get(key)
        if exp is not None:
            exp.adds -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        exp = self._items.get(key)
        if exp is not None:
            exp.deletes.discard(pod_key)

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


# -- our own writes ---------------------------------------------------------------------------------------------

def _revision(obj: Obj) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


class WrittenObjects:
    """What this controller last wrote, until its informer catches up.

    A sync that runs right after a write (another pod event woke it) starts from what the server returned instead
    of the stale cached copy: fewer 409 Conflicts and no duplicate status writes."""

    def __init__(self) -> None:
        self._items: dict[str, Obj] = {}

    def remember(self, obj: Obj) -> None:
        self._items[object_key(obj)] = obj

    def newest(self, key: str, cached: Obj | None) -> Obj | None:
        written = self._items.get(key)
        if written is None:
            return cached
        if cached is None or cached["metadata"].get("uid") != written["metadata"].get("uid") or \
                _revision(cached) >= _revision(written):
            del self._items[key]
            return cached
        return written

    def forget(self, key: str) -> None:
        self._items.pop(key, None)


# -- adoption and release ----------------------------------------------------------------------------------------

def owner_reference(owner: Obj) -> Obj:
    """The controllerRef an owned object carries: deletion of the owner waits for it (foreground deletion)."""
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


async def claim(client: Client, rt: ResourceType, owner: Obj, matches: Callable[[Obj], bool], objs: list[Obj],
                can_adopt: Callable[[], Awaitable[None]]) -> list[Obj]:
    """The objects `owner` controls after adopting matching orphans and releasing owned non-matching ones.

    Objects controlled by someone else are never touched. `can_adopt` raises if the owner may not adopt (it was
    deleted or recreated since the cache saw it); it is awaited once, before the first adoption.
    """
    uid = owner["metadata"]["uid"]
    owner_deleting = bool(owner["metadata"].get("deletionTimestamp"))
    checked = False
    claimed: list[Obj] = []
    for obj in objs:
        ref = controller_ref(obj)
        meta = obj["metadata"]
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches(obj):
                claimed.append(obj)
            elif not owner_deleting:
                await _release(client, rt, obj, uid)
            continue
        if owner_deleting or not matches(obj) or meta.get("deletionTimestamp"):
            continue
        if meta.get("namespace") != owner["metadata"].get("namespace"):
            continue
        if not checked:
            await can_adopt()
            checked = True
        adopted = await _adopt(client, rt, obj, owner)
        if adopted is not None:
            claimed.append(adopted)
    return claimed


async def _adopt(client: Client, rt: ResourceType, obj: Obj, owner: Obj) -> Obj | None:
    meta = obj["metadata"]
    patch = {"metadata": {"ownerReferences": [owner_reference(owner)], "uid": meta["uid"]}}
    try:
        return await client.patch(rt, meta["name"], patch, meta.get("namespace"), patch_type="strategic")
    except errors.NotFound:
        return None


async def _release(client: Client, rt: ResourceType, obj: Obj, owner_uid: str) -> None:
    meta = obj["metadata"]
    patch = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": meta["uid"]}}
    try:
        await client.patch(rt, meta["name"], patch, meta.get("namespace"), patch_type="strategic")
    except (errors.NotFound, errors.Invalid):
        pass   # gone, or recreated under the same name: nothing to release


# -- which pods to delete ----------------------------------------------------------------------------------------

_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def _deletion_cost(pod: Obj) -> int:
    try:
        return int((pod["metadata"].get("annotations") or {}).get(POD_DELETION_COST, 0))
    except ValueError:
        return 0


def _max_restarts(pod: Obj) -> int:
    return max((s.get("restartCount", 0) for s in (pod.get("status") or {}).get("containerStatuses") or []),
               default=0)


def _after_or_unset(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None
    return a > b


def _compare_for_deletion(a: tuple[Obj, int], b: tuple[Obj, int]) -> int:
    """Negative when pod `a` should go before pod `b` (controller.ActivePodsWithRanks)."""
    (pa, ra), (pb, rb) = a, b
    na, nb = (pa.get("spec") or {}).get("nodeName", ""), (pb.get("spec") or {}).get("nodeName", "")
    checks: list[tuple[bool, bool]] = []   # (differs, a first)
    checks.append((bool(na) != bool(nb), not na))
    phase_a = _PHASE_ORDER.get((pa.get("status") or {}).get("phase", ""), 0)
    phase_b = _PHASE_ORDER.get((pb.get("status") or {}).get("phase", ""), 0)
    checks.append((phase_a != phase_b, phase_a < phase_b))
    ready_a, ready_b = is_pod_ready(pa), is_pod_ready(pb)
    checks.append((ready_a != ready_b, not ready_a))
    cost_a, cost_b = _deletion_cost(pa), _deletion_cost(pb)
    checks.append((cost_a != cost_b, cost_a < cost_b))
    checks.append((ra != rb, ra > rb))                       # pods doubled up on a node go first
    if ready_a and ready_b:
        ta = parse_time((pod_condition(pa, "Ready") or {}).get("lastTransitionTime"))
        tb = parse_time((pod_condition(pb, "Ready") or {}).get("lastTransitionTime"))
        checks.append((ta != tb, _after_or_unset(ta, tb)))  # ready more recently first
    checks.append((_max_restarts(pa) != _max_restarts(pb), _max_restarts(pa) > _max_restarts(pb)))
    ca = parse_time(pa["metadata"].get("creationTimestamp"))
    cb = parse_time(pb["metadata"].get("creationTimestamp"))
    checks.append((ca != cb, _after_or_unset(ca, cb)))      # newer first
    for differs, a_first in checks:
        if differs:
            return -1 if a_first else 1
    return 0


def pods_to_delete(pods: list[Obj], related: list[Obj], count: int) -> list[Obj]:
    """The `count` pods worth least: unscheduled < pending < not ready < ready, doubled-up, newer first.

    A pod's rank is how many `related` pods (those of its controller's siblings too) share its node."""
    if count >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for p in related:
        node = (p.get("spec") or {}).get("nodeName")
        if node:
            on_node[node] = on_node.get(node, 0) + 1
    ranked = [(p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0)) for p in pods]
    ranked.sort(key=functools.cmp_to_key(_compare_for_deletion))
    return [p for p, _ in ranked[:count]]


async def slow_start_batch(count: int, initial: int,
                           fn: Callable[[], Awaitable[None]]) -> tuple[int, BaseException | None]:
    """Call `fn` `count` times in growing concurrent batches (1, 2, 4...), stopping after a batch with an error.

    Returns the number of successful calls and the first error."""
    remaining, successes, size = count, 0, min(count, initial)
    while size > 0:
        results = await asyncio.gather(*(fn() for _ in range(size)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        successes += size - len(failures)
        if failures:
            return successes, failures[0]
        remaining -= size
        size = min(2 * size, remaining)
    return successes, None


# -- status ------------------------------------------------------------------------------------------------------

def get_condition(status: Obj, type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def calculate_status(rs: Obj, pods: list[Obj], manage_error: BaseException | None, now: float) -> Obj:
    """The status `rs` should have given its active, claimed pods and how its last scaling went. Pure."""
    spec = rs.get("spec") or {}
    old = rs.get("status") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    fully_labeled = ready = available = 0
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully_labeled += 1
        if is_pod_ready(pod):
            ready += 1
            if is_pod_available(pod, min_ready, now):
                available += 1
    conditions = [dict(c) for c in old.get("conditions") or []]
    failure = get_condition(old, "ReplicaFailure")
    if manage_error is not None and failure is None:
        diff = len(pods) - int(spec.get("replicas", 1))
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        conditions.append({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": rfc3339(now),
                           "reason": reason, "message": str(manage_error)})
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
    status: Obj = {"replicas": len(pods)}
    for field, value in (("fullyLabeledReplicas", fully_labeled), ("readyReplicas", ready),
                         ("availableReplicas", available)):
        if value:
            status[field] = value
    if old.get("observedGeneration"):
        status["observedGeneration"] = old["observedGeneration"]
    if conditions:
        status["conditions"] = conditions
    return status


_COUNTS = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas")


def status_changed(rs: Obj, status: Obj) -> bool:
    old = rs.get("status") or {}
    if any(old.get(f, 0) != status.get(f, 0) for f in _COUNTS):
        return True
    if rs["metadata"].get("generation", 0) != old.get("observedGeneration", 0):
        return True
    return (old.get("conditions") or []) != (status.get("conditions") or [])


# -- the controller ----------------------------------------------------------------------------------------------

class ReplicaManager(Controller):
    """What ReplicaSets and ReplicationControllers share; subclasses name the resource and read the selector."""

    name = "replicaset-controller"
    workers = 4
    resource_name = "replicasets.apps"
    kind = "ReplicaSet"

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.rt = resource(self.resource_name)
        self.sets = informers.informer(self.rt).store
        self.pods = informers.informer(PODS).store
        self.expectations = ControllerExpectations(self.options.clock)
        self.written = WrittenObjects()
        informers.informer(self.rt).add_handler(self.enqueue, self._update_set, self._delete_set)
        informers.informer(PODS).add_handler(self._add_pod, self._update_pod, self._delete_pod)

    # -- subclass hooks ------------------------------------------------------------------------------------------
    def selector_of(self, obj: Obj) -> LabelSelector | None:
        """The selector of an RS or RC; None or empty matches nothing."""
        return selector_from_label_selector((obj.get("spec") or {}).get("selector"))

    # -- informer handlers: only find keys -----------------------------------------------------------------------
    def _update_set(self, old: Obj, new: Obj) -> None:
        self.enqueue(new)

    def _delete_set(self, obj: Obj) -> None:
        key = object_key(obj)
        self.expectations.forget(key)
        self.written.forget(key)
        self.queue.add(key)

    def _resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        if ref is None or ref.get("kind") != self.kind:
            return None
        owner = self.sets.get(f"{namespace}/{ref.get('name')}")
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        return owner

    def _matching_sets(self, pod: Obj) -> list[Obj]:
        labels = pod["metadata"].get("labels") or {}
        found = []
        for obj in self.sets.in_namespace(pod["metadata"].get("namespace", "")):
            selector = self.selector_of(obj)
            if selector is not None and not selector.empty and selector.matches(labels):
                found.append(obj)
        return found

    def _add_pod(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._delete_pod(pod)
            return
        ns = pod["metadata"].get("namespace", "")
        ref = controller_ref(pod)
        if ref is not None:
            owner = self._resolve(ns, ref)
            if owner is not None:
                key = object_key(owner)
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for owner in self._matching_sets(pod):
            self.enqueue(owner)

    def _update_pod(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        ns = new["metadata"].get("namespace", "")
        labels_changed = old["metadata"].get("labels") != new["metadata"].get("labels")
        if new["metadata"].get("deletionTimestamp"):
            self._delete_pod(new)
            if labels_changed:
                self._delete_pod(old)
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        ref_changed = (old_ref or {}).get("uid") != (new_ref or {}).get("uid")
        if ref_changed and old_ref is not None:
            owner = self._resolve(ns, old_ref)
            if owner is not None:
                self.enqueue(owner)
        if new_ref is not None:
            owner = self._resolve(ns, new_ref)
            if owner is not None:
                self.enqueue(owner)
            return
        if labels_changed or ref_changed:
            for owner in self._matching_sets(new):
                self.enqueue(owner)

    def _delete_pod(self, pod: Obj) -> None:
        owner = self._resolve(pod["metadata"].get("namespace", ""), controller_ref(pod))
        if owner is None:
            return
        key = object_key(owner)
        self.expectations.deletion_observed(key, pod_key(pod))
        self.queue.add(key)

    # -- sync ----------------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        rs = self.written.newest(key, self.sets.get(key))
        if rs is None:
            self.expectations.forget(key)
            return
        needs_sync = self.expectations.satisfied(key)
        pods = await self.claim_pods(rs)
        manage_error: BaseException | None = None
        if needs_sync and not rs["metadata"].get("deletionTimestamp"):
            try:
                await self.manage_replicas(key, rs, pods)
            except errors.APIError as e:
                manage_error = e
        now = self.options.clock()
        updated = await self.update_status(rs, calculate_status(rs, pods, manage_error, now))
        if manage_error is not None:
            raise manage_error
        wait = until_next_available(pods, int((updated.get("spec") or {}).get("minReadySeconds") or 0), now)
        if wait is not None:
            self.queue.add_after(key, wait)

    async def claim_pods(self, rs: Obj) -> list[Obj]:
        """Active pods of `rs`'s namespace this RS controls, after adoption and release."""
        selector = self.selector_of(rs)
        ns = rs["metadata"].get("namespace", "")
        pods = [p for p in self.pods.in_namespace(ns) if is_pod_active(p)]

        def matches(pod: Obj) -> bool:
            return selector is not None and not selector.empty and selector.matches(pod["metadata"].get("labels"))

        async def can_adopt() -> None:
            fresh = await self.client.get(self.rt, rs["metadata"]["name"], ns)
            if fresh["metadata"].get("uid") != rs["metadata"]["uid"]:
                raise errors.Conflict(f"original {self.kind} {ns}/{rs['metadata']['name']} is gone: "
                                      f"got uid {fresh['metadata'].get('uid')}, wanted {rs['metadata']['uid']}")
            if fresh["metadata"].get("deletionTimestamp"):
                raise errors.Conflict(f"{self.kind} {ns}/{rs['metadata']['name']} is being deleted")

        return await claim(self.client, PODS, rs, matches, pods, can_adopt)

    async def manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> None:
        """Create or delete pods so that `len(pods)` moves to `spec.replicas`, at most BURST_REPLICAS at a time."""
        diff = len(pods) - int((rs.get("spec") or {}).get("replicas", 1))
        if diff < 0:
            await self._create_pods(key, rs, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            await self._delete_pods(key, rs, pods_to_delete(pods, self._related_pods(rs), min(diff, BURST_REPLICAS)))

    async def _create_pods(self, key: str, rs: Obj, count: int) -> None:
        if not (rs.get("spec") or {}).get("template"):
            return
        self.expectations.expect_creations(key, count)
        created, err = await slow_start_batch(count, SLOW_START_INITIAL_BATCH, lambda: self._create_pod(rs))
        for _ in range(count - created):
            self.expectations.creation_observed(key)   # these will never show up in the informer
        if err is not None:
            raise err

    async def _create_pod(self, rs: Obj) -> None:
        try:
            pod = await self.client.create(PODS, pod_from_template(rs), rs["metadata"]["namespace"])
        except errors.Forbidden as e:
            if "being terminated" in e.message:
                return   # the namespace is going away; so will this RS
            self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {e.message}")
            raise
        except errors.APIError as e:
            self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {e.message}")
            raise
        self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")

    async def _delete_pods(self, key: str, rs: Obj, victims: list[Obj]) -> None:
        self.expectations.expect_deletions(key, [pod_key(p) for p in victims])
        results = await asyncio.gather(*(self._delete_pod_of(key, rs, p) for p in victims), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure

    async def _delete_pod_of(self, key: str, rs: Obj, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        try:
            await self.client.delete(PODS, name, pod["metadata"]["namespace"])
        except errors.APIError as e:
            self.expectations.deletion_observed(key, pod_key(pod))
            if isinstance(e, errors.NotFound):
                return
            self.recorder.event(rs, "Warning", "FailedDelete", f"Error deleting: {e.message}")
            raise
        self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """Pods of this set and of its siblings (sets with the same controller), to spread deletions over nodes."""
        ns = rs["metadata"].get("namespace", "")
        owner = controller_ref(rs)
        if owner is None:
            uids = {rs["metadata"]["uid"]}
        else:
            uids = {s["metadata"]["uid"] for s in self.sets.in_namespace(ns)
                    if (controller_ref(s) or {}).get("uid") == owner.get("uid")}
        return [p for p in self.pods.in_namespace(ns) if (controller_ref(p) or {}).get("uid") in uids]

    async def update_status(self, rs: Obj, status: Obj) -> Obj:
        """Write `status` through /status when it differs from what `rs` shows; the object as it now is."""
        if not status_changed(rs, status):
            return rs
        status = {**status, "observedGeneration": rs["metadata"].get("generation", 0)}
        try:
            written = await self.client.update_status(self.rt, {**rs, "status": status})
        except errors.Conflict:
            # usually our own previous status write, not yet in the cache: retry once on the fresh object, unless
            # its spec moved on (then the next sync computes against it)
            meta = rs["metadata"]
            fresh = await self.client.get(self.rt, meta["name"], meta.get("namespace"))
            if fresh["metadata"].get("uid") != meta.get("uid") or \
                    fresh["metadata"].get("generation") != meta.get("generation"):
                raise
            if not status_changed(fresh, status):
                return fresh
            written = await self.client.update_status(self.rt, {**fresh, "status": status})
        self.written.remember(written)
        return written


def pod_from_template(owner: Obj) -> Obj:
    """A new pod of `owner`'s template: generateName `<owner>-`, the template's labels and annotations."""
    template = (owner.get("spec") or {}).get("template") or {}
    meta = template.get("metadata") or {}
    pod_meta: Obj = {"generateName": f"{owner['metadata']['name']}-",
                     "namespace": owner["metadata"]["namespace"],
                     "ownerReferences": [owner_reference(owner)]}
    for field in ("labels", "annotations", "finalizers"):
        if meta.get(field):
            pod_meta[field] = copy.deepcopy(meta[field])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": copy.deepcopy(template.get("spec") or {})}


class ReplicaSetController(ReplicaManager):
    name = "replicaset-controller"      # the event source Kubernetes shows
    resource_name = "replicasets.apps"
    kind = "ReplicaSet"


class ReplicationControllerController(ReplicaManager):
    """An RC is an RS whose selector is a plain map of labels (core/v1)."""

    name = "replication-controller"
    resource_name = "replicationcontrollers"
    kind = "ReplicationController"

    def selector_of(self, obj: Obj) -> LabelSelector | None:
        selector = (obj.get("spec") or {}).get("selector")
        if not selector:
            return None
        return LabelSelector(tuple(Requirement(k, "=", frozenset([v])) for k, v in selector.items()))


__all__ = ["ControllerExpectations", "ReplicaSetController", "ReplicationControllerController", "calculate_status",
           "claim", "is_pod_active", "is_pod_available", "is_pod_ready", "owner_reference", "pods_to_delete",
           "slow_start_batch"]
