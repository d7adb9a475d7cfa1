"""The Deployment controller: roll a pod template out through ReplicaSets, one per template revision.

A Deployment owns ReplicaSets named `<deployment>-<pod-template-hash>`; the one whose template equals the
deployment's is "new", all others are "old". A sync claims the ReplicaSets its selector matches, then either only
scales (paused, or `spec.replicas` changed: the replicas are spread proportionally over the active sets), or rolls
out: RollingUpdate grows the new set within `maxSurge` and shrinks old ones while at least
`replicas - maxUnavailable` pods stay available; Recreate empties the old sets, waits for their pods to be gone,
then fills the new one. Revisions live in the `deployment.kubernetes.io/revision` annotation of each ReplicaSet
(what `kubectl rollout history/undo` read), old empty sets beyond `revisionHistoryLimit` are deleted, and the
status (counts, Available and Progressing conditions, progress deadline) is written through `/status` when it
changed. Pods are created and counted by the ReplicaSet controller, never here.
"""
from __future__ import annotations

import copy
from typing import Any

from ..api import errors
from ..api.selectors import LabelSelector, selector_from_label_selector
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory, controller_ref
from ..client.rest import Client, object_key, resource
from . import deployment_util as util
from .deployment_util import (FAILED_RS_CREATE, FOUND_NEW_RS, NEW_RS_AVAILABLE, NEW_RS_CREATED, PAUSED,
                              POD_TEMPLATE_HASH, RESUMED, REVISION, RS_UPDATED, TIMED_OUT, spec_replicas)
from .replicaset import WrittenObjects, claim, owner_reference, parse_time

Obj = dict[str, Any]

DEPLOYMENTS = resource("deployments.apps")
REPLICA_SETS = resource("replicasets.apps")
PODS = resource("pods")


def _replace(target: Obj, written: Obj) -> None:
    """Make our private copy `target` the object the API server returned, so later writes carry its version."""
    target.clear()
    target.update(copy.deepcopy(written))


