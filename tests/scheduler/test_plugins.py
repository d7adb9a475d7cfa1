"""Table-driven tests of the scheduler plugins: pods and nodes as data in, a Status (or a score) out."""
from __future__ import annotations

from typing import Any

import pytest

from kates.scheduler.cache import Snapshot
from kates.scheduler.framework import Code, CycleState, Profile, Status
from kates.scheduler.nodeinfo import NodeInfo, PodInfo, pod_requests
from kates.scheduler.plugins.balanced_allocation import NodeResourcesBalancedAllocation
from kates.scheduler.plugins.image_locality import calculate_priority
from kates.scheduler.plugins.node_affinity import NodeAffinity
from kates.scheduler.plugins.node_name import NodeName
from kates.scheduler.plugins.node_ports import NodePorts
from kates.scheduler.plugins.node_resources_fit import NodeResourcesFit
from kates.scheduler.plugins.node_unschedulable import NodeUnschedulable
from kates.scheduler.plugins.scheduling_gates import SchedulingGates
from kates.scheduler.plugins.taint_toleration import TaintToleration
from kates.scheduler.runtime import Framework

from sched_builders import make_node, make_pod, place

GI = 1024 ** 3


def run_filter(plugin: Any, pod: PodInfo, node: NodeInfo) -> Status | None:
    state = CycleState()
    if hasattr(plugin, "pre_filter"):
        st = plugin.pre_filter(state, pod)
        if st is not None and st.code == Code.SKIP:
            return None
    status = plugin.filter(state, pod, node)
    if hasattr(plugin, "filter_nodes"):       # the batch form must agree with the per-node one
        passed, rejected = plugin.filter_nodes(state, pod, [node])
        assert (passed == [node]) == (status is None)
        assert [st for _, st in rejected] == ([status] if status is not None else [])
    return status


def verdict(status: Status | None) -> tuple[Code, tuple[str, ...]] | None:
    return None if status is None else (status.code, status.reasons)


def container(cpu: str | None = None, memory: str | None = None, **extra: Any) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"name": "c", "image": "x", "resources": {"requests": requests}, **extra}


# -- requests ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, cpu, memory", [
    ({"containers": [container("1", "1Gi"), container("500m", "1Gi")]}, 1500, 2 * GI),
    # init containers run one at a time: the largest counts if it exceeds the app containers' sum
    ({"initContainers": [container("2", "1Gi"), container("2", "3Gi")],
      "containers": [container("2", "1Gi"), container("1", "1Gi")]}, 3000, 3 * GI),
    # a sidecar (restartable init container) runs alongside the app containers and later init containers
    ({"initContainers": [container("1"), container("500m", restartPolicy="Always")],
      "containers": [container("1")]}, 1500, 0),
    ({"containers": [container("1", "1Gi")], "overhead": {"cpu": "250m", "memory": "128Mi"}},
     1250, GI + 128 * 1024 ** 2),
])
def test_pod_requests(spec: dict[str, Any], cpu: int, memory: int) -> None:
    r = pod_requests(spec)
    assert (r.milli_cpu, r.memory) == (cpu, memory)


def test_non_zero_requests_for_scoring() -> None:
    pi = make_pod(containers=[container(), container("200m")])
    assert (pi.requests.milli_cpu, pi.requests.memory) == (200, 0)
    assert (pi.non_zero_cpu, pi.non_zero_memory) == (300, 2 * 200 * 1024 ** 2)


# -- NodeResourcesFit -------------------------------------------------------------------------------------------

def fit_node(**kw: Any) -> NodeInfo:
    return place(make_node("n", cpu="4", memory="8Gi", pods="3", **kw), make_pod("existing", cpu="2", memory="4Gi"))


@pytest.mark.parametrize("pod, expected", [
    (make_pod(cpu="2", memory="4Gi"), None),
    (make_pod(cpu="3"), (Code.UNSCHEDULABLE, ("Insufficient cpu",))),
    (make_pod(cpu="3", memory="5Gi"), (Code.UNSCHEDULABLE, ("Insufficient cpu", "Insufficient memory"))),
    (make_pod(containers=[container("1")], initContainers=[container("3")]),
     (Code.UNSCHEDULABLE, ("Insufficient cpu",))),
    (make_pod(containers=[container("1", **{"resources": {"requests": {"cpu": "1", "example.com/gpu": "1"}}})]),
     (Code.UNSCHEDULABLE, ("Insufficient example.com/gpu",))),
    (make_pod(), None),
])
def test_fit_filter(pod: PodInfo, expected: Any) -> None:
    assert verdict(run_filter(NodeResourcesFit(), pod, fit_node())) == expected


def test_fit_filter_too_many_pods_and_zero_requests_on_overcommitted_node() -> None:
    node = place(make_node("n", cpu="1", pods="2"), make_pod("a", cpu="2"))
    assert run_filter(NodeResourcesFit(), make_pod(), node) is None          # requests nothing: only pods count
    place(node, make_pod("b"))
    assert verdict(run_filter(NodeResourcesFit(), make_pod(), node)) == (Code.UNSCHEDULABLE, ("Too many pods",))


