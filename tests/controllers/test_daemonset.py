"""The DaemonSet controller against a real API server, driven through the real kubectl.

A `kates server` runs with only the daemonset controller and no scheduler; the tests register their own Node
objects (labelled per test, and selected by the DaemonSet's nodeSelector, so tests never see each other's nodes)
and `FakeKubelet` binds each pod to the node its affinity pins and marks it Ready. One test runs on the shared
`cluster` fixture with its hollow nodes.
"""
from __future__ import annotations

import asyncio
import importlib.util
import uuid
from typing import Any, Iterator

import pytest

from harness import Kubectl, Server
from kates.api import errors
from kates.client.rest import Client, resource
from kates.controllers.daemonset import node_should_run_daemon_pod, with_daemon_tolerations, with_node_affinity
from test_statefulset import FakeKubelet, _pinned_node, kubectl, wait_for

PODS = resource("pods")
NODES = resource("nodes")
DAEMON_SETS = resource("daemonsets.apps")
REVISIONS = resource("controllerrevisions.apps")
NAMESPACES = resource("namespaces")


@pytest.fixture(scope="module")
def ds_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("daemonset"), extra=["--disable-scheduler", "--controllers", "daemonset"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def k(ds_server: Server) -> Kubectl:
    return Kubectl(ds_server.kubeconfig)


@pytest.fixture
async def client(ds_server: Server) -> Any:
    c = Client.from_kubeconfig(ds_server.kubeconfig, user_agent="daemonset-test")
    yield c
    await c.close()


@pytest.fixture
async def namespace(client: Client) -> str:
    name = "ds-" + uuid.uuid4().hex[:8]
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


class Nodes:
    """This test's nodes: all labelled `group=<namespace>`, removed afterwards."""

    def __init__(self, client: Client, group: str) -> None:
        self.client, self.group = client, group
        self.names: list[str] = []

    async def add(self, suffix: str, *, taints: list[dict[str, str]] | None = None,
                  labels: dict[str, str] | None = None) -> str:
        name = f"{self.group}-{suffix}"
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"group": self.group, "kubernetes.io/hostname": name,
                                                      **(labels or {})}},
                "spec": {"taints": taints} if taints else {},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        await self.client.create(NODES, node)
        self.names.append(name)
        return name

    async def remove(self, name: str) -> None:
        await self.client.delete(NODES, name)
        self.names.remove(name)

    async def cleanup(self) -> None:
        for name in list(self.names):
            try:
                await self.client.delete(NODES, name)
            except errors.NotFound:
                pass


@pytest.fixture
async def nodes(client: Client, namespace: str) -> Any:
    n = Nodes(client, namespace)
    yield n
    await n.cleanup()


def manifest(ns: str, *, image: str = "busybox:1", strategy: str = "", tolerations: str = "") -> str:
    return f"""
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
{strategy}  template:
    metadata: {{labels: {{app: agent}}}}
    spec:
      nodeSelector: {{group: {ns}}}
{tolerations}      containers: [{{name: agent, image: "{image}", command: ["sleep", "3600"]}}]
"""


async def ds_status(client: Client, ns: str) -> dict[str, Any]:
    return (await client.get(DAEMON_SETS, "agent", ns)).get("status") or {}


async def ready_on(client: Client, ns: str, n: int) -> bool:
    status = await ds_status(client, ns)
    return status.get("numberReady") == n and status.get("desiredNumberScheduled") == n \
        and status.get("currentNumberScheduled") == n


async def live_pods(client: Client, ns: str) -> list[dict[str, Any]]:
    return [p for p in (await client.list(PODS, ns))["items"] if not p["metadata"].get("deletionTimestamp")]


async def pods_by_node(client: Client, ns: str) -> dict[str, list[str]]:
    by_node: dict[str, list[str]] = {}
    for pod in await live_pods(client, ns):
        by_node.setdefault(_pinned_node(pod) or "", []).append(pod["metadata"]["name"])
    return by_node


# -- placement -------------------------------------------------------------------------------------------------

