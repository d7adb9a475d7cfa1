"""The Job controller: runs pods to completion, counting every finished pod exactly once.

Modelled on Kubernetes' pkg/controller/job. A Job owns its pods through a controllerRef; the controller keeps up to
`parallelism` of them running until `completions` have succeeded (or, with `completions` unset, until one has
succeeded and the rest have finished), replaces failed ones after an exponential back-off (10 s doubling to 6 min),
and fails the Job past `backoffLimit`, `activeDeadlineSeconds` or a `podFailurePolicy` FailJob rule.

Counting is exact because every pod it creates carries the `batch.kubernetes.io/job-tracking` finalizer: a finished
pod (or one deleted before it finished) is first recorded by uid in `status.uncountedTerminatedPods`, then its
finalizer is removed, then it moves into `succeeded`/`failed` — so neither a crash nor a pod deleted behind our back
can lose or double a count. Indexed Jobs track `status.completedIndexes` instead of uids.

As in Kubernetes 1.32, the terminal condition is reached in two steps: the interim `SuccessCriteriaMet` or
`FailureTarget` condition first, then `Complete` or `Failed` once no pod is left terminating or uncounted.

`ttlSecondsAfterFinished` (Kubernetes' separate ttl-after-finished controller) lives here too: a finished Job whose
TTL has passed is deleted with propagationPolicy Foreground, so the garbage collector removes its pods first.

Simplifications: no `backoffLimitPerIndex`/`maxFailedIndexes`, no `successPolicy`, and no per-sync cap on uncounted
pods beyond the pod create/delete cap.
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
from typing import Any

from ..api import errors
from ..api.selectors import selector_from_label_selector
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory, controller_ref
from ..client.rest import Client, object_key, resource, split_key
from ..api.timestamps import parse_rfc3339 as parse_time, rfc3339

log = logging.getLogger(__name__)

JOBS = resource("jobs.batch")
PODS = resource("pods")

JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"     # pod annotation and label
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
JOB_CONTROLLER_NAME = "kubernetes.io/job-controller"               # spec.managedBy value meaning "us"

DEFAULT_BACKOFF = 10.0        # seconds before re-creating a pod after the first failure
MAX_BACKOFF = 360.0           # the doubling stops here
MAX_POD_CREATE_DELETE_PER_SYNC = 500
EXPECTATIONS_TIMEOUT = 300.0  # forget expected pod events after this long (a lost watch event must not wedge a Job)
SLOW_START_INITIAL_BATCH = 1

# reasons and messages, as Kubernetes writes them
REASON_BACKOFF_LIMIT = "BackoffLimitExceeded"
MESSAGE_BACKOFF_LIMIT = "Job has reached the specified backoff limit"
REASON_DEADLINE = "DeadlineExceeded"
MESSAGE_DEADLINE = "Job was active longer than specified deadline"
REASON_POD_FAILURE_POLICY = "PodFailurePolicy"
REASON_COMPLETIONS_REACHED = "CompletionsReached"
MESSAGE_COMPLETIONS_REACHED = "Reached expected number of succeeded pods"

Obj = dict[str, Any]


# -- time ----------------------------------------------------------------------------------------------------------

# -- pods ----------------------------------------------------------------------------------------------------------

def has_tracking_finalizer(pod: Obj) -> bool:
    return JOB_TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_terminal(pod: Obj) -> bool:
    return phase(pod) in ("Succeeded", "Failed")


def is_active(pod: Obj) -> bool:
    """Neither finished nor being deleted (controller.FilterActivePods)."""
    return not is_terminal(pod) and not pod["metadata"].get("deletionTimestamp")


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp")) and not is_terminal(pod)


def is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def completion_index(pod: Obj) -> int | None:
    """The pod's completion index from its annotation; None when missing or malformed."""
    value = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
    try:
        ix = int(value) if value is not None else -1
    except ValueError:
        return None
    return ix if ix >= 0 else None


def restart_count(pod: Obj) -> int:
    status = pod.get("status") or {}
    return sum(int(c.get("restartCount") or 0)
               for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []))


def active_pods_order(pod: Obj) -> tuple[Any, ...]:
    """Sort key putting the pods cheapest to delete first (controller.ActivePods): unscheduled, pending, not ready,
    most restarted, newest."""
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(phase(pod), 0)
    created = parse_time(pod["metadata"].get("creationTimestamp")) or 0.0
    return (bool((pod.get("spec") or {}).get("nodeName")), phase_rank, is_ready(pod), -restart_count(pod), -created)


def finish_time(pod: Obj, now: float) -> float:
    """When a pod finished: its last container's finishedAt, else Ready=False's transition, else its deletion."""
    status = pod.get("status") or {}
    latest: float | None = None
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        t = parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if t is not None and (latest is None or t > latest):
            latest = t
    if latest is not None:
        return latest
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "False":
            t = parse_time(cond.get("lastTransitionTime"))
            if t is not None:
                return t
    deleted = parse_time(pod["metadata"].get("deletionTimestamp"))
    if deleted is not None:
        return deleted - float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
    return now


# -- jobs ----------------------------------------------------------------------------------------------------------