def test_fit_filter_extended_resources() -> None:
    node = make_node("g", extra={"example.com/gpu": "2"})
    gpu = make_pod(containers=[{"name": "c", "image": "x", "resources": {"requests": {"example.com/gpu": "2"}}}])
    assert run_filter(NodeResourcesFit(), gpu, node) is None
    place(node, gpu)
    assert verdict(run_filter(NodeResourcesFit(), gpu, node)) == (Code.UNSCHEDULABLE, ("Insufficient example.com/gpu",))
    assert run_filter(NodeResourcesFit({"ignoredResources": ["example.com/gpu"]}), gpu, node) is None


@pytest.mark.parametrize("strategy, expected", [
    # node 4 cpu / 8Gi with 1 cpu / 2Gi requested; pod 1 cpu / 2Gi → 50% of each used after placement
    ("LeastAllocated", 50),
    ("MostAllocated", 50),
])
def test_fit_score_half_used(strategy: str, expected: int) -> None:
    plugin = NodeResourcesFit({"scoringStrategy": {"type": strategy}})
    node = place(make_node(cpu="4", memory="8Gi"), make_pod("e", cpu="1", memory="2Gi"))
    pod = make_pod(cpu="1", memory="2Gi")
    assert plugin.score(CycleState(), pod, node) == expected
    assert plugin.score_nodes(CycleState(), pod, [node]) == [expected]


def test_fit_score_strategies_order_nodes() -> None:
    empty, busy = make_node("empty"), place(make_node("busy"), make_pod("e", cpu="3", memory="6Gi"))
    pod = make_pod(cpu="500m", memory="1Gi")
    least = NodeResourcesFit()
    most = NodeResourcesFit({"scoringStrategy": {"type": "MostAllocated"}})
    ratio = NodeResourcesFit({"scoringStrategy": {"type": "RequestedToCapacityRatio", "requestedToCapacityRatio": {
        "shape": [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]}}})
    for plugin, winner in ((least, "empty"), (most, "busy"), (ratio, "busy")):
        scores = plugin.score_nodes(CycleState(), pod, [empty, busy])
        assert scores == [plugin.score(CycleState(), pod, n) for n in (empty, busy)]
        assert ["empty", "busy"][scores.index(max(scores))] == winner, plugin.strategy


def test_fit_score_counts_missing_requests_as_defaults() -> None:
    node = make_node(cpu="1", memory="1Gi")
    # 100m / 200Mi assumed for a container without requests
    expected = ((1000 - 100) * 100 // 1000 + (GI - 200 * 1024 ** 2) * 100 // GI) // 2
    assert NodeResourcesFit().score(CycleState(), make_pod(), node) == expected


def test_balanced_allocation() -> None:
    plugin = NodeResourcesBalancedAllocation()
    node = make_node(cpu="4", memory="8Gi")
    balanced, skewed = make_pod(cpu="2", memory="4Gi"), make_pod(cpu="2", memory="0")
    assert plugin.score(CycleState(), balanced, node) == 100
    assert plugin.score(CycleState(), skewed, node) == 75          # fractions 0.5 and 0: std 0.25
    assert plugin.score_nodes(CycleState(), skewed, [node]) == [75]
    assert plugin.pre_score(CycleState(), make_pod(), [node]) == Status(Code.SKIP)   # best-effort pods


# -- node plugins -----------------------------------------------------------------------------------------------

UNSCHEDULABLE_TOLERATION = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}


