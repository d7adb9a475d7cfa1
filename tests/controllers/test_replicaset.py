"""The ReplicaSet and ReplicationController controllers against a real cluster, through kubectl and the clients.

Pods here use a scheduler name nobody serves, so neither the scheduler nor the hollow nodes touch them: the tests
play the kubelet themselves (`FakeKubelet` marks pods Running and Ready through the status subresource), which
keeps readiness under their control. The pure parts (status, deletion order, expectations) are tested directly.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import pytest

from kates.api import errors
from kates.client.rest import Client, resource
from kates.controllers.replicaset import (ControllerExpectations, calculate_status, pods_to_delete, rfc3339,
                                         slow_start_batch, until_next_available)

PODS = resource("pods")
RS = resource("replicasets.apps")
RC = resource("replicationcontrollers")
NOBODY = "kates-test-no-scheduler"   # a schedulerName no scheduler serves: pods stay with the test


# -- helpers shared with test_deployment.py ------------------------------------------------------------------------

async def eventually(probe: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """The first truthy result of `probe`, polling until `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not reached in {timeout}s; last value: {last!r}")


async def kubectl_async(kubectl: Any, *args: str, check: bool = True, **kw: Any) -> Any:
    """The real kubectl, off the event loop (so a FakeKubelet keeps running meanwhile).

    A write that loses a race with a controller's status write is tried again: the kates API server still answers
    such a PATCH (which pins no resourceVersion) with 409 instead of retrying it as Kubernetes does."""
    for _ in range(3):
        proc = await asyncio.to_thread(kubectl.run, *args, check=False, **kw)
        if proc.returncode == 0 or "the object has been modified" not in proc.stderr:
            break
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def pod_template(labels: dict[str, str], image: str = "registry.k8s.io/pause:3.9") -> dict[str, Any]:
    return {"metadata": {"labels": labels},
            "spec": {"schedulerName": NOBODY, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "app", "image": image}]}}


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


class FakeKubelet:
    """Marks the namespace's pods Running and Ready (optionally after `delay`), as a kubelet would.

    `accept(pod)` chooses which pods become ready; `ready_pods()` and `unready(name)` give direct control."""

    def __init__(self, client: Client, namespace: str, delay: float = 0.0,
                 accept: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.delay = delay
        self.accept = accept or (lambda pod: True)
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._done: set[str] = set()

    async def __aenter__(self) -> "FakeKubelet":
        self._task = asyncio.create_task(self._run(), name=f"fake-kubelet-{self.namespace}")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for task in [self._task, *self._pending]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._task, *self._pending] if t is not None), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                listing = await self.client.list(PODS, self.namespace)
                for pod in listing["items"]:
                    self._consider(pod)
                async for kind, pod in self.client.watch(PODS, self.namespace,
                                                         resource_version=listing["metadata"]["resourceVersion"]):
                    if kind in ("ADDED", "MODIFIED"):
                        self._consider(pod)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.1)

    def _consider(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") or meta["uid"] in self._done or is_ready(pod):
            return
        if (pod.get("spec") or {}).get("schedulerName") != NOBODY or not self.accept(pod):
            return
        self._done.add(meta["uid"])
        task = asyncio.create_task(self._ready_later(meta["name"]), name=f"ready-{meta['name']}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _ready_later(self, name: str) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        await set_ready(self.client, self.namespace, name, True)

    def reconsider(self, pod: dict[str, Any]) -> None:
        """Give a pod that was refused by `accept` another chance."""
        self._done.discard(pod["metadata"]["uid"])
        self._consider(pod)


async def set_ready(client: Client, namespace: str, name: str, ready: bool) -> None:
    flag = "True" if ready else "False"
    now = rfc3339(time.time())
    status = {"phase": "Running",
              "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                             {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                             {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                             {"type": "Ready", "status": flag, "lastTransitionTime": now}]}
    try:
        await client.patch(PODS, name, {"status": status}, namespace, subresource="status")
    except errors.NotFound:
        pass


async def pods_of(client: Client, namespace: str, owner_uid: str | None = None) -> list[dict[str, Any]]:
    """Live (not terminating) pods of the namespace, optionally only those controlled by `owner_uid`."""
    items = (await client.list(PODS, namespace))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp") and
            (owner_uid is None or any(r.get("controller") and r["uid"] == owner_uid
                                      for r in p["metadata"].get("ownerReferences") or []))]


# -- fixtures ------------------------------------------------------------------------------------------------------

@pytest.fixture
async def client(cluster: Any) -> Any:
    c = Client.from_kubeconfig(cluster.kubeconfig, user_agent="kates-test-replicaset")
    yield c
    await c.close()


def replica_set(name: str, replicas: int, labels: dict[str, str], min_ready: int = 0) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready, "selector": {"matchLabels": labels},
                     "template": pod_template(labels)}}


# -- end to end ----------------------------------------------------------------------------------------------------

async def test_replica_set_creates_pods_with_owner_references_and_labels(client, cluster_kubectl, cluster_ns):
    import json
    await kubectl_async(cluster_kubectl, "apply", "-n", cluster_ns, "-f", "-",
                        input=json.dumps(replica_set("web", 3, {"app": "web"})))
    rs = await client.get(RS, "web", cluster_ns)
    pods = await eventually(lambda: _exactly(client, cluster_ns, rs["metadata"]["uid"], 3))
    for pod in pods:
        meta = pod["metadata"]
        assert meta["name"].startswith("web-") and meta["generateName"] == "web-"
        assert meta["labels"] == {"app": "web"}
        assert meta["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                            "uid": rs["metadata"]["uid"], "controller": True,
                                            "blockOwnerDeletion": True}]
        assert pod["spec"]["containers"][0]["image"] == "registry.k8s.io/pause:3.9"

    async def status_counted() -> dict[str, Any] | None:
        status = (await client.get(RS, "web", cluster_ns)).get("status") or {}
        return status if status.get("replicas") == 3 and status.get("observedGeneration") == 1 else None
    status = await eventually(status_counted)
    assert status["fullyLabeledReplicas"] == 3 and "readyReplicas" not in status
    shown = (await kubectl_async(cluster_kubectl, "get", "rs", "web", "-n", cluster_ns, "--no-headers")).stdout.split()
    assert shown[:4] == ["web", "3", "3", "0"]

    async def created_events() -> list[str]:
        events = (await client.list(resource("events"), cluster_ns))["items"]
        found = [e["message"] for e in events if e["reason"] == "SuccessfulCreate"]
        return found if len(found) == 3 else []
    assert all(m.startswith("Created pod: web-") for m in await eventually(created_events))


async def _exactly(client: Client, namespace: str, owner_uid: str, n: int) -> list[dict[str, Any]] | None:
    pods = await pods_of(client, namespace, owner_uid)
    return pods if len(pods) == n else None


async def test_deleted_pod_is_replaced(client, cluster_kubectl, cluster_ns):
    made = await client.create(RS, replica_set("web", 2, {"app": "web"}), cluster_ns)
    uid = made["metadata"]["uid"]
    first = await eventually(lambda: _exactly(client, cluster_ns, uid, 2))
    victim = first[0]["metadata"]["name"]
    await kubectl_async(cluster_kubectl, "delete", "pod", victim, "-n", cluster_ns, "--wait=false")

    async def replaced() -> list[dict[str, Any]] | None:
        pods = await pods_of(client, cluster_ns, uid)
        names = {p["metadata"]["name"] for p in pods}
        return pods if len(pods) == 2 and victim not in names else None
    pods = await eventually(replaced)
    assert first[1]["metadata"]["name"] in {p["metadata"]["name"] for p in pods}
    await asyncio.sleep(0.5)   # and no more than that: expectations keep a burst from creating extras
    assert len(await pods_of(client, cluster_ns, uid)) == 2


async def test_scale_down_removes_surplus_keeping_ready_pods(client, cluster_kubectl, cluster_ns):
    made = await client.create(RS, replica_set("web", 4, {"app": "web"}), cluster_ns)
    uid = made["metadata"]["uid"]
    pods = await eventually(lambda: _exactly(client, cluster_ns, uid, 4))
    keep = sorted(p["metadata"]["name"] for p in pods[:2])
    for name in keep:
        await set_ready(client, cluster_ns, name, True)

    async def two_ready() -> bool:
        return ((await client.get(RS, "web", cluster_ns)).get("status") or {}).get("readyReplicas") == 2
    await eventually(two_ready)
    await kubectl_async(cluster_kubectl, "scale", "rs", "web", "--replicas=2", "-n", cluster_ns)
    left = await eventually(lambda: _exactly(client, cluster_ns, uid, 2))
    assert sorted(p["metadata"]["name"] for p in left) == keep

    async def status_shrunk() -> bool:
        status = (await client.get(RS, "web", cluster_ns)).get("status") or {}
        return status.get("replicas") == 2 and status.get("observedGeneration") == 2
    await eventually(status_shrunk)


async def test_status_follows_pod_readiness_and_min_ready_seconds(client, cluster_ns):
    made = await client.create(RS, replica_set("web", 2, {"app": "web"}, min_ready=2), cluster_ns)
    uid = made["metadata"]["uid"]
    pods = await eventually(lambda: _exactly(client, cluster_ns, uid, 2))

    async def status_when(**want: int) -> dict[str, Any] | None:
        status = (await client.get(RS, "web", cluster_ns)).get("status") or {}
        return status if all(status.get(k, 0) == v for k, v in want.items()) else None

    became_ready = time.monotonic()
    for pod in pods:
        await set_ready(client, cluster_ns, pod["metadata"]["name"], True)
    status = await eventually(lambda: status_when(replicas=2, readyReplicas=2))
    assert status.get("availableReplicas", 0) == 0        # ready, but not yet for minReadySeconds
    await eventually(lambda: status_when(readyReplicas=2, availableReplicas=2), timeout=10)
    assert time.monotonic() - became_ready >= 1.0          # (ready times have one-second resolution)
    await set_ready(client, cluster_ns, pods[0]["metadata"]["name"], False)
    await eventually(lambda: status_when(replicas=2, readyReplicas=1, availableReplicas=1))


async def test_adopts_matching_orphans_and_releases_pods_that_stop_matching(client, cluster_ns):
    orphan = {"metadata": {"name": "orphan", "labels": {"app": "web"}}, "spec": pod_template({})["spec"]}
    await client.create(PODS, orphan, cluster_ns)
    made = await client.create(RS, replica_set("web", 2, {"app": "web"}), cluster_ns)
    uid = made["metadata"]["uid"]
    pods = await eventually(lambda: _exactly(client, cluster_ns, uid, 2))
    assert "orphan" in {p["metadata"]["name"] for p in pods}     # adopted, so only one pod was created
    adopted = await client.get(PODS, "orphan", cluster_ns)
    assert adopted["metadata"]["ownerReferences"][0]["uid"] == uid

    await client.patch(PODS, "orphan", {"metadata": {"labels": {"app": "other"}}}, cluster_ns)

    async def released() -> bool:
        pod = await client.get(PODS, "orphan", cluster_ns)
        return not pod["metadata"].get("ownerReferences")
    await eventually(released)
    pods = await eventually(lambda: _exactly(client, cluster_ns, uid, 2))
    assert "orphan" not in {p["metadata"]["name"] for p in pods}   # released, and replaced


async def test_failed_creations_show_as_replica_failure_until_they_succeed(client, cluster_kubectl, cluster_ns):
    await kubectl_async(cluster_kubectl, "create", "quota", "tight", "--hard=pods=1", "-n", cluster_ns)
    await client.create(RS, replica_set("web", 3, {"app": "web"}), cluster_ns)

    async def failing() -> dict[str, Any] | None:
        status = (await client.get(RS, "web", cluster_ns)).get("status") or {}
        conditions = [c for c in status.get("conditions") or [] if c["type"] == "ReplicaFailure"]
        return conditions[0] if conditions and status.get("replicas") == 1 else None
    cond = await eventually(failing)
    assert (cond["status"], cond["reason"]) == ("True", "FailedCreate") and "exceeded quota" in cond["message"]
    await kubectl_async(cluster_kubectl, "delete", "quota", "tight", "-n", cluster_ns)
    # a spec change syncs at once (the failing key is otherwise retried with exponential back-off)
    await kubectl_async(cluster_kubectl, "scale", "rs", "web", "--replicas=2", "-n", cluster_ns)

    async def recovered() -> bool:
        status = (await client.get(RS, "web", cluster_ns)).get("status") or {}
        return status.get("replicas") == 2 and not status.get("conditions")
    await eventually(recovered)


async def test_replication_controller_runs_pods_with_the_python_client(cluster, client, cluster_ns):
    from kubernetes import client as k8s, config
    api = k8s.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    try:
        body = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "legacy"},
                "spec": {"replicas": 2, "selector": {"app": "legacy"}, "template": pod_template({"app": "legacy"})}}
        made = await asyncio.to_thread(api.create_namespaced_replication_controller, cluster_ns, body)
        uid = made.metadata.uid
        pods = await eventually(lambda: _exactly(client, cluster_ns, uid, 2))
        refs = pods[0]["metadata"]["ownerReferences"]
        assert refs == [{"apiVersion": "v1", "kind": "ReplicationController", "name": "legacy", "uid": uid,
                         "controller": True, "blockOwnerDeletion": True}]
        for pod in pods:
            await set_ready(client, cluster_ns, pod["metadata"]["name"], True)

        async def rc_ready() -> Any:
            rc = await asyncio.to_thread(api.read_namespaced_replication_controller, "legacy", cluster_ns)
            return rc if rc.status.ready_replicas == 2 and rc.status.available_replicas == 2 else None
        rc = await eventually(rc_ready)
        assert rc.status.replicas == 2 and rc.status.observed_generation == 1
        await asyncio.to_thread(api.patch_namespaced_replication_controller_scale, "legacy", cluster_ns,
                                {"spec": {"replicas": 0}})

        async def none_left() -> bool:
            return not await pods_of(client, cluster_ns, uid)
        await eventually(none_left)
    finally:
        api.api_client.close()


# -- pure parts ----------------------------------------------------------------------------------------------------

def _pod(name: str, *, node: str = "", phase: str = "Pending", ready: bool = False,
         created: str = "2024-01-01T00:00:00Z", ready_since: str = "2024-01-01T00:00:00Z",
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_since}]
    return {"metadata": {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": created,
                         "labels": labels or {"app": "web"}},
            "spec": {"nodeName": node}, "status": {"phase": phase, "conditions": conditions}}


def test_deletion_order_prefers_unscheduled_pending_unready_newer():
    pods = [
        _pod("ready-old", node="n1", phase="Running", ready=True, created="2024-01-01T00:00:00Z"),
        _pod("ready-new", node="n2", phase="Running", ready=True, created="2024-01-02T00:00:00Z",
             ready_since="2024-01-02T00:00:00Z"),
        _pod("running-unready", node="n1", phase="Running"),
        _pod("pending", node="n2", phase="Pending"),
        _pod("unscheduled", phase="Pending"),
    ]
    assert [p["metadata"]["name"] for p in pods_to_delete(pods, pods, 4)] == \
        ["unscheduled", "pending", "running-unready", "ready-new"]
    assert len(pods_to_delete(pods, pods, 9)) == 5


def test_deletion_order_prefers_doubled_up_nodes():
    pods = [_pod("a", node="n1", phase="Running", ready=True), _pod("b", node="n1", phase="Running", ready=True),
            _pod("c", node="n2", phase="Running", ready=True)]
    assert pods_to_delete(pods, pods, 1)[0]["metadata"]["name"] in ("a", "b")


def test_calculate_status_counts_and_failure_condition():
    rs = {"metadata": {"name": "web", "generation": 2},
          "spec": {"replicas": 4, "minReadySeconds": 10,
                   "template": {"metadata": {"labels": {"app": "web", "v": "1"}}}},
          "status": {"replicas": 1, "observedGeneration": 1}}
    now = time.time()
    pods = [_pod("a", ready=True, ready_since=rfc3339(now - 60), labels={"app": "web", "v": "1"}),
            _pod("b", ready=True, ready_since=rfc3339(now - 1), labels={"app": "web", "v": "1"}),
            _pod("c", labels={"app": "web"})]
    status = calculate_status(rs, pods, errors.Forbidden("exceeded quota"), now)
    assert status["replicas"] == 3 and status["fullyLabeledReplicas"] == 2
    assert status["readyReplicas"] == 2 and status["availableReplicas"] == 1
    [cond] = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == \
        ("ReplicaFailure", "True", "FailedCreate", "exceeded quota")
    cleared = calculate_status({**rs, "status": status}, pods, None, now)
    assert "conditions" not in cleared


def test_requeue_when_the_next_pod_becomes_available():
    now = 1_700_000_000.0
    pods = [_pod("a", ready=True, ready_since=rfc3339(now - 1)), _pod("b", ready=True, ready_since=rfc3339(now - 3)),
            _pod("c", ready=False)]
    assert 1.9 < until_next_available(pods, 5, now) < 2.2    # b, ready 3 s ago, is the next one
    assert until_next_available(pods, 0, now) is None
    assert until_next_available(pods[1:], 2, now) is None     # b is available already, c is not ready


async def test_slow_start_batches_double_and_stop_at_the_first_failing_batch():
    calls = 0

    async def create() -> None:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise errors.Forbidden("quota")
    count, err = await slow_start_batch(10, 1, create)
    assert (count, isinstance(err, errors.Forbidden)) == (5, True)
    assert calls == 7     # batches of 1, 2, 4: the third one failed halfway, nothing more was tried
    count, err = await slow_start_batch(7, 1, lambda: asyncio.sleep(0))
    assert (count, err) == (7, None)


def test_expectations_wait_for_observed_creations_and_deletions():
    now = [1000.0]
    exp = ControllerExpectations(lambda: now[0], ttl=300)
    assert exp.satisfied("ns/web")
    exp.expect_creations("ns/web", 2)
    exp.creation_observed("ns/web")
    assert not exp.satisfied("ns/web")
    exp.creation_observed("ns/web")
    assert exp.satisfied("ns/web")
    exp.expect_deletions("ns/web", ["ns/a", "ns/b"])
    exp.deletion_observed("ns/web", "ns/other")
    exp.deletion_observed("ns/web", "ns/a")
    assert not exp.satisfied("ns/web")
    now[0] += 301
    assert exp.satisfied("ns/web")     # lost events do not wedge the controller
