"""The StatefulSet controller: pods with stable names, stable storage and an ordered life.

Modelled on Kubernetes' `pkg/controller/statefulset` (stateful_set_control.go, stateful_set_utils.go,
stateful_pod_control.go). A StatefulSet `web` owns pods `web-0`, `web-1`... (from `spec.ordinals.start`), each
with hostname = its name and subdomain = `serviceName`, and for every volumeClaimTemplate `www` a claim
`www-web-<ordinal>` made before the pod and kept after it (unless `persistentVolumeClaimRetentionPolicy` says
Delete: then the claim gets an ownerReference to the set, or to the pod being scaled away, for the garbage
collector). With `OrderedReady` a pod is created only when all lower ordinals are Running and Ready, and
pods go away from the highest ordinal down, one at a time; `Parallel` does both at once. A pod that fails or is
deleted comes back under the same name.

Each template is recorded in a ControllerRevision; pods carry the name of the revision they were made from in
`controller-revision-hash`. A RollingUpdate deletes, from the highest ordinal down to `partition`, one pod at a
time that is not at the update revision, waiting for each replacement to be Ready; OnDelete waits for the user.
Status (replicas, ready/available/current/updated counts, current and update revisions) is what
`kubectl rollout status` reads.
"""
from __future__ import annotations

import copy
import logging
import re
from typing import Any

from ..api import errors
from ..api.selectors import LabelSelector, selector_from_label_selector
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory, controller_ref
from ..client.rest import Client, resource
from . import history
from .history import Obj, is_terminating, phase

log = logging.getLogger(__name__)

SETS = resource("statefulsets.apps")
PODS = resource("pods")
CLAIMS = resource("persistentvolumeclaims")
REVISIONS = history.REVISIONS

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = history.REVISION_HASH_LABEL

_STATEFUL_POD_NAME = re.compile(r"^(.*)-([0-9]+)$")
_STATUS_FIELDS = ("observedGeneration", "replicas", "readyReplicas", "currentReplicas", "updatedReplicas",
                  "availableReplicas", "currentRevision", "updateRevision", "collisionCount")


# -- identity -------------------------------------------------------------------------------------------------

def parent_and_ordinal(pod: Obj) -> tuple[str, int]:
    """("web", 2) for pod "web-2"; ("", -1) for a name that is not a stateful pod's."""
    m = _STATEFUL_POD_NAME.match(pod["metadata"]["name"])
    return (m.group(1), int(m.group(2))) if m else ("", -1)


def ordinal_of(pod: Obj) -> int:
    return parent_and_ordinal(pod)[1]


def is_member_of(sts: Obj, pod: Obj) -> bool:
    return parent_and_ordinal(pod)[0] == sts["metadata"]["name"]


def start_ordinal(sts: Obj) -> int:
    return int(((sts["spec"].get("ordinals") or {}).get("start")) or 0)


def replica_count(sts: Obj) -> int:
    replicas = sts["spec"].get("replicas")
    return 1 if replicas is None else int(replicas)


def in_ordinal_range(pod: Obj, sts: Obj) -> bool:
    start = start_ordinal(sts)
    return start <= ordinal_of(pod) < start + replica_count(sts)


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{sts['metadata']['name']}-{ordinal}"


def claim_name(template_name: str, sts: Obj, ordinal: int) -> str:
    return f"{template_name}-{sts['metadata']['name']}-{ordinal}"


