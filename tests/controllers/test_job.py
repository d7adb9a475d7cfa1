"""The Job controller through the real kubectl: parallelism, completions, back-off limit, deadlines, suspend,
Indexed Jobs, pod failure policy, ttlSecondsAfterFinished and exact counting with the job-tracking finalizer.

Most tests keep their pods away from the scheduler and the hollow nodes (a nodeSelector no node has) and play the
kubelet themselves, patching pod phases through the status subresource. The back-off test runs a JobController in
this process with a clock it controls.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any, Callable

import pytest

from kates.client.controller import ControllerOptions
from kates.client.informer import Informer, InformerFactory
from kates.client.rest import Client
from kates.controllers.job import (JOB_TRACKING_FINALIZER, JobController, format_indexes, next_backoff_record,
                                   BackoffRecord, parse_indexes)

NOWHERE = {"kates-test/no-such-node": "true"}     # keeps pods Pending and unbound: the test is their kubelet


def job_manifest(name: str, *, command: list[str] | None = None, restart_policy: str = "Never",
                 node_selector: dict[str, str] | None = NOWHERE, **spec: Any) -> str:
    pod_spec: dict[str, Any] = {"restartPolicy": restart_policy, "terminationGracePeriodSeconds": 0,
                                "containers": [{"name": "main", "image": "busybox",
                                                "command": command or ["sh", "-c", "exit 0"]}]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                       "spec": {**spec, "template": {"spec": pod_spec}}})


def wait_for(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


def pods_of(kubectl: Any, ns: str, job: str) -> list[dict[str, Any]]:
    items = kubectl.json("get", "pods", "-n", ns, "-l", f"batch.kubernetes.io/job-name={job}")["items"]
    return sorted(items, key=lambda p: p["metadata"]["name"])


def job_of(kubectl: Any, ns: str, job: str) -> dict[str, Any]:
    return kubectl.json("get", "job", job, "-n", ns)


def is_active(pod: dict[str, Any]) -> bool:
    return pod["status"].get("phase") not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in job.get("status", {}).get("conditions") or [] if c["type"] == type_), None)


def set_phase(kubectl: Any, ns: str, pod: str, phase: str, exit_code: int | None = None,
              restarts: int = 0) -> None:
    status: dict[str, Any] = {"phase": phase}
    if exit_code is not None or restarts:
        state = ({"terminated": {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed",
                                 "startedAt": "2025-01-01T00:00:00Z", "finishedAt": "2025-01-01T00:00:01Z"}}
                 if exit_code is not None else {"running": {"startedAt": "2025-01-01T00:00:00Z"}})
        status["containerStatuses"] = [{"name": "main", "image": "busybox", "imageID": "", "ready": False,
                                        "restartCount": restarts, "state": state}]
    kubectl.run("patch", "pod", pod, "-n", ns, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": status}))


def events_of(kubectl: Any, ns: str, name: str) -> list[tuple[str, str, str]]:
    items = kubectl.json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


# -- end to end through the controller manager ------------------------------------------------------------------------

def test_parallelism_bounds_active_pods_until_completions(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    k.apply(job_manifest("work", completions=5, parallelism=2), "-n", ns)
    finished: set[str] = set()
    deadline = time.monotonic() + 30
    while condition(job_of(k, ns, "work"), "Complete") is None:
        assert time.monotonic() < deadline, "job did not complete"
        pods = pods_of(k, ns, "work")
        active = [p for p in pods if is_active(p)]
        assert len(active) <= 2, f"{len(active)} active pods with parallelism 2"
        if active:
            pod = active[0]["metadata"]["name"]
            set_phase(k, ns, pod, "Succeeded")
            finished.add(pod)
        time.sleep(0.2)
    # kubectl wait returns once the Complete condition is there
    k.run("wait", "--for=condition=Complete", "job/work", "-n", ns, "--timeout=10s")
    job = job_of(k, ns, "work")
    pods = pods_of(k, ns, "work")
    assert len(pods) == 5 and {p["metadata"]["name"] for p in pods} == finished
    assert all(JOB_TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or []) for p in pods)
    status = job["status"]
    assert status["succeeded"] == 5 and not status.get("failed") and not status.get("active")
    assert status["completionTime"] and status["startTime"]
    assert condition(job, "SuccessCriteriaMet")["reason"] == "CompletionsReached"
    assert condition(job, "Complete")["status"] == "True"
    assert status.get("uncountedTerminatedPods") == {}
    owner = pods[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Job" and owner["controller"] is True and owner["uid"] == job["metadata"]["uid"]
    events = wait_for(lambda: [e for e in events_of(k, ns, "work") if e[1] == "Completed"] and events_of(k, ns, "work"))
    assert ("Normal", "Completed", "Job completed") in events
    created = sorted(m for _, r, m in events if r == "SuccessfulCreate")
    assert created == sorted(f"Created pod: {p}" for p in finished)


def test_work_queue_job_completes_when_one_succeeded_and_the_rest_finished(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    k.apply(job_manifest("queue", parallelism=2), "-n", ns)     # no completions: pods share a work queue
    first, second = [p["metadata"]["name"] for p in wait_for(lambda: len(pods_of(k, ns, "queue")) == 2
                                                                 and pods_of(k, ns, "queue"))]
    set_phase(k, ns, first, "Succeeded")
    wait_for(lambda: job_of(k, ns, "queue")["status"].get("succeeded") == 1)
    time.sleep(0.3)
    # after a success no new pod starts, and the Job waits for the pods still running
    assert len(pods_of(k, ns, "queue")) == 2 and condition(job_of(k, ns, "queue"), "Complete") is None
    set_phase(k, ns, second, "Succeeded")
    k.run("wait", "--for=condition=Complete", "job/queue", "-n", ns, "--timeout=10s")
    assert job_of(k, ns, "queue")["status"]["succeeded"] == 2


def test_backoff_limit_fails_the_job_and_deletes_active_pods(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    k.apply(job_manifest("doomed", completions=4, parallelism=2, backoffLimit=0), "-n", ns)
    pods = wait_for(lambda: len(pods_of(k, ns, "doomed")) == 2 and pods_of(k, ns, "doomed"))
    victim = pods[0]["metadata"]["name"]
    set_phase(k, ns, victim, "Failed", exit_code=1)
    k.run("wait", "--for=condition=Failed", "job/doomed", "-n", ns, "--timeout=10s")
    job = job_of(k, ns, "doomed")
    failed = condition(job, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert condition(job, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert condition(job, "Complete") is None
    # the other, still running pod was deleted and counted as failed too, as Kubernetes does
    assert job["status"]["failed"] == 2 and not job["status"].get("active")
    assert [p["metadata"]["name"] for p in pods_of(k, ns, "doomed")] == [victim]
    events = wait_for(lambda: [e for e in events_of(k, ns, "doomed") if e[1] == "BackoffLimitExceeded"])
    assert events[0][0] == "Warning"


def test_indexed_job_runs_each_index_once(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    k.apply(job_manifest("ix", completions=3, parallelism=3, completionMode="Indexed"), "-n", ns)
    pods = wait_for(lambda: len(pods_of(k, ns, "ix")) == 3 and pods_of(k, ns, "ix"))
    by_index = {}
    for pod in pods:
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == index
        assert re.fullmatch(rf"ix-{index}-[a-z0-9]{{5}}", pod["metadata"]["name"])
        assert pod["spec"]["hostname"] == f"ix-{index}"
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        by_index[int(index)] = pod["metadata"]["name"]
    assert sorted(by_index) == [0, 1, 2]
    set_phase(k, ns, by_index[0], "Succeeded")
    set_phase(k, ns, by_index[2], "Succeeded")
    wait_for(lambda: job_of(k, ns, "ix")["status"].get("completedIndexes") == "0,2")
    assert job_of(k, ns, "ix")["status"]["succeeded"] == 2
    set_phase(k, ns, by_index[1], "Succeeded")
    k.run("wait", "--for=condition=Complete", "job/ix", "-n", ns, "--timeout=10s")
    status = job_of(k, ns, "ix")["status"]
    assert status["completedIndexes"] == "0-2" and status["succeeded"] == 3
    assert len(pods_of(k, ns, "ix")) == 3


def test_deleted_pod_is_counted_once_through_the_tracking_finalizer(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    k.apply(job_manifest("tracked", completions=1, parallelism=1), "-n", ns)
    pod = wait_for(lambda: pods_of(k, ns, "tracked"))[0]
    assert JOB_TRACKING_FINALIZER in pod["metadata"]["finalizers"]
    k.run("delete", "pod", pod["metadata"]["name"], "-n", ns, "--wait=false")
    # the finalizer holds the pod until the controller has counted it, then lets it go
    wait_for(lambda: job_of(k, ns, "tracked")["status"].get("failed") == 1)
    wait_for(lambda: not [p for p in pods_of(k, ns, "tracked") if p["metadata"]["name"] == pod["metadata"]["name"]])
    time.sleep(0.5)
    status = job_of(k, ns, "tracked")["status"]
    assert status["failed"] == 1 and status.get("uncountedTerminatedPods") == {}


def test_active_deadline_fails_the_job(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    k.apply(job_manifest("slow", activeDeadlineSeconds=1, parallelism=2, completions=2), "-n", ns)
    wait_for(lambda: len(pods_of(k, ns, "slow")) == 2)
    k.run("wait", "--for=condition=Failed", "job/slow", "-n", ns, "--timeout=15s")
    job = job_of(k, ns, "slow")
    assert condition(job, "Failed")["reason"] == "DeadlineExceeded"
    assert condition(job, "Failed")["message"] == "Job was active longer than specified deadline"
    assert pods_of(k, ns, "slow") == []
    assert job["status"]["failed"] == 2


def test_suspend_deletes_pods_and_resume_recreates_them(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    k.apply(job_manifest("sleepy", completions=2, parallelism=2, suspend=True), "-n", ns)
    job = wait_for(lambda: condition(j := job_of(k, ns, "sleepy"), "Suspended") and j)
    assert condition(job, "Suspended")["status"] == "True" and condition(job, "Suspended")["reason"] == "JobSuspended"
    assert "startTime" not in job["status"] and pods_of(k, ns, "sleepy") == []
    k.run("patch", "job", "sleepy", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_for(lambda: len(pods_of(k, ns, "sleepy")) == 2)
    job = wait_for(lambda: (j := job_of(k, ns, "sleepy"))["status"].get("active") == 2 and j)
    assert condition(job, "Suspended")["status"] == "False" and condition(job, "Suspended")["reason"] == "JobResumed"
    assert job["status"]["startTime"]
    k.run("patch", "job", "sleepy", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_for(lambda: pods_of(k, ns, "sleepy") == [])
    job = wait_for(lambda: condition(j := job_of(k, ns, "sleepy"), "Suspended")["status"] == "True" and j)
    # pods removed by suspension are not failures
    assert not job["status"].get("failed") and not job["status"].get("active")
    types = [r for _, r, _ in events_of(k, ns, "sleepy")]
    assert "Suspended" in types and "Resumed" in types


def test_restarts_of_on_failure_pods_count_against_backoff_limit(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    k.apply(job_manifest("flaky", restart_policy="OnFailure", backoffLimit=2), "-n", ns)
    pod = wait_for(lambda: pods_of(k, ns, "flaky"))[0]["metadata"]["name"]
    set_phase(k, ns, pod, "Running", restarts=1)
    time.sleep(0.5)
    assert condition(job_of(k, ns, "flaky"), "Failed") is None
    set_phase(k, ns, pod, "Running", restarts=2)
    k.run("wait", "--for=condition=Failed", "job/flaky", "-n", ns, "--timeout=10s")
    assert condition(job_of(k, ns, "flaky"), "Failed")["reason"] == "BackoffLimitExceeded"


def test_pod_failure_policy_ignores_and_fails_by_exit_code(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
                        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}}]}
    k.apply(job_manifest("picky", completions=2, parallelism=2, backoffLimit=0, podFailurePolicy=policy), "-n", ns)
    first, second = [p["metadata"]["name"] for p in wait_for(lambda: len(pods_of(k, ns, "picky")) == 2
                                                                 and pods_of(k, ns, "picky"))]
    set_phase(k, ns, first, "Failed", exit_code=3)     # ignored: not counted, backoffLimit 0 is not exceeded
    wait_for(lambda: JOB_TRACKING_FINALIZER not in
             (k.json("get", "pod", first, "-n", ns)["metadata"].get("finalizers") or []))
    job = job_of(k, ns, "picky")
    assert condition(job, "Failed") is None and not job["status"].get("failed")
    set_phase(k, ns, second, "Failed", exit_code=42)
    k.run("wait", "--for=condition=Failed", "job/picky", "-n", ns, "--timeout=10s")
    failed = condition(job_of(k, ns, "picky"), "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert failed["message"] == (f"Container main for pod {ns}/{second} failed with exit code 42 matching FailJob "
                                 "rule at index 0")


def test_ttl_seconds_after_finished_deletes_the_job(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    k.apply(job_manifest("brief", ttlSecondsAfterFinished=0), "-n", ns)
    pod = wait_for(lambda: pods_of(k, ns, "brief"))[0]["metadata"]["name"]
    set_phase(k, ns, pod, "Succeeded")

    def gone() -> bool:
        return "NotFound" in k.run("get", "job", "brief", "-n", ns, check=False).stderr

    def being_deleted() -> bool:
        got = k.run("get", "job", "brief", "-n", ns, "-o", "json", check=False)
        return got.returncode != 0 or bool(json.loads(got.stdout)["metadata"].get("deletionTimestamp"))
    # deleted in the foreground, as Kubernetes does: the garbage collector removes the pods, then the Job
    wait_for(gone if _gc_available() else being_deleted, timeout=15)


def _gc_available() -> bool:
    try:
        import kates.controllers.garbagecollector  # noqa: F401
    except ImportError:
        return False
    return True


def test_job_runs_to_completion_on_hollow_nodes(cluster_kubectl, cluster_ns):
    k, ns = cluster_kubectl, cluster_ns
    nodes = k.json("get", "nodes")["items"]
    if not nodes:
        pytest.skip("no hollow nodes registered in this cluster yet")
    k.apply(job_manifest("real", node_selector=None, completions=3, parallelism=2), "-n", ns)
    try:
        wait_for(lambda: any(p["spec"].get("nodeName") for p in pods_of(k, ns, "real")), timeout=10)
    except AssertionError:
        pytest.skip("pods are not being scheduled in this cluster yet")
    k.run("wait", "--for=condition=Complete", "job/real", "-n", ns, "--timeout=60s", timeout=90)
    assert job_of(k, ns, "real")["status"]["succeeded"] == 3


# -- in process, with a clock the test controls ----------------------------------------------------------------------

class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class NamespacedInformers(InformerFactory):
    """Informers that see one namespace: an in-process controller must not touch other tests' objects."""

    def __init__(self, client: Client, namespace: str) -> None:
        super().__init__(client)
        self.namespace = namespace

    def informer(self, rt: Any) -> Informer:
        inf = self.informers.get(rt.qualified)
        if inf is None:
            inf = self.informers[rt.qualified] = Informer(self.client, rt, self.namespace)
        return inf


