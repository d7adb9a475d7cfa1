"""The CronJob controller under a clock the test controls.

A CronJobController runs in this process against a bare API server (no controller manager), with
`ControllerOptions.clock` set to a fake clock: the test moves time forward a minute at a time, nudges the
controller's queue, and checks through the real kubectl which Jobs exist. Jobs are finished by writing their
status, as the Job controller would; one test runs the real JobController alongside for the whole chain.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from typing import Any, AsyncIterator, Callable

import pytest

from kates.api.validation import cron
from kates.client.controller import ControllerOptions
from kates.client.informer import Informer, InformerFactory
from kates.client.rest import Client
from kates.controllers.cronjob import (CronJobController, ZonedSchedule, most_recent_schedule_time,
                                       parse_schedule)
from kates.controllers.job import JobController

UTC = dt.timezone.utc


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set(self, t: dt.datetime) -> None:
        self.now = t.timestamp()


class NamespacedInformers(InformerFactory):
    """Informers that see one namespace, so the in-process controllers never touch other tests' objects."""

    def __init__(self, client: Client, namespace: str) -> None:
        super().__init__(client)
        self.namespace = namespace

    def informer(self, rt: Any) -> Informer:
        inf = self.informers.get(rt.qualified)
        if inf is None:
            inf = self.informers[rt.qualified] = Informer(self.client, rt, self.namespace)
        return inf


class Harness:
    """In-process controllers on a fake clock, and the real kubectl (run off the event loop) to look around."""

    def __init__(self, kubectl: Any, ns: str, clock: FakeClock, client: Client, informers: InformerFactory) -> None:
        self.kubectl, self.ns, self.clock, self.client, self.informers = kubectl, ns, clock, client, informers
        self.controller = CronJobController(client, informers, ControllerOptions(clock=clock))
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, *controllers: Any) -> None:
        self.informers.start()
        await self.informers.wait_synced(10)
        self.tasks += [asyncio.create_task(c.run(), name=f"test-{c.name}") for c in controllers]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.informers.stop()

    async def kc(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return await asyncio.to_thread(self.kubectl.run, *args, "-n", self.ns, input=input, check=check)

    async def get(self, *args: str) -> Any:
        return json.loads((await self.kc("get", *args, "-o", "json")).stdout)

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        await self.kc("apply", "-f", "-", input=json.dumps(manifest))
        return await self.get(manifest["kind"].lower(), manifest["metadata"]["name"])

    async def jobs(self, cronjob: str) -> list[dict[str, Any]]:
        items = (await self.get("jobs"))["items"]
        mine = [j for j in items if any(r.get("name") == cronjob for r in j["metadata"].get("ownerReferences") or [])
                and not j["metadata"].get("deletionTimestamp")]
        return sorted(mine, key=lambda j: j["metadata"]["name"])

    async def tick(self, cronjob: str, at: dt.datetime) -> None:
        """Move the clock to `at` and let the controller look at the CronJob."""
        self.clock.set(at)
        self.controller.queue.add(f"{self.ns}/{cronjob}")
        await asyncio.sleep(0.3)

    async def until(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await fn()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
            await asyncio.sleep(0.05)

    async def finish(self, job: dict[str, Any], how: str, at: dt.datetime) -> None:
        """Write a terminal Job status, as the Job controller would."""
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        started = (at - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        interim, final, reason = (("SuccessCriteriaMet", "Complete", "CompletionsReached") if how == "Complete"
                                  else ("FailureTarget", "Failed", "BackoffLimitExceeded"))
        conds = [{"type": t, "status": "True", "reason": reason, "message": "",
                  "lastProbeTime": stamp, "lastTransitionTime": stamp} for t in (interim, final)]
        status: dict[str, Any] = {"conditions": conds, "startTime": started}
        if how == "Complete":
            status.update(completionTime=stamp, succeeded=1)
        else:
            status.update(failed=1)
        await self.kc("patch", "job", job["metadata"]["name"], "--subresource=status", "--type=merge",
                      "-p", json.dumps({"status": status}))

    async def events(self, name: str) -> list[tuple[str, str, str]]:
        items = (await self.get("events", "--field-selector", f"involvedObject.name={name}"))["items"]
        return [(e["type"], e["reason"], e["message"]) for e in items]


@pytest.fixture
async def harness(server: Any, kubectl: Any) -> AsyncIterator[Harness]:
    ns = "cj-" + uuid.uuid4().hex[:8]
    await asyncio.to_thread(kubectl.run, "create", "namespace", ns)
    client = Client.from_kubeconfig(server.kubeconfig, user_agent="cronjob-test")
    h = Harness(kubectl, ns, FakeClock(time.time()), client, NamespacedInformers(client, ns))
    await h.start(h.controller)
    try:
        yield h
    finally:
        await h.stop()
        await client.close()
        await asyncio.to_thread(kubectl.run, "delete", "namespace", ns, "--wait=false", check=False)


def cronjob(name: str, schedule: str = "*/1 * * * *", **spec: Any) -> dict[str, Any]:
    pod = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
           "nodeSelector": {"kates-test/no-such-node": "true"}}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, **spec,
                     "jobTemplate": {"metadata": {"labels": {"run": name}, "annotations": {"note": "hi"}},
                                     "spec": {"template": {"spec": pod}}}}}


