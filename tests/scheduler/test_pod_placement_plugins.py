"""Plugins that look at other pods: InterPodAffinity, PodTopologySpread, DefaultPreemption. They read the whole
cluster through the framework handle, so each test builds a snapshot of nodes with pods on them."""
from __future__ import annotations

from typing import Any

from kates.scheduler.cache import Snapshot
from kates.scheduler.framework import Code, CycleState, Profile, Status
from kates.scheduler.nodeinfo import NodeInfo, PodInfo
from kates.scheduler.plugins.default_preemption import (NO_VICTIMS, Candidate, pick_one_node_for_preemption,
                                                       split_by_pdb_violation)
from kates.scheduler.runtime import Framework

from sched_builders import make_node, make_pod, place

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def framework(nodes: list[NodeInfo], namespaces: dict[str, dict[str, str]] | None = None, **kw: Any) -> Framework:
    return Framework(Profile(**kw), snapshot=Snapshot.of(nodes), namespaces=lambda: namespaces or {})


def filter_all(fw: Framework, plugin: str, pod: PodInfo) -> dict[str, Status | None]:
    p = fw.plugins[plugin]
    state = CycleState()
    st = p.pre_filter(state, pod)
    if st is not None and st.code == Code.SKIP:
        return {n.name: None for n in fw.snapshot.node_infos()}
    return {n.name: p.filter(state, pod, n) for n in fw.snapshot.node_infos()}


def reasons(result: dict[str, Status | None]) -> dict[str, str]:
    return {name: (st.message if st is not None else "") for name, st in result.items()}


def term(labels: dict[str, str], key: str = HOST, **extra: Any) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


# -- InterPodAffinity -------------------------------------------------------------------------------------------

def test_required_anti_affinity_keeps_replicas_apart() -> None:
    nodes = [place(make_node("a"), make_pod("db-0", labels={"app": "db"})), make_node("b")]
    pod = make_pod("db-1", labels={"app": "db"}, affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "db"})]}})
    assert reasons(filter_all(framework(nodes), "InterPodAffinity", pod)) == {
        "a": "node(s) didn't match pod anti-affinity rules", "b": ""}


def test_existing_pods_anti_affinity_repels_incoming_pod() -> None:
    guard = make_pod("guard", labels={"app": "guard"}, affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "web"}, key=ZONE)]}})
    nodes = [place(make_node("a1", labels={ZONE: "a"}), guard), make_node("a2", labels={ZONE: "a"}),
             make_node("b1", labels={ZONE: "b"})]
    result = filter_all(framework(nodes), "InterPodAffinity", make_pod("web", labels={"app": "web"}))
    assert reasons(result) == {"a1": "node(s) didn't satisfy existing pods anti-affinity rules",
                               "a2": "node(s) didn't satisfy existing pods anti-affinity rules", "b1": ""}
    assert result["a1"].code == Code.UNSCHEDULABLE
    # a pod the guard does not select is not affected, and skips the plugin's work only if nothing repels anyone
    assert reasons(filter_all(framework(nodes), "InterPodAffinity", make_pod("other"))) == {
        "a1": "", "a2": "", "b1": ""}


def test_required_affinity_and_the_first_pod_of_a_group() -> None:
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term({"app": "cache"})]}}
    nodes = [place(make_node("a"), make_pod("cache", labels={"app": "cache"})), make_node("b")]
    near = make_pod("web", affinity=affinity)
    assert reasons(filter_all(framework(nodes), "InterPodAffinity", near)) == {
        "a": "", "b": "node(s) didn't match pod affinity rules"}
    # no matching pod anywhere: only a pod matching its own terms may start the group
    empty = [make_node("a"), make_node("b")]
    result = reasons(filter_all(framework(empty), "InterPodAffinity", near))
    assert result["a"] == "node(s) didn't match pod affinity rules"
    first = make_pod("cache-0", labels={"app": "cache"}, affinity=affinity)
    assert reasons(filter_all(framework(empty), "InterPodAffinity", first)) == {"a": "", "b": ""}


