"""The CronJob controller: creates a Job for each time a CronJob's schedule comes due.

Modelled on Kubernetes' pkg/controller/cronjob (cronjob_controllerv2.go, utils.go). Each sync looks at the CronJob
and the Jobs it controls, and:

* prunes finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` (oldest first);
* keeps `status.active` (ObjectReferences), `lastScheduleTime` and `lastSuccessfulTime` true to the Jobs;
* finds the most recent unmet schedule time since `lastScheduleTime` (or creation) — bounded below by
  `startingDeadlineSeconds`, warning `TooManyMissedTimes` past 100 misses — and honours `suspend` and
  `concurrencyPolicy` (Allow, Forbid: skip while one runs, Replace: delete the running ones first);
* creates the Job `<cronjob>-<scheduled time in minutes since the epoch>`, a name that doubles as a lock against
  creating the same run twice, annotated with `batch.kubernetes.io/cronjob-scheduled-timestamp`;
* requeues itself for just after the next schedule time.

Schedules are parsed by `kates.api.validation.cron` (Kubernetes' robfig/cron grammar). They are read in
`spec.timeZone`, or a `CRON_TZ=`/`TZ=` prefix, or else the controller manager's local time zone, as in Kubernetes.
"Now" always comes from `options.clock`, so a test can drive schedules with a clock it controls.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import os
import zoneinfo
from typing import Any

from ..api import errors
from ..api.validation import cron
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory, controller_ref
from ..client.rest import Client, object_key, resource

log = logging.getLogger(__name__)

CRONJOBS = resource("cronjobs.batch")
JOBS = resource("jobs.batch")

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
NEXT_SCHEDULE_DELTA = 0.1          # requeue a little after the schedule time, against clock skew
MANY_MISSED = 100                  # more missed start times than this earn a TooManyMissedTimes warning

UTC = dt.timezone.utc
Obj = dict[str, Any]


# -- time ----------------------------------------------------------------------------------------------------------

def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def rfc3339(t: dt.datetime) -> str:
    """Go's time.RFC3339: seconds precision, "Z" for a zero offset."""
    text = t.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def rfc1123z(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def local_zone() -> dt.tzinfo:
    """The controller manager's time zone: $TZ, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


def load_zone(name: str) -> dt.tzinfo:
    """Go's time.LoadLocation: "" and "UTC" are UTC, "Local" the local zone, otherwise the tz database."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return local_zone()
    return zoneinfo.ZoneInfo(name)


# -- schedules -----------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ZonedSchedule:
    """A parsed schedule read in one time zone; `next` answers in UTC."""
    schedule: cron.Schedule
    zone: dt.tzinfo

    def next(self, after: dt.datetime) -> dt.datetime | None:
        t = self.schedule.next_after(after.astimezone(self.zone))
        return t.astimezone(UTC) if t is not None else None


def parse_schedule(spec: str, time_zone: str | None) -> ZonedSchedule:
    """The CronJob's schedule in its zone: a CRON_TZ=/TZ= prefix wins, then spec.timeZone, then local time."""
    parsed = cron.parse(spec)
    if spec.startswith(("TZ=", "CRON_TZ=")):
        zone = load_zone(spec.split(" ", 1)[0].split("=", 1)[1])
    elif time_zone is not None:
        zone = load_zone(time_zone)
    else:
        zone = local_zone()
    return ZonedSchedule(parsed, zone)


@dataclasses.dataclass(frozen=True)
class Unmet:
    """mostRecentScheduleTime's answer: where counting started, the latest due time (if any), how many missed."""
    earliest: dt.datetime
    most_recent: dt.datetime | None
    missed: int          # 0 none, else an estimate of the number of missed start times


def most_recent_schedule_time(cj: Obj, now: dt.datetime, schedule: ZonedSchedule,
                              include_starting_deadline: bool) -> Unmet:
    """The latest schedule time in (lastScheduleTime or creation, now], estimating how many were missed."""
    status = cj.get("status") or {}
    earliest = parse_time(status.get("lastScheduleTime")) or parse_time(cj["metadata"].get("creationTimestamp")) \
        or now
    deadline = cj["spec"].get("startingDeadlineSeconds")
    if include_starting_deadline and deadline is not None:
        earliest = max(earliest, now - dt.timedelta(seconds=int(deadline)))
    t1 = schedule.next(earliest)
    if t1 is None or now < t1:
        return Unmet(earliest, None, 0)
    t2 = schedule.next(t1)
    if t2 is None or now < t2:
        return Unmet(earliest, t1, 0)
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise ValueError("time difference between two schedules is less than 1 second")
    missed = int((now - t1).total_seconds()) // between + 1
    # jump close to now instead of walking every missed time (irregular schedules are walked from one step back)
    t: dt.datetime | None = schedule.next(t1 + dt.timedelta(seconds=(missed - 2) * between))
    most_recent = None
    while t is not None and t <= now:
        most_recent = t
        t = schedule.next(t)
    return Unmet(earliest, most_recent, missed)


def next_schedule_delay(cj: Obj, now: dt.datetime, schedule: ZonedSchedule) -> float | None:
    """Seconds until just after the next schedule time (nextScheduleTimeDuration)."""
    try:
        unmet = most_recent_schedule_time(cj, now, schedule, False)
        base = unmet.most_recent or (unmet.earliest if unmet.missed == 0 else now)
    except ValueError:
        base = now
    nxt = schedule.next(base)
    if nxt is None:
        return None
    return (nxt - now).total_seconds() + NEXT_SCHEDULE_DELTA


# -- jobs ----------------------------------------------------------------------------------------------------------

def finished_type(job: Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def job_name(cj: Obj, scheduled: dt.datetime) -> str:
    return f"{cj['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def job_from_template(cj: Obj, scheduled: dt.datetime) -> Obj:
    """The Job for one scheduled time (getJobFromTemplate2)."""
    template = cj["spec"].get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    zone = load_zone(cj["spec"].get("timeZone") or "")
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = rfc3339(scheduled.astimezone(zone))
    meta: Obj = {"name": job_name(cj, scheduled), "namespace": cj["metadata"]["namespace"],
                 "annotations": annotations,
                 "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cj["metadata"]["name"],
                                      "uid": cj["metadata"]["uid"], "controller": True,
                                      "blockOwnerDeletion": True}]}
    if tmeta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