def created_at(obj: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))


def minute_after(t: dt.datetime, n: int = 1) -> dt.datetime:
    """The n-th whole minute strictly after t."""
    return t.replace(second=0, microsecond=0) + dt.timedelta(minutes=n)


def run_name(cj: str, t: dt.datetime) -> str:
    return f"{cj}-{int(t.timestamp()) // 60}"


async def test_every_minute_creates_one_job_per_minute(harness: Harness):
    h = harness
    cj = await h.apply(cronjob("tick"))
    m1, m2 = minute_after(created_at(cj)), minute_after(created_at(cj), 2)
    await h.tick("tick", m1 - dt.timedelta(seconds=2))
    assert await h.jobs("tick") == []
    await h.tick("tick", m1 + dt.timedelta(seconds=1))
    jobs = await h.until(lambda: h.jobs("tick"))
    job = jobs[0]
    assert job["metadata"]["name"] == run_name("tick", m1)
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
        m1.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert job["metadata"]["annotations"]["note"] == "hi" and job["metadata"]["labels"]["run"] == "tick"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == \
        ("CronJob", "tick", cj["metadata"]["uid"], True)
    status = (await h.until(lambda: _with_status(h, "tick", "lastScheduleTime")))["status"]
    assert status["lastScheduleTime"] == m1.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [r["name"] for r in status["active"]] == [job["metadata"]["name"]]
    # the same minute again creates nothing more
    await h.tick("tick", m1 + dt.timedelta(seconds=30))
    assert len(await h.jobs("tick")) == 1
    await h.tick("tick", m2 + dt.timedelta(seconds=1))
    jobs = await h.until(lambda: _count(h.jobs("tick"), 2))
    assert [j["metadata"]["name"] for j in jobs] == sorted([run_name("tick", m1), run_name("tick", m2)])
    cj = await h.until(lambda: _active_count(h, "tick", 2))
    assert cj["status"]["lastScheduleTime"] == m2.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ("Normal", "SuccessfulCreate", f"Created job {run_name('tick', m2)}") in await h.events("tick")