def find_condition(job: Obj, type_: str) -> Obj | None:
    return next((c for c in (job.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def finished_condition_type(job: Obj) -> str | None:
    """"Complete" or "Failed" when the Job is finished (util.FinishedCondition), else None."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def is_indexed(job: Obj) -> bool:
    return job["spec"].get("completionMode") == "Indexed"


def is_suspended(job: Obj) -> bool:
    return bool(job["spec"].get("suspend"))


def only_replace_failed_pods(job: Obj) -> bool:
    """podReplacementPolicy Failed (or a podFailurePolicy): a terminating pod is not yet a failure to replace."""
    return job["spec"].get("podReplacementPolicy") == "Failed" or job["spec"].get("podFailurePolicy") is not None


def is_pod_failed(pod: Obj, job: Obj) -> bool:
    if phase(pod) == "Failed":
        return True
    if only_replace_failed_pods(job):
        return False
    # a deleted pod counts as failed: an orphan may never reach the Failed phase
    return bool(pod["metadata"].get("deletionTimestamp")) and phase(pod) != "Succeeded"


def new_condition(type_: str, reason: str, message: str, now: float, status: str = "True") -> Obj:
    stamp = rfc3339(now)
    return {"type": type_, "status": status, "lastProbeTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}


def ensure_condition(status: Obj, type_: str, cond_status: str, reason: str, message: str, now: float) -> bool:
    """Add or update a condition (ensureJobConditionStatus); a False condition is never added, only updated."""
    conditions = status.setdefault("conditions", [])
    for i, c in enumerate(conditions):
        if c.get("type") == type_:
            if c.get("status") != cond_status or c.get("reason") != reason or c.get("message") != message:
                conditions[i] = new_condition(type_, reason, message, now, cond_status)
                return True
            return False
    if cond_status != "False":
        conditions.append(new_condition(type_, reason, message, now, cond_status))
        return True
    if not conditions:
        status.pop("conditions")
    return False


# -- completion indexes ----------------------------------------------------------------------------------------------

def parse_indexes(text: str | None, completions: int) -> set[int]:
    """"0-2,4" → {0, 1, 2, 4}, ignoring anything at or past `completions`."""
    result: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            continue
        result.update(range(max(lo, 0), min(hi, completions - 1) + 1))
    return result


def format_indexes(indexes: set[int]) -> str:
    """{0, 1, 2, 4} → "0-2,4" (status.completedIndexes)."""
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


# -- pod failure policy ----------------------------------------------------------------------------------------------

def _exit_code_matches(code: int, req: Obj) -> bool:
    values = req.get("values") or []
    if req.get("operator") == "In":
        return code in values
    if req.get("operator") == "NotIn":
        return code not in values
    return False


def _matching_container(pod: Obj, req: Obj) -> Obj | None:
    status = pod.get("status") or {}
    for statuses in (status.get("containerStatuses") or [], status.get("initContainerStatuses") or []):
        for cs in statuses:
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated is None:
                continue
            if req.get("containerName") not in (None, cs.get("name")):
                continue
            code = int(terminated.get("exitCode") or 0)
            if code != 0 and _exit_code_matches(code, req):
                return cs
    return None


def match_pod_failure_policy(policy: Obj | None, pod: Obj) -> tuple[str | None, bool, str | None]:
    """(FailJob message or None, whether the failure counts against backoffLimit, the matched action)."""
    if not policy:
        return None, True, None
    meta = pod["metadata"]
    for index, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            cs = _matching_container(pod, rule["onExitCodes"])
            if cs is None:
                continue
            message = (f"Container {cs.get('name')} for pod {meta.get('namespace')}/{meta['name']} failed with exit "
                       f"code {cs['state']['terminated'].get('exitCode')} matching {action} rule at index {index}")
        elif rule.get("onPodConditions") is not None:
            cond = next((c for c in (pod.get("status") or {}).get("conditions") or []
                         for p in rule["onPodConditions"]
                         if c.get("type") == p.get("type") and c.get("status") == p.get("status", "True")), None)
            if cond is None:
                continue
            message = (f"Pod {meta.get('namespace')}/{meta['name']} has condition {cond.get('type')} matching "
                       f"{action} rule at index {index}")
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action == "FailJob":
            return message, True, action
        return None, True, action      # Count (and FailIndex, without per-index back-off)
    return None, True, None


# -- bookkeeping -----------------------------------------------------------------------------------------------------

class Expectations:
    """Pod creations and deletions a Job's last sync asked for and the informer has not shown yet
    (controller.ControllerExpectations): until they are seen, a sync must not create or delete more."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self._records: dict[str, tuple[int, int, float]] = {}

    def expect(self, key: str, adds: int = 0, dels: int = 0) -> None:
        self._records[key] = (adds, dels, self.clock())

    def creation_observed(self, key: str) -> None:
        self._lower(key, 1, 0)

    def deletion_observed(self, key: str) -> None:
        self._lower(key, 0, 1)

    def _lower(self, key: str, adds: int, dels: int) -> None:
        rec = self._records.get(key)
        if rec is not None:
            self._records[key] = (rec[0] - adds, rec[1] - dels, rec[2])

    def satisfied(self, key: str) -> bool:
        rec = self._records.get(key)
        if rec is None:
            return True
        adds, dels, stamp = rec
        return (adds <= 0 and dels <= 0) or self.clock() - stamp > EXPECTATIONS_TIMEOUT

    def forget(self, key: str) -> None:
        self._records.pop(key, None)


@dataclasses.dataclass(frozen=True)
class BackoffRecord:
    """Failures since the last success and when the latest happened: how long to wait before the next pod."""
    failures_after_last_success: int = 0
    last_failure_time: float | None = None

    def remaining(self, now: float, base: float = DEFAULT_BACKOFF, cap: float = MAX_BACKOFF) -> float:
        if self.failures_after_last_success == 0 or self.last_failure_time is None:
            return 0.0
        delay = min(base * 2 ** (self.failures_after_last_success - 1), cap)
        return max(0.0, delay - (now - self.last_failure_time))


def next_backoff_record(old: BackoffRecord, succeeded: list[Obj], failed: list[Obj], now: float) -> BackoffRecord:
    """The record after these newly finished pods (backoff_utils.go's newBackoffRecord)."""
    fail_times = sorted(finish_time(p, now) for p in failed)
    if not succeeded:
        if not fail_times:
            return old
        return BackoffRecord(old.failures_after_last_success + len(fail_times), fail_times[-1])
    last_success = max(finish_time(p, now) for p in succeeded)
    later = [t for t in fail_times if t > last_success]
    return BackoffRecord(len(later), later[-1] if later else None)


@dataclasses.dataclass
class SyncContext:
    """What one sync of one Job knows and decides (syncJobCtx)."""
    job: Obj
    pods: list[Obj]
    active_pods: list[Obj]
    ready: int
    terminating: int
    uncounted_succeeded: set[str]
    uncounted_failed: set[str]
    expected_removed: set[str]
    succeeded: int = 0
    failed: int = 0
    finished_condition: Obj | None = None
    prev_succeeded_indexes: set[int] = dataclasses.field(default_factory=set)
    succeeded_indexes: set[int] = dataclasses.field(default_factory=set)
    backoff: BackoffRecord = BackoffRecord()


def job_controller_index(pod: Obj) -> list[str]:
    ref = controller_ref(pod)
    return [ref["uid"]] if ref and ref.get("kind") == "Job" and ref.get("uid") else []


class JobController(Controller):
    name = "job-controller"
    workers = 5

    ORPHAN_PREFIX = "pod:"     # queue keys of orphan pods whose tracking finalizer must go ("pod:ns/name")

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.jobs = informers.informer(JOBS)
        self.pods = informers.informer(PODS)
        self.pods.store.add_index("job.controller-uid", job_controller_index)
        self.expectations = Expectations(self.clock)
        self.finalizer_expectations: dict[str, set[str]] = {}
        self.backoff: dict[str, BackoffRecord] = {}
        self.jobs.add_handler(self._add_job, self._update_job, self._delete_job)
        self.pods.add_handler(self._add_pod, self._update_pod, lambda pod: self._delete_pod(pod, final=True))

    def clock(self) -> float:
        return self.options.clock()

    # -- event handlers: resolve the Job, adjust expectations, enqueue ----------------------------------------------
    def _resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        if not ref or ref.get("kind") != "Job":
            return None
        job = self.jobs.store.get(f"{namespace}/{ref.get('name')}")
        return job if job is not None and job["metadata"].get("uid") == ref.get("uid") else None

    def _jobs_selecting(self, pod: Obj) -> list[Obj]:
        labels = pod["metadata"].get("labels") or {}
        found = []
        for job in self.jobs.store.in_namespace(pod["metadata"].get("namespace", "")):
            selector = selector_from_label_selector(job["spec"].get("selector"))
            if selector is not None and not selector.empty and selector.matches(labels):
                found.append(job)
        return found

    def _enqueue_orphan(self, pod: Obj) -> None:
        self.queue.add(self.ORPHAN_PREFIX + object_key(pod))

    def _add_pod(self, pod: Obj) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._delete_pod(pod, final=False)
            return
        ns = pod["metadata"].get("namespace", "")
        ref = controller_ref(pod)
        if ref is not None:
            job = self._resolve(ns, ref)
            if job is not None:
                self.expectations.creation_observed(object_key(job))
                self.enqueue(job)
            return
        if has_tracking_finalizer(pod):
            self._enqueue_orphan(pod)
        for job in self._jobs_selecting(pod):
            self.enqueue(job)

    def _update_pod(self, old: Obj, cur: Obj) -> None:
        if old["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion"):
            return
        if cur["metadata"].get("deletionTimestamp"):
            self._delete_pod(cur, final=False)
            return
        ns = cur["metadata"].get("namespace", "")
        finalizer_removed = not has_tracking_finalizer(cur)
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            job = self._resolve(ns, old_ref)
            if job is not None:
                if finalizer_removed:
                    self._finalizer_removal_observed(object_key(job), cur["metadata"]["uid"])
                self.enqueue(job)
        if cur_ref is not None:
            job = self._resolve(ns, cur_ref)
            if job is not None:
                if finalizer_removed:
                    self._finalizer_removal_observed(object_key(job), cur["metadata"]["uid"])
                self.enqueue(job)
            return
        if has_tracking_finalizer(cur):
            self._enqueue_orphan(cur)
        if ref_changed or (cur["metadata"].get("labels") != old["metadata"].get("labels")):
            for job in self._jobs_selecting(cur):
                self.enqueue(job)

    def _delete_pod(self, pod: Obj, final: bool) -> None:
        ref = controller_ref(pod)
        has_finalizer = has_tracking_finalizer(pod)
        if ref is None:
            if has_finalizer:
                self._enqueue_orphan(pod)
            return
        job = self._resolve(pod["metadata"].get("namespace", ""), ref)
        if job is None or finished_condition_type(job):
            if has_finalizer and ref.get("kind") == "Job":
                self._enqueue_orphan(pod)
            return
        key = object_key(job)
        self.expectations.deletion_observed(key)
        if final or not has_finalizer:
            self._finalizer_removal_observed(key, pod["metadata"]["uid"])
        self.queue.add(key)

    def _add_job(self, job: Obj) -> None:
        self.enqueue(job)

    def _update_job(self, old: Obj, cur: Obj) -> None:
        self.enqueue(cur)
        if finished_condition_type(cur):
            self._cleanup_pod_finalizers(cur)
        start = parse_time((cur.get("status") or {}).get("startTime"))
        deadline = cur["spec"].get("activeDeadlineSeconds")
        if start is not None and deadline is not None and old["spec"].get("activeDeadlineSeconds") != deadline:
            self.queue.add_after(object_key(cur), start + deadline - self.clock())

    def _delete_job(self, job: Obj) -> None:
        self.enqueue(job)
        self._cleanup_pod_finalizers(job)

    def _cleanup_pod_finalizers(self, job: Obj) -> None:
        """Pods of a finished or deleted Job that still hold the finalizer get it removed by the orphan path."""
        for pod in self.pods.store.by_index("job.controller-uid", job["metadata"].get("uid", "")):
            if has_tracking_finalizer(pod):
                self._enqueue_orphan(pod)

    def _finalizer_removal_observed(self, key: str, uid: str) -> None:
        expected = self.finalizer_expectations.get(key)
        if expected is not None:
            expected.discard(uid)
            if not expected:
                del self.finalizer_expectations[key]

    # -- sync ------------------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        if key.startswith(self.ORPHAN_PREFIX):
            await self.sync_orphan_pod(key[len(self.ORPHAN_PREFIX):])
            return
        shared = self.jobs.store.get(key)
        if shared is None:
            self.expectations.forget(key)
            self.finalizer_expectations.pop(key, None)
            self.backoff.pop(key, None)
            return
        managed_by = shared["spec"].get("managedBy")
        if managed_by and managed_by != JOB_CONTROLLER_NAME:
            return
        if finished_condition_type(shared):
            self.backoff.pop(key, None)
            await self.process_ttl(key, shared)
            return
        if shared["spec"].get("completionMode") not in (None, "NonIndexed", "Indexed"):
            self.recorder.event(shared, "Warning", "UnknownCompletionMode",
                                "Skipped Job sync because completion mode is unknown")
            return
        await self.sync_job(key, copy.deepcopy(shared))

    async def sync_job(self, key: str, job: Obj) -> None:
        status = job.setdefault("status", {})
        original_status = copy.deepcopy(status)
        uncounted = status.get("uncountedTerminatedPods") or {}
        satisfied = self.expectations.satisfied(key)
        pods = await self.pods_for_job(job)
        active_pods = [p for p in pods if is_active(p)]
        ctx = SyncContext(job=job, pods=pods, active_pods=active_pods, ready=sum(map(is_ready, active_pods)),
                          terminating=sum(map(is_terminating, pods)),
                          uncounted_succeeded=set(uncounted.get("succeeded") or []),
                          uncounted_failed=set(uncounted.get("failed") or []),
                          expected_removed=set(self.finalizer_expectations.get(key, ())))
        active = len(active_pods)
        new_succeeded, new_failed = self.new_finished_pods(ctx)
        ctx.succeeded = int(status.get("succeeded") or 0) + len(new_succeeded) + len(ctx.uncounted_succeeded)
        policy = job["spec"].get("podFailurePolicy")
        counted_failures = [p for p in new_failed if match_pod_failure_policy(policy, p)[1]]
        ctx.failed = int(status.get("failed") or 0) + len(counted_failures) + len(ctx.uncounted_failed)
        now = self.clock()
        if not status.get("startTime") and not is_suspended(job):
            status["startTime"] = rfc3339(now)
        ctx.backoff = next_backoff_record(self.backoff.get(key, BackoffRecord()), new_succeeded, new_failed, now)

        ctx.finished_condition = self.decide_failure(key, ctx, now)
        if is_indexed(job):
            completions = int(job["spec"].get("completions") or 0)
            ctx.prev_succeeded_indexes = parse_indexes(status.get("completedIndexes"), completions)
            ctx.succeeded_indexes = ctx.prev_succeeded_indexes | {
                ix for p in pods if phase(p) == "Succeeded" and has_tracking_finalizer(p)
                for ix in [completion_index(p)] if ix is not None and ix < completions}
            ctx.succeeded = len(ctx.succeeded_indexes)

        manage_error: Exception | None = None
        if ctx.finished_condition is not None:
            deleted_ready, deleted, manage_error = await self.delete_active_pods(job, ctx.active_pods)
            if deleted != active or not satisfied:
                ctx.finished_condition = None     # pods may still be on their way into the cache
            active -= deleted
            ctx.terminating += deleted
            ctx.ready -= deleted_ready
        else:
            managed = False
            if satisfied and not job["metadata"].get("deletionTimestamp"):
                active, manage_error = await self.manage_job(key, job, ctx)
                managed = True
            completions = job["spec"].get("completions")
            if completions is None:
                complete = ctx.succeeded > 0 and active == 0
            else:
                complete = ctx.succeeded >= completions and active == 0
            if complete:
                ctx.finished_condition = new_condition("SuccessCriteriaMet", REASON_COMPLETIONS_REACHED,
                                                       MESSAGE_COMPLETIONS_REACHED, now)
            elif managed:
                self.update_suspend_condition(job, now)

        status["active"] = active
        status["ready"] = ctx.ready
        status["terminating"] = ctx.terminating
        await self.track_status_and_remove_finalizers(key, ctx, original_status)
        if manage_error is not None:
            raise manage_error

    def decide_failure(self, key: str, ctx: SyncContext, now: float) -> Obj | None:
        """The interim terminal condition this sync reaches, if any (SuccessCriteriaMet kept from before,
        FailureTarget from a pod failure policy, the back-off limit or the deadline)."""
        job = ctx.job
        met = find_condition(job, "SuccessCriteriaMet")
        if met is not None and met.get("status") == "True":
            return met
        target = find_condition(job, "FailureTarget")
        if target is not None and target.get("status") == "True":
            return new_condition("Failed", target.get("reason", ""), target.get("message", ""), now)
        policy = job["spec"].get("podFailurePolicy")
        if policy:
            for pod in ctx.pods:
                if is_pod_failed(pod, job):
                    message = match_pod_failure_policy(policy, pod)[0]
                    if message is not None:
                        return new_condition("FailureTarget", REASON_POD_FAILURE_POLICY, message, now)
        backoff_limit = job["spec"].get("backoffLimit")
        backoff_limit = 6 if backoff_limit is None else int(backoff_limit)
        if ctx.failed > backoff_limit or past_backoff_limit_on_failure(job, ctx.pods, backoff_limit):
            return new_condition("FailureTarget", REASON_BACKOFF_LIMIT, MESSAGE_BACKOFF_LIMIT, now)
        deadline = job["spec"].get("activeDeadlineSeconds")
        start = parse_time((job.get("status") or {}).get("startTime"))
        if deadline is not None and start is not None and not is_suspended(job):
            if now - start >= float(deadline):
                return new_condition("FailureTarget", REASON_DEADLINE, MESSAGE_DEADLINE, now)
            self.queue.add_after(key, start + float(deadline) - now)
        return None

    def new_finished_pods(self, ctx: SyncContext) -> tuple[list[Obj], list[Obj]]:
        """Pods that finished and are not counted yet: they hold the finalizer and are in no uncounted list."""
        succeeded, failed = [], []
        completions = int(ctx.job["spec"].get("completions") or 0)
        for pod in ctx.pods:
            uid = pod["metadata"]["uid"]
            if not has_tracking_finalizer(pod) or uid in ctx.expected_removed:
                continue
            if is_indexed(ctx.job):
                ix = completion_index(pod)
                if ix is None or ix >= completions:
                    continue
            if phase(pod) == "Succeeded" and uid not in ctx.uncounted_succeeded:
                succeeded.append(pod)
            elif is_pod_failed(pod, ctx.job) and uid not in ctx.uncounted_failed:
                failed.append(pod)
        return succeeded, failed

    def update_suspend_condition(self, job: Obj, now: float) -> None:
        status = job["status"]
        if is_suspended(job):
            if ensure_condition(status, "Suspended", "True", "JobSuspended", "Job suspended", now):
                self.recorder.event(job, "Normal", "Suspended", "Job suspended")
        elif ensure_condition(status, "Suspended", "False", "JobResumed", "Job resumed", now):
            self.recorder.event(job, "Normal", "Resumed", "Job resumed")
            # activeDeadlineSeconds counts continuous activity: a resumed Job starts its clock again
            status["startTime"] = rfc3339(now)

    # -- pods of a Job: claim, create, delete -----------------------------------------------------------------------
    async def pods_for_job(self, job: Obj) -> list[Obj]:
        """The Job's pods (controllerRef), adopting orphans its selector matches and releasing owned pods it no
        longer matches (ClaimPods). Adopted pods get the tracking finalizer too."""
        uid = job["metadata"]["uid"]
        ns = job["metadata"]["namespace"]
        selector = selector_from_label_selector(job["spec"].get("selector"))
        owned = list(self.pods.store.by_index("job.controller-uid", uid))
        if selector is None or selector.empty:
            return owned
        claimed = [p for p in owned if selector.matches(p["metadata"].get("labels"))]
        orphans = [p for p in self.pods.store.in_namespace(ns)
                   if controller_ref(p) is None and not p["metadata"].get("deletionTimestamp")
                   and selector.matches(p["metadata"].get("labels"))]
        claimed_uids = {p["metadata"]["uid"] for p in claimed}
        released = [p for p in owned if p["metadata"]["uid"] not in claimed_uids]
        if (orphans or released) and await self._can_adopt(job):
            for pod in orphans:
                adopted = await self._adopt(job, pod)
                if adopted is not None:
                    claimed.append(adopted)
            for pod in released:
                await self._release(job, pod)
        else:
            claimed.extend(released)
        return claimed

    async def _can_adopt(self, job: Obj) -> bool:
        if job["metadata"].get("deletionTimestamp"):
            return False
        try:
            fresh = await self.client.get(JOBS, job["metadata"]["name"], job["metadata"]["namespace"])
        except errors.NotFound:
            return False
        return fresh["metadata"].get("uid") == job["metadata"]["uid"] and not fresh["metadata"].get("deletionTimestamp")

    async def _adopt(self, job: Obj, pod: Obj) -> Obj | None:
        patch = {"metadata": {"ownerReferences": [self.controller_ref_for(job)], "uid": pod["metadata"]["uid"],
                              "finalizers": [JOB_TRACKING_FINALIZER]}}
        try:
            return await self.client.patch(PODS, pod["metadata"]["name"], patch, pod["metadata"]["namespace"],
                                           patch_type="strategic")
        except (errors.NotFound, errors.Invalid, errors.Conflict):
            return None

    async def _release(self, job: Obj, pod: Obj) -> None:
        patch = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": job["metadata"]["uid"]}],
                              "uid": pod["metadata"]["uid"]}}
        try:
            await self.client.patch(PODS, pod["metadata"]["name"], patch, pod["metadata"]["namespace"],
                                    patch_type="strategic")
        except (errors.NotFound, errors.Invalid, errors.Conflict):
            pass

    @staticmethod
    def controller_ref_for(job: Obj) -> Obj:
        return {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    async def manage_job(self, key: str, job: Obj, ctx: SyncContext) -> tuple[int, Exception | None]:
        """Create or delete pods toward the wanted number of active pods; returns the new active count."""
        active = len(ctx.active_pods)
        spec = job["spec"]
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        if is_suspended(job):
            doomed = pods_for_removal(job, ctx.active_pods, active)
            self.expectations.expect(key, dels=len(doomed))
            removed_ready, removed, err = await self.delete_job_pods(key, job, doomed)
            ctx.terminating += removed
            ctx.ready -= removed_ready
            return active - removed, err
        completions = spec.get("completions")
        if completions is None:
            want = active if ctx.succeeded > 0 else parallelism
        else:
            want = max(0, min(int(completions) - ctx.succeeded, parallelism))
        doomed = pods_for_removal(job, ctx.active_pods, max(0, active - want))[:MAX_POD_CREATE_DELETE_PER_SYNC]
        if doomed:
            self.expectations.expect(key, dels=len(doomed))
            removed_ready, removed, err = await self.delete_job_pods(key, job, doomed)
            ctx.terminating += removed
            ctx.ready -= removed_ready
            return active - removed, err
        terminating = ctx.terminating if only_replace_failed_pods(job) else 0
        diff = want - terminating - active
        if diff <= 0:
            return active, None
        remaining = ctx.backoff.remaining(self.clock())
        if remaining > 0:
            self.queue.add_after(key, remaining)
            return active, None
        diff = min(diff, MAX_POD_CREATE_DELETE_PER_SYNC)
        indexes: list[int | None] = [None] * diff
        if is_indexed(job):
            indexes = list(first_pending_indexes(ctx, diff, int(completions or 0)))
            diff = len(indexes)
        self.expectations.expect(key, adds=diff)
        created, err = await self.create_pods(key, job, indexes)
        return active + created, err

    async def create_pods(self, key: str, job: Obj, indexes: list[int | None]) -> tuple[int, Exception | None]:
        """Create pods in slow-start batches (1, 2, 4...): a failing create stops the burst early."""
        created = 0
        error: Exception | None = None
        pending = list(indexes)
        batch = min(len(pending), SLOW_START_INITIAL_BATCH)
        while pending:
            wave, pending = pending[:batch], pending[batch:]
            results = await asyncio.gather(*(self.create_pod(job, ix) for ix in wave), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            created += len(wave) - len(failures)
            for _ in failures:
                self.expectations.creation_observed(key)
            if failures:
                first = failures[0]
                error = first if isinstance(first, Exception) else Exception(str(first))
                for _ in pending:          # never attempted: not expected either
                    self.expectations.creation_observed(key)
                break
            batch = min(2 * batch, len(pending))
        return created, error

    async def create_pod(self, job: Obj, index: int | None) -> Obj | None:
        pod = pod_from_template(job, index, self.controller_ref_for(job))
        ns = job["metadata"]["namespace"]
        try:
            made = await self.client.create(PODS, pod, ns)
        except errors.APIError as e:
            if _namespace_terminating(e):
                return None
            self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {e}")
            raise
        self.recorder.event(job, "Normal", "SuccessfulCreate", f"Created pod: {made['metadata']['name']}")
        return made

    async def delete_job_pods(self, key: str, job: Obj, pods: list[Obj]) -> tuple[int, int, Exception | None]:
        """Remove pods that are not failures (suspend, scale down): finalizer first, so they are not counted."""
        async def one(pod: Obj) -> None:
            try:
                await self.remove_finalizer(pod)
                await self.client.delete(PODS, pod["metadata"]["name"], pod["metadata"]["namespace"])
                self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
            except errors.NotFound:
                self.expectations.deletion_observed(key)
            except errors.APIError as e:
                self.expectations.deletion_observed(key)
                self.recorder.event(job, "Warning", "FailedDelete", f"Error deleting: {e}")
                raise
        return await self._delete_all(pods, one)

    async def delete_active_pods(self, job: Obj, pods: list[Obj]) -> tuple[int, int, Exception | None]:
        """Delete the pods of a Job that is finishing, keeping their finalizers: they are counted as failed."""
        async def one(pod: Obj) -> None:
            try:
                await self.client.delete(PODS, pod["metadata"]["name"], pod["metadata"]["namespace"])
                self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")
            except errors.NotFound:
                pass
        return await self._delete_all(pods, one)

    @staticmethod
    async def _delete_all(pods: list[Obj], one: Any) -> tuple[int, int, Exception | None]:
        results = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
        errs = [r for r in results if isinstance(r, Exception)]
        ok = [p for p, r in zip(pods, results) if not isinstance(r, BaseException)]
        return sum(map(is_ready, ok)), len(ok), (errs[0] if errs else None)

    async def remove_finalizer(self, pod: Obj) -> None:
        if not has_tracking_finalizer(pod):
            return
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [JOB_TRACKING_FINALIZER]}}
        await self.client.patch(PODS, pod["metadata"]["name"], patch, pod["metadata"]["namespace"],
                                patch_type="strategic")

    # -- counting: uncounted → finalizer removal → counters → terminal condition -----------------------------------
    async def track_status_and_remove_finalizers(self, key: str, ctx: SyncContext, original: Obj) -> None:
        job = ctx.job
        status = job["status"]
        indexed = is_indexed(job)
        completions = int(job["spec"].get("completions") or 0)
        uncounted_succeeded = [u for u in (status.get("uncountedTerminatedPods") or {}).get("succeeded") or []]
        uncounted_failed = [u for u in (status.get("uncountedTerminatedPods") or {}).get("failed") or []]
        with_finalizer = {p["metadata"]["uid"] for p in ctx.pods
                          if has_tracking_finalizer(p) and p["metadata"]["uid"] not in ctx.expected_removed}
        policy = job["spec"].get("podFailurePolicy")
        to_remove: list[Obj] = []
        new_indexes: set[int] = set()
        for pod in ctx.pods:
            uid = pod["metadata"]["uid"]
            if not has_tracking_finalizer(pod) or uid in ctx.expected_removed:
                continue
            consider_failed = is_pod_failed(pod, job)
            if not can_remove_finalizer(job, ctx, pod, consider_failed):
                continue
            to_remove.append(pod)
            ix = completion_index(pod)
            if phase(pod) == "Succeeded" and uid not in ctx.uncounted_failed:
                if indexed:
                    if ix is not None and ix < completions and ix not in ctx.prev_succeeded_indexes:
                        new_indexes.add(ix)
                elif uid not in ctx.uncounted_succeeded:
                    uncounted_succeeded.append(uid)
                    ctx.uncounted_succeeded.add(uid)
            elif consider_failed or (ctx.finished_condition is not None
                                     and ctx.finished_condition.get("type") != "SuccessCriteriaMet"):
                valid = not indexed or (ix is not None and ix < completions)
                if uid not in ctx.uncounted_failed and valid and match_pod_failure_policy(policy, pod)[1]:
                    uncounted_failed.append(uid)
                    ctx.uncounted_failed.add(uid)
        _set_uncounted(status, uncounted_succeeded, uncounted_failed)
        _count_uncounted_without_finalizers(status, with_finalizer)
        if indexed:
            ctx.succeeded_indexes = ctx.prev_succeeded_indexes | new_indexes | ctx.succeeded_indexes
            ctx.succeeded_indexes = {i for i in ctx.succeeded_indexes if i < completions}
            status["succeeded"] = len(ctx.succeeded_indexes)
            if ctx.succeeded_indexes or status.get("completedIndexes"):
                status["completedIndexes"] = format_indexes(ctx.succeeded_indexes)
        final = self.interim_condition(ctx)

        # 1. record the pods about to be counted (and any interim condition) before their finalizers go
        await self.write_status(key, ctx, original)
        written = copy.deepcopy(ctx.job["status"])
        self.backoff[key] = ctx.backoff
        # 2. remove the finalizers
        removed = await self.remove_finalizers(key, to_remove)
        with_finalizer -= removed
        status = ctx.job["status"]
        _count_uncounted_without_finalizers(status, with_finalizer)
        # 3. the terminal condition, once nothing is left uncounted or terminating
        ctx.finished_condition = final
        finished = self.enact_finished(ctx)
        await self.write_status(key, ctx, written)
        if finished:
            self.record_finished(ctx.job, final)
        if len(removed) < len(to_remove):
            raise errors.Conflict("some job-tracking finalizers could not be removed; retrying")

    def interim_condition(self, ctx: SyncContext) -> Obj | None:
        """Append FailureTarget / SuccessCriteriaMet to the status; return the terminal condition they lead to."""
        cond = ctx.finished_condition
        if cond is None:
            return None
        status = ctx.job["status"]
        now = self.clock()
        if cond["type"] == "FailureTarget":
            status.setdefault("conditions", []).append(cond)
            return new_condition("Failed", cond["reason"], cond["message"], now)
        if cond["type"] == "SuccessCriteriaMet":
            if find_condition(ctx.job, "SuccessCriteriaMet") is None:
                status.setdefault("conditions", []).append(cond)
            return new_condition("Complete", cond.get("reason", ""), cond.get("message", ""), now)
        return cond

    def enact_finished(self, ctx: SyncContext) -> bool:
        cond = ctx.finished_condition
        if cond is None:
            return False
        status = ctx.job["status"]
        uncounted = status.get("uncountedTerminatedPods") or {}
        if uncounted.get("succeeded") or uncounted.get("failed"):
            return False
        if ctx.terminating > 0:
            return False
        ensure_condition(status, cond["type"], "True", cond.get("reason", ""), cond.get("message", ""), self.clock())
        if cond["type"] == "Complete":
            status["completionTime"] = find_condition(ctx.job, "Complete")["lastTransitionTime"]   # type: ignore[index]
        return True

    def record_finished(self, job: Obj, cond: Obj | None) -> None:
        if cond is None:
            return
        if cond["type"] == "Complete":
            completions = job["spec"].get("completions")
            if completions is not None and int(job["status"].get("succeeded") or 0) > int(completions):
                self.recorder.event(job, "Warning", "TooManySucceededPods",
                                    "Too many succeeded pods running after completion count reached")
            self.recorder.event(job, "Normal", "Completed", "Job completed")
        else:
            self.recorder.event(job, "Warning", cond.get("reason", "Failed"), cond.get("message", ""))

    async def write_status(self, key: str, ctx: SyncContext, previous: Obj) -> None:
        """PUT /status when the status differs from what was last read or written."""
        status = normalize_status(ctx.job["status"])
        ctx.job["status"] = status
        if status == normalize_status(previous):
            return
        ctx.job = await self.client.update_status(JOBS, ctx.job)
        ctx.job.setdefault("status", {})

    async def remove_finalizers(self, key: str, pods: list[Obj]) -> set[str]:
        """Remove the tracking finalizer from these pods; the uids whose finalizer is gone (or pod is gone)."""
        if not pods:
            return set()
        expected = self.finalizer_expectations.setdefault(key, set())
        expected.update(p["metadata"]["uid"] for p in pods)

        async def one(pod: Obj) -> str | None:
            uid = pod["metadata"]["uid"]
            try:
                await self.remove_finalizer(pod)
            except errors.NotFound:
                return uid
            except errors.APIError as e:
                self._finalizer_removal_observed(key, uid)
                log.debug("removing the tracking finalizer of %s: %s", pod["metadata"]["name"], e)
                return None
            return uid
        results = await asyncio.gather(*(one(p) for p in pods))
        return {uid for uid in results if uid is not None}

    # -- orphans and TTL -------------------------------------------------------------------------------------------
    async def sync_orphan_pod(self, pod_key: str) -> None:
        """Remove the tracking finalizer of a pod whose Job is gone or finished (syncOrphanPod)."""
        pod = self.pods.store.get(pod_key)
        if pod is None or not has_tracking_finalizer(pod):
            return
        ref = controller_ref(pod)
        if ref is not None:
            if ref.get("kind") != "Job" or ref.get("apiVersion") != "batch/v1":
                return
            job = self._resolve(pod["metadata"].get("namespace", ""), ref)
            if job is not None:
                managed_by = job["spec"].get("managedBy")
                if managed_by and managed_by != JOB_CONTROLLER_NAME:
                    return
                if not finished_condition_type(job):
                    return
        try:
            await self.remove_finalizer(pod)
        except errors.NotFound:
            pass

    async def process_ttl(self, key: str, job: Obj) -> None:
        """ttlSecondsAfterFinished: delete the finished Job (and, in the foreground, its pods) once it expires."""
        expires = ttl_expiry(job)
        if expires is None or job["metadata"].get("deletionTimestamp"):
            return
        remaining = expires - self.clock()
        if remaining > 0:
            self.queue.add_after(key, remaining)
            return
        ns, name = split_key(key)
        try:
            fresh = await self.client.get(JOBS, name, ns)
        except errors.NotFound:
            return
        fresh_expiry = ttl_expiry(fresh)
        if fresh_expiry is None or fresh["metadata"].get("deletionTimestamp"):
            return
        if fresh_expiry > self.clock():
            self.queue.add_after(key, fresh_expiry - self.clock())
            return
        try:
            await self.client.delete(JOBS, name, ns, propagation_policy="Foreground",
                                     preconditions={"uid": fresh["metadata"]["uid"]})
        except errors.NotFound:
            pass


# -- pure helpers used by the controller ------------------------------------------------------------------------------

def past_backoff_limit_on_failure(job: Obj, pods: list[Obj], backoff_limit: int) -> bool:
    """restartPolicy OnFailure restarts containers in place: their restarts count against backoffLimit."""
    if ((job["spec"].get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = sum(restart_count(p) for p in pods if phase(p) in ("Running", "Pending"))
    return restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit


def can_remove_finalizer(job: Obj, ctx: SyncContext, pod: Obj, consider_failed: bool) -> bool:
    if job["metadata"].get("deletionTimestamp") or ctx.finished_condition is not None or phase(pod) == "Succeeded":
        return True
    return consider_failed


def pods_for_removal(job: Obj, pods: list[Obj], at_least: int) -> list[Obj]:
    """Active pods to delete: for Indexed Jobs first those with a duplicate or invalid index, then the cheapest."""
    remove: list[Obj] = []
    left: list[Obj] = list(pods)
    if is_indexed(job):
        completions = int(job["spec"].get("completions") or 0)
        by_index: dict[int, list[Obj]] = {}
        left = []
        for pod in pods:
            ix = completion_index(pod)
            if ix is None or ix >= completions:
                remove.append(pod)
            else:
                by_index.setdefault(ix, []).append(pod)
        for group in by_index.values():
            group.sort(key=active_pods_order)
            remove.extend(group[:-1])
            left.append(group[-1])
    if len(remove) < at_least:
        left.sort(key=active_pods_order)
        remove.extend(left[:at_least - len(remove)])
    return remove


def first_pending_indexes(ctx: SyncContext, count: int, completions: int) -> list[int]:
    """The lowest `count` indexes neither succeeded nor held by an active (or, if only failed pods are replaced,
    terminating) pod."""
    taken = set(ctx.succeeded_indexes)
    holders = ctx.active_pods + ([p for p in ctx.pods if is_terminating(p)] if only_replace_failed_pods(ctx.job)
                                 else [])
    for pod in holders:
        ix = completion_index(pod)
        if ix is not None and ix < completions:
            taken.add(ix)
    result = []
    for ix in range(completions):
        if len(result) >= count:
            break
        if ix not in taken:
            result.append(ix)
    return result


def pod_from_template(job: Obj, index: int | None, owner: Obj) -> Obj:
    """A pod for this Job from its template: owner reference, tracking finalizer and, for Indexed Jobs, the
    completion index (annotation, label, hostname, JOB_COMPLETION_INDEX)."""
    template = copy.deepcopy(job["spec"].get("template") or {})
    tmeta = template.get("metadata") or {}
    name = job["metadata"]["name"]
    meta: Obj = {"namespace": job["metadata"]["namespace"], "labels": dict(tmeta.get("labels") or {}),
                 "annotations": dict(tmeta.get("annotations") or {}),
                 "finalizers": list(tmeta.get("finalizers") or []), "ownerReferences": [owner],
                 "generateName": f"{name}-"}
    if JOB_TRACKING_FINALIZER not in meta["finalizers"]:
        meta["finalizers"].append(JOB_TRACKING_FINALIZER)
    spec = template.get("spec") or {}
    if index is not None:
        meta["annotations"][COMPLETION_INDEX] = str(index)
        meta["labels"][COMPLETION_INDEX] = str(index)
        suffix = f"-{index}-"
        meta["generateName"] = (name + suffix) if len(name + suffix) <= 58 else name[:58 - len(suffix)] + suffix
        spec["hostname"] = f"{name}-{index}"
        add_completion_index_env(spec)
    for field in ("labels", "annotations", "finalizers"):
        if not meta[field]:
            meta.pop(field)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def add_completion_index_env(spec: Obj) -> None:
    env_var = {"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            env = container.setdefault("env", [])
            if not any(e.get("name") == COMPLETION_INDEX_ENV for e in env):
                env.append(copy.deepcopy(env_var))


def ttl_expiry(job: Obj) -> float | None:
    """When a finished Job with ttlSecondsAfterFinished expires; None when it never does."""
    ttl = job["spec"].get("ttlSecondsAfterFinished")
    kind = finished_condition_type(job)
    if ttl is None or kind is None:
        return None
    finished = parse_time((job.get("status") or {}).get("completionTime")) if kind == "Complete" else None
    if finished is None:
        cond = find_condition(job, kind)
        finished = parse_time(cond.get("lastTransitionTime")) if cond else None
    if finished is None:
        return None
    return finished + float(ttl)


def normalize_status(status: Obj) -> Obj:
    """Drop what Kubernetes omits when empty (zero counters, empty lists), keeping `ready` and `terminating`."""
    out = {k: v for k, v in status.items() if v not in (None, [], "")}
    for counter in ("active", "succeeded", "failed"):
        if not out.get(counter):
            out.pop(counter, None)
    uncounted = {k: v for k, v in (status.get("uncountedTerminatedPods") or {}).items() if v}
    out["uncountedTerminatedPods"] = uncounted
    return out


def _set_uncounted(status: Obj, succeeded: list[str], failed: list[str]) -> None:
    status["uncountedTerminatedPods"] = {k: v for k, v in (("succeeded", succeeded), ("failed", failed)) if v}


def _count_uncounted_without_finalizers(status: Obj, with_finalizer: set[str]) -> None:
    """Move uncounted uids whose pods no longer hold the finalizer into the counters
    (cleanUncountedPodsWithoutFinalizers)."""
    uncounted = status.get("uncountedTerminatedPods") or {}
    for field in ("succeeded", "failed"):
        uids = uncounted.get(field) or []
        keep = [u for u in uids if u in with_finalizer]
        if len(keep) != len(uids):
            status[field] = int(status.get(field) or 0) + len(uids) - len(keep)
            if keep:
                uncounted[field] = keep
            else:
                uncounted.pop(field, None)
    status["uncountedTerminatedPods"] = uncounted


def _namespace_terminating(e: errors.APIError) -> bool:
    details = getattr(e, "details", None) or {}
    causes = details.get("causes") if isinstance(details, dict) else None
    return any(c.get("reason") == "NamespaceTerminating" for c in causes or []) or "being terminated" in str(e)