@pytest.mark.parametrize("pod, node, expected", [
    (make_pod(), make_node(), None),
    (make_pod(), make_node(unschedulable=True),
     (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) were unschedulable",))),
    (make_pod(tolerations=[UNSCHEDULABLE_TOLERATION]), make_node(unschedulable=True), None),
])
def test_node_unschedulable(pod: PodInfo, node: NodeInfo, expected: Any) -> None:
    assert verdict(run_filter(NodeUnschedulable(), pod, node)) == expected


def test_node_name() -> None:
    assert run_filter(NodeName(), make_pod(nodeName="n1"), make_node("n1")) is None
    assert verdict(run_filter(NodeName(), make_pod(nodeName="n2"), make_node("n1"))) == (
        Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) didn't match the requested node name",))
    assert run_filter(NodeName(), make_pod(), make_node("n1")) is None


def ports(*specs: tuple[int, str, str]) -> list[dict[str, Any]]:
    return [{"name": "c", "image": "x", "ports": [{"containerPort": p, "hostPort": p, "protocol": proto,
                                                   **({"hostIP": ip} if ip else {})} for p, proto, ip in specs]}]


@pytest.mark.parametrize("existing, incoming, conflict", [
    (ports((80, "TCP", "")), ports((80, "TCP", "")), True),
    (ports((80, "TCP", "")), ports((80, "UDP", "")), False),
    (ports((80, "TCP", "10.0.0.1")), ports((80, "TCP", "10.0.0.2")), False),
    (ports((80, "TCP", "10.0.0.1")), ports((80, "TCP", "")), True),     # 0.0.0.0 takes every address
    (ports((8080, "TCP", "")), ports((80, "TCP", "")), False),
])
def test_node_ports(existing: Any, incoming: Any, conflict: bool) -> None:
    node = place(make_node(), make_pod("e", containers=existing))
    status = run_filter(NodePorts(), make_pod("p", containers=incoming), node)
    assert verdict(status) == ((Code.UNSCHEDULABLE, ("node(s) didn't have free ports for the requested pod ports",))
                               if conflict else None)


TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize("tolerations, taints, expected", [
    ([], [TAINT], (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) had untolerated taint {dedicated: gpu}",))),
    ([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], [TAINT], None),
    ([{"key": "dedicated", "operator": "Equal", "value": "cpu", "effect": "NoSchedule"}], [TAINT],
     (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) had untolerated taint {dedicated: gpu}",))),
    ([{"key": "dedicated", "operator": "Exists"}], [TAINT], None),
    ([{"operator": "Exists"}], [TAINT, {"key": "x", "effect": "NoExecute"}], None),
    ([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}], [TAINT],
     (Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) had untolerated taint {dedicated: gpu}",))),
    ([], [{"key": "soft", "value": "", "effect": "PreferNoSchedule"}], None),
])
def test_taint_toleration_filter(tolerations: list[dict[str, str]], taints: list[dict[str, str]],
                                 expected: Any) -> None:
    node = make_node(taints=taints)
    assert verdict(run_filter(TaintToleration(), make_pod(tolerations=tolerations), node)) == expected


def test_taint_toleration_score_prefers_fewer_untolerated_soft_taints() -> None:
    soft = [{"key": k, "value": "", "effect": "PreferNoSchedule"} for k in ("a", "b")]
    nodes = [make_node("none"), make_node("one", taints=soft[:1]), make_node("two", taints=soft)]
    plugin, state, pod = TaintToleration(), CycleState(), make_pod(tolerations=[{"key": "b", "operator": "Exists"}])
    assert plugin.pre_score(state, pod, nodes) is None
    scores = [plugin.score(state, pod, n) for n in nodes]
    assert scores == [0, 1, 1]
    plugin.normalize_score(state, pod, scores)
    assert scores == [100, 0, 0]


@pytest.mark.parametrize("spec, labels, matches", [
    ({"nodeSelector": {"disk": "ssd"}}, {"disk": "ssd"}, True),
    ({"nodeSelector": {"disk": "ssd"}}, {"disk": "hdd"}, False),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}}, {"zone": "b"}, True),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}}, {}, True),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["3"]}]},
        {"matchExpressions": [{"key": "legacy", "operator": "Exists"}]}]}}}}, {"gen": "4"}, True),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["3"]}]}]}}}}, {"gen": "4"}, False),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}, {}, True),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {}]}}}}, {}, False),                                   # an empty term matches nothing
])
def test_node_affinity_filter(spec: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    status = run_filter(NodeAffinity(), make_pod(**spec), make_node("n1", labels=labels))
    assert verdict(status) == (None if matches else (Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                                                     ("node(s) didn't match Pod's node affinity/selector",)))


def test_node_affinity_preferred_score() -> None:
    pod = make_pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 80, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
        {"weight": 20, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}})
    nodes = [make_node("ssd-a", labels={"disk": "ssd", "zone": "a"}), make_node("ssd", labels={"disk": "ssd"}),
             make_node("plain")]
    plugin, state = NodeAffinity(), CycleState()
    assert plugin.pre_score(state, pod, nodes) is None
    scores = [plugin.score(state, pod, n) for n in nodes]
    plugin.normalize_score(state, pod, scores)
    assert scores == [100, 80, 0]
    assert plugin.pre_score(CycleState(), make_pod(), nodes) == Status(Code.SKIP)


def test_scheduling_gates() -> None:
    gated = make_pod(schedulingGates=[{"name": "a"}, {"name": "b"}])
    assert SchedulingGates().pre_enqueue(gated) == Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                                                          "waiting for scheduling gates: [a b]")
    assert SchedulingGates().pre_enqueue(make_pod()) is None


def test_image_locality_priority() -> None:
    mb = 1024 * 1024
    assert calculate_priority(0, 1) == 0
    assert calculate_priority(1000 * mb, 1) == 100
    assert calculate_priority(500 * mb, 1) == 100 * (500 - 23) // (1000 - 23)
    nodes = [make_node("has", images=[("nginx:latest", 500 * mb)]), make_node("lacks")]
    fw = Framework(Profile(), snapshot=Snapshot.of(nodes))
    plugin, state, pod = fw.plugins["ImageLocality"], CycleState(), make_pod()
    assert plugin.pre_score(state, pod, nodes) is None
    assert [plugin.score(state, pod, n) for n in nodes] == [calculate_priority(250 * mb, 1), 0]