async def test_forbid_skips_a_run_while_one_is_active(harness: Harness):
    h = harness
    cj = await h.apply(cronjob("solo", concurrencyPolicy="Forbid"))
    m1, m2 = minute_after(created_at(cj)), minute_after(created_at(cj), 2)
    await h.tick("solo", m1 + dt.timedelta(seconds=1))
    first = (await h.until(lambda: h.jobs("solo")))[0]
    await h.until(lambda: _active_count(h, "solo", 1))
    await h.tick("solo", m2 + dt.timedelta(seconds=1))
    await asyncio.sleep(0.3)
    assert [j["metadata"]["name"] for j in await h.jobs("solo")] == [first["metadata"]["name"]]
    assert any(r == "JobAlreadyActive" for _, r, _ in await h.events("solo"))
    # once the first run finishes, the (late) run for m2 starts
    await h.finish(first, "Complete", m2 + dt.timedelta(seconds=5))
    await h.tick("solo", m2 + dt.timedelta(seconds=10))
    jobs = await h.until(lambda: _count(h.jobs("solo"), 2))
    assert run_name("solo", m2) in [j["metadata"]["name"] for j in jobs]
    cj = await h.until(lambda: _with_status(h, "solo", "lastSuccessfulTime"))
    assert cj["status"]["lastSuccessfulTime"] == (m2 + dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [r["name"] for r in cj["status"]["active"]] == [run_name("solo", m2)]


async def test_replace_deletes_the_running_job(harness: Harness):
    h = harness
    cj = await h.apply(cronjob("swap", concurrencyPolicy="Replace"))
    m1, m2 = minute_after(created_at(cj)), minute_after(created_at(cj), 2)
    await h.tick("swap", m1 + dt.timedelta(seconds=1))
    await h.until(lambda: _active_count(h, "swap", 1))
    await h.tick("swap", m2 + dt.timedelta(seconds=1))
    jobs = await h.until(lambda: _names_are(h.jobs("swap"), [run_name("swap", m2)]))
    assert len(jobs) == 1
    cj = await h.until(lambda: _active_names(h, "swap", [run_name("swap", m2)]))
    assert ("Normal", "SuccessfulDelete", f"Deleted job {run_name('swap', m1)}") in await h.events("swap")


async def test_history_limits_keep_only_the_newest_finished_jobs(harness: Harness):
    h = harness
    cj = await h.apply(cronjob("keep", successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1))
    base = created_at(cj)
    names = []
    for n, outcome in enumerate(["Complete"] * 3 + ["Failed"] * 2, start=1):
        at = minute_after(base, n)
        await h.tick("keep", at + dt.timedelta(seconds=1))
        name = run_name("keep", at)
        job = await h.until(lambda: _job_named(h, "keep", name))
        await h.finish(job, outcome, at + dt.timedelta(seconds=2))
        names.append(name)
    await h.tick("keep", minute_after(base, 5) + dt.timedelta(seconds=4))
    expected = [names[1], names[2], names[4]]
    jobs = await h.until(lambda: _names_are(h.jobs("keep"), sorted(expected)))
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(expected)
    cj = await h.get("cronjob", "keep")
    assert not cj["status"].get("active")
    assert cj["status"]["lastSuccessfulTime"] == (minute_after(base, 3) + dt.timedelta(seconds=2)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


async def test_suspend_stops_creating_jobs(harness: Harness):
    h = harness
    cj = await h.apply(cronjob("pause", suspend=True))
    m1, m2 = minute_after(created_at(cj)), minute_after(created_at(cj), 2)
    await h.tick("pause", m1 + dt.timedelta(seconds=1))
    await h.tick("pause", m2 + dt.timedelta(seconds=1))
    await asyncio.sleep(0.3)
    assert await h.jobs("pause") == []
    # resumed, it starts only the most recent missed run
    await h.kc("patch", "cronjob", "pause", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    jobs = await h.until(lambda: h.jobs("pause"))
    await asyncio.sleep(0.3)
    assert [j["metadata"]["name"] for j in await h.jobs("pause")] == [run_name("pause", m2)] == \
        [j["metadata"]["name"] for j in jobs]


async def test_starting_deadline_skips_runs_missed_for_too_long(harness: Harness):
    h = harness
    cj = await h.apply(cronjob("late", startingDeadlineSeconds=10))
    m1, m2 = minute_after(created_at(cj)), minute_after(created_at(cj), 2)
    await h.tick("late", m1 + dt.timedelta(seconds=30))
    await asyncio.sleep(0.3)
    assert await h.jobs("late") == []
    await h.tick("late", m2 + dt.timedelta(seconds=5))
    jobs = await h.until(lambda: h.jobs("late"))
    assert [j["metadata"]["name"] for j in jobs] == [run_name("late", m2)]


async def test_too_many_missed_start_times_warns_and_starts_the_latest(harness: Harness):
    h = harness
    cj = await h.apply(cronjob("behind"))
    later = minute_after(created_at(cj), 200)
    await h.tick("behind", later + dt.timedelta(seconds=1))
    jobs = await h.until(lambda: h.jobs("behind"))
    assert [j["metadata"]["name"] for j in jobs] == [run_name("behind", later)]
    events = await h.until(lambda: _events_with(h, "behind", "TooManyMissedTimes"))
    assert events[0][0] == "Warning"


async def test_time_zone_reads_the_schedule_in_that_zone(harness: Harness):
    h = harness
    # 30 minutes past each hour in India (UTC+05:30) is on the hour in UTC
    cj = await h.apply(cronjob("india", schedule="30 * * * *", timeZone="Asia/Kolkata"))
    hour = created_at(cj).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    await h.tick("india", hour - dt.timedelta(seconds=1))
    assert await h.jobs("india") == []
    await h.tick("india", hour + dt.timedelta(seconds=1))
    job = (await h.until(lambda: h.jobs("india")))[0]
    assert job["metadata"]["name"] == run_name("india", hour)
    local = hour.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
        local.strftime("%Y-%m-%dT%H:%M:%S+05:30")


async def test_with_the_job_controller_a_run_completes(harness: Harness):
    h = harness
    await h.start(JobController(h.client, h.informers, ControllerOptions(clock=h.clock)))
    cj = await h.apply(cronjob("chain"))
    m1 = minute_after(created_at(cj))
    await h.tick("chain", m1 + dt.timedelta(seconds=1))
    job = (await h.until(lambda: h.jobs("chain")))[0]
    pods = await h.until(lambda: _pods_of(h, job["metadata"]["name"]))
    await h.kc("patch", "pod", pods[0]["metadata"]["name"], "--subresource=status", "--type=merge",
               "-p", '{"status":{"phase":"Succeeded"}}')
    await h.kc("wait", "--for=condition=Complete", f"job/{job['metadata']['name']}", "--timeout=10s")
    h.controller.queue.add(f"{h.ns}/chain")
    cj = await h.until(lambda: _with_status(h, "chain", "lastSuccessfulTime"))
    assert not cj["status"].get("active")
    assert any(r == "SawCompletedJob" for _, r, _ in await h.events("chain"))


# -- pure schedule arithmetic ----------------------------------------------------------------------------------------

def test_cron_tz_prefix_and_time_zone_field():
    after = dt.datetime(2025, 3, 1, 10, 10, tzinfo=UTC)
    assert parse_schedule("CRON_TZ=Asia/Kolkata 30 * * * *", None).next(after) == \
        dt.datetime(2025, 3, 1, 11, 0, tzinfo=UTC)
    assert parse_schedule("30 * * * *", "Asia/Kolkata").next(after) == dt.datetime(2025, 3, 1, 11, 0, tzinfo=UTC)
    assert parse_schedule("@hourly", "UTC").next(after) == dt.datetime(2025, 3, 1, 11, 0, tzinfo=UTC)
    with pytest.raises(cron.CronError):
        parse_schedule("61 * * * *", "UTC")


def test_most_recent_schedule_time_counts_missed_runs():
    schedule = ZonedSchedule(cron.parse("*/5 * * * *"), UTC)
    cj = {"metadata": {"creationTimestamp": "2025-03-01T10:00:30Z"}, "spec": {}, "status": {}}
    now = dt.datetime(2025, 3, 1, 10, 31, tzinfo=UTC)
    unmet = most_recent_schedule_time(cj, now, schedule, True)
    assert unmet.most_recent == dt.datetime(2025, 3, 1, 10, 30, tzinfo=UTC) and unmet.missed == 6
    cj["spec"]["startingDeadlineSeconds"] = 200
    unmet = most_recent_schedule_time(cj, now, schedule, True)
    assert unmet.most_recent == dt.datetime(2025, 3, 1, 10, 30, tzinfo=UTC)
    assert most_recent_schedule_time(cj, dt.datetime(2025, 3, 1, 10, 4, tzinfo=UTC), schedule, True).most_recent \
        is None


# -- helpers -------------------------------------------------------------------------------------------------------

async def _count(coro: Any, n: int) -> Any:
    items = await coro
    return items if len(items) == n else None


async def _names_are(coro: Any, names: list[str]) -> Any:
    items = await coro
    return items if sorted(j["metadata"]["name"] for j in items) == sorted(names) else None


async def _with_status(h: Harness, name: str, field: str) -> Any:
    cj = await h.get("cronjob", name)
    return cj if cj.get("status", {}).get(field) else None


async def _active_count(h: Harness, name: str, n: int) -> Any:
    cj = await h.get("cronjob", name)
    return cj if len(cj.get("status", {}).get("active") or []) == n else None


async def _active_names(h: Harness, name: str, names: list[str]) -> Any:
    cj = await h.get("cronjob", name)
    return cj if [r["name"] for r in cj.get("status", {}).get("active") or []] == names else None


async def _job_named(h: Harness, cronjob: str, name: str) -> Any:
    return next((j for j in await h.jobs(cronjob) if j["metadata"]["name"] == name), None)


async def _events_with(h: Harness, name: str, reason: str) -> Any:
    return [e for e in await h.events(name) if e[1] == reason]


async def _pods_of(h: Harness, job: str) -> Any:
    return (await h.get("pods", "-l", f"batch.kubernetes.io/job-name={job}"))["items"]