async def test_one_pod_per_node_pinned_by_node_affinity(k: Kubectl, client: Client, namespace: str,
                                                         nodes: Nodes) -> None:
    names = [await nodes.add(s) for s in ("a", "b", "c")]
    async with FakeKubelet(client, namespace, bind=True):
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace))
        await wait_for("a ready pod on each node", lambda: ready_on(client, namespace, 3))
    pods = await live_pods(client, namespace)
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(names)
    revisions = (await client.list(REVISIONS, namespace))["items"]
    assert len(revisions) == 1 and revisions[0]["revision"] == 1
    hash_ = revisions[0]["metadata"]["labels"]["controller-revision-hash"]
    assert revisions[0]["metadata"]["name"] == f"agent-{hash_}"
    for pod in pods:
        assert pod["metadata"]["generateName"] == "agent-"
        assert pod["metadata"]["labels"] == {"app": "agent", "controller-revision-hash": hash_}
        assert pod["spec"]["affinity"] == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                    "values": [pod["spec"]["nodeName"]]}]}]}}}
        tolerated = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"] if t.get("operator") == "Exists"}
        assert {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
                ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                ("node.kubernetes.io/unschedulable", "NoSchedule")} <= tolerated
        ref = pod["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("DaemonSet", "agent", True)
    status = await ds_status(client, namespace)
    assert {key: status.get(key, 0) for key in ("desiredNumberScheduled", "currentNumberScheduled", "numberReady",
                                                 "numberAvailable", "updatedNumberScheduled", "numberMisscheduled",
                                                 "numberUnavailable", "observedGeneration")} == {
        "desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 3, "numberAvailable": 3,
        "updatedNumberScheduled": 3, "numberMisscheduled": 0, "numberUnavailable": 0, "observedGeneration": 1}
    out = await kubectl(k, "rollout", "status", "ds/agent", "-n", namespace, "--timeout=10s")
    assert "successfully rolled out" in out


async def test_nodes_joining_and_leaving(k: Kubectl, client: Client, namespace: str, nodes: Nodes) -> None:
    first = await nodes.add("a")
    async with FakeKubelet(client, namespace, bind=True):
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace))
        await wait_for("a pod on the first node", lambda: ready_on(client, namespace, 1))
        second = await nodes.add("b")
        await wait_for("a pod on the node that joined", lambda: ready_on(client, namespace, 2))
        tainted = await nodes.add("t", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
        other = await nodes.add("x", labels={"group": "someone-else"})
        await nodes.add("c")
        await wait_for("a pod on the third eligible node", lambda: ready_on(client, namespace, 3))
        by_node = await pods_by_node(client, namespace)
        assert tainted not in by_node and other not in by_node
        assert all(len(pods) == 1 for pods in by_node.values())

        await nodes.remove(second)
        await wait_for("the removed node's pod gone", lambda: _without(client, namespace, second))
        await wait_for("status follows", lambda: ready_on(client, namespace, 2))
        assert first in await pods_by_node(client, namespace)


async def _without(client: Client, ns: str, node: str) -> bool:
    return node not in await pods_by_node(client, ns)


async def test_tolerated_taints_and_no_execute(k: Kubectl, client: Client, namespace: str, nodes: Nodes) -> None:
    toleration = "      tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]\n"
    plain = await nodes.add("a")
    dedicated = await nodes.add("d", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    async with FakeKubelet(client, namespace, bind=True):
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, tolerations=toleration))
        await wait_for("pods on both nodes", lambda: ready_on(client, namespace, 2))
        # an untolerated NoSchedule taint keeps a running pod; NoExecute evicts it
        await kubectl(k, "taint", "node", plain, "maintenance=soon:NoSchedule")
        await wait_for("node dropped from desired", lambda: _desired(client, namespace, 1))
        assert plain in await pods_by_node(client, namespace)
        await kubectl(k, "taint", "node", plain, "maintenance=now:NoExecute")
        await wait_for("NoExecute evicts", lambda: _without(client, namespace, plain))
        assert dedicated in await pods_by_node(client, namespace)
        await kubectl(k, "taint", "node", plain, "maintenance-")
        await wait_for("back on the untainted node", lambda: ready_on(client, namespace, 2))


