"""The node lifecycle controller: taint and toleration rules as tables, then dead agents against a real server.

The server runs only the node lifecycle controller and the pod GC, with a 2 s node monitor grace period; its hollow
nodes run in a separate `hollow-nodes`-like process renewing Leases every 0.3 s (the grace period must exceed the
renewal period, as in Kubernetes). An agent "dies" through the hollow-only node annotation kates.io/hollow-stopped.
"""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Any, Callable, Iterator

import pytest

from harness import ROOT, Kubectl, Server
from kates.controllers.nodelifecycle import desired_taints, eviction_time, tolerates

GRACE = 2.0
T0 = 1_767_225_600.0      # 2026-01-01T00:00:00Z
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


# -- rules -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("toleration,taint,ok", [
    ({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}, {"key": UNREACHABLE, "effect": "NoExecute"},
     True),
    ({"key": UNREACHABLE, "operator": "Exists"}, {"key": UNREACHABLE, "effect": "NoExecute"}, True),
    ({"operator": "Exists"}, {"key": "anything", "value": "x", "effect": "NoExecute"}, True),
    ({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}, {"key": UNREACHABLE, "effect": "NoExecute"},
     False),
    ({"key": "k", "operator": "Equal", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),
    ({"key": "k", "value": "v"}, {"key": "k", "value": "w", "effect": "NoExecute"}, False),
    ({"key": "other", "operator": "Exists"}, {"key": "k", "effect": "NoExecute"}, False),
])
def test_tolerates(toleration: dict, taint: dict, ok: bool) -> None:
    assert tolerates(toleration, taint) is ok


def tol(key: str, seconds: int | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"key": key, "operator": "Exists", "effect": "NoExecute"}
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return t


