"""The scheduler end to end: a real `kates server` (no controllers, no kubelets) starts `kates scheduler` as its
child; the tests register Node objects and drive pods through the real kubectl.

Each test registers its own nodes, labelled with a group id, and its pods select that group, so tests sharing the
server do not see each other's capacity (failure messages still count every node of the cluster).
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable, Iterator

import pytest

from harness import Kubectl, Server

GROUP = "kates.test/group"


@pytest.fixture(scope="module")
def sched_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("sched"), store="memory://",
               extra=["--disable-controllers", "--hollow-nodes", "0"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kctl(sched_server: Server) -> Kubectl:
    return Kubectl(sched_server.kubeconfig)


@pytest.fixture
def ns(kctl: Kubectl) -> Iterator[str]:
    name = "s-" + uuid.uuid4().hex[:8]
    kctl.run("create", "namespace", name)
    yield name
    kctl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def group() -> str:
    return uuid.uuid4().hex[:8]


def node(name: str, group: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
         labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, GROUP: group, **(labels or {})}},
            "spec": {"taints": taints} if taints else {},
            "status": {"capacity": resources, "allocatable": resources,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status"}]}}


def pod(name: str, group: str, cpu: str = "100m", memory: str = "64Mi", **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {})
    base: dict[str, Any] = {
        "nodeSelector": {GROUP: group},
        "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": base}


def create(kctl: Kubectl, objs: list[dict[str, Any]], ns: str | None = None) -> None:
    args = ["create", "-f", "-"] + (["-n", ns] if ns else [])
    kctl.run(*args, input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


def wait_for(check: Callable[[], Any], timeout: float = 20, interval: float = 0.3, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or check}; last: {last!r}")


def pods_by_name(kctl: Kubectl, ns: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in kctl.json("get", "pods", "-n", ns)["items"]}


def placement(kctl: Kubectl, ns: str, expect: int) -> dict[str, str]:
    """pod → node once `expect` pods are bound."""
    def bound() -> dict[str, str] | None:
        out = {n: p["spec"].get("nodeName", "") for n, p in pods_by_name(kctl, ns).items()}
        return out if sum(1 for v in out.values() if v) >= expect else None
    return wait_for(bound, what=f"{expect} pods bound in {ns}")


def events(kctl: Kubectl, ns: str, pod_name: str, reason: str) -> list[dict[str, Any]]:
    items = kctl.json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={pod_name}")["items"]
    return [e for e in items if e.get("reason") == reason]


# -- the tests --------------------------------------------------------------------------------------------------

def test_pods_are_bound_to_feasible_nodes(kctl: Kubectl, ns: str, group: str) -> None:
    create(kctl, [node(f"small-{group}", group, cpu="1"), node(f"big-{group}-a", group, cpu="8"),
                  node(f"big-{group}-b", group, cpu="8")])
    create(kctl, [pod(f"web-{i}", group, cpu="2") for i in range(4)], ns)
    where = placement(kctl, ns, 4)
    assert all(n.startswith(f"big-{group}") for n in where.values()), where
    assert len(set(where.values())) == 2, f"LeastAllocated spreads over both big nodes: {where}"
    scheduled = wait_for(lambda: events(kctl, ns, "web-0", "Scheduled"), what="Scheduled event")
    assert scheduled[0]["message"] == f"Successfully assigned {ns}/web-0 to {where['web-0']}"
    assert scheduled[0]["source"]["component"] == "default-scheduler"
    cond = next(c for c in pods_by_name(kctl, ns)["web-0"]["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["status"] == "True"


def test_node_selector_and_required_node_affinity(kctl: Kubectl, ns: str, group: str) -> None:
    create(kctl, [node(f"ssd-{group}", group, labels={"disk": "ssd", "zone": "a"}),
                  node(f"hdd-{group}", group, labels={"disk": "hdd", "zone": "b"}),
                  node(f"hdd2-{group}", group, labels={"disk": "hdd", "zone": "c"})])
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["c"]}]}]}}}
    create(kctl, [pod("on-ssd", group, nodeSelector={GROUP: group, "disk": "ssd"}),
                  pod("in-zone-c", group, affinity=affinity)], ns)
    where = placement(kctl, ns, 2)
    assert where == {"on-ssd": f"ssd-{group}", "in-zone-c": f"hdd2-{group}"}


def test_taints_without_tolerations_are_avoided(kctl: Kubectl, ns: str, group: str) -> None:
    taint = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    create(kctl, [node(f"tainted-{group}", group, taints=taint), node(f"plain-{group}", group)])
    create(kctl, [pod(f"plain-{i}", group) for i in range(3)], ns)
    tolerating = pod("tolerant", group, nodeSelector={GROUP: group, "kubernetes.io/hostname": f"tainted-{group}"},
                     tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
    create(kctl, [tolerating], ns)
    where = placement(kctl, ns, 4)
    assert {where[f"plain-{i}"] for i in range(3)} == {f"plain-{group}"}
    assert where["tolerant"] == f"tainted-{group}"


def test_pod_anti_affinity_spreads_replicas(kctl: Kubectl, ns: str, group: str) -> None:
    create(kctl, [node(f"n{i}-{group}", group) for i in range(3)])
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    create(kctl, [pod(f"db-{i}", group, labels={"app": "db"}, affinity=anti) for i in range(4)], ns)
    where = placement(kctl, ns, 3)
    bound = {p: n for p, n in where.items() if n}
    assert len(bound) == 3 and len(set(bound.values())) == 3, where
    pending = next(p for p, n in where.items() if not n)
    failed = wait_for(lambda: events(kctl, ns, pending, "FailedScheduling"), what="FailedScheduling")
    assert "3 node(s) didn't match pod anti-affinity rules" in failed[0]["message"]


def test_pod_affinity_co_locates(kctl: Kubectl, ns: str, group: str) -> None:
    create(kctl, [node(f"n{i}-{group}", group) for i in range(3)])
    create(kctl, [pod("cache", group, labels={"app": "cache"})], ns)
    cache_node = placement(kctl, ns, 1)["cache"]
    near = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    create(kctl, [pod(f"web-{i}", group, affinity=near) for i in range(2)], ns)
    where = placement(kctl, ns, 3)
    assert where["web-0"] == where["web-1"] == cache_node


def test_topology_spread_balances_zones(kctl: Kubectl, ns: str, group: str) -> None:
    create(kctl, [node(f"a{i}-{group}", group, labels={"topology.kubernetes.io/zone": "a"}) for i in range(3)]
           + [node(f"b0-{group}", group, labels={"topology.kubernetes.io/zone": "b"})])
    spread = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "spread"}}}]
    create(kctl, [pod(f"s-{i}", group, labels={"app": "spread"}, topologySpreadConstraints=spread)
                  for i in range(6)], ns)
    where = placement(kctl, ns, 6)
    zone_b = sum(1 for n in where.values() if n == f"b0-{group}")
    assert zone_b == 3, f"maxSkew 1 over two zones puts 3 pods on the single zone-b node: {where}"


def test_unschedulable_pod_reports_why(kctl: Kubectl, ns: str, group: str) -> None:
    create(kctl, [node(f"n{i}-{group}", group, cpu="2") for i in range(2)]
           + [node(f"t-{group}", group, cpu="64", taints=[{"key": "team", "value": "x", "effect": "NoSchedule"}])])
    create(kctl, [pod("huge", group, cpu="16")], ns)
    failed = wait_for(lambda: events(kctl, ns, "huge", "FailedScheduling"), what="FailedScheduling event")
    message = failed[0]["message"]
    assert message.startswith("0/"), message
    assert "2 Insufficient cpu" in message
    assert "1 node(s) had untolerated taint {team: x}" in message
    assert "preemption: 0/" in message and "2 No preemption victims found for incoming pod" in message
    p = pods_by_name(kctl, ns)["huge"]
    assert not p["spec"].get("nodeName")
    cond = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    assert cond["message"] == message
    describe = kctl.run("describe", "pod", "huge", "-n", ns).stdout
    assert "FailedScheduling" in describe and "Insufficient cpu" in describe


def test_priority_class_preempts_lower_priority_pod(kctl: Kubectl, ns: str, group: str) -> None:
    create(kctl, [node(f"full-{group}", group, cpu="2")])
    create(kctl, [pod("low", group, cpu="1500m")], ns)
    placement(kctl, ns, 1)
    pc = f"high-{group}"
    kctl.apply(json.dumps({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                           "metadata": {"name": pc}, "value": 1000000}))
    try:
        create(kctl, [pod("high", group, cpu="1500m", priorityClassName=pc)], ns)

        def high_bound() -> bool:
            pods = pods_by_name(kctl, ns)
            return "low" not in pods and bool(pods.get("high", {}).get("spec", {}).get("nodeName"))
        wait_for(high_bound, timeout=30, what="high-priority pod bound after preempting the low one")
        high = pods_by_name(kctl, ns)["high"]
        assert high["spec"]["nodeName"] == f"full-{group}"
        assert high["status"].get("nominatedNodeName") == f"full-{group}"
        assert wait_for(lambda: events(kctl, ns, "low", "Preempted"), what="Preempted event")
    finally:
        kctl.run("delete", "priorityclass", pc, check=False)


def test_scheduling_gates_hold_a_pod(kctl: Kubectl, ns: str, group: str) -> None:
    create(kctl, [node(f"n-{group}", group)])
    create(kctl, [pod("gated", group, schedulingGates=[{"name": "example.com/wait"}])], ns)
    wait_for(lambda: "SchedulingGated" in kctl.run("get", "pod", "gated", "-n", ns).stdout,
             what="kubectl get showing SchedulingGated")
    time.sleep(1)
    assert not pods_by_name(kctl, ns)["gated"]["spec"].get("nodeName")
    assert not events(kctl, ns, "gated", "FailedScheduling")
    kctl.run("patch", "pod", "gated", "-n", ns, "--type=json", "-p",
             json.dumps([{"op": "remove", "path": "/spec/schedulingGates"}]))
    assert placement(kctl, ns, 1)["gated"] == f"n-{group}"


def test_pod_waits_for_a_node_then_schedules(kctl: Kubectl, ns: str, group: str) -> None:
    create(kctl, [pod("early", group)], ns)
    wait_for(lambda: events(kctl, ns, "early", "FailedScheduling"), what="FailedScheduling before any node")
    create(kctl, [node(f"late-{group}", group)])
    assert placement(kctl, ns, 1)["early"] == f"late-{group}", "a new node moves the pod back to the active queue"