async def _desired(client: Client, ns: str, n: int) -> bool:
    return (await ds_status(client, ns)).get("desiredNumberScheduled") == n


async def test_node_that_stops_matching_loses_its_pod(k: Kubectl, client: Client, namespace: str,
                                                      nodes: Nodes) -> None:
    a, b = await nodes.add("a"), await nodes.add("b")
    async with FakeKubelet(client, namespace, bind=True):
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace))
        await wait_for("2 ready", lambda: ready_on(client, namespace, 2))
        await kubectl(k, "label", "node", b, "group=elsewhere", "--overwrite")
        await wait_for("b's pod deleted", lambda: _without(client, namespace, b))
        await wait_for("1 ready", lambda: ready_on(client, namespace, 1))
        assert list(await pods_by_node(client, namespace)) == [a]


# -- updates -----------------------------------------------------------------------------------------------------

def replay_unavailability(kubelet: FakeKubelet, node_of: dict[str, str], nodes: list[str],
                          start: int) -> tuple[int, int]:
    """From the watched events after index `start`: the most nodes at once without a ready pod, and the most pods
    at once on one node."""
    ready: dict[str, set[str]] = {n: set() for n in nodes}
    present: dict[str, set[str]] = {n: set() for n in nodes}
    worst_unavailable = worst_crowding = 0
    for index, (kind, name, _) in enumerate(kubelet.events):
        node = node_of.get(name)
        if node not in ready:
            continue
        if kind == "ADDED":
            present[node].add(name)
        elif kind == "READY":
            ready[node].add(name)
        else:   # TERMINATING or DELETED
            ready[node].discard(name)
            if kind == "DELETED":
                present[node].discard(name)
        if index >= start:
            worst_unavailable = max(worst_unavailable, sum(1 for n in nodes if not ready[n]))
            worst_crowding = max(worst_crowding, max(len(p) for p in present.values()))
    return worst_unavailable, worst_crowding


async def _rolled(client: Client, ns: str, n: int) -> bool:
    ds = await client.get(DAEMON_SETS, "agent", ns)
    status = ds.get("status") or {}
    return status.get("observedGeneration") == ds["metadata"]["generation"] and \
        status.get("updatedNumberScheduled") == n and status.get("numberAvailable") == n and \
        len(await live_pods(client, ns)) == n


async def test_template_change_rolls_pods_one_node_at_a_time(k: Kubectl, client: Client, namespace: str,
                                                             nodes: Nodes) -> None:
    names = [await nodes.add(s) for s in ("a", "b", "c")]
    async with FakeKubelet(client, namespace, bind=True, delay=0.2) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace))
        await wait_for("3 ready", lambda: ready_on(client, namespace, 3))
        old_hash = (await live_pods(client, namespace))[0]["metadata"]["labels"]["controller-revision-hash"]
        start = len(kubelet.events)
        await kubectl(k, "set", "image", "ds/agent", "agent=busybox:2", "-n", namespace)
        await wait_for("rolled out", lambda: _rolled(client, namespace, 3))
        out = await kubectl(k, "rollout", "status", "ds/agent", "-n", namespace, "--timeout=10s")
        assert "successfully rolled out" in out
        node_of = dict(kubelet.node_of)
        unavailable, crowding = replay_unavailability(kubelet, node_of, names, start)
        assert unavailable == 1, "maxUnavailable 1: one node at a time"
        assert crowding == 1
        pods = await live_pods(client, namespace)
        new_hash = pods[0]["metadata"]["labels"]["controller-revision-hash"]
        assert new_hash != old_hash
        assert all(p["spec"]["containers"][0]["image"] == "busybox:2" and
                   p["metadata"]["labels"]["controller-revision-hash"] == new_hash for p in pods)

        history_out = await kubectl(k, "rollout", "history", "ds/agent", "-n", namespace)
        rows = [line.split()[0] for line in history_out.splitlines()[1:] if line.strip()]
        assert rows == ["REVISION", "1", "2"]
        await kubectl(k, "rollout", "undo", "ds/agent", "-n", namespace)
        await wait_for("rolled back", lambda: _rolled(client, namespace, 3))
        assert {p["metadata"]["labels"]["controller-revision-hash"] for p in await live_pods(client, namespace)} == \
            {old_hash}
        revisions = {r["metadata"]["labels"]["controller-revision-hash"]: r["revision"]
                     for r in (await client.list(REVISIONS, namespace))["items"]}
        assert revisions == {old_hash: 3, new_hash: 2}