async def _async_wait(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(0.05)


async def test_failed_pods_are_replaced_after_exponential_backoff(server, kubectl):
    ns = "jb-" + uuid.uuid4().hex[:8]
    kubectl.run("create", "namespace", ns)
    client = Client.from_kubeconfig(server.kubeconfig, user_agent="job-test")
    clock = FakeClock(time.time())
    informers = NamespacedInformers(client, ns)
    controller = JobController(client, informers, ControllerOptions(clock=clock))
    informers.start()
    await informers.wait_synced(10)
    runner = asyncio.create_task(controller.run())
    k = kubectl

    async def pods() -> list[dict[str, Any]]:
        return await asyncio.to_thread(pods_of, k, ns, "retry")

    async def active_pods() -> list[dict[str, Any]]:
        return [p for p in await pods() if is_active(p)]

    try:
        await asyncio.to_thread(k.apply, job_manifest("retry", backoffLimit=3), "-n", ns)
        first = (await _async_wait(active_pods))[0]["metadata"]["name"]
        await asyncio.to_thread(set_phase, k, ns, first, "Failed")
        await _async_wait(lambda: asyncio.to_thread(lambda: job_of(k, ns, "retry")["status"].get("failed") == 1))
        # 10 s of back-off after the first failure
        for advance in (5.0, 4.0):
            clock.advance(advance)
            controller.queue.add(f"{ns}/retry")
            await asyncio.sleep(0.4)
            assert await active_pods() == [], f"replacement created {advance} s early"
        clock.advance(1.5)
        controller.queue.add(f"{ns}/retry")
        second = (await _async_wait(active_pods))[0]["metadata"]["name"]
        assert second != first
        # the second failure doubles it to 20 s
        await asyncio.to_thread(set_phase, k, ns, second, "Failed")
        await _async_wait(lambda: asyncio.to_thread(lambda: job_of(k, ns, "retry")["status"].get("failed") == 2))
        clock.advance(15)
        controller.queue.add(f"{ns}/retry")
        await asyncio.sleep(0.4)
        assert await active_pods() == []
        clock.advance(6)
        controller.queue.add(f"{ns}/retry")
        third = (await _async_wait(active_pods))[0]["metadata"]["name"]
        await asyncio.to_thread(set_phase, k, ns, third, "Succeeded")
        job = await _async_wait(lambda: asyncio.to_thread(
            lambda: condition(j := job_of(k, ns, "retry"), "Complete") and j))
        assert job["status"]["succeeded"] == 1 and job["status"]["failed"] == 2
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await informers.stop()
        await client.close()
        kubectl.run("delete", "namespace", ns, "--wait=false", check=False)


# -- pure pieces -------------------------------------------------------------------------------------------------

def test_completed_indexes_round_trip():
    assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert parse_indexes("0-2,4,6-7", 7) == {0, 1, 2, 4, 6}
    assert format_indexes(set()) == "" and parse_indexes("", 3) == set()


def test_backoff_record_doubles_and_resets_on_success():
    def pod(phase: str, finished: str) -> dict[str, Any]:
        return {"metadata": {}, "status": {"phase": phase, "containerStatuses": [
            {"name": "c", "state": {"terminated": {"exitCode": 1, "finishedAt": finished}}}]}}
    t0 = 1_700_000_000.0
    stamp = lambda s: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + s))  # noqa: E731
    rec = next_backoff_record(BackoffRecord(), [], [pod("Failed", stamp(0))], t0)
    assert rec.failures_after_last_success == 1 and rec.remaining(t0 + 4) == pytest.approx(6)
    rec = next_backoff_record(rec, [], [pod("Failed", stamp(10))], t0)
    assert rec.remaining(t0 + 10) == pytest.approx(20)
    for _ in range(10):
        rec = next_backoff_record(rec, [], [pod("Failed", stamp(10))], t0)
    assert rec.remaining(t0 + 10) == pytest.approx(360)          # capped at 6 minutes
    rec = next_backoff_record(rec, [pod("Succeeded", stamp(20))], [pod("Failed", stamp(15))], t0)
    assert rec == BackoffRecord()
