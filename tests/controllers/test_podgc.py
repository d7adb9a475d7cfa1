"""The pod GC against a real server: finished pods over the threshold, orphans, and pods stuck on dead nodes.

The server runs the node lifecycle controller and the pod GC (threshold 3 terminated pods, 2 s grace period), with
hollow nodes renewing Leases every 0.3 s; an agent "dies" through the node annotation kates.io/hollow-stopped.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterator

import pytest

from harness import Kubectl, Server
from test_nodelifecycle import GRACE, Hollow, lifecycle_server, ready_condition, stop_agent, wait_for

THRESHOLD = 3


@pytest.fixture(scope="module")
def gc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = lifecycle_server(tmp_path_factory, "podgc", "--terminated-pod-gc-threshold", str(THRESHOLD))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def k(gc_server: Server) -> Kubectl:
    return Kubectl(gc_server.kubeconfig)


@pytest.fixture(scope="module")
def gc_nodes(gc_server: Server, k: Kubectl) -> Iterator[str]:
    h = Hollow(gc_server, 2, "gc-")
    wait_for(lambda: len([line for line in k.run("get", "nodes", "--no-headers").stdout.splitlines()
                          if line.startswith("gc-") and line.split()[1] == "Ready"]) == 2)
    yield h.prefix
    h.stop()


@pytest.fixture
def ns(k: Kubectl) -> Iterator[str]:
    name = "gc-" + uuid.uuid4().hex[:8]
    k.run("create", "namespace", name)
    yield name
    k.run("delete", "namespace", name, "--wait=false", check=False)


def pod(name: str, node: str, *, annotations: dict[str, str] | None = None, finalizers: list[str] | None = None,
        **spec: Any) -> str:
    meta: dict[str, Any] = {"name": name, "annotations": annotations or {}}
    if finalizers:
        meta["finalizers"] = finalizers
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                       "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx"}], **spec}})


def names(k: Kubectl, ns: str) -> set[str]:
    return {p["metadata"]["name"] for p in k.json("get", "pods", "-n", ns)["items"]}


def gone(k: Kubectl, ns: str, name: str) -> bool:
    return "NotFound" in k.run("get", "pod", name, "-n", ns, check=False).stderr


def test_terminated_pods_over_the_threshold_are_collected_oldest_first(k, ns, gc_nodes) -> None:
    for i in range(5):     # same creation second or later: ties are broken by name, so job-0 is the oldest
        k.apply(pod(f"job-{i}", f"{gc_nodes}{i % 2}", restartPolicy="Never",
                    annotations={"kates.io/hollow-run-seconds": "0.1"}), "-n", ns)
    wait_for(lambda: names(k, ns) == {"job-2", "job-3", "job-4"}, timeout=20)
    phases = {p["status"]["phase"] for p in k.json("get", "pods", "-n", ns)["items"]}
    assert phases == {"Succeeded"}
    time.sleep(2.5)        # a later pass deletes nothing more
    assert names(k, ns) == {"job-2", "job-3", "job-4"}


def test_pods_bound_to_a_deleted_node_are_failed_and_force_deleted(k, ns) -> None:
    ghost = "ghost-" + uuid.uuid4().hex[:6]
    k.run("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": ghost}}))
    k.apply(pod("plain", ghost), "-n", ns)
    k.apply(pod("held", ghost, finalizers=["example.com/hold"]), "-n", ns)
    time.sleep(0.5)
    assert names(k, ns) == {"plain", "held"}
    k.run("delete", "node", ghost)
    wait_for(lambda: gone(k, ns, "plain"), timeout=15)
    held = wait_for(lambda: (p := k.json("get", "pod", "held", "-n", ns))["metadata"].get("deletionTimestamp") and p)
    assert held["metadata"]["deletionGracePeriodSeconds"] == 0
    assert held["status"]["phase"] == "Failed"
    disruption = next(c for c in held["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (disruption["status"], disruption["reason"], disruption["message"]) == (
        "True", "DeletionByPodGC", "PodGC: node no longer exists")
    k.run("patch", "pod", "held", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_for(lambda: gone(k, ns, "held"))


def test_evicted_pods_on_an_unreachable_node_are_force_deleted_after_their_grace_period(k, ns, gc_nodes) -> None:
    node = f"{gc_nodes}1"
    tolerate_1s = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": 1}]
    k.apply(pod("stuck", node, tolerations=tolerate_1s, terminationGracePeriodSeconds=1), "-n", ns)
    k.run("wait", "--for=condition=Ready", "pod/stuck", "-n", ns, "--timeout=30s")
    stop_agent(k, node)
    try:
        terminating = wait_for(lambda: (p := k.json("get", "pod", "stuck", "-n", ns))["metadata"]
                               .get("deletionTimestamp") and p, timeout=GRACE + 10)
        assert terminating["metadata"]["deletionGracePeriodSeconds"] == 1
        wait_for(lambda: gone(k, ns, "stuck"), timeout=1 + GRACE + 10)
        # the agent is still dead: nobody but the pod GC removed the pod
        assert ready_condition(k.json("get", "node", node))["status"] == "Unknown"
    finally:
        stop_agent(k, node, stopped=False)
    wait_for(lambda: ready_condition(k.json("get", "node", node))["status"] == "True")


def test_out_of_service_taint_releases_terminating_pods_at_once(k, ns, gc_nodes) -> None:
    node = f"{gc_nodes}0"
    k.apply(pod("sticky", node, tolerations=[{"operator": "Exists"}], terminationGracePeriodSeconds=600), "-n", ns)
    k.run("wait", "--for=condition=Ready", "pod/sticky", "-n", ns, "--timeout=30s")
    stop_agent(k, node)
    try:
        wait_for(lambda: ready_condition(k.json("get", "node", node))["status"] == "Unknown", timeout=GRACE + 10)
        k.run("delete", "pod", "sticky", "-n", ns, "--wait=false")
        time.sleep(1)
        assert k.json("get", "pod", "sticky", "-n", ns)["metadata"]["deletionTimestamp"]   # nobody confirms it
        k.run("taint", "node", node, "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute")
        wait_for(lambda: gone(k, ns, "sticky"), timeout=10)
    finally:
        k.run("taint", "node", node, "node.kubernetes.io/out-of-service-", check=False)
        stop_agent(k, node, stopped=False)
    wait_for(lambda: ready_condition(k.json("get", "node", node))["status"] == "True")


def test_replica_set_heals_from_a_dead_node_and_its_old_pods_disappear(tmp_path_factory) -> None:
    """The whole story with the scheduler and the ReplicaSet controller: default tolerations of 2 s."""
    pytest.importorskip("kates.scheduler.main")
    pytest.importorskip("kates.controllers.replicaset")
    s = Server(tmp_path_factory.mktemp("selfheal"), extra=[
        "--controllers", "nodelifecycle,podgc,replicaset", "--node-monitor-grace-period", str(GRACE),
        "--default-toleration-seconds", "2"])
    s.start()
    h = Hollow(s, 2, "heal-")
    k = Kubectl(s.kubeconfig)
    try:
        wait_for(lambda: len([line for line in k.run("get", "nodes", "--no-headers").stdout.splitlines()
                              if line.split()[1] == "Ready"]) == 2)
        k.apply(json.dumps({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
                            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                                     "template": {"metadata": {"labels": {"app": "web"}},
                                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                                      {"name": "app", "image": "nginx"}]}}}}))

        def running() -> dict[str, str]:
            return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in
                    k.json("get", "pods", "-l", "app=web")["items"]
                    if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")}
        before = wait_for(lambda: len(r := running()) == 4 and r, timeout=30)
        victim = "heal-0" if "heal-0" in before.values() else "heal-1"
        doomed = {name for name, node in before.items() if node == victim}
        stop_agent(k, victim)
        # replacements run on the other node, and the pods of the dead node disappear altogether
        after = wait_for(lambda: len(r := running()) == 4 and not (set(r) & doomed) and r, timeout=30)
        assert set(after.values()) == {"heal-1" if victim == "heal-0" else "heal-0"}
        wait_for(lambda: not ({p["metadata"]["name"] for p in k.json("get", "pods", "-l", "app=web")["items"]}
                             & doomed), timeout=20)
    finally:
        h.stop()
        s.stop()