def pod_revision(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(REVISION_LABEL, "")


def is_created(pod: Obj) -> bool:
    """Stored by the API server (not a pod this sync only intends to create)."""
    return bool(pod["metadata"].get("uid"))


def is_running_and_ready(pod: Obj) -> bool:
    return phase(pod) == "Running" and history.is_pod_ready(pod)


def is_running_and_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    return phase(pod) == "Running" and history.is_pod_available(pod, min_ready_seconds, now)


def is_unavailable(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    return not is_created(pod) or is_terminating(pod) or not is_running_and_available(pod, min_ready_seconds, now)


def claim_templates(sts: Obj) -> list[Obj]:
    return list(sts["spec"].get("volumeClaimTemplates") or [])


def pod_claims(sts: Obj, ordinal: int) -> dict[str, Obj]:
    """The claims a pod of `sts` at `ordinal` mounts, by template name; labelled with the set's matchLabels."""
    match_labels = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
    claims: dict[str, Obj] = {}
    for template in claim_templates(sts):
        claim = copy.deepcopy(template)
        claim.pop("status", None)
        meta = claim.setdefault("metadata", {})
        name = meta["name"]
        meta["name"] = claim_name(name, sts, ordinal)
        meta["namespace"] = sts["metadata"]["namespace"]
        meta["labels"] = {**(meta.get("labels") or {}), **match_labels}
        claim["apiVersion"], claim["kind"] = "v1", "PersistentVolumeClaim"
        claims[name] = claim
    return claims


def update_identity(sts: Obj, pod: Obj) -> None:
    ordinal = ordinal_of(pod)
    meta = pod["metadata"]
    meta["name"] = pod_name(sts, ordinal)
    meta["namespace"] = sts["metadata"]["namespace"]
    labels = meta.setdefault("labels", {})
    labels[POD_NAME_LABEL] = meta["name"]
    labels[POD_INDEX_LABEL] = str(ordinal)


def update_storage(sts: Obj, pod: Obj) -> None:
    """Mount every claim of the pod under its template's name, replacing template volumes of that name."""
    claims = pod_claims(sts, ordinal_of(pod))
    volumes = [{"name": name, "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
               for name, claim in sorted(claims.items())]
    volumes += [v for v in pod["spec"].get("volumes") or [] if v.get("name") not in claims]
    if volumes:
        pod["spec"]["volumes"] = volumes


def identity_matches(sts: Obj, pod: Obj) -> bool:
    parent, ordinal = parent_and_ordinal(pod)
    labels = pod["metadata"].get("labels") or {}
    return (ordinal >= 0 and parent == sts["metadata"]["name"]
            and pod["metadata"].get("namespace") == sts["metadata"]["namespace"]
            and labels.get(POD_NAME_LABEL) == pod["metadata"]["name"]
            and labels.get(POD_INDEX_LABEL) == str(ordinal))


def new_stateful_pod(sts: Obj, ordinal: int, revision_name: str) -> Obj:
    """The pod `sts` wants at `ordinal`, from its template (GetPodFromTemplate + initIdentity + updateStorage)."""
    template = sts["spec"]["template"]
    tmeta = template.get("metadata") or {}
    meta: Obj = {"name": pod_name(sts, ordinal), "namespace": sts["metadata"]["namespace"],
                 "labels": dict(tmeta.get("labels") or {}),
                 "ownerReferences": [history.new_controller_ref(sts)]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    pod: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template["spec"])}
    update_identity(sts, pod)
    pod["spec"]["hostname"] = meta["name"]
    if sts["spec"].get("serviceName"):
        pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
    update_storage(sts, pod)
    meta["labels"][REVISION_LABEL] = revision_name
    return pod


def new_versioned_pod(current_set: Obj, update_set: Obj, current: Obj, update: Obj, ordinal: int) -> Obj:
    """Below the partition a missing pod comes back at the current revision; elsewhere at the update revision."""
    strategy = current_set["spec"].get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None or rolling.get("partition") is None:
            limit = int((current_set.get("status") or {}).get("currentReplicas") or 0)
        else:
            limit = int(rolling["partition"])
        if ordinal < start_ordinal(current_set) + limit:
            return new_stateful_pod(current_set, ordinal, current["metadata"]["name"])
    return new_stateful_pod(update_set, ordinal, update["metadata"]["name"])


# -- claim ownership for the retention policy -----------------------------------------------------------------

def retention_policy(sts: Obj) -> tuple[str, str]:
    policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
    return policy.get("whenDeleted") or "Retain", policy.get("whenScaled") or "Retain"


def _refers_to(ref: Obj, obj: Obj, kind: str) -> bool:
    return ref.get("kind") == kind and ref.get("name") == obj["metadata"]["name"]


def has_stale_owner_ref(claim: Obj, obj: Obj, kind: str) -> bool:
    """A ref to an earlier object of the same name (a pod since recreated): not ours to change."""
    for ref in claim["metadata"].get("ownerReferences") or []:
        if _refers_to(ref, obj, kind):
            return ref.get("uid") != obj["metadata"].get("uid")
    return False


def desired_claim_refs(claim: Obj, sts: Obj, pod: Obj) -> list[Obj] | None:
    """The claim's ownerReferences under the set's retention policy, or None when they must be left alone.

    Retain/Retain: none of ours; whenDeleted=Delete: the set; whenScaled=Delete: the pod, once it is scaled away
    (a pod still in range keeps the set's ref when both are Delete)."""
    if has_stale_owner_ref(claim, sts, "StatefulSet") or has_stale_owner_ref(claim, pod, "Pod"):
        return None
    ours = {sts["metadata"]["uid"], pod["metadata"].get("uid")}
    refs = [r for r in claim["metadata"].get("ownerReferences") or [] if r.get("uid") not in ours]
    if any(r.get("controller") for r in refs):
        return refs      # someone else controls this claim: only scrub our refs
    when_deleted, when_scaled = retention_policy(sts)
    scaled_down = not in_ordinal_range(pod, sts)
    if when_scaled == "Delete" and scaled_down and is_created(pod):
        refs.append({"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
                     "uid": pod["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True})
    elif when_deleted == "Delete" and not (when_scaled == "Delete" and scaled_down):
        refs.append(history.new_controller_ref(sts))
    return refs


def _ref_uids(refs: list[Obj] | None) -> set[tuple[str, bool]]:
    return {(r.get("uid", ""), bool(r.get("controller"))) for r in refs or []}


# -- the controller ---------------------------------------------------------------------------------------------

class StatefulSetController(Controller):
    name = "statefulset-controller"

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.sets = informers.informer(SETS).store
        self.pods = informers.informer(PODS).store
        self.revisions = informers.informer(REVISIONS).store
        self.claims = informers.informer(CLAIMS).store
        informers.informer(SETS).add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        informers.informer(PODS).add_handler(self._pod_added, self._pod_updated, self._owner_changed)
        informers.informer(REVISIONS).add_handler(self._owner_changed, lambda old, new: self._owner_changed(new),
                                                  self._owner_changed)
        informers.informer(CLAIMS).add_handler(None, self._claim_updated, self._claim_changed)

    # -- event handlers: they only enqueue ---------------------------------------------------------------------
    def _owner_changed(self, obj: Obj) -> None:
        ref = controller_ref(obj)
        if ref is not None and ref.get("kind") == "StatefulSet":
            self.queue.add(f"{obj['metadata']['namespace']}/{ref['name']}")

    def _pod_added(self, pod: Obj) -> None:
        if controller_ref(pod) is not None:
            self._owner_changed(pod)
        elif not is_terminating(pod):
            self._enqueue_selecting(pod)     # an orphan some set may adopt

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        if old_ref != new_ref:
            self._owner_changed(old)
        if new_ref is not None:
            self._owner_changed(new)
        elif old["metadata"].get("labels") != new["metadata"].get("labels") or old_ref is not None:
            self._enqueue_selecting(new)

    def _claim_updated(self, old: Obj, new: Obj) -> None:
        self._claim_changed(new)

    def _claim_changed(self, claim: Obj) -> None:
        self._enqueue_selecting(claim)

    def _enqueue_selecting(self, obj: Obj) -> None:
        labels = obj["metadata"].get("labels") or {}
        for sts in self.sets.in_namespace(obj["metadata"].get("namespace", "")):
            selector = selector_from_label_selector(sts["spec"].get("selector"))
            if selector is not None and not selector.empty and selector.matches(labels):
                self.enqueue(sts)

    # -- sync --------------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        sts = self.sets.get(key)
        if sts is None:
            return
        sts = {**sts, "apiVersion": "apps/v1", "kind": "StatefulSet"}
        selector = selector_from_label_selector(sts["spec"].get("selector"))
        if selector is None or selector.empty:
            self.recorder.event(sts, "Warning", "SelectingAll",
                                "This StatefulSet is selecting all pods. A non-empty selector is required.")
            return
        pods = await self.claim_pods(sts, selector)
        revisions = history.sort_revisions(await self.claim_revisions(sts, selector))
        current, update, collision_count = await self.get_revisions(sts, revisions)
        status: Obj = {}
        try:
            await self.update_stateful_set(sts, current, update, collision_count, pods, status)
        finally:
            if status:      # recorded even when a step failed, as Kubernetes does
                await self.update_status(sts, status)
            await self.truncate_history(sts, pods, revisions, current, update)
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        if min_ready > 0 and status.get("availableReplicas", 0) != replica_count(sts):
            self.queue.add_after(key, float(min_ready))

    async def claim_pods(self, sts: Obj, selector: LabelSelector) -> list[Obj]:
        """Pods this set controls: adopt matching orphans, release pods it no longer selects (ClaimPods)."""
        claimed = []
        for pod in self.pods.in_namespace(sts["metadata"]["namespace"]):
            matches = selector.matches(pod["metadata"].get("labels")) and is_member_of(sts, pod)
            ref = controller_ref(pod)
            if ref is not None:
                if ref.get("uid") != sts["metadata"]["uid"]:
                    continue
                if matches or is_terminating(pod):
                    claimed.append(pod)
                elif not is_terminating(sts):
                    await history.release(self.client, PODS, pod, sts)
            elif matches and not is_terminating(pod) and not is_terminating(sts):
                try:
                    claimed.append(await history.adopt(self.client, PODS, pod, sts))
                except (errors.NotFound, errors.Conflict):
                    continue
        return claimed

    async def claim_revisions(self, sts: Obj, selector: LabelSelector) -> list[Obj]:
        claimed = []
        for rev in self.revisions.in_namespace(sts["metadata"]["namespace"]):
            ref = controller_ref(rev)
            if ref is not None:
                if ref.get("uid") == sts["metadata"]["uid"]:
                    claimed.append(rev)
            elif selector.matches(rev["metadata"].get("labels")) and not is_terminating(sts):
                try:
                    claimed.append(await history.adopt(self.client, REVISIONS, rev, sts))
                except (errors.NotFound, errors.Conflict):
                    continue
        return claimed

    async def get_revisions(self, sts: Obj, revisions: list[Obj]) -> tuple[Obj, Obj, int]:
        """The current and update revisions; creates (or renumbers) the update revision when the template changed."""
        collision_count = int((sts.get("status") or {}).get("collisionCount") or 0)
        number = history.next_revision(revisions)
        data = history.template_patch(sts)
        hash_ = history.compute_hash(data, collision_count)
        candidate = history.new_revision(sts, data, number, hash_)
        equal = history.find_equal_revisions(revisions, candidate)
        if equal and history.equal_revision(revisions[-1], equal[-1]):
            update = revisions[-1]
        elif equal:
            update = await history.renumber_revision(self.client, equal[-1], number)
        else:
            update, collision_count = await history.create_revision(self.client, candidate, sts["metadata"]["name"],
                                                                    collision_count)
        current_name = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == current_name), update)
        return current, update, collision_count

    async def update_stateful_set(self, sts: Obj, current: Obj, update: Obj, collision_count: int,
                                  pods: list[Obj], status: Obj) -> None:
        """Create, delete and replace pods one step towards the spec, filling in `status` as it goes."""
        current_set = history.apply_revision(sts, current)
        update_set = history.apply_revision(sts, update)
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        now = self.options.clock()
        status.update({"observedGeneration": sts["metadata"].get("generation", 0),
                       "currentRevision": current["metadata"]["name"],
                       "updateRevision": update["metadata"]["name"], "collisionCount": collision_count})
        count_replicas(status, pods, min_ready, now, current, update)

        start, count = start_ordinal(sts), replica_count(sts)
        slots: list[Obj | None] = [None] * count
        condemned: list[Obj] = []
        for pod in pods:
            if in_ordinal_range(pod, sts):
                slots[ordinal_of(pod) - start] = pod
            elif ordinal_of(pod) >= 0:
                condemned.append(pod)
        replicas = [pod or new_versioned_pod(current_set, update_set, current, update, start + i)
                    for i, pod in enumerate(slots)]
        condemned.sort(key=ordinal_of, reverse=True)
        first_unavailable = next((p for p in replicas + condemned[::-1] if is_unavailable(p, min_ready, now)), None)
        if is_terminating(sts):
            return
        try:
            deleted = await self.converge(sts, update_set, update, replicas, condemned, first_unavailable)
        finally:
            count_replicas(status, replicas + condemned, min_ready, now, current, update)
        if deleted:
            status["currentReplicas"] -= 1

    async def converge(self, sts: Obj, update_set: Obj, update: Obj, replicas: list[Obj], condemned: list[Obj],
                       first_unavailable: Obj | None) -> bool:
        """Replicas first (create, recreate, wait), then scale down, then roll; True if a pod was deleted for
        the update."""
        monotonic = sts["spec"].get("podManagementPolicy", "OrderedReady") != "Parallel"
        if await self._run_for_all(len(replicas), lambda i: self.process_replica(sts, update_set, monotonic,
                                                                                   replicas, i), monotonic):
            return False
        if await self._run_for_all(len(condemned), lambda i: self.fix_claims(update_set, condemned[i]), monotonic):
            return False
        if await self._run_for_all(len(condemned), lambda i: self.process_condemned(
                sts, first_unavailable, monotonic, condemned[i]), monotonic):
            return False
        strategy = sts["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "OnDelete":
            return False
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        now = self.options.clock()
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        for target in range(len(replicas) - 1, partition - 1, -1):
            pod = replicas[target]
            if pod_revision(pod) != update["metadata"]["name"] and not is_terminating(pod):
                await self.delete_pod(sts, pod, "update")
                return True
            if is_unavailable(pod, min_ready, now):
                return False
        return False

    @staticmethod
    async def _run_for_all(count: int, fn: Any, monotonic: bool) -> bool:
        """In order, stopping at the first step that must wait (OrderedReady), or all at once (Parallel)."""
        if monotonic:
            for i in range(count):
                if await fn(i):
                    return True
            return False

        async def each(i: int) -> None:
            await fn(i)
        await history.slow_start_batch(count, each)
        return False

    async def process_replica(self, sts: Obj, update_set: Obj, monotonic: bool, replicas: list[Obj], i: int) -> bool:
        """One in-range ordinal; True means stop here (OrderedReady waits for this pod)."""
        pod = replicas[i]
        if phase(pod) in ("Failed", "Succeeded"):
            if not is_terminating(pod):
                await self.delete_pod(sts, pod, "recreate")
            return True      # the replacement is created once the old pod is gone
        if not is_created(pod):
            if self.claim_is_stale(sts, pod):
                return True
            created = await self.create_pod(sts, pod)
            if created is None or monotonic:
                return True
            replicas[i] = created
            return False
        if phase(pod) == "Pending":
            await self.create_claims(sts, pod, missing_only=True)
        if is_terminating(pod) and monotonic:
            return True
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        if monotonic and not is_running_and_available(pod, min_ready, self.options.clock()):
            return True
        if not identity_matches(sts, pod):
            await self.fix_identity(sts, pod)
        await self.fix_claims(update_set, pod)
        return False

    async def process_condemned(self, sts: Obj, first_unavailable: Obj | None, monotonic: bool, pod: Obj) -> bool:
        if is_terminating(pod):
            return monotonic
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        healthy = is_running_and_available(pod, min_ready, self.options.clock())
        if monotonic and not healthy and pod is not first_unavailable:
            return True
        await self.delete_pod(sts, pod, "scale down")
        return monotonic

    # -- pod and claim control (StatefulPodControl) ------------------------------------------------------------
    async def create_pod(self, sts: Obj, pod: Obj) -> Obj | None:
        await self.create_claims(sts, pod)
        name = pod["metadata"]["name"]
        try:
            created = await self.client.create(PODS, pod, sts["metadata"]["namespace"])
        except errors.AlreadyExists:
            return None      # our cache is behind; the pod's event will bring us back
        except errors.APIError as e:
            self.recorder.event(sts, "Warning", "FailedCreate",
                                f"create Pod {name} in StatefulSet {sts['metadata']['name']} failed error: {e}")
            raise
        self.recorder.event(sts, "Normal", "SuccessfulCreate",
                            f"create Pod {name} in StatefulSet {sts['metadata']['name']} successful")
        return created

    async def delete_pod(self, sts: Obj, pod: Obj, why: str) -> None:
        name = pod["metadata"]["name"]
        log.debug("statefulset %s: deleting pod %s for %s", sts["metadata"]["name"], name, why)
        try:
            await self.client.delete(PODS, name, sts["metadata"]["namespace"],
                                     preconditions={"uid": pod["metadata"]["uid"]})
        except (errors.NotFound, errors.Conflict):
            return           # already gone, or replaced by a newer pod of that name
        except errors.APIError as e:
            self.recorder.event(sts, "Warning", "FailedDelete",
                                f"delete Pod {name} in StatefulSet {sts['metadata']['name']} failed error: {e}")
            raise
        self.recorder.event(sts, "Normal", "SuccessfulDelete",
                            f"delete Pod {name} in StatefulSet {sts['metadata']['name']} successful")

    async def create_claims(self, sts: Obj, pod: Obj, missing_only: bool = False) -> None:
        """Every claim the pod mounts, created if missing, owned as the retention policy says. A new pod waits
        for a claim still being deleted; for a pending pod only missing claims are made."""
        namespace = sts["metadata"]["namespace"]
        for claim in pod_claims(sts, ordinal_of(pod)).values():
            name = claim["metadata"]["name"]
            existing = self.claims.get(f"{namespace}/{name}")
            if existing is not None:
                if is_terminating(existing) and not missing_only:
                    raise errors.Conflict(f"pvc {name} is being deleted; waiting to recreate it")
                continue
            refs = desired_claim_refs(claim, sts, pod)
            if refs:
                claim["metadata"]["ownerReferences"] = refs
            try:
                await self.client.create(CLAIMS, claim, namespace)
            except errors.AlreadyExists:
                continue
            except errors.APIError as e:
                self.recorder.event(sts, "Warning", "FailedCreate",
                                    f"create Claim {name} for Pod {pod['metadata']['name']} in StatefulSet "
                                    f"{sts['metadata']['name']} failed error: {e}")
                raise
            self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                f"create Claim {name} Pod {pod['metadata']['name']} in StatefulSet "
                                f"{sts['metadata']['name']} success")

    def claim_is_stale(self, sts: Obj, pod: Obj) -> bool:
        """A claim still owned by a deleted pod of this name is about to be garbage collected: wait for it."""
        namespace = sts["metadata"]["namespace"]
        for claim in pod_claims(sts, ordinal_of(pod)).values():
            existing = self.claims.get(f"{namespace}/{claim['metadata']['name']}")
            if existing is not None and has_stale_owner_ref(existing, pod, "Pod"):
                return True
        return False

    async def fix_claims(self, sts: Obj, pod: Obj) -> bool:
        """Bring the claims' ownerReferences in line with the retention policy (UpdatePodClaimForRetentionPolicy)."""
        namespace = sts["metadata"]["namespace"]
        for template_name, want in pod_claims(sts, ordinal_of(pod)).items():
            claim = self.claims.get(f"{namespace}/{want['metadata']['name']}")
            if claim is None or is_terminating(claim):
                continue
            refs = desired_claim_refs(claim, sts, pod)
            if refs is None or _ref_uids(refs) == _ref_uids(claim["metadata"].get("ownerReferences")):
                continue
            body = {"metadata": {"ownerReferences": refs or None,
                                 "resourceVersion": claim["metadata"]["resourceVersion"]}}
            try:
                await self.client.patch(CLAIMS, claim["metadata"]["name"], body, namespace)
            except errors.NotFound:
                continue
        return False

    async def fix_identity(self, sts: Obj, pod: Obj) -> None:
        fixed = copy.deepcopy(pod)
        update_identity(sts, fixed)
        await self.client.patch(PODS, pod["metadata"]["name"], {"metadata": {
            "labels": fixed["metadata"]["labels"], "resourceVersion": pod["metadata"]["resourceVersion"]}},
            sts["metadata"]["namespace"])

    # -- status and history ------------------------------------------------------------------------------------
    async def update_status(self, sts: Obj, status: Obj) -> None:
        complete_rolling_update(sts, status)
        old = sts.get("status") or {}
        if all(old.get(f, 0 if f != "currentRevision" and f != "updateRevision" else "") == status.get(f)
               for f in _STATUS_FIELDS):
            return
        fresh = copy.deepcopy(sts)
        fresh["status"] = {**old, **status}
        await self.client.update_status(SETS, fresh)

    async def truncate_history(self, sts: Obj, pods: list[Obj], revisions: list[Obj], current: Obj | None,
                               update: Obj | None) -> None:
        """Delete the oldest revisions no pod uses, beyond revisionHistoryLimit."""
        live = {pod_revision(p) for p in pods}
        live |= {r["metadata"]["name"] for r in (current, update) if r is not None}
        old = [r for r in revisions if r["metadata"]["name"] not in live]
        limit = sts["spec"].get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        if limit < 0 or len(old) <= limit:
            return
        for rev in old[:len(old) - limit]:
            await history.delete_revision(self.client, rev)


def count_replicas(status: Obj, pods: list[Obj], min_ready: int, now: float, current: Obj, update: Obj) -> None:
    """replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas from the pods."""
    counts = dict.fromkeys(("replicas", "readyReplicas", "availableReplicas", "currentReplicas",
                            "updatedReplicas"), 0)
    for pod in pods:
        if not is_created(pod):
            continue
        counts["replicas"] += 1
        if is_running_and_ready(pod):
            counts["readyReplicas"] += 1
            if is_running_and_available(pod, min_ready, now):
                counts["availableReplicas"] += 1
        if not is_terminating(pod):
            revision = pod_revision(pod)
            counts["currentReplicas"] += revision == current["metadata"]["name"]
            counts["updatedReplicas"] += revision == update["metadata"]["name"]
    status.update(counts)


def complete_rolling_update(sts: Obj, status: Obj) -> None:
    """Once every replica is updated and ready, the update revision becomes the current one."""
    strategy = (sts["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
    if (strategy == "RollingUpdate" and status["updatedReplicas"] == status["replicas"]
            and status["readyReplicas"] == status["replicas"]):
        status["currentReplicas"] = status["updatedReplicas"]
        status["currentRevision"] = status["updateRevision"]