async def test_max_surge_starts_new_pods_before_stopping_old_ones(k: Kubectl, client: Client, namespace: str,
                                                                  nodes: Nodes) -> None:
    names = [await nodes.add(s) for s in ("a", "b")]
    strategy = "  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n"
    async with FakeKubelet(client, namespace, bind=True, delay=0.2) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, strategy=strategy))
        await wait_for("2 ready", lambda: ready_on(client, namespace, 2))
        start = len(kubelet.events)
        await kubectl(k, "set", "image", "ds/agent", "agent=busybox:2", "-n", namespace)
        await wait_for("rolled out", lambda: _rolled(client, namespace, 2))
        unavailable, crowding = replay_unavailability(kubelet, dict(kubelet.node_of), names, start)
        assert unavailable == 0, "maxUnavailable 0: every node keeps a ready pod"
        assert crowding == 2, "the new pod starts next to the old one"


async def test_on_delete_waits_for_the_user(k: Kubectl, client: Client, namespace: str, nodes: Nodes) -> None:
    await nodes.add("a")
    await nodes.add("b")
    async with FakeKubelet(client, namespace, bind=True):
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, strategy="  updateStrategy: {type: OnDelete}\n"))
        await wait_for("2 ready", lambda: ready_on(client, namespace, 2))
        await kubectl(k, "set", "image", "ds/agent", "agent=busybox:2", "-n", namespace)
        await wait_for("observed", lambda: _observed(client, namespace))
        await asyncio.sleep(0.5)
        status = await ds_status(client, namespace)
        assert status["updatedNumberScheduled"] == 0 and status["numberReady"] == 2
        victim = (await live_pods(client, namespace))[0]["metadata"]["name"]
        await kubectl(k, "delete", "pod", victim, "-n", namespace)

        async def one_updated() -> bool:
            return (await ds_status(client, namespace)).get("updatedNumberScheduled") == 1 \
                and await ready_on(client, namespace, 2)
        await wait_for("the replacement at the new template", one_updated)


async def _observed(client: Client, ns: str) -> bool:
    ds = await client.get(DAEMON_SETS, "agent", ns)
    return (ds.get("status") or {}).get("observedGeneration") == ds["metadata"]["generation"]


async def test_failed_pod_is_replaced(k: Kubectl, client: Client, namespace: str, nodes: Nodes) -> None:
    node = await nodes.add("a")
    async with FakeKubelet(client, namespace, bind=True) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace))
        await wait_for("1 ready", lambda: ready_on(client, namespace, 1))
        first = (await live_pods(client, namespace))[0]["metadata"]["name"]
        await kubelet.set_ready(first, ready=False, phase="Failed")
        await wait_for("a replacement", lambda: _replaced(client, namespace, first))
        await wait_for("1 ready again", lambda: ready_on(client, namespace, 1))
        assert list(await pods_by_node(client, namespace)) == [node]


async def _replaced(client: Client, ns: str, old: str) -> bool:
    names = [p["metadata"]["name"] for p in await live_pods(client, ns)]
    return bool(names) and old not in names


# -- the shared cluster --------------------------------------------------------------------------------------------

