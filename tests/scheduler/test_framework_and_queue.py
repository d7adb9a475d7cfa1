"""The framework runtime (one cycle's decision, failure messages), the cache's assume/forget, the scheduling queue's
ordering, backoff and event-driven requeueing, and the configuration loader."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from kates.scheduler.cache import SchedulerCache, Snapshot
from kates.scheduler.config import load_config, named_profile, ConfigError
from kates.scheduler.framework import (ActionType, ClusterEvent, Code, CycleState, Diagnosis, FitError, Profile,
                                       Status, bin_packing_profile, fit_error_message)
from kates.scheduler.plugins.priority_sort import PrioritySort
from kates.scheduler.queue import SchedulingQueue
from kates.scheduler.runtime import Framework, SchedulingError, num_feasible_nodes_to_find

from sched_builders import make_node, make_pod, place


# -- one cycle --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("nodes, expected", [
    (10, 10), (99, 99), (100, 100), (500, 235), (1000, 420), (5000, 250), (20_000, 1000),
])
def test_num_feasible_nodes_to_find(nodes: int, expected: int) -> None:
    assert num_feasible_nodes_to_find(nodes) == expected
    assert num_feasible_nodes_to_find(nodes, 100) == nodes


def test_minimum_of_100_nodes() -> None:
    assert num_feasible_nodes_to_find(150) == 100     # 49% of 150 is 73: never fewer than 100


def test_schedule_pod_picks_the_best_node() -> None:
    nodes = [place(make_node("busy"), make_pod("e", cpu="3", memory="6Gi")), make_node("idle"),
             make_node("tiny", cpu="100m")]
    fw = Framework(Profile(), snapshot=Snapshot.of(nodes))
    result = fw.schedule_pod(CycleState(), make_pod(cpu="500m", memory="1Gi"))
    assert (result.suggested_host, result.evaluated_nodes, result.feasible_nodes) == ("idle", 3, 2)
    packing = Framework(bin_packing_profile(), snapshot=Snapshot.of(nodes))
    assert packing.schedule_pod(CycleState(), make_pod(cpu="500m", memory="1Gi")).suggested_host == "busy"


def test_ties_are_broken_at_random() -> None:
    nodes = [make_node(f"n{i}") for i in range(4)]
    fw = Framework(Profile(), snapshot=Snapshot.of(nodes), rng=random.Random(7))
    picks = {fw.schedule_pod(CycleState(), make_pod(cpu="1")).suggested_host for _ in range(40)}
    assert len(picks) > 1


def test_fit_error_lists_reasons_per_node() -> None:
    taint = [{"key": "key", "value": "value", "effect": "NoSchedule"}]
    nodes = [make_node("a", cpu="1"), make_node("b", cpu="1"), make_node("c", cpu="64", taints=taint)]
    fw = Framework(Profile(plugins=tuple(p for p in Profile().plugins if p != "DefaultPreemption")),
                   snapshot=Snapshot.of(nodes))
    with pytest.raises(FitError) as e:
        fw.schedule_pod(CycleState(), make_pod(cpu="2"))
    assert str(e.value) == "0/3 nodes are available: 1 node(s) had untolerated taint {key: value}, 2 Insufficient cpu."
    assert e.value.diagnosis.unschedulable_plugins == {"NodeResourcesFit", "TaintToleration"}


def test_fit_error_message_with_prefilter_and_postfilter() -> None:
    d = Diagnosis(pre_filter_msg="node(s) didn't match pod affinity rules",
                  post_filter_msg="preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    assert fit_error_message(2, d) == ("0/2 nodes are available: node(s) didn't match pod affinity rules. preemption: "
                                       "0/2 nodes are available: 2 Preemption is not helpful for scheduling.")


def test_no_nodes_is_a_scheduling_error() -> None:
    with pytest.raises(SchedulingError, match="no nodes available"):
        Framework(Profile()).schedule_pod(CycleState(), make_pod())


def test_start_index_rotates_over_large_clusters() -> None:
    nodes = [make_node(f"n{i:03d}") for i in range(300)]
    fw = Framework(Profile(), snapshot=Snapshot.of(nodes))
    r1 = fw.schedule_pod(CycleState(), make_pod(cpu="1"))
    assert r1.evaluated_nodes == num_feasible_nodes_to_find(300) == 147
    assert fw.next_start_node_index >= 147
    start = fw.next_start_node_index
    fw.schedule_pod(CycleState(), make_pod(cpu="1"))
    assert fw.next_start_node_index == (start + 147) % 300


def test_nominated_pods_keep_their_room() -> None:
    node = make_node("a", cpu="2")
    fw = Framework(Profile(), snapshot=Snapshot.of([node]))
    vip = make_pod("vip", cpu="2", priority=100)
    fw.nominator.add(vip, "a")
    with pytest.raises(FitError):
        fw.schedule_pod(CycleState(), make_pod("low", cpu="1", priority=0))
    assert fw.schedule_pod(CycleState(), make_pod("higher", cpu="1", priority=200)).suggested_host == "a"


# -- the cache --------------------------------------------------------------------------------------------------

def test_assume_confirm_and_forget() -> None:
    cache = SchedulerCache()
    cache.add_node({"metadata": {"name": "a"}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "10"}}})
    pod = make_pod("p", cpu="1")
    cache.assume_pod(pod.with_node("a"))
    node = cache.node("a")
    assert node is not None and node.requested.milli_cpu == 1000 and cache.is_assumed(pod.uid)
    cache.forget_pod(pod)
    assert node.requested.milli_cpu == 0 and not node.pods
    cache.assume_pod(pod.with_node("a"))
    cache.add_pod(pod.with_node("a"))                 # the informer confirms the binding
    assert not cache.is_assumed(pod.uid) and node.requested.milli_cpu == 1000
    cache.remove_pod(pod.uid)
    assert node.requested.milli_cpu == 0 and node.free_pods == 10


def test_pods_before_their_node() -> None:
    cache = SchedulerCache()
    cache.add_pod(make_pod("early", cpu="1", node_name="late"))
    assert cache.snapshot.node_infos() == []
    cache.add_node({"metadata": {"name": "late"}, "status": {"allocatable": {"cpu": "2", "pods": "10"}}})
    assert cache.node("late").free_cpu == 1000


# -- the queue --------------------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def queue(clock: Clock, **kw: object) -> SchedulingQueue:
    events = {"NodeResourcesFit": [ClusterEvent("AssignedPod", ActionType.DELETE),
                                   ClusterEvent("Node", ActionType.ADD | ActionType.UPDATE_NODE_ALLOCATABLE)],
              "TaintToleration": [ClusterEvent("Node", ActionType.ADD | ActionType.UPDATE_NODE_TAINT)]}
    pre_enqueue = lambda pi: (Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, "gated", plugin="SchedulingGates")  # noqa
                              if pi.spec.get("schedulingGates") else None)
    return SchedulingQueue(PrioritySort().sort_key, pre_enqueue, events, clock=clock, **kw)


def fail(q: SchedulingQueue, *plugins: str) -> None:
    qpi = q.pop_nowait()
    assert qpi is not None
    qpi.unschedulable_plugins = frozenset(plugins)
    q.add_unschedulable_if_not_present(qpi)
    q.done(qpi.uid)


def test_active_queue_orders_by_priority_then_age() -> None:
    clock = Clock()
    q = queue(clock)
    for name, priority in (("old-low", 0), ("high", 100), ("new-low", 0), ("mid", 10)):
        q.add(make_pod(name, priority=priority))
        clock.now += 1
    assert [q.pop_nowait().pod_info.name for _ in range(4)] == ["high", "mid", "old-low", "new-low"]


@pytest.mark.parametrize("attempts, seconds", [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)])
def test_backoff_doubles_to_ten_seconds(attempts: int, seconds: float) -> None:
    q = queue(Clock())
    q.add(make_pod("p"))
    qpi = q.pop_nowait()
    qpi.attempts = attempts
    assert q.backoff_duration(qpi) == seconds


def test_errors_go_to_backoff_and_come_back_after_it() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(make_pod("p"))
    fail(q)                                            # no rejecting plugin: an error
    assert q.pending_pods()["backoff"] == 1
    clock.now += 0.9
    assert q.flush_backoff_completed() == 0
    clock.now += 0.2
    assert q.flush_backoff_completed() == 1 and q.pop_nowait().pod_info.name == "p"


def test_unschedulable_pods_wait_for_a_relevant_event() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(make_pod("needs-cpu"))
    q.add(make_pod("tainted-out"))
    fail(q, "NodeResourcesFit")
    fail(q, "TaintToleration")
    assert q.pending_pods()["unschedulable"] == 2
    assert q.move_all_to_active_or_backoff(ClusterEvent("AssignedPod", ActionType.ADD)) == 0
    assert q.move_all_to_active_or_backoff(ClusterEvent("Node", ActionType.UPDATE_NODE_TAINT)) == 1
    assert q.where(next(iter(q._backoff))) == "backoff"          # still backing off: to the backoff queue
    clock.now += 2
    assert q.move_all_to_active_or_backoff(ClusterEvent("AssignedPod", ActionType.DELETE)) == 1
    assert q.pop_nowait().pod_info.name == "needs-cpu"


def test_event_during_the_attempt_sends_the_pod_to_backoff() -> None:
    q = queue(Clock())
    q.add(make_pod("p"))
    qpi = q.pop_nowait()
    q.move_all_to_active_or_backoff(ClusterEvent("Node", ActionType.ADD))   # while p is being scheduled
    qpi.unschedulable_plugins = frozenset(["NodeResourcesFit"])
    q.add_unschedulable_if_not_present(qpi)
    q.done(qpi.uid)
    assert q.where(qpi.uid) == "backoff"


def test_unschedulable_pods_are_flushed_after_the_timeout() -> None:
    clock = Clock()
    q = queue(clock, unschedulable_timeout=60)
    q.add(make_pod("p"))
    fail(q, "NodeResourcesFit")
    clock.now += 59
    assert q.flush_unschedulable_left_over() == 0
    clock.now += 2
    assert q.flush_unschedulable_left_over() == 1 and q.pending_pods()["active"] == 1


def test_gated_pods_wait_for_their_gates_to_go() -> None:
    q = queue(Clock())
    gated = make_pod("g", schedulingGates=[{"name": "x"}])
    q.add(gated)
    assert q.pop_nowait() is None and q.where(gated.uid) == "unschedulable"
    assert q.move_all_to_active_or_backoff(ClusterEvent("Node", ActionType.ADD)) == 0
    ungated = make_pod("g")
    ungated.uid = gated.uid
    q.update(ungated)
    assert q.pop_nowait().pod_info is ungated


def test_deleted_while_scheduling_is_dropped() -> None:
    q = queue(Clock())
    q.add(make_pod("p"))
    qpi = q.pop_nowait()
    q.delete(qpi.uid)
    q.add_unschedulable_if_not_present(qpi)
    assert len(q) == 0


# -- configuration ----------------------------------------------------------------------------------------------

def test_named_profiles() -> None:
    assert named_profile("bin-packing").plugin_args["NodeResourcesFit"]["scoringStrategy"]["type"] == "MostAllocated"
    with pytest.raises(ConfigError):
        named_profile("nope")


def test_kube_scheduler_configuration(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("""
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    multiPoint:
      disabled: [{name: ImageLocality}]
    score:
      enabled: [{name: NodeResourcesFit, weight: 5}]
      disabled: [{name: NodeResourcesBalancedAllocation}]
  pluginConfig:
  - name: NodeResourcesFit
    args: {scoringStrategy: {type: MostAllocated}}
""")
    default, packer = load_config(cfg)
    assert default.scheduler_name == "default-scheduler" and default.percentage_of_nodes_to_score == 30
    assert "ImageLocality" not in packer.plugins and packer.weight("NodeResourcesFit") == 5
    fw = Framework(packer)
    assert [p.name for p in fw.score_plugins] == ["TaintToleration", "NodeAffinity", "NodeResourcesFit",
                                                  "PodTopologySpread", "InterPodAffinity"]
    assert fw.plugins["NodeResourcesFit"].strategy == "MostAllocated"