def test_affinity_namespaces_and_namespace_selector() -> None:
    other_ns = make_pod("x", namespace="other", labels={"app": "x"})
    nodes = [place(make_node("a"), other_ns), make_node("b")]
    same_ns_only = make_pod("p", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        term({"app": "x"})]}})
    assert reasons(filter_all(framework(nodes), "InterPodAffinity", same_ns_only)) == {"a": "", "b": ""}
    by_selector = make_pod("p", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        term({"app": "x"}, namespaceSelector={"matchLabels": {"team": "blue"}})]}})
    fw = framework(nodes, namespaces={"other": {"team": "blue"}, "default": {}})
    result = reasons(filter_all(fw, "InterPodAffinity", by_selector))
    assert result["a"] == "node(s) didn't match pod anti-affinity rules"


def test_preferred_affinity_scores() -> None:
    nodes = [place(make_node("a"), make_pod("cache", labels={"app": "cache"})), make_node("b"), make_node("c")]
    pod = make_pod("web", affinity={"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": term({"app": "cache"})}]}})
    fw = framework(nodes)
    plugin, state = fw.plugins["InterPodAffinity"], CycleState()
    assert plugin.pre_score(state, pod, nodes) is None
    scores = [plugin.score(state, pod, n) for n in nodes]
    plugin.normalize_score(state, pod, scores)
    assert scores == [100, 0, 0]


# -- PodTopologySpread ------------------------------------------------------------------------------------------

def spread(max_skew: int = 1, key: str = ZONE, when: str = "DoNotSchedule", **extra: Any) -> list[dict[str, Any]]:
    return [{"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
             "labelSelector": {"matchLabels": {"app": "web"}}, **extra}]


def web(name: str, **kw: Any) -> PodInfo:
    return make_pod(name, labels={"app": "web"}, **kw)


def test_topology_spread_filter_skew() -> None:
    nodes = [place(make_node("a1", labels={ZONE: "a"}), web("w0"), web("w1")),
             place(make_node("b1", labels={ZONE: "b"}), web("w2")),
             make_node("nozone")]
    result = filter_all(framework(nodes), "PodTopologySpread", web("new", topologySpreadConstraints=spread()))
    assert reasons(result) == {
        "a1": "node(s) didn't match pod topology spread constraints",
        "b1": "",
        "nozone": "node(s) didn't match pod topology spread constraints (missing required label)"}
    assert result["nozone"].code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    relaxed = filter_all(framework(nodes), "PodTopologySpread", web("new", topologySpreadConstraints=spread(2)))
    assert relaxed["a1"] is None


def test_topology_spread_honours_node_affinity_and_min_domains() -> None:
    nodes = [place(make_node("a1", labels={ZONE: "a", "pool": "x"}), web("w0")),
             make_node("b1", labels={ZONE: "b", "pool": "y"})]
    # zone b is outside the pod's node selector, so it is not a domain: zone a alone has skew 0
    pod = web("new", topologySpreadConstraints=spread(), nodeSelector={"pool": "x"})
    assert filter_all(framework(nodes), "PodTopologySpread", pod)["a1"] is None
    # with minDomains 2 and one domain, the global minimum counts as 0: 1 + 1 - 0 > 1
    pod = web("new", topologySpreadConstraints=spread(minDomains=2), nodeSelector={"pool": "x"})
    assert filter_all(framework(nodes), "PodTopologySpread", pod)["a1"] is not None


def test_topology_spread_scoring_prefers_emptier_domains() -> None:
    nodes = [place(make_node("a1", labels={ZONE: "a"}), web("w0"), web("w1")),
             place(make_node("b1", labels={ZONE: "b"}), web("w2")), make_node("c1", labels={ZONE: "c"})]
    pod = web("new", topologySpreadConstraints=spread(when="ScheduleAnyway"))
    fw = framework(nodes)
    plugin, state = fw.plugins["PodTopologySpread"], CycleState()
    assert plugin.pre_score(state, pod, nodes) is None
    scores = [plugin.score(state, pod, n) for n in nodes]
    plugin.normalize_score(state, pod, scores)
    assert scores[2] == 100 and scores[0] < scores[1] < scores[2]