def test_daemonset_on_the_cluster_nodes(cluster_kubectl: Kubectl, cluster_ns: str) -> None:
    """The acceptance scenario on the shared cluster: a pod pinned to every node, then a Ready pod on each.

    Other tests may add, taint or stop nodes meanwhile, so "every node" is re-read on each poll and means the
    nodes the DaemonSet should run on (and, for readiness, those whose kubelet reports Ready)."""
    daemon_set = {"metadata": {"name": "agent", "namespace": cluster_ns},
                  "spec": {"template": {"spec": {"containers": []}}}}

    def eligible(ready_only: bool = False) -> list[str]:
        names = []
        for node in cluster_kubectl.json("get", "nodes")["items"]:
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for c in (node.get("status") or {}).get("conditions") or [])
            if node_should_run_daemon_pod(node, daemon_set)[0] and (ready or not ready_only):
                names.append(node["metadata"]["name"])
        return sorted(names)
    try:
        asyncio.run(wait_for("the cluster's nodes", eligible, timeout=20, interval=0.5))
    except AssertionError:
        pytest.skip("the cluster has no nodes (hollow nodes not available)")
    cluster_kubectl.apply(f"""
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent, namespace: {cluster_ns}}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec:
      containers: [{{name: agent, image: busybox, command: ["sleep", "3600"]}}]
""")

    def pods() -> list[dict[str, Any]]:
        items = cluster_kubectl.json("get", "pods", "-n", cluster_ns, "-l", "app=agent")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def pinned() -> bool:
        return sorted(_pinned_node(p) or "" for p in pods()) == eligible()
    asyncio.run(wait_for("one pod pinned to each node", pinned, timeout=30, interval=0.3))
    if importlib.util.find_spec("kates.scheduler.main") is None:
        pytest.skip("no scheduler yet to bind the pinned pods")

    def all_ready() -> bool:
        ready = {p["spec"].get("nodeName") for p in pods() if any(
            c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])}
        return set(eligible(ready_only=True)) <= ready
    asyncio.run(wait_for("a Ready pod on every Ready node", all_ready, timeout=60, interval=0.5))


# -- pure helpers ----------------------------------------------------------------------------------------------

def _node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def _ds(spec: dict[str, Any]) -> dict:
    return {"metadata": {"name": "d", "namespace": "n"}, "spec": {"template": {"spec": spec}}}


def test_node_eligibility() -> None:
    plain = _ds({"containers": []})
    assert node_should_run_daemon_pod(_node("n"), plain) == (True, True)
    unschedulable = _node("n", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])
    assert node_should_run_daemon_pod(unschedulable, plain) == (True, True)
    not_ready = _node("n", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}])
    assert node_should_run_daemon_pod(not_ready, plain) == (True, True)
    no_schedule = _node("n", taints=[{"key": "x", "value": "y", "effect": "NoSchedule"}])
    assert node_should_run_daemon_pod(no_schedule, plain) == (False, True)
    no_execute = _node("n", taints=[{"key": "x", "effect": "NoExecute"}])
    assert node_should_run_daemon_pod(no_execute, plain) == (False, False)
    assert node_should_run_daemon_pod(_node("n", taints=[{"key": "x", "effect": "PreferNoSchedule"}]), plain) == \
        (True, True)
    tolerant = _ds({"tolerations": [{"operator": "Exists"}]})
    assert node_should_run_daemon_pod(no_execute, tolerant) == (True, True)
    selective = _ds({"nodeSelector": {"disk": "ssd"}})
    assert node_should_run_daemon_pod(_node("n", {"disk": "hdd"}), selective) == (False, False)
    affinity = _ds({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "cpu", "operator": "Gt", "values": ["4"]}]},
                              {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["m"]}]}]}}}})
    assert node_should_run_daemon_pod(_node("n", {"cpu": "8"}), affinity)[0]
    assert not node_should_run_daemon_pod(_node("n", {"cpu": "2"}), affinity)[0]
    assert node_should_run_daemon_pod(_node("m", {"cpu": "2"}), affinity)[0]


def test_node_affinity_pinning_keeps_other_requirements() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
         "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["old"]}]}]}},
        "podAntiAffinity": {"x": 1}}
    pinned = with_node_affinity(affinity, "n1")
    term = pinned["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term == {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
                    "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    assert pinned["podAntiAffinity"] == {"x": 1}
    assert affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchFields"][0]["values"] == ["old"], "the template is not mutated"
    spec = with_daemon_tolerations({"hostNetwork": True, "tolerations": [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]})
    keys = [(t["key"], t["effect"]) for t in spec["tolerations"]]
    assert keys.count(("node.kubernetes.io/not-ready", "NoExecute")) == 1
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in keys
