"""Hollow nodes and the fake runtime: unit tests of the runtime, then the hollow kubelet against real servers.

Pods are bound by setting spec.nodeName at creation, so no scheduler is involved. The `cluster` fixture's three
hollow nodes (hollow-0..2) are shared with other tests: these tests only add pods in their own namespace. Tests that
stop agents or script runtime failures run their own hollow kubelet in-process against the API-server-only `server`.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
import uuid
from typing import Any, AsyncIterator, Callable

import pytest

from kates.api import errors
from kates.client.rest import Client, resource
from kates.kubelet.hollow import HollowConfig, HollowKubelet
from kates.runtime import fake
from kates.runtime.fake import (ContainerConfig, ContainerEventType, ContainerMetadata, ContainerState, FakeRuntime,
                                PodSandboxConfig, PodSandboxMetadata, RuntimeServiceError)

PODS, NODES, LEASES = resource("pods"), resource("nodes"), resource("leases.coordination.k8s.io")


# -- the fake runtime ----------------------------------------------------------------------------------------------

def sandbox_config(uid: str = "uid-1", **kw: Any) -> PodSandboxConfig:
    return PodSandboxConfig(PodSandboxMetadata("p", "ns", uid), **kw)


def ctr_config(name: str = "c", attempt: int = 0, **annotations: str) -> ContainerConfig:
    return ContainerConfig(ContainerMetadata(name, attempt), "nginx:1.25", annotations=annotations)


async def test_runtime_runs_sandboxes_and_containers_through_cri_states() -> None:
    rt = FakeRuntime("10.200.7.0/24")
    sid = await rt.run_pod_sandbox(sandbox_config())
    sandbox = await rt.pod_sandbox_status(sid)
    assert sandbox.ip == "10.200.7.2" and sandbox.state is fake.SandboxState.READY
    cid = await rt.create_container(sid, ctr_config())
    assert (await rt.container_status(cid)).state is ContainerState.CREATED
    await rt.start_container(cid)
    status = await rt.container_status(cid)
    assert status.state is ContainerState.RUNNING and status.started_at > 0
    assert status.image == "docker.io/library/nginx:1.25"
    assert status.image_ref.startswith("docker.io/library/nginx@sha256:")
    assert [i.repo_tags for i in await rt.list_images()] == [("docker.io/library/nginx:1.25",)]
    await rt.stop_container(cid, 30)
    status = await rt.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (ContainerState.EXITED, 0, "Completed")
    await rt.stop_pod_sandbox(sid)
    assert (await rt.pod_sandbox_status(sid)).state is fake.SandboxState.NOTREADY
    await rt.remove_pod_sandbox(sid)
    assert await rt.list_pod_sandbox() == [] and await rt.list_containers() == []
    assert [name for name, _ in rt.calls][:4] == ["run_pod_sandbox", "pod_sandbox_status", "create_container",
                                                  "pull_image"]


async def test_runtime_container_exits_after_hollow_run_seconds_and_emits_an_event() -> None:
    rt = FakeRuntime("10.200.7.0/24")
    events: list[fake.ContainerEvent] = []
    rt.subscribe(events.append)
    sid = await rt.run_pod_sandbox(sandbox_config())
    cid = await rt.create_container(sid, ctr_config(**{fake.RUN_SECONDS_ANNOTATION: "0.05",
                                                       fake.EXIT_CODE_ANNOTATION: "3"}))
    await rt.start_container(cid)
    assert (await rt.container_status(cid)).state is ContainerState.RUNNING
    await asyncio.sleep(0.15)
    status = await rt.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (ContainerState.EXITED, 3, "Error")
    assert [e.type for e in events] == [ContainerEventType.CREATED, ContainerEventType.STARTED,
                                        ContainerEventType.STOPPED]
    assert events[-1].sandbox.uid == "uid-1"
    other = await rt.create_container(sid, ctr_config("d"))
    await rt.start_container(other)
    rt.exit_container(other, 137)
    assert (await rt.container_status(other)).exit_code == 137


async def test_runtime_failures_are_scripted_and_ips_come_from_the_cidr() -> None:
    rt = FakeRuntime("10.200.9.0/30")   # hosts .1 .2: .1 is the bridge, so one pod fits
    rt.inject_error("run_pod_sandbox", RuntimeServiceError("boom", "FailedCreatePodSandBox"), times=1)
    with pytest.raises(RuntimeServiceError, match="boom"):
        await rt.run_pod_sandbox(sandbox_config())
    first = await rt.run_pod_sandbox(sandbox_config("a"))
    with pytest.raises(RuntimeServiceError, match="no IP addresses available"):
        await rt.run_pod_sandbox(sandbox_config("b"))
    host = await rt.run_pod_sandbox(sandbox_config("h", host_network=True))
    assert (await rt.pod_sandbox_status(host)).ip == ""
    await rt.stop_pod_sandbox(first)
    again = await rt.run_pod_sandbox(sandbox_config("c", annotations={fake.POD_IP_ANNOTATION: "10.200.9.2"}))
    assert (await rt.pod_sandbox_status(again)).ip == "10.200.9.2"
    rt.inject_error("start_container", RuntimeServiceError("nope", "RunContainerError"), times=-1)
    cid = await rt.create_container(again, ctr_config())
    for _ in range(3):
        with pytest.raises(RuntimeServiceError):
            await rt.start_container(cid)
    rt.clear_errors()
    await rt.start_container(cid)
    with pytest.raises(fake.NotFoundError):
        await rt.container_status("missing")


def test_runtime_ids_are_stable_for_a_pod_container_and_attempt() -> None:
    async def ids() -> tuple[str, str]:
        rt = FakeRuntime("10.200.7.0/24", id_prefix="n1")
        sid = await rt.run_pod_sandbox(sandbox_config())
        return sid, await rt.create_container(sid, ctr_config(attempt=2))
    assert asyncio.run(ids()) == asyncio.run(ids())


@pytest.mark.parametrize("image,normalized", [
    ("nginx", "docker.io/library/nginx:latest"), ("nginx:1.25", "docker.io/library/nginx:1.25"),
    ("bitnami/redis", "docker.io/bitnami/redis:latest"), ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64)])
def test_image_names_are_normalized_like_a_runtime_reports_them(image: str, normalized: str) -> None:
    assert fake.normalize_image(image) == normalized


# -- the hollow kubelet in the shared cluster ----------------------------------------------------------------------

def pod_manifest(name: str, node: str, *, annotations: dict[str, str] | None = None, restart: str = "Always",
                 grace: int = 30, **spec: Any) -> str:
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"nodeName": node, "restartPolicy": restart, "terminationGracePeriodSeconds": grace,
                     "containers": [{"name": "app", "image": "nginx:1.25"}], **spec}}
    return json.dumps(body)


def wait_for(fn: Callable[[], Any], timeout: float = 20, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value: {value!r}")
        time.sleep(interval)


def test_hollow_nodes_register_ready_with_lease_and_wide_columns(cluster_kubectl) -> None:
    k = cluster_kubectl
    rows = wait_for(lambda: [line.split() for line in k.run("get", "nodes", "-o", "wide", "--no-headers").stdout
                             .splitlines() if line.startswith("hollow-")] or None)
    by_name = {r[0]: r for r in rows}
    assert {"hollow-0", "hollow-1", "hollow-2"} <= set(by_name)
    header = k.run("get", "nodes", "-o", "wide").stdout.splitlines()[0].split()
    assert header[:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    assert header[-1] == "CONTAINER-RUNTIME"
    for i in range(3):
        row = by_name[f"hollow-{i}"]
        assert row[1].startswith("Ready")
        assert row[4] == "v1.32.0"
        assert row[5] == f"10.255.0.{i + 1}"
        assert row[-1] == "fake://0.1.0"
    node = k.json("get", "node", "hollow-1")
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "hollow-1"
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert node["spec"]["podCIDR"] == "10.200.1.0/24"
    status = node["status"]
    assert status["capacity"]["cpu"] == "32" and status["capacity"]["memory"] == "256Gi"
    assert status["allocatable"]["pods"] == "110" and status["allocatable"]["ephemeral-storage"] == "100Gi"
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {"Ready": ("True", "KubeletReady"), "MemoryPressure": ("False", "KubeletHasSufficientMemory"),
                          "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
                          "PIDPressure": ("False", "KubeletHasSufficientPID")}
    assert status["nodeInfo"]["kubeletVersion"] == "v1.32.0"
    assert status["nodeInfo"]["containerRuntimeVersion"] == "fake://0.1.0"
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    lease = k.json("get", "lease", "hollow-1", "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "hollow-1"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["spec"]["renewTime"].endswith("Z") and len(lease["spec"]["renewTime"]) == 27
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"


def test_bound_pod_runs_and_becomes_ready_with_a_pod_ip(cluster_kubectl, cluster_ns) -> None:
    k, ns = cluster_kubectl, cluster_ns
    k.apply(pod_manifest("web", "hollow-1", initContainers=[{"name": "setup", "image": "busybox"}]), "-n", ns)
    k.run("wait", "--for=condition=Ready", "pod/web", "-n", ns, "--timeout=30s")
    pod = k.json("get", "pod", "web", "-n", ns)
    status = pod["status"]
    assert status["phase"] == "Running"
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network("10.200.1.0/24")
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == "10.255.0.2" and status["hostIPs"] == [{"ip": "10.255.0.2"}]
    assert status["startTime"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                          "ContainersReady": "True", "PodScheduled": "True"}
    (cs,) = status["containerStatuses"]
    assert cs["name"] == "app" and cs["ready"] is True and cs["started"] is True and cs["restartCount"] == 0
    assert cs["image"] == "docker.io/library/nginx:1.25"
    assert cs["imageID"].startswith("docker.io/library/nginx@sha256:")
    assert cs["containerID"].startswith("fake://")
    assert set(cs["state"]) == {"running"} and cs["state"]["running"]["startedAt"].endswith("Z")
    (init,) = status["initContainerStatuses"]
    assert init["state"]["terminated"]["reason"] == "Completed" and init["state"]["terminated"]["exitCode"] == 0
    assert init["ready"] is True
    # kates server --default-toleration-seconds (15 by default, Kubernetes' 300) for the admission's tolerations
    assert {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 15} in pod["spec"]["tolerations"]
    out = k.run("get", "pod", "web", "-n", ns, "-o", "wide", "--no-headers").stdout.split()
    assert out[1:3] == ["1/1", "Running"] and status["podIP"] in out and "hollow-1" in out


def test_never_restart_pods_run_to_succeeded_or_failed(cluster_kubectl, cluster_ns) -> None:
    k, ns = cluster_kubectl, cluster_ns
    k.apply(pod_manifest("job-ok", "hollow-0", restart="Never",
                         annotations={"kates.io/hollow-run-seconds": "0.5"}), "-n", ns)
    k.apply(pod_manifest("job-bad", "hollow-2", restart="Never",
                         annotations={"kates.io/hollow-run-seconds": "0.3", "kates.io/hollow-exit-code": "2"}),
            "-n", ns)
    k.apply(pod_manifest("job-default", "hollow-2", restart="OnFailure"), "-n", ns)
    for name, phase in (("job-ok", "Succeeded"), ("job-bad", "Failed"), ("job-default", "Succeeded")):
        k.run("wait", f"--for=jsonpath={{.status.phase}}={phase}", f"pod/{name}", "-n", ns, "--timeout=30s")
    bad = k.json("get", "pod", "job-bad", "-n", ns)["status"]
    terminated = bad["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (2, "Error")
    ready = next(c for c in bad["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")
    table = {line.split()[0]: line.split()[2] for line in
             k.run("get", "pods", "-n", ns, "--no-headers").stdout.splitlines()}
    assert table == {"job-ok": "Completed", "job-bad": "Error", "job-default": "Completed"}


def test_readiness_waits_for_the_probe_initial_delay(cluster_kubectl, cluster_ns) -> None:
    k, ns = cluster_kubectl, cluster_ns
    k.apply(pod_manifest("slow", "hollow-0", containers=[{
        "name": "app", "image": "nginx", "readinessProbe": {"initialDelaySeconds": 3, "httpGet": {"port": 80}}}]),
        "-n", ns)
    k.run("wait", "--for=condition=Ready", "pod/slow", "-n", ns, "--timeout=30s")
    status = k.json("get", "pod", "slow", "-n", ns)["status"]
    started = status["containerStatuses"][0]["state"]["running"]["startedAt"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert seconds(ready["lastTransitionTime"]) - seconds(started) >= 3


def seconds(stamp: str) -> int:
    import calendar
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def test_crashing_container_of_an_always_pod_is_restarted(cluster_kubectl, cluster_ns) -> None:
    k, ns = cluster_kubectl, cluster_ns
    k.apply(pod_manifest("crash", "hollow-1", annotations={"kates.io/hollow-run-seconds": "0.2",
                                                           "kates.io/hollow-exit-code": "1"}), "-n", ns)
    cs = wait_for(lambda: (s := (k.json("get", "pod", "crash", "-n", ns)["status"].get("containerStatuses")
                                 or [{}])[0]).get("restartCount", 0) >= 2 and s, timeout=30)
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert k.json("get", "pod", "crash", "-n", ns)["status"]["phase"] == "Running"


def test_kubectl_delete_returns_once_the_kubelet_confirms(cluster_kubectl, cluster_ns) -> None:
    k, ns = cluster_kubectl, cluster_ns
    k.apply(pod_manifest("quick", "hollow-2"), "-n", ns)
    k.apply(pod_manifest("stubborn", "hollow-2", grace=3,
                         annotations={"kates.io/hollow-ignore-sigterm": "true"}), "-n", ns)
    for name in ("quick", "stubborn"):
        k.run("wait", "--for=condition=Ready", f"pod/{name}", "-n", ns, "--timeout=30s")
    started = time.monotonic()
    k.run("delete", "pod", "quick", "-n", ns, "--timeout=20s")     # waits for the pod to be gone
    assert time.monotonic() - started < 10                         # not the 30 s grace period
    assert k.run("get", "pod", "quick", "-n", ns, check=False).returncode != 0
    started = time.monotonic()
    k.run("delete", "pod", "stubborn", "-n", ns, "--timeout=20s")
    assert time.monotonic() - started > 1.5                        # killed only when its 3 s grace ran out
    assert k.run("get", "pod", "stubborn", "-n", ns, check=False).returncode != 0


# -- an in-process hollow kubelet against the API server alone -----------------------------------------------------

@contextlib.asynccontextmanager
async def hollow(server: Any, count: int = 2, **config: Any) -> AsyncIterator[tuple[HollowKubelet, Client, str]]:
    prefix = f"h{uuid.uuid4().hex[:6]}-"
    client = Client.from_kubeconfig(server.kubeconfig)
    kubelet = HollowKubelet(client, HollowConfig(count=count, prefix=prefix, **config))
    task = asyncio.create_task(kubelet.run())
    try:
        await until(lambda: all(n.uid for n in kubelet.nodes.values()) and kubelet.pod_informer.has_synced)
        yield kubelet, client, prefix
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await kubelet.stop()
        for name in kubelet.nodes:
            with contextlib.suppress(errors.NotFound):
                await client.delete(NODES, name)
            with contextlib.suppress(errors.NotFound):
                await client.delete(LEASES, name, "kube-node-lease")
        await client.close()


async def until(fn: Callable[[], Any], timeout: float = 15, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value: {value!r}")
        await asyncio.sleep(interval)


async def make_pod(client: Client, ns: str, name: str, node: str, **spec: Any) -> dict[str, Any]:
    return await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                      "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx"}],
                                               **spec}}, ns)


async def test_scripted_runtime_failure_shows_then_the_pod_recovers(server, ns) -> None:
    async with hollow(server) as (kubelet, client, prefix):
        node = f"{prefix}0"
        kubelet.nodes[node].runtime.inject_error(
            "create_container", RuntimeServiceError("image has no entrypoint", "CreateContainerError"), times=2)
        await make_pod(client, ns, "flaky", node)

        async def waiting_reason() -> str | None:
            status = (await client.get(PODS, "flaky", ns))["status"]
            cs = (status.get("containerStatuses") or [{}])[0]
            return (cs.get("state") or {}).get("waiting", {}).get("reason")
        assert await until(waiting_reason) == "CreateContainerError"
        pod = await until(lambda: _phase(client, ns, "flaky", "Running"))
        assert pod["status"]["containerStatuses"][0]["ready"] is True
        events = await client.list(resource("events"), ns, field_selector="involvedObject.name=flaky")
        assert any(e["reason"] == "Failed" and "no entrypoint" in e["message"] for e in events["items"])


async def _phase(client: Client, ns: str, name: str, phase: str) -> dict[str, Any] | None:
    pod = await client.get(PODS, name, ns)
    return pod if pod["status"].get("phase") == phase else None


async def test_leases_renew_until_the_agent_is_stopped_by_annotation(server, ns) -> None:
    async with hollow(server, lease_period=0.3) as (kubelet, client, prefix):
        node = f"{prefix}1"

        async def renew_time() -> str:
            return (await client.get(LEASES, node, "kube-node-lease"))["spec"]["renewTime"]
        first = await renew_time()
        await until(lambda: _changed(renew_time, first))
        await client.patch(NODES, node, {"metadata": {"annotations": {"kates.io/hollow-stopped": "true"}}})
        await until(lambda: kubelet.nodes[node].stopped)
        await asyncio.sleep(0.4)
        frozen = await renew_time()
        await make_pod(client, ns, "orphaned", node)
        await asyncio.sleep(1.0)
        assert await renew_time() == frozen                              # the "dead" agent renews nothing...
        assert (await client.get(PODS, "orphaned", ns))["status"]["phase"] == "Pending"   # ...and runs nothing
        await client.patch(NODES, node, {"metadata": {"annotations": {"kates.io/hollow-stopped": None}}})
        await until(lambda: _changed(renew_time, frozen))
        await until(lambda: _phase(client, ns, "orphaned", "Running"))


async def _changed(get: Callable[[], Any], old: Any) -> bool:
    return await get() != old


async def test_node_status_is_reposted_when_someone_else_changes_it(server) -> None:
    async with hollow(server, count=1) as (kubelet, client, prefix):
        node = f"{prefix}0"
        await client.patch(NODES, node, {"status": {"conditions": [
            {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
             "message": "Kubelet stopped posting node status."}]}}, patch_type="strategic", subresource="status")

        async def ready() -> tuple[str, str]:
            cond = next(c for c in (await client.get(NODES, node))["status"]["conditions"] if c["type"] == "Ready")
            return cond["status"], cond["reason"]
        assert await until(lambda: _equals(ready, ("True", "KubeletReady")))


async def _equals(get: Callable[[], Any], want: Any) -> bool:
    return await get() == want


async def test_a_deleted_node_is_not_registered_again(server) -> None:
    async with hollow(server, count=1, lease_period=0.2) as (kubelet, client, prefix):
        node = f"{prefix}0"
        await client.delete(NODES, node)
        await until(lambda: kubelet.nodes[node].gone)
        await client.delete(LEASES, node, "kube-node-lease")
        await asyncio.sleep(0.8)
        with pytest.raises(errors.NotFound):
            await client.get(NODES, node)
        with pytest.raises(errors.NotFound):
            await client.get(LEASES, node, "kube-node-lease")


async def test_a_running_pod_costs_one_status_write(server, ns) -> None:
    async with hollow(server, count=1) as (kubelet, client, prefix):
        created = await make_pod(client, ns, "calm", f"{prefix}0")
        events = []

        async def watch() -> None:
            async for ev, pod in client.watch(PODS, ns, resource_version=created["metadata"]["resourceVersion"],
                                              field_selector="metadata.name=calm", timeout_seconds=5):
                if ev != "BOOKMARK":
                    events.append((ev, pod["status"].get("phase")))
        watcher = asyncio.create_task(watch())
        await until(lambda: _phase(client, ns, "calm", "Running"))
        await asyncio.sleep(1.5)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        assert events == [("MODIFIED", "Running")]