def job_reference(job: Obj) -> Obj:
    meta = job["metadata"]
    return {"kind": "Job", "namespace": meta.get("namespace"), "name": meta["name"], "uid": meta.get("uid"),
            "apiVersion": "batch/v1", "resourceVersion": meta.get("resourceVersion")}


def in_active(cj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (cj.get("status") or {}).get("active") or [])


def remove_from_active(cj: Obj, uid: str) -> None:
    status = cj.setdefault("status", {})
    active = [ref for ref in status.get("active") or [] if ref.get("uid") != uid]
    if active:
        status["active"] = active
    else:
        status.pop("active", None)


def start_time_order(job: Obj) -> tuple[bool, dt.datetime, str]:
    """Oldest first by status.startTime (unstarted last), then by name (byJobStartTime)."""
    start = parse_time((job.get("status") or {}).get("startTime"))
    return (start is None, start or dt.datetime.max.replace(tzinfo=UTC), job["metadata"]["name"])


class CronJobController(Controller):
    name = "cronjob-controller"
    workers = 5

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.cronjobs = informers.informer(CRONJOBS)
        self.jobs = informers.informer(JOBS)
        self.cronjobs.add_handler(self.enqueue, self._update_cronjob, self.enqueue)
        self.jobs.add_handler(self._add_job, self._update_job, self._delete_job)

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.options.clock(), UTC)

    # -- event handlers ----------------------------------------------------------------------------------------------
    def _resolve(self, namespace: str, ref: Obj | None) -> Obj | None:
        if not ref or ref.get("kind") != "CronJob":
            return None
        cj = self.cronjobs.store.get(f"{namespace}/{ref.get('name')}")
        return cj if cj is not None and cj["metadata"].get("uid") == ref.get("uid") else None

    def _enqueue_owner(self, job: Obj, ref: Obj | None) -> None:
        cj = self._resolve(job["metadata"].get("namespace", ""), ref)
        if cj is not None:
            self.enqueue(cj)

    def _add_job(self, job: Obj) -> None:
        self._enqueue_owner(job, controller_ref(job))

    def _update_job(self, old: Obj, cur: Obj) -> None:
        if old["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion"):
            return
        old_ref, cur_ref = controller_ref(old), controller_ref(cur)
        if old_ref != cur_ref and old_ref is not None:
            self._enqueue_owner(old, old_ref)
        self._enqueue_owner(cur, cur_ref)

    def _delete_job(self, job: Obj) -> None:
        self._enqueue_owner(job, controller_ref(job))

    def _update_cronjob(self, old: Obj, cur: Obj) -> None:
        """A new schedule or zone moves the next requeue; any other change syncs now."""
        if (old["spec"].get("schedule") != cur["spec"].get("schedule")
                or old["spec"].get("timeZone") != cur["spec"].get("timeZone")):
            try:
                schedule = parse_schedule(cur["spec"].get("schedule") or "", cur["spec"].get("timeZone"))
            except (cron.CronError, zoneinfo.ZoneInfoNotFoundError, ValueError):
                self.recorder.event(cur, "Warning", "UnParseableCronJobSchedule",
                                    f"unparseable schedule for cronjob: {cur['spec'].get('schedule')}")
                return
            delay = next_schedule_delay(cur, self.now(), schedule)
            if delay is not None:
                self.queue.add_after(object_key(cur), delay)
            return
        self.enqueue(cur)

    # -- sync ------------------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        shared = self.cronjobs.store.get(key)
        if shared is None:
            return
        cj = copy.deepcopy(shared)
        jobs = self.jobs_to_reconcile(cj)
        changed = await self.cleanup_finished_jobs(cj, jobs)
        requeue_after: float | None = None
        sync_error: Exception | None = None
        try:
            cj, requeue_after, synced_changes = await self.sync_cronjob(cj, jobs)
            changed = changed or synced_changes
        except _SyncFailed as e:
            cj, changed, sync_error = e.cronjob, changed or e.changed, e.cause
        if changed:
            await self.client.update_status(CRONJOBS, cj)
        if requeue_after is not None:
            self.queue.add_after(key, requeue_after)
        if sync_error is not None:
            raise sync_error

    def jobs_to_reconcile(self, cj: Obj) -> list[Obj]:
        """Every Job in the namespace whose controllerRef names this CronJob, whatever its labels."""
        name = cj["metadata"]["name"]
        return [j for j in self.jobs.store.in_namespace(cj["metadata"]["namespace"])
                if (ref := controller_ref(j)) is not None and ref.get("kind") == "CronJob" and ref.get("name") == name]

    async def sync_cronjob(self, cj: Obj, jobs: list[Obj]) -> tuple[Obj, float | None, bool]:
        """Reconcile status with the Jobs, then start the due run if allowed; (cronjob, requeue delay, changed)."""
        now = self.now()
        cj, changed = await self.reconcile_active(cj, jobs)
        if cj["metadata"].get("deletionTimestamp"):
            return cj, None, changed
        time_zone = cj["spec"].get("timeZone")
        if time_zone is not None:
            try:
                load_zone(time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
                self.recorder.event(cj, "Warning", "UnknownTimeZone", f'invalid timeZone: "{time_zone}": {e}')
                return cj, None, changed
        if cj["spec"].get("suspend"):
            return cj, None, changed
        spec = cj["spec"].get("schedule") or ""
        if "TZ" in spec:
            self.recorder.event(cj, "Warning", "UnsupportedSchedule",
                                f'CRON_TZ or TZ used in schedule "{spec}" is not officially supported, see '
                                "https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details")
        try:
            schedule = parse_schedule(spec, time_zone)
        except (cron.CronError, zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            self.recorder.event(cj, "Warning", "UnparseableSchedule", f'unparseable schedule: "{spec}" : {e}')
            return cj, None, changed
        try:
            scheduled = self.next_schedule_time(cj, now, schedule)
        except ValueError as e:
            self.recorder.event(cj, "Warning", "InvalidSchedule", f"invalid schedule: {spec} : {e}")
            return cj, None, changed
        requeue = next_schedule_delay(cj, now, schedule)
        if scheduled is None:
            return cj, requeue, changed
        deadline = cj["spec"].get("startingDeadlineSeconds")
        if deadline is not None and scheduled + dt.timedelta(seconds=int(deadline)) < now:
            self.recorder.event(cj, "Warning", "MissSchedule",
                                f"Missed scheduled time to start a job: {rfc1123z(scheduled)}")
            return cj, requeue, changed
        name = job_name(cj, scheduled)
        status = cj.setdefault("status", {})
        if (any(ref.get("name") == name for ref in status.get("active") or [])
                or parse_time(status.get("lastScheduleTime")) == scheduled):
            return cj, requeue, changed
        policy = cj["spec"].get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and status.get("active"):
            self.recorder.event(cj, "Normal", "JobAlreadyActive",
                                "Not starting job because prior execution is running and concurrency policy is Forbid")
            return cj, requeue, changed
        if policy == "Replace":
            for ref in list(status.get("active") or []):
                try:
                    job = await self.client.get(JOBS, ref["name"], ref.get("namespace"))
                except errors.APIError as e:
                    self.recorder.event(cj, "Warning", "FailedGet", f"Get job: {e}")
                    raise _SyncFailed(cj, changed, e) from e
                if not await self.delete_job(cj, job):
                    raise _SyncFailed(cj, changed, RuntimeError(f"could not replace job {ref.get('namespace')}/"
                                                                f"{ref['name']}"))
                changed = True
        job = await self.create_job(cj, scheduled, changed)
        if job is None:
            return cj, None, changed
        status = cj.setdefault("status", {})
        status["active"] = [*(status.get("active") or []), job_reference(job)]
        status["lastScheduleTime"] = rfc3339(scheduled.astimezone(UTC))
        return cj, requeue, True

    def next_schedule_time(self, cj: Obj, now: dt.datetime, schedule: ZonedSchedule) -> dt.datetime | None:
        unmet = most_recent_schedule_time(cj, now, schedule, True)
        if unmet.most_recent is None or unmet.most_recent > now:
            return None
        if unmet.missed > MANY_MISSED:
            self.recorder.event(cj, "Warning", "TooManyMissedTimes",
                                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or "
                                "check clock skew")
        return unmet.most_recent

    async def reconcile_active(self, cj: Obj, jobs: list[Obj]) -> tuple[Obj, bool]:
        """Drop finished and vanished Jobs from status.active; note the latest successful completion."""
        changed = False
        children = set()
        for job in jobs:
            uid = job["metadata"].get("uid", "")
            children.add(uid)
            found = in_active(cj, uid)
            finished = finished_type(job)
            if not found and finished is None:
                fresh = await self.client.get(CRONJOBS, cj["metadata"]["name"], cj["metadata"]["namespace"])
                if in_active(fresh, uid):
                    cj = fresh
                    continue
                self.recorder.event(cj, "Warning", "UnexpectedJob",
                                    f"Saw a job that the controller did not create or forgot: {job['metadata']['name']}")
            elif finished is not None:
                if found:
                    remove_from_active(cj, uid)
                    self.recorder.event(cj, "Normal", "SawCompletedJob",
                                        f"Saw completed job: {job['metadata']['name']}, condition: {finished}")
                    changed = True
                if finished == "Complete":
                    changed = self.note_success(cj, job) or changed
        for ref in list((cj.get("status") or {}).get("active") or []):
            if ref.get("uid") in children:
                continue
            try:
                await self.client.get(JOBS, ref["name"], ref.get("namespace"))
            except errors.NotFound:
                self.recorder.event(cj, "Normal", "MissingJob", f"Active job went missing: {ref['name']}")
                remove_from_active(cj, ref.get("uid", ""))
                changed = True
        return cj, changed

    @staticmethod
    def note_success(cj: Obj, job: Obj) -> bool:
        """Advance status.lastSuccessfulTime to this Job's completionTime if later; whether it changed."""
        completed = (job.get("status") or {}).get("completionTime")
        done = parse_time(completed)
        if done is None:
            return False
        status = cj.setdefault("status", {})
        last = parse_time(status.get("lastSuccessfulTime"))
        if last is None or done > last:
            status["lastSuccessfulTime"] = completed
            return True
        return False

    async def create_job(self, cj: Obj, scheduled: dt.datetime, changed: bool) -> Obj | None:
        """Create the run's Job; None when nothing is to be added to status.active."""
        wanted = job_from_template(cj, scheduled)
        ns = cj["metadata"]["namespace"]
        try:
            job = await self.client.create(JOBS, wanted, ns)
        except errors.AlreadyExists:
            # created earlier, but the status update that should have followed was lost: adopt it into active
            job = await self.client.get(JOBS, wanted["metadata"]["name"], ns)
            ref = controller_ref(job)
            if ref is None or ref.get("uid") != cj["metadata"]["uid"] or in_active(cj, job["metadata"]["uid"]):
                return None
            log.info("job %s/%s already exists", ns, wanted["metadata"]["name"])
            return job
        except errors.APIError as e:
            if "being terminated" not in str(e):
                self.recorder.event(cj, "Warning", "FailedCreate", f"Error creating job: {e}")
            raise _SyncFailed(cj, changed, e) from e
        self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {job['metadata']['name']}")
        return job

    async def delete_job(self, cj: Obj, job: Obj) -> bool:
        """Delete a Job (its pods in the background) and its reference in status.active."""
        meta = job["metadata"]
        try:
            await self.client.delete(JOBS, meta["name"], meta.get("namespace"), propagation_policy="Background")
        except errors.NotFound:
            pass
        except errors.APIError as e:
            self.recorder.event(cj, "Warning", "FailedDelete", f"Deleted job: {e}")
            return False
        remove_from_active(cj, meta.get("uid", ""))
        self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {meta['name']}")
        return True

    async def cleanup_finished_jobs(self, cj: Obj, jobs: list[Obj]) -> bool:
        """Delete the oldest finished Jobs beyond the history limits; whether status changed."""
        spec = cj["spec"]
        changed = False
        for kind, field in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(field)
            if limit is None:
                continue
            finished = sorted((j for j in jobs if finished_type(j) == kind), key=start_time_order)
            for job in finished[:max(0, len(finished) - int(limit))]:
                if await self.delete_job(cj, job):
                    changed = True
        return changed


class _SyncFailed(Exception):
    """Carries the CronJob as far as the sync got, so its status changes are still written before the retry."""

    def __init__(self, cronjob: Obj, changed: bool, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cronjob, self.changed, self.cause = cronjob, changed, cause