def test_eviction_time_counts_toleration_seconds_from_time_added() -> None:
    unreachable = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}
    other = {"key": "dedicated", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:10Z"}
    now = T0 + 1
    assert eviction_time([unreachable], [], now) == now                                  # not tolerated: now
    assert eviction_time([unreachable], [tol(UNREACHABLE)], now) is None                 # tolerated forever
    assert eviction_time([unreachable], [tol(UNREACHABLE, 300)], now) == T0 + 300
    assert eviction_time([unreachable], [tol(UNREACHABLE, 300), tol(UNREACHABLE, 5)], now) == T0 + 5
    assert eviction_time([unreachable], [tol(UNREACHABLE), tol(UNREACHABLE, 5)], now) == T0 + 5
    assert eviction_time([unreachable], [tol(UNREACHABLE, -3)], now) == T0
    assert eviction_time([unreachable, other], [tol(UNREACHABLE, 30), tol("dedicated", 5)], now) == T0 + 15
    assert eviction_time([unreachable, other], [tol(UNREACHABLE, 30)], now) == now       # "dedicated" not tolerated


def node(conditions: dict[str, str], taints: list[dict] | None = None, unschedulable: bool = False) -> dict:
    return {"metadata": {"name": "n"}, "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"conditions": [{"type": t, "status": s} for t, s in conditions.items()]}}


def keys(taints: list[dict]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in taints}


def test_desired_taints_follow_conditions_and_keep_other_taints() -> None:
    healthy = {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False"}
    user = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    assert desired_taints(node(healthy, [user]), "True", T0) == [user]
    unknown = desired_taints(node(healthy, [user]), "Unknown", T0)
    assert keys(unknown) == {("dedicated", "NoSchedule"), (UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}
    assert next(t for t in unknown if t["effect"] == "NoExecute")["timeAdded"] == "2026-01-01T00:00:00Z"
    kept = desired_taints(node(healthy, unknown), "Unknown", T0 + 60)
    assert kept == unknown                                     # timeAdded of an existing taint is kept
    assert keys(desired_taints(node(healthy, unknown), "False", T0)) == {
        ("dedicated", "NoSchedule"), (NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")}
    pressured = dict(healthy, MemoryPressure="True", DiskPressure="True")
    assert keys(desired_taints(node(pressured, unschedulable=True), "True", T0)) == {
        ("node.kubernetes.io/memory-pressure", "NoSchedule"), ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule")}
    assert desired_taints(node(healthy, unknown), "True", T0) == [user]


# -- against a server --------------------------------------------------------------------------------------------------

HOLLOW = ("import sys; from kates.kubelet.hollow import main, HollowConfig; "
          "sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], HollowConfig(lease_period=0.3)))")


class Hollow:
    """A hollow-nodes process with a short lease period."""

    def __init__(self, server: Server, count: int, prefix: str) -> None:
        self.prefix = prefix
        self.log = open(server.data_dir / f"hollow-{prefix}.log", "a")
        self.proc = subprocess.Popen([sys.executable, "-c", HOLLOW, str(server.kubeconfig), str(count), prefix],
                                     cwd=ROOT, stderr=self.log)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def lifecycle_server(tmp_path_factory: pytest.TempPathFactory, name: str, *extra: str) -> Server:
    s = Server(tmp_path_factory.mktemp(name), extra=[
        "--disable-scheduler", "--controllers", "nodelifecycle,podgc", "--node-monitor-grace-period", str(GRACE),
        "--default-toleration-seconds", "300", *extra])
    s.start()
    return s


@pytest.fixture(scope="module")
def nlc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = lifecycle_server(tmp_path_factory, "nodelifecycle")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def nlc_nodes(nlc_server: Server) -> Iterator[str]:
    """Three hollow nodes P0..P2; each test may stop at most one agent and must leave it running."""
    h = Hollow(nlc_server, 3, "nlc-")
    k = Kubectl(nlc_server.kubeconfig)
    wait_for(lambda: len([line for line in k.run("get", "nodes", "--no-headers").stdout.splitlines()
                          if line.startswith("nlc-") and line.split()[1] == "Ready"]) == 3)
    yield h.prefix
    h.stop()


@pytest.fixture(scope="module")
def k(nlc_server: Server) -> Kubectl:
    return Kubectl(nlc_server.kubeconfig)


@pytest.fixture
def ns(k: Kubectl) -> Iterator[str]:
    name = "nlc-" + uuid.uuid4().hex[:8]
    k.run("create", "namespace", name)
    yield name
    k.run("delete", "namespace", name, "--wait=false", check=False)


def wait_for(fn: Callable[[], Any], timeout: float = 20, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value: {value!r}")
        time.sleep(interval)


def pod_yaml(name: str, node: str, tolerations: list[dict] | None = None, grace: int = 30) -> str:
    import json
    spec: dict[str, Any] = {"nodeName": node, "terminationGracePeriodSeconds": grace,
                            "containers": [{"name": "app", "image": "nginx"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def seconds(stamp: str) -> int:
    import calendar
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def ready_condition(obj: dict) -> dict:
    return next(c for c in obj["status"].get("conditions") or [] if c["type"] == "Ready")


def stop_agent(k: Kubectl, node_name: str, stopped: bool = True) -> None:
    k.run("annotate", "node", node_name, "kates.io/hollow-stopped=true" if stopped else "kates.io/hollow-stopped-",
          "--overwrite")


def test_dead_agent_taints_node_unreachable_and_evicts_after_toleration_seconds(k, ns, nlc_nodes) -> None:
    node_name = f"{nlc_nodes}1"
    k.apply(pod_yaml("short", node_name, [tol(UNREACHABLE, 2)]), "-n", ns)
    k.apply(pod_yaml("patient", node_name), "-n", ns)       # the server's default toleration: 300 s
    for name in ("short", "patient"):
        k.run("wait", "--for=condition=Ready", f"pod/{name}", "-n", ns, "--timeout=30s")
    patient = k.json("get", "pod", "patient", "-n", ns)
    assert tol(UNREACHABLE, 300) in patient["spec"]["tolerations"]

    stopped_at = time.monotonic()
    stop_agent(k, node_name)
    try:
        node = wait_for(lambda: (n := k.json("get", "node", node_name)) and ready_condition(n)["status"] == "Unknown"
                        and n, timeout=GRACE + 8)
        assert time.monotonic() - stopped_at < GRACE + 5
        ready = ready_condition(node)
        assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        pressure = next(c for c in node["status"]["conditions"] if c["type"] == "MemoryPressure")
        assert pressure["status"] == "Unknown"
        node = wait_for(lambda: (n := k.json("get", "node", node_name)) and len(n["spec"].get("taints") or []) == 2
                        and n, timeout=5)
        taints = {(t["key"], t["effect"]): t for t in node["spec"]["taints"]}
        assert set(taints) == {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}
        assert taints[(UNREACHABLE, "NoExecute")]["timeAdded"].endswith("Z")
        assert "NotReady" in k.run("get", "node", node_name, "--no-headers").stdout

        # pods on the unreachable node stop being Ready; "short" goes after its 2 s, "patient" stays
        wait_for(lambda: ready_condition(k.json("get", "pod", "patient", "-n", ns))["status"] == "False", timeout=5)
        short = wait_for(lambda: (p := k.json("get", "pod", "short", "-n", ns))["metadata"].get("deletionTimestamp")
                         and p, timeout=10)
        disruption = next(c for c in short["status"]["conditions"] if c["type"] == "DisruptionTarget")
        assert (disruption["status"], disruption["reason"]) == ("True", "DeletionByTaintManager")
        added = taints[(UNREACHABLE, "NoExecute")]["timeAdded"]
        assert seconds(disruption["lastTransitionTime"]) - seconds(added) >= 2    # tolerationSeconds: 2
        assert "deletionTimestamp" not in k.json("get", "pod", "patient", "-n", ns)["metadata"]
        events = k.json("get", "events", "-n", ns, "--field-selector", "involvedObject.name=short")["items"]
        assert any(e["reason"] == "TaintManagerEviction" for e in events)
    finally:
        stop_agent(k, node_name, stopped=False)

    # the agent is back: Ready again, taints gone, the surviving pod Ready again
    node = wait_for(lambda: (n := k.json("get", "node", node_name)) and ready_condition(n)["status"] == "True"
                    and not n["spec"].get("taints") and n, timeout=10)
    assert ready_condition(node)["reason"] == "KubeletReady"
    wait_for(lambda: ready_condition(k.json("get", "pod", "patient", "-n", ns))["status"] == "True", timeout=10)
    events = k.json("get", "events", "-n", "default", "--field-selector", f"involvedObject.name={node_name}")["items"]
    assert {"NodeNotReady", "NodeReady"} <= {e["reason"] for e in events}


def test_a_pod_that_does_not_tolerate_the_taint_is_evicted_at_once(k, ns, nlc_nodes) -> None:
    node_name = f"{nlc_nodes}2"
    k.apply(pod_yaml("intolerant", node_name, tolerations=[]), "-n", ns)
    pod = k.json("get", "pod", "intolerant", "-n", ns)
    # admission adds only the not-ready/unreachable tolerations: nothing tolerates the maintenance taint
    assert {t["key"] for t in pod["spec"]["tolerations"]} == {UNREACHABLE, NOT_READY}
    k.run("wait", "--for=condition=Ready", "pod/intolerant", "-n", ns, "--timeout=30s")
    k.run("taint", "node", node_name, "example.com/maintenance=now:NoExecute")
    try:
        # evicted, and the live agent confirms the deletion: the pod is gone
        wait_for(lambda: "NotFound" in k.run("get", "pod", "intolerant", "-n", ns, check=False).stderr, timeout=10)
        events = k.json("get", "events", "-n", ns, "--field-selector", "involvedObject.name=intolerant")["items"]
        assert any(e["reason"] == "TaintManagerEviction" for e in events)
    finally:
        k.run("taint", "node", node_name, "example.com/maintenance-")


def test_kubelet_reported_not_ready_and_cordon_become_taints(k, nlc_server) -> None:
    """A node without a hollow agent: the test plays the kubelet, renewing its Lease and posting conditions."""
    import asyncio
    from kates.client.rest import Client, resource

    name = "manual-" + uuid.uuid4().hex[:6]

    async def play() -> None:
        client = Client.from_kubeconfig(nlc_server.kubeconfig)
        nodes, leases = resource("nodes"), resource("leases.coordination.k8s.io")
        stamp = lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        try:
            await client.create(nodes, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                                        "status": {"conditions": [{"type": "Ready", "status": "False",
                                                                   "reason": "KubeletNotReady"}]}})
            await client.create(leases, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                         "metadata": {"name": name, "namespace": "kube-node-lease"},
                                         "spec": {"holderIdentity": name, "renewTime": stamp()}}, "kube-node-lease")

            async def taints() -> set[tuple[str, str]]:
                n = await client.get(nodes, name)
                return {(t["key"], t["effect"]) for t in n.get("spec", {}).get("taints") or []}

            async def until(want: set[tuple[str, str]], seconds: float) -> None:
                deadline = time.monotonic() + seconds
                while True:
                    await client.patch(leases, name, {"spec": {"renewTime": stamp()}}, "kube-node-lease")
                    if (have := await taints()) == want:
                        return
                    assert time.monotonic() < deadline, have
                    await asyncio.sleep(0.2)

            await until({(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")}, 10)
            await client.patch(nodes, name, {"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}, patch_type="strategic",
                subresource="status")
            await until(set(), 10)
            await client.patch(nodes, name, {"spec": {"unschedulable": True}})       # kubectl cordon
            await until({("node.kubernetes.io/unschedulable", "NoSchedule")}, 10)
            await client.patch(nodes, name, {"spec": {"unschedulable": None}})
            await until(set(), 10)
            # the Lease stops: after the grace period the node is Unknown
            await asyncio.sleep(GRACE + 1.5)
            ready = next(c for c in (await client.get(nodes, name))["status"]["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
            assert await taints() == {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}
        finally:
            await client.delete(nodes, name)
            await client.close()

    asyncio.run(play())


def test_a_node_that_never_posted_status_becomes_unknown(k, nlc_server) -> None:
    name = "silent-" + uuid.uuid4().hex[:6]
    k.run("create", "-f", "-", input='{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "%s"}}' % name)
    try:
        node = wait_for(lambda: (n := k.json("get", "node", name)) and n.get("status", {}).get("conditions") and n,
                        timeout=GRACE + 8)
        ready = ready_condition(node)
        assert (ready["status"], ready["reason"], ready["message"]) == (
            "Unknown", "NodeStatusNeverUpdated", "Kubelet never posted node status.")
    finally:
        k.run("delete", "node", name)