class DeploymentController(Controller):
    name = "deployment-controller"     # the event source Kubernetes shows
    workers = 4

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.deployments = informers.informer(DEPLOYMENTS).store
        self.replica_sets = informers.informer(REPLICA_SETS).store
        self.pods = informers.informer(PODS).store
        self.written_deployments = WrittenObjects()   # our writes, until the informers catch up
        self.written_sets = WrittenObjects()
        informers.informer(DEPLOYMENTS).add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        informers.informer(REPLICA_SETS).add_handler(self._add_replica_set, self._update_replica_set,
                                                     self._delete_replica_set)
        informers.informer(PODS).add_handler(on_delete=self._delete_pod)

    # -- informer handlers: only find keys -----------------------------------------------------------------------
    def _resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.deployments.get(f"{namespace}/{ref.get('name')}")
        if d is None or d["metadata"].get("uid") != ref.get("uid"):
            return None
        return d

    def _deployments_selecting(self, rs: Obj) -> list[Obj]:
        labels = rs["metadata"].get("labels") or {}
        found = []
        for d in self.deployments.in_namespace(rs["metadata"].get("namespace", "")):
            selector = selector_of(d)
            if selector is not None and selector.matches(labels):
                found.append(d)
        return found

    def _enqueue_owner(self, rs: Obj, ref: Obj | None) -> None:
        d = self._resolve(rs["metadata"].get("namespace", ""), ref)
        if d is not None:
            self.enqueue(d)

    def _add_replica_set(self, rs: Obj) -> None:
        if rs["metadata"].get("deletionTimestamp"):
            self._delete_replica_set(rs)
            return
        ref = controller_ref(rs)
        if ref is not None:
            self._enqueue_owner(rs, ref)
            return
        for d in self._deployments_selecting(rs):
            self.enqueue(d)

    def _update_replica_set(self, old: Obj, new: Obj) -> None:
        if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
            return
        old_ref, new_ref = controller_ref(old), controller_ref(new)
        ref_changed = (old_ref or {}).get("uid") != (new_ref or {}).get("uid")
        if ref_changed and old_ref is not None:
            self._enqueue_owner(old, old_ref)
        if new_ref is not None:
            self._enqueue_owner(new, new_ref)
            return
        if ref_changed or old["metadata"].get("labels") != new["metadata"].get("labels"):
            for d in self._deployments_selecting(new):
                self.enqueue(d)

    def _delete_replica_set(self, rs: Obj) -> None:
        self._enqueue_owner(rs, controller_ref(rs))

    def _delete_pod(self, pod: Obj) -> None:
        """A Recreate rollout waits for the old pods to be gone: wake it when one goes."""
        ns = pod["metadata"].get("namespace", "")
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.replica_sets.get(f"{ns}/{ref.get('name')}")
        if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
            return
        d = self._resolve(ns, controller_ref(rs))
        if d is not None and not util.is_rolling_update(d):
            self.enqueue(d)

    # -- sync ----------------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        cached = self.written_deployments.newest(key, self.deployments.get(key))
        if cached is None:
            return
        d = copy.deepcopy(cached)
        selector = selector_of(d)
        if selector is None or selector.empty:
            self.recorder.event(d, "Warning", "SelectorRequired",
                                "This deployment is selecting all pods. A non-empty selector is required.")
            if (d.get("status") or {}).get("observedGeneration", 0) < d["metadata"].get("generation", 0):
                d.setdefault("status", {})["observedGeneration"] = d["metadata"]["generation"]
                await self.write_status(d)
            return
        rss = await self.claim_replica_sets(d, selector)
        if d["metadata"].get("deletionTimestamp"):
            new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rss, False)
            await self.sync_deployment_status([*old_rss, new_rs], new_rs, d)
            return
        await self.check_paused_conditions(d)
        if (d.get("spec") or {}).get("paused") or await self.is_scaling_event(d, rss):
            await self.sync_scale(d, rss)
        elif util.is_rolling_update(d):
            await self.rollout_rolling(d, rss)
        else:
            await self.rollout_recreate(d, rss)

    async def claim_replica_sets(self, d: Obj, selector: LabelSelector) -> list[Obj]:
        """Private copies of the ReplicaSets this deployment controls, after adoption and release."""
        ns = d["metadata"]["namespace"]

        async def can_adopt() -> None:
            fresh = await self.client.get(DEPLOYMENTS, d["metadata"]["name"], ns)
            if fresh["metadata"].get("uid") != d["metadata"]["uid"]:
                raise errors.Conflict(f"original Deployment {ns}/{d['metadata']['name']} is gone")
            if fresh["metadata"].get("deletionTimestamp"):
                raise errors.Conflict(f"Deployment {ns}/{d['metadata']['name']} is being deleted")

        cached = [self.written_sets.newest(object_key(rs), rs) for rs in self.replica_sets.in_namespace(ns)]
        claimed = await claim(self.client, REPLICA_SETS, d, lambda rs: selector.matches(rs["metadata"].get("labels")),
                              [rs for rs in cached if rs is not None], can_adopt)
        return [copy.deepcopy(rs) for rs in claimed]

    # -- revisions and the new ReplicaSet ------------------------------------------------------------------------
    async def get_all_replica_sets_and_sync_revision(self, d: Obj, rss: list[Obj],
                                                     create: bool) -> tuple[Obj | None, list[Obj]]:
        """(new ReplicaSet or None, old ReplicaSets); the new one gets the next revision, creating it if asked."""
        new_rs = util.find_new_replica_set(d, rss)
        old_rss = util.find_old_replica_sets(d, rss, new_rs)
        new_rs = await self.get_new_replica_set(d, rss, old_rss, new_rs, create)
        return new_rs, old_rss

    async def get_new_replica_set(self, d: Obj, rss: list[Obj], old_rss: list[Obj], existing: Obj | None,
                                  create: bool) -> Obj | None:
        new_revision = util.max_revision(old_rss) + 1
        if existing is not None:
            return await self._sync_existing_new_replica_set(d, existing, new_revision)
        if not create:
            return None
        return await self._create_new_replica_set(d, rss, old_rss, new_revision)

    async def _sync_existing_new_replica_set(self, d: Obj, rs: Obj, new_revision: int) -> Obj:
        candidate = copy.deepcopy(rs)
        annotations_changed = util.set_new_replica_set_annotations(d, candidate, new_revision, True)
        min_ready = (d.get("spec") or {}).get("minReadySeconds") or 0
        if annotations_changed or ((rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
            _set_min_ready(candidate, min_ready)
            await self.update_replica_set(rs, candidate)
            return rs
        await self.set_deployment_revision(d, util.annotations(rs).get(REVISION, ""))
        status = d.setdefault("status", {})
        if util.progress_deadline(d) is not None and util.get_condition(status, "Progressing") is None:
            util.set_condition(status, util.new_condition("Progressing", "True", FOUND_NEW_RS,
                                                          f'Found new replica set "{rs["metadata"]["name"]}"',
                                                          self.options.clock()))
            await self.write_status(d)
        return rs

    async def _create_new_replica_set(self, d: Obj, rss: list[Obj], old_rss: list[Obj], new_revision: int) -> Obj:
        status = d.setdefault("status", {})
        new_rs = new_replica_set(d, status.get("collisionCount"))
        name, ns = new_rs["metadata"]["name"], d["metadata"]["namespace"]
        new_rs["spec"]["replicas"] = util.new_rs_new_replicas(d, [*old_rss, new_rs], new_rs)
        util.set_new_replica_set_annotations(d, new_rs, new_revision, False)
        existed = False
        try:
            created = await self.client.create(REPLICA_SETS, new_rs, ns)
        except errors.AlreadyExists:
            created = await self.client.get(REPLICA_SETS, name, ns)
            if not ((controller_ref(created) or {}).get("uid") == d["metadata"]["uid"] and util.equal_ignore_hash(
                    (d.get("spec") or {}).get("template"), (created.get("spec") or {}).get("template"))):
                # a hash collision: another template (or owner) has this name; move the hash and retry
                status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                await self.write_status(d)
                raise
            existed = True
        except errors.APIError as e:
            message = f"Failed to create new replica set {name!r}: {e.message}"
            if util.progress_deadline(d) is not None:
                util.set_condition(status, util.new_condition("Progressing", "False", FAILED_RS_CREATE, message,
                                                              self.options.clock()))
                await self.write_status(d)
            self.recorder.event(d, "Warning", "FailedCreate", message)
            raise
        rss.append(created)
        replicas = spec_replicas(created)
        if not existed and replicas > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet", f"Scaled up replica set {name} to {replicas}")
        await self.set_deployment_revision(d, str(new_revision))
        if not existed and util.progress_deadline(d) is not None:
            util.set_condition(d.setdefault("status", {}), util.new_condition(
                "Progressing", "True", NEW_RS_CREATED, f'Created new replica set "{name}"', self.options.clock()))
            await self.write_status(d)
        return created

    async def set_deployment_revision(self, d: Obj, revision: str) -> None:
        """Mirror the new ReplicaSet's revision on the deployment (a metadata-only patch: no new generation)."""
        if not revision or util.annotations(d).get(REVISION) == revision:
            return
        status = d.get("status")
        written = await self.client.patch(DEPLOYMENTS, d["metadata"]["name"],
                                          {"metadata": {"annotations": {REVISION: revision}}},
                                          d["metadata"]["namespace"])
        self.written_deployments.remember(written)
        _replace(d, written)
        if status is not None:
            d["status"] = status   # keep conditions set in memory but not yet written

    # -- scaling -------------------------------------------------------------------------------------------------
    async def is_scaling_event(self, d: Obj, rss: list[Obj]) -> bool:
        """Did `spec.replicas` change since the active ReplicaSets were sized (their desired-replicas annotation)?"""
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rss, False)
        for rs in util.filter_active([*old_rss, new_rs]):
            try:
                desired = int(util.annotations(rs)[util.DESIRED_REPLICAS])
            except (KeyError, ValueError):
                continue
            if desired != spec_replicas(d):
                return True
        return False

    async def sync_scale(self, d: Obj, rss: list[Obj]) -> None:
        """Scaling without rolling out: a scaled or paused deployment."""
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rss, False)
        await self.scale(d, new_rs, old_rss)
        if (d.get("spec") or {}).get("paused"):
            await self.cleanup_deployment(old_rss, d)
        await self.sync_deployment_status([*old_rss, new_rs], new_rs, d)

    async def scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        active_or_latest = util.find_active_or_latest(new_rs, old_rss)
        if active_or_latest is not None:
            if spec_replicas(active_or_latest) != spec_replicas(d):
                await self.scale_replica_set_and_record_event(active_or_latest, spec_replicas(d), d)
            return
        if util.is_saturated(d, new_rs):
            for old in util.filter_active(old_rss):
                await self.scale_replica_set_and_record_event(old, 0, d)
            return
        if util.is_rolling_update(d):
            active = util.filter_active([*old_rss, new_rs])
            sizes, operation = util.proportional_sizes(d, active)
            for rs in active:
                await self.scale_replica_set(rs, sizes[rs["metadata"]["name"]], d, operation)

    async def scale_replica_set_and_record_event(self, rs: Obj, new_scale: int, d: Obj) -> bool:
        if spec_replicas(rs) == new_scale:
            return False
        return await self.scale_replica_set(rs, new_scale, d, "up" if spec_replicas(rs) < new_scale else "down")

    async def scale_replica_set(self, rs: Obj, new_scale: int, d: Obj, operation: str) -> bool:
        """Set `rs`'s size and its replicas annotations; True when the size changed. Updates `rs` in place."""
        size_changed = spec_replicas(rs) != new_scale
        desired, surge_total = spec_replicas(d), spec_replicas(d) + util.max_surge(d)
        if not size_changed and not util.replicas_annotations_need_update(rs, desired, surge_total):
            return False
        candidate = copy.deepcopy(rs)
        candidate["spec"]["replicas"] = new_scale
        util.set_replicas_annotations(candidate, desired, surge_total)
        await self.update_replica_set(rs, candidate)
        if size_changed:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled {operation} replica set {rs['metadata']['name']} to {new_scale}")
        return size_changed

    # -- RollingUpdate -------------------------------------------------------------------------------------------
    async def rollout_rolling(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rss, True)
        assert new_rs is not None
        all_rss = [*old_rss, new_rs]
        if await self.reconcile_new_replica_set(all_rss, new_rs, d):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if await self.reconcile_old_replica_sets(all_rss, util.filter_active(old_rss), new_rs, d):
            await self.sync_rollout_status(all_rss, new_rs, d)
            return
        if util.deployment_complete(d, d.get("status") or {}):
            await self.cleanup_deployment(old_rss, d)
        await self.sync_rollout_status(all_rss, new_rs, d)

    async def reconcile_new_replica_set(self, all_rss: list[Obj], new_rs: Obj, d: Obj) -> bool:
        if spec_replicas(new_rs) == spec_replicas(d):
            return False
        if spec_replicas(new_rs) > spec_replicas(d):
            return await self.scale_replica_set_and_record_event(new_rs, spec_replicas(d), d)
        return await self.scale_replica_set_and_record_event(new_rs, util.new_rs_new_replicas(d, all_rss, new_rs), d)

    async def reconcile_old_replica_sets(self, all_rss: list[Obj], old_rss: list[Obj], new_rs: Obj, d: Obj) -> bool:
        """Scale old sets down as far as availability allows: unhealthy replicas first, then the oldest sets."""
        if util.replica_count(old_rss) == 0:
            return False
        min_available = spec_replicas(d) - util.max_unavailable(d)
        new_unavailable = spec_replicas(new_rs) - util.status_count(new_rs, "availableReplicas")
        max_scaled_down = util.replica_count(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = await self.cleanup_unhealthy_replicas(old_rss, d, max_scaled_down)
        scaled = await self.scale_down_old_replica_sets_for_rolling_update([*old_rss, new_rs], old_rss, d)
        return cleaned + scaled > 0

    async def cleanup_unhealthy_replicas(self, old_rss: list[Obj], d: Obj, max_cleanup: int) -> int:
        """Drop replicas of old sets that are not available anyway (oldest sets first), at most `max_cleanup`."""
        total = 0
        for rs in sorted(old_rss, key=util.by_creation):
            if total >= max_cleanup:
                break
            replicas, available = spec_replicas(rs), util.status_count(rs, "availableReplicas")
            if replicas == 0 or replicas == available:
                continue
            count = min(max_cleanup - total, replicas - available)
            await self.scale_replica_set_and_record_event(rs, replicas - count, d)
            total += count
        return total

    async def scale_down_old_replica_sets_for_rolling_update(self, all_rss: list[Obj], old_rss: list[Obj],
                                                             d: Obj) -> int:
        """Scale old sets down (oldest first) by as many replicas as are available beyond the minimum."""
        min_available = spec_replicas(d) - util.max_unavailable(d)
        available = util.available_replica_count(all_rss)
        if available <= min_available:
            return 0
        to_scale_down = available - min_available
        total = 0
        for rs in sorted(old_rss, key=util.by_creation):
            if total >= to_scale_down:
                break
            if spec_replicas(rs) == 0:
                continue
            count = min(spec_replicas(rs), to_scale_down - total)
            await self.scale_replica_set_and_record_event(rs, spec_replicas(rs) - count, d)
            total += count
        return total

    # -- Recreate ------------------------------------------------------------------------------------------------
    async def rollout_recreate(self, d: Obj, rss: list[Obj]) -> None:
        new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rss, False)
        scaled_down = False
        for rs in util.filter_active(old_rss):
            scaled_down = await self.scale_replica_set_and_record_event(rs, 0, d) or scaled_down
        if scaled_down or self.old_pods_running(d, new_rs, old_rss):
            await self.sync_rollout_status([*old_rss, new_rs], new_rs, d)
            return
        if new_rs is None:
            new_rs, old_rss = await self.get_all_replica_sets_and_sync_revision(d, rss, True)
            assert new_rs is not None
        await self.scale_replica_set_and_record_event(new_rs, spec_replicas(d), d)
        if util.deployment_complete(d, d.get("status") or {}):
            await self.cleanup_deployment(old_rss, d)
        await self.sync_rollout_status([*old_rss, new_rs], new_rs, d)

    def old_pods_running(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> bool:
        """Do pods of the old sets still exist (terminating ones included), other than finished ones?"""
        if util.actual_replica_count(old_rss) > 0:
            return True
        old_uids = {rs["metadata"]["uid"] for rs in old_rss}
        if new_rs is not None:
            old_uids.discard(new_rs["metadata"]["uid"])
        return any((controller_ref(pod) or {}).get("uid") in old_uids
                   and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                   for pod in self.pods.in_namespace(d["metadata"]["namespace"]))

    # -- history -------------------------------------------------------------------------------------------------
    async def cleanup_deployment(self, old_rss: list[Obj], d: Obj) -> None:
        """Delete the oldest empty old ReplicaSets beyond `revisionHistoryLimit`."""
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        cleanable = sorted((rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")),
                           key=util.by_revision)
        for rs in cleanable[:max(0, len(cleanable) - int(limit))]:
            meta = rs["metadata"]
            if util.status_count(rs, "replicas") or spec_replicas(rs) or \
                    meta.get("generation", 0) > (rs.get("status") or {}).get("observedGeneration", 0):
                continue
            try:
                await self.client.delete(REPLICA_SETS, meta["name"], meta["namespace"],
                                         preconditions={"uid": meta["uid"]})
            except errors.NotFound:
                pass

    # -- status --------------------------------------------------------------------------------------------------
    async def check_paused_conditions(self, d: Obj) -> None:
        """Progressing=Unknown with reason DeploymentPaused/DeploymentResumed, so a pause is not read as a stall."""
        if util.progress_deadline(d) is None:
            return
        status = d.setdefault("status", {})
        cond = util.get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return
        paused = bool((d.get("spec") or {}).get("paused"))
        paused_shown = cond is not None and cond.get("reason") == PAUSED
        now = self.options.clock()
        if paused and not paused_shown:
            util.set_condition(status, util.new_condition("Progressing", "Unknown", PAUSED, "Deployment is paused",
                                                          now))
        elif not paused and paused_shown:
            util.set_condition(status, util.new_condition("Progressing", "Unknown", RESUMED, "Deployment is resumed",
                                                          now))
        else:
            return
        await self.write_status(d)

    async def sync_deployment_status(self, all_rss: list[Obj | None], new_rs: Obj | None, d: Obj) -> None:
        status = util.calculate_status(all_rss, new_rs, d, self.options.clock())
        if not _same_status(d, status):
            d["status"] = status
            await self.write_status(d)

    async def sync_rollout_status(self, all_rss: list[Obj | None], new_rs: Obj | None, d: Obj) -> None:
        """The status with the Progressing condition brought up to date (progress, completion, or deadline)."""
        now = self.options.clock()
        status = util.calculate_status(all_rss, new_rs, d, now)
        deadline = util.progress_deadline(d)
        if deadline is None:
            util.remove_condition(status, "Progressing")
        current = util.get_condition(d.get("status") or {}, "Progressing")
        complete = status.get("replicas", 0) == status.get("updatedReplicas", 0) and current is not None and \
            current.get("reason") == NEW_RS_AVAILABLE
        if deadline is not None and not complete:
            self._update_progressing(d, status, new_rs, current, now)
        failures = replica_failures(all_rss, new_rs)
        if failures:
            util.set_condition(status, failures[0])
        elif util.get_condition(status, "ReplicaFailure") is not None:
            util.remove_condition(status, "ReplicaFailure")
        if _same_status(d, status):
            self.requeue_stuck_deployment(d, status, now)
            return
        d["status"] = status
        await self.write_status(d)

    def _update_progressing(self, d: Obj, status: Obj, new_rs: Obj | None, current: Obj | None, now: float) -> None:
        name = new_rs["metadata"]["name"] if new_rs is not None else None
        if util.deployment_complete(d, status):
            message = f'ReplicaSet "{name}" has successfully progressed.' if name else \
                "Deployment has successfully progressed."
            util.set_condition(status, util.new_condition("Progressing", "True", NEW_RS_AVAILABLE, message, now))
        elif util.deployment_progressing(d, status):
            message = f'ReplicaSet "{name}" is progressing.' if name else "Deployment is progressing."
            cond = util.new_condition("Progressing", "True", RS_UPDATED, message, now)
            if current is not None and current.get("status") == "True":
                cond["lastTransitionTime"] = current.get("lastTransitionTime", cond["lastTransitionTime"])
            util.remove_condition(status, "Progressing")   # progress refreshes lastUpdateTime: the deadline restarts
            util.set_condition(status, cond)
        elif util.deployment_timed_out(d, status, now):
            message = f'ReplicaSet "{name}" has timed out progressing.' if name else \
                f'Deployment "{d["metadata"]["name"]}" has timed out progressing.'
            util.set_condition(status, util.new_condition("Progressing", "False", TIMED_OUT, message, now))

    def requeue_stuck_deployment(self, d: Obj, status: Obj, now: float) -> None:
        """Come back when the progress deadline passes, to report a stalled rollout."""
        deadline = util.progress_deadline(d)
        cond = util.get_condition(status, "Progressing")
        if deadline is None or cond is None or cond.get("reason") == TIMED_OUT or util.deployment_complete(d, status):
            return
        since = parse_time(cond.get("lastUpdateTime"))
        after = (since if since is not None else now) + deadline - now
        self.queue.add_after(object_key(d), max(after + 0.1, 0.5))

    async def write_status(self, d: Obj) -> None:
        written = await self.client.update_status(DEPLOYMENTS, d)
        self.written_deployments.remember(written)
        _replace(d, written)

    async def update_replica_set(self, rs: Obj, candidate: Obj) -> None:
        """Write `candidate` (a changed copy of `rs`) and make `rs` what the server returned."""
        written = await self.client.update(REPLICA_SETS, candidate)
        self.written_sets.remember(written)
        _replace(rs, written)


# -- helpers -----------------------------------------------------------------------------------------------------

def selector_of(d: Obj) -> LabelSelector | None:
    return selector_from_label_selector((d.get("spec") or {}).get("selector"))


def _set_min_ready(rs: Obj, min_ready: int) -> None:
    if min_ready:
        rs["spec"]["minReadySeconds"] = min_ready
    else:
        rs["spec"].pop("minReadySeconds", None)


def _same_status(d: Obj, status: Obj) -> bool:
    return util.semantically_equal(d.get("status") or {}, status)


def new_replica_set(d: Obj, collision_count: int | None) -> Obj:
    """The ReplicaSet for the deployment's current template: named and labelled by the template's hash."""
    spec = d.get("spec") or {}
    template_hash = util.compute_hash(spec.get("template") or {}, collision_count)
    template = copy.deepcopy(spec.get("template") or {})
    template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = template_hash
    selector = copy.deepcopy(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = template_hash
    rs: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": f"{d['metadata']['name']}-{template_hash}",
                            "namespace": d["metadata"]["namespace"],
                            "labels": dict(template["metadata"]["labels"]),
                            "ownerReferences": [owner_reference(d)]},
               "spec": {"replicas": 0, "selector": selector, "template": template}}
    _set_min_ready(rs, int(spec.get("minReadySeconds") or 0))
    return rs


def replica_failures(all_rss: list[Obj | None], new_rs: Obj | None) -> list[Obj]:
    """ReplicaFailure conditions of the new ReplicaSet, else of any ReplicaSet, as deployment conditions."""
    def of(rs: Obj) -> list[Obj]:
        return [{"type": "ReplicaFailure", "status": c.get("status", "True"),
                 "lastUpdateTime": c.get("lastTransitionTime"), "lastTransitionTime": c.get("lastTransitionTime"),
                 "reason": c.get("reason", ""), "message": c.get("message", "")}
                for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") == "ReplicaFailure"]
    if new_rs is not None and of(new_rs):
        return of(new_rs)
    return [c for rs in all_rss if rs is not None for c in of(rs)]