# -- DefaultPreemption ------------------------------------------------------------------------------------------

def preempt(nodes: list[NodeInfo], pod: PodInfo) -> tuple[Any, Status | None]:
    fw = framework(nodes)
    state = CycleState()
    assert fw.run_pre_filter(state, pod) is None
    statuses = {n.name: st for n in nodes if (st := fw.run_filter_plugins(state, pod, n)) is not None}
    return fw.plugins["DefaultPreemption"].post_filter(state, pod, statuses)


def test_preemption_picks_the_node_with_the_least_important_victims() -> None:
    nodes = [place(make_node("a", cpu="2"), make_pod("a-mid", cpu="2", priority=50)),
             place(make_node("b", cpu="2"), make_pod("b-low", cpu="1", priority=10),
                   make_pod("b-low2", cpu="1", priority=10))]
    result, status = preempt(nodes, make_pod("vip", cpu="1", priority=100))
    assert status is None
    assert result.nominated_node_name == "b"
    assert [v.name for v in result.victims] == ["b-low"] or [v.name for v in result.victims] == ["b-low2"]


def test_preemption_evicts_only_what_is_needed_lowest_first() -> None:
    node = place(make_node("a", cpu="3"), make_pod("p10", cpu="1", priority=10), make_pod("p20", cpu="1", priority=20),
                 make_pod("p30", cpu="1", priority=30))
    result, status = preempt([node], make_pod("vip", cpu="2", priority=100))
    assert status is None and result.nominated_node_name == "a"
    assert sorted(v.name for v in result.victims) == ["p10", "p20"]


def test_preemption_needs_lower_priority_victims() -> None:
    nodes = [place(make_node("a", cpu="1"), make_pod("peer", cpu="1", priority=100)),
             make_node("t", cpu="8", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])]
    result, status = preempt(nodes, make_pod("vip", cpu="1", priority=100))
    assert result.nominated_node_name == "" and not result.victims
    assert status.message == (f"preemption: 0/2 nodes are available: 1 {NO_VICTIMS}, "
                              "1 Preemption is not helpful for scheduling.")


def test_preemption_policy_never() -> None:
    node = place(make_node("a", cpu="1"), make_pod("low", cpu="1", priority=0))
    result, status = preempt([node], make_pod("vip", cpu="1", priority=100, preemptionPolicy="Never"))
    assert result is None and status.message == "preemption: not eligible due to preemptionPolicy=Never."


def test_pick_one_node_ordering() -> None:
    def c(name: str, *priorities: int) -> Candidate:
        return Candidate(name, [make_pod(f"{name}-{i}", priority=p) for i, p in enumerate(priorities)], 0)
    assert pick_one_node_for_preemption([c("hi", 50), c("lo", 10, 10)]).name == "lo"      # lowest top priority
    assert pick_one_node_for_preemption([c("two", 10, 5), c("one", 10)]).name == "one"   # smaller priority sum
    violating = Candidate("pdb", [make_pod("x", priority=0)], 1)
    assert pick_one_node_for_preemption([violating, c("ok", 50)]).name == "ok"           # fewer PDB violations


def test_pdb_violations() -> None:
    pods = [make_pod(f"w{i}", labels={"app": "web"}) for i in range(3)]
    pdb = {"metadata": {"namespace": "default"}, "spec": {"selector": {"matchLabels": {"app": "web"}}},
           "status": {"disruptionsAllowed": 1}}
    violating, ok = split_by_pdb_violation(pods, [pdb])
    assert [p.name for p in ok] == ["w0"] and [p.name for p in violating] == ["w1", "w2"]
