"""Table output for `kubectl get`: columns and cells as Kubernetes 1.32 prints them."""
from __future__ import annotations

import datetime

import orjson
import pytest

from kates.api.resources import BUILTIN, ResourceType
from kates.api.tables import JSONPathError, TABLE_KINDS, age, human_duration, jsonpath_find, to_table

NOW = datetime.datetime(2024, 6, 1, tzinfo=datetime.timezone.utc).timestamp()


def ago(seconds: float) -> str:
    """The RFC 3339 timestamp `seconds` before NOW."""
    return datetime.datetime.fromtimestamp(NOW - seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rt(resource: str, group: str = "") -> ResourceType:
    return next(r for r in BUILTIN if r.resource == resource and r.group == group)


def table(resource: str, *objects: dict, group: str = "", **kw) -> dict:
    return to_table(rt(resource, group), list(objects), now=NOW, **kw)


def names(t: dict) -> list[str]:
    return [c["name"] for c in t["columnDefinitions"]]


def priorities(t: dict) -> list[int]:
    return [c["priority"] for c in t["columnDefinitions"]]


def cells(t: dict, i: int = 0) -> list:
    return t["rows"][i]["cells"]


def row(t: dict, i: int = 0) -> dict:
    """The row as {column name: cell}."""
    return dict(zip(names(t), cells(t, i)))


def meta(name: str, age_s: float = 600, **extra) -> dict:
    return {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": ago(age_s), **extra}


# ---------------------------------------------------------------------------------------------------- durations

S, M, H, D, Y = 1, 60, 3600, 86400, 365 * 86400
MS = 0.001


@pytest.mark.parametrize("seconds, want", [
    # Kubernetes' TestHumanDuration
    (1, "1s"), (70, "70s"), (190, "3m10s"), (70 * M, "70m"), (47 * H, "47h"), (49 * H, "2d1h"),
    ((8 * 24 + 2) * H, "8d"), (367 * D, "367d"), (2 * Y + 25 * H, "2y1d"), (8 * Y + 2 * H, "8y"),
    # Kubernetes' TestHumanDurationBoundaries
    (-2, "<invalid>"), (-2 + 1e-9, "0s"), (0, "0s"), (1 - MS, "0s"), (2 * M - MS, "119s"), (2 * M, "2m"),
    (2 * M + 1, "2m1s"), (10 * M - MS, "9m59s"), (10 * M, "10m"), (10 * M + 1, "10m"), (3 * H - MS, "179m"),
    (3 * H, "3h"), (3 * H + M, "3h1m"), (8 * H - MS, "7h59m"), (8 * H, "8h"), (8 * H + 59 * M, "8h"),
    (2 * D - MS, "47h"), (2 * D, "2d"), (2 * D + H, "2d1h"), (8 * D - MS, "7d23h"), (8 * D, "8d"),
    (8 * D + 23 * H, "8d"), (2 * Y - MS, "729d"), (2 * Y, "2y"), (2 * Y + 23 * H, "2y"),
    (2 * Y + 23 * H + 59 * M, "2y"), (2 * Y + D - MS, "2y"), (2 * Y + D, "2y1d"), (3 * Y, "3y"), (4 * Y, "4y"),
    (7 * Y, "7y"), (8 * Y - MS, "7y364d"), (8 * Y, "8y"), (8 * Y + 364 * D, "8y"), (9 * Y, "9y"),
    # the brief's examples
    (5, "5s"), (3 * M + 2, "3m2s"), (5 * H + 3 * M, "5h3m"), (3 * D + 4 * H, "3d4h"), (400 * D, "400d"),
])
def test_human_duration_matches_kubernetes(seconds: float, want: str) -> None:
    assert human_duration(seconds) == want


@pytest.mark.parametrize("seconds, want", [(5, "5s"), (182, "3m2s"), (600, "10m"), (5 * H + 3 * M, "5h3m"),
                                           (3 * D + 4 * H, "3d4h"), (400 * D, "400d"), (-1, "0s"), (-5, "<invalid>")])
def test_age_of_timestamps(seconds: float, want: str) -> None:
    assert age(ago(seconds), NOW) == want


def test_age_accepts_fractions_offsets_and_missing() -> None:
    assert age("2024-05-31T23:59:00.123456Z", NOW) == "59s"
    assert age("2024-05-31T23:59:00.123456789Z", NOW) == "59s"
    assert age("2024-06-01T01:00:00+02:00", NOW) == "60m"
    assert age(None, NOW) == "<unknown>"
    assert age("", NOW) == "<unknown>"
    assert age("not a time", NOW) == "<unknown>"
    recent = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=30)
    assert age(recent.strftime("%Y-%m-%dT%H:%M:%SZ")) in ("30s", "31s", "32s")      # default now: the wall clock


# ---------------------------------------------------------------------------------------------------- the envelope


def test_table_envelope_and_column_definitions() -> None:
    t = table("configmaps", {"metadata": meta("cfg"), "data": {"a": "1"}},
              list_metadata={"resourceVersion": "42", "continue": "tok"})
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "42", "continue": "tok"}
    for col in t["columnDefinitions"]:
        assert set(col) == {"name", "type", "format", "description", "priority"}
        assert col["description"]
    assert t["columnDefinitions"][0] == {
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": t["columnDefinitions"][0]["description"]}
    assert t["columnDefinitions"][0]["description"].startswith("Name must be unique within a namespace.")
    assert t["columnDefinitions"][-1]["name"] == "Age" and t["columnDefinitions"][-1]["type"] == "string"
    assert table("configmaps")["metadata"] == {} and table("configmaps")["rows"] == []


def test_row_object_modes() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cfg", labels={"a": "b"}), "data": {}}
    default = table("configmaps", obj)["rows"][0]
    assert default["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                 "metadata": obj["metadata"]}
    assert table("configmaps", obj, include_object="Object")["rows"][0]["object"] is obj
    assert table("configmaps", obj, include_object="None")["rows"][0]["object"] is None


def test_column_definitions_are_copies() -> None:
    t = table("configmaps")
    t["columnDefinitions"][0]["name"] = "mutated"
    assert names(table("configmaps"))[0] == "Name"


# ---------------------------------------------------------------------------------------------------- pods


def pod(name: str = "web", *, phase: str = "Running", statuses: list | None = None, init: list | None = None,
        init_statuses: list | None = None, conditions: list | None = None, containers: int = 1, **meta_extra) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta(name, 3600, **meta_extra),
        "spec": {"nodeName": "node-1",
                 "containers": [{"name": f"c{i}", "image": "nginx"} for i in range(containers)],
                 **({"initContainers": init} if init is not None else {})},
        "status": {"phase": phase, "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
                   "conditions": conditions if conditions is not None else [
                       {"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                   **({"containerStatuses": statuses} if statuses is not None else {}),
                   **({"initContainerStatuses": init_statuses} if init_statuses is not None else {})},
    }


def running(name: str = "c0", restarts: int = 0, last_finished: str | None = None, ready: bool = True) -> dict:
    cs = {"name": name, "ready": ready, "started": True, "restartCount": restarts,
          "state": {"running": {"startedAt": ago(3000)}}}
    if last_finished:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": last_finished}}
    return cs


def waiting(reason: str, name: str = "c0", restarts: int = 0, **extra) -> dict:
    return {"name": name, "ready": False, "restartCount": restarts, "state": {"waiting": {"reason": reason}}, **extra}


def terminated(reason: str = "", exit_code: int = 0, name: str = "c0", **extra) -> dict:
    term = {"exitCode": exit_code, **({"reason": reason} if reason else {}), **extra}
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": term}}


def test_pod_columns() -> None:
    t = table("pods")
    assert names(t) == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
                        "Readiness Gates"]
    assert priorities(t) == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert [c["type"] for c in t["columnDefinitions"]] == ["string"] * 9
    assert t["columnDefinitions"][5]["description"].startswith("podIP address allocated to the pod")


def test_running_pod_with_restarts() -> None:
    t = table("pods", pod(statuses=[running(restarts=2, last_finished=ago(300))]))
    assert cells(t) == ["web", "1/1", "Running", "2 (5m ago)", "60m", "10.244.0.5", "node-1", "<none>", "<none>"]
    assert "conditions" not in t["rows"][0]


def test_restarts_without_termination_time_are_plain() -> None:
    assert row(table("pods", pod(statuses=[running(restarts=3)])))["Restarts"] == "3"


def test_crash_loop_back_off_pod() -> None:
    cs = waiting("CrashLoopBackOff", restarts=5,
                 lastState={"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(42)}})
    r = row(table("pods", pod(statuses=[cs], conditions=[{"type": "Ready", "status": "False"}])))
    assert (r["Ready"], r["Status"], r["Restarts"]) == ("0/1", "CrashLoopBackOff", "5 (42s ago)")


def test_terminating_pods() -> None:
    assert row(table("pods", pod(statuses=[running()], deletionTimestamp=ago(5))))["Status"] == "Terminating"
    lost = pod(statuses=[running()], deletionTimestamp=ago(5))
    lost["status"]["reason"] = "NodeLost"
    assert row(table("pods", lost))["Status"] == "Unknown"
    done = pod(phase="Succeeded", statuses=[terminated("Completed")], deletionTimestamp=ago(5))
    assert row(table("pods", done))["Status"] == "Completed"


def test_pending_and_creating_pods() -> None:
    pending = pod(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}])
    pending["spec"].pop("nodeName")
    pending["status"] = {"phase": "Pending", "conditions": pending["status"]["conditions"]}
    r = row(table("pods", pending))
    assert (r["Ready"], r["Status"], r["Restarts"], r["IP"], r["Node"]) == ("0/1", "Pending", "0", "<none>", "<none>")
    creating = pod(phase="Pending", statuses=[waiting("ContainerCreating")], conditions=[])
    assert row(table("pods", creating))["Status"] == "ContainerCreating"
    gated = pod(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False",
                                              "reason": "SchedulingGated"}])
    assert row(table("pods", gated))["Status"] == "SchedulingGated"


def test_init_container_states() -> None:
    init = [{"name": "setup", "image": "busybox"}]
    not_init = [{"type": "Initialized", "status": "False"}]
    starting = pod(phase="Pending", init=init, init_statuses=[waiting("PodInitializing", "setup")],
                   statuses=[waiting("PodInitializing")], conditions=not_init)
    assert row(table("pods", starting))["Status"] == "Init:0/1"
    crashing = pod(phase="Pending", init=init, init_statuses=[waiting("CrashLoopBackOff", "setup", restarts=3)],
                   statuses=[waiting("PodInitializing")], conditions=not_init)
    r = row(table("pods", crashing))
    assert (r["Status"], r["Restarts"]) == ("Init:CrashLoopBackOff", "3")
    failed = pod(phase="Pending", init=init, init_statuses=[terminated("Error", 1, "setup")],
                 statuses=[waiting("PodInitializing")], conditions=not_init)
    assert row(table("pods", failed))["Status"] == "Init:Error"
    exit_code = pod(phase="Pending", init=init, init_statuses=[terminated("", 3, "setup")], conditions=not_init)
    assert row(table("pods", exit_code))["Status"] == "Init:ExitCode:3"
    signal = pod(phase="Pending", init=init, init_statuses=[terminated("", 137, "setup", signal=9)],
                 conditions=not_init)
    assert row(table("pods", signal))["Status"] == "Init:Signal:9"
    two = [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]
    second = pod(phase="Pending", init=two, init_statuses=[terminated("Completed", 0, "a"), waiting("", "b")],
                 conditions=not_init)
    assert row(table("pods", second))["Status"] == "Init:1/2"
    done = pod(init=init, init_statuses=[terminated("Completed", 0, "setup")], statuses=[running()])
    assert row(table("pods", done))["Status"] == "Running"


def test_sidecar_containers_count_as_containers() -> None:
    init = [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]
    sidecar = running("proxy", restarts=1, last_finished=ago(120))
    r = row(table("pods", pod(init=init, init_statuses=[sidecar], statuses=[running(restarts=1,
                                                                                        last_finished=ago(600))])))
    assert (r["Ready"], r["Status"], r["Restarts"]) == ("2/2", "Running", "2 (2m ago)")


def test_completed_and_failed_pods_carry_row_conditions() -> None:
    t = table("pods", pod(phase="Succeeded", statuses=[terminated("Completed")]),
              pod("bad", phase="Failed", statuses=[terminated("Error", 2)]))
    assert row(t, 0)["Status"] == "Completed" and row(t, 0)["Ready"] == "0/1"
    assert t["rows"][0]["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                           "message": "The pod has completed successfully."}]
    assert row(t, 1)["Status"] == "Error"
    assert t["rows"][1]["conditions"][0]["reason"] == "Failed"


def test_pod_exit_code_and_signal_and_completed_with_running() -> None:
    r = row(table("pods", pod(statuses=[terminated("", 2)])))
    assert r["Status"] == "ExitCode:2"
    r = row(table("pods", pod(statuses=[terminated("", 137, signal=9)])))
    assert r["Status"] == "Signal:9"
    mixed = pod(containers=2, statuses=[terminated("Completed", 0, "c0"), running("c1")])
    assert row(table("pods", mixed))["Status"] == "Running"
    mixed["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert row(table("pods", mixed))["Status"] == "NotReady"


def test_pod_wide_cells() -> None:
    p = pod(statuses=[running()])
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]
    p["status"]["conditions"].append({"type": "example.com/lb", "status": "True"})
    p["status"]["nominatedNodeName"] = "node-2"
    p["status"]["podIPs"] = [{"ip": "10.244.0.9"}, {"ip": "fd00::9"}]
    r = row(table("pods", p))
    assert (r["IP"], r["Node"], r["Nominated Node"], r["Readiness Gates"]) == ("10.244.0.9", "node-1", "node-2", "1/2")


# ---------------------------------------------------------------------------------------------------- workloads

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "fluentbit"}]}}
SELECTOR = {"matchLabels": {"app": "web", "tier": "fe"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]}


def test_deployment() -> None:
    d = {"metadata": meta("web", 7200), "spec": {"replicas": 3, "selector": SELECTOR, "template": TEMPLATE},
         "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    t = table("deployments", d, group="apps")
    assert names(t) == ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    assert priorities(t) == [0, 0, 0, 0, 0, 1, 1, 1]
    assert cells(t) == ["web", "2/3", 3, 2, "120m", "web,log", "nginx:1.27,fluentbit",
                        "app=web,!canary,env in (dev,prod),tier=fe"]
    fresh = {"metadata": meta("new"), "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "new"}},
                                               "template": TEMPLATE}}
    assert cells(table("deployments", fresh, group="apps"))[1:4] == ["0/1", 0, 0]


def test_replica_set_stateful_set_daemon_set() -> None:
    rs = {"metadata": meta("web-abc"), "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                                                "template": TEMPLATE},
          "status": {"replicas": 3, "readyReplicas": 1}}
    t = table("replicasets", rs, group="apps")
    assert names(t) == ["Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"]
    assert [c["type"] for c in t["columnDefinitions"][1:4]] == ["integer"] * 3
    assert cells(t) == ["web-abc", 3, 3, 1, "10m", "web,log", "nginx:1.27,fluentbit", "app=web"]

    sts = {"metadata": meta("db"), "spec": {"replicas": 3, "template": TEMPLATE}, "status": {"readyReplicas": 3}}
    t = table("statefulsets", sts, group="apps")
    assert names(t) == ["Name", "Ready", "Age", "Containers", "Images"]
    assert cells(t) == ["db", "3/3", "10m", "web,log", "nginx:1.27,fluentbit"]

    ds = {"metadata": meta("agent"),
          "spec": {"selector": {"matchLabels": {"app": "agent"}},
                   "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                         "containers": [{"name": "agent", "image": "agent:1"}]}}},
          "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                     "updatedNumberScheduled": 3, "numberAvailable": 2}}
    t = table("daemonsets", ds, group="apps")
    assert names(t) == ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age",
                        "Containers", "Images", "Selector"]
    assert priorities(t) == [0] * 8 + [1] * 3
    assert cells(t) == ["agent", 3, 3, 2, 3, 2, "kubernetes.io/os=linux", "10m", "agent", "agent:1", "app=agent"]
    ds["spec"]["template"]["spec"].pop("nodeSelector")
    assert row(table("daemonsets", ds, group="apps"))["Node Selector"] == "<none>"


def test_jobs() -> None:
    done = {"metadata": meta("pi", 3600),
            "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": ago(3600), "completionTime": ago(3600 - 75),
                       "conditions": [{"type": "Complete", "status": "True"}]}}
    t = table("jobs", done, group="batch")
    assert names(t) == ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"]
    assert cells(t) == ["pi", "Complete", "1/1", "75s", "60m", "pi", "perl", "batch.kubernetes.io/controller-uid=u"]
    running_job = {"metadata": meta("work", 300), "spec": {"parallelism": 3, "template": {"spec": {}}},
                   "status": {"succeeded": 1, "startTime": ago(200)}}
    r = row(table("jobs", running_job, group="batch"))
    assert (r["Status"], r["Completions"], r["Duration"], r["Selector"]) == ("Running", "1/1 of 3", "3m20s", "<none>")
    failed = {"metadata": meta("f"), "spec": {}, "status": {"conditions": [
        {"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]}}
    r = row(table("jobs", failed, group="batch"))
    assert (r["Status"], r["Completions"], r["Duration"]) == ("Failed", "0/1", "")
    suspended = {"metadata": meta("s"), "spec": {"completions": 5},
                 "status": {"conditions": [{"type": "Suspended", "status": "True"}]}}
    assert row(table("jobs", suspended, group="batch"))["Status"] == "Suspended"
    deleting = {"metadata": meta("d", deletionTimestamp=ago(1)), "spec": {}, "status": {}}
    assert row(table("jobs", deleting, group="batch"))["Status"] == "Terminating"


def test_cron_job() -> None:
    cj = {"metadata": meta("nightly", 3 * D),
          "spec": {"schedule": "0 2 * * *", "suspend": False,
                   "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
          "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": ago(90)}}
    t = table("cronjobs", cj, group="batch")
    assert names(t) == ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age", "Containers",
                        "Images", "Selector"]
    assert [c["type"] for c in t["columnDefinitions"][3:5]] == ["boolean", "integer"]
    assert cells(t) == ["nightly", "0 2 * * *", "<none>", "False", 1, "90s", "3d", "c", "busybox", "<none>"]
    cj["spec"].update(timeZone="Europe/Paris", suspend=True)
    cj["status"] = {}
    r = row(table("cronjobs", cj, group="batch"))
    assert (r["Timezone"], r["Suspend"], r["Active"], r["Last Schedule"]) == ("Europe/Paris", "True", 0, "<none>")


def test_replication_controller_and_pod_template() -> None:
    rc = {"metadata": meta("old"), "spec": {"replicas": 2, "selector": {"app": "old"}, "template": TEMPLATE},
          "status": {"replicas": 2, "readyReplicas": 2}}
    t = table("replicationcontrollers", rc)
    assert names(t) == ["Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"]
    assert cells(t) == ["old", 2, 2, 2, "10m", "web,log", "nginx:1.27,fluentbit", "app=old"]
    pt = {"metadata": meta("tpl"), "template": TEMPLATE}
    t = table("podtemplates", pt)
    assert names(t) == ["Name", "Containers", "Images", "Pod Labels"]
    assert priorities(t) == [0, 0, 0, 0]
    assert cells(t) == ["tpl", "web,log", "nginx:1.27,fluentbit", "app=web"]


def test_controller_revision() -> None:
    cr = {"metadata": meta("web-7d9f", ownerReferences=[
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": True}]),
        "revision": 3, "data": {}}
    t = table("controllerrevisions", cr, group="apps")
    assert names(t) == ["Name", "Controller", "Revision", "Age"]
    assert cells(t) == ["web-7d9f", "statefulset.apps/web", 3, "10m"]
    orphan = {"metadata": meta("x"), "revision": 1}
    assert cells(table("controllerrevisions", orphan, group="apps"))[1] == "<none>"


def test_horizontal_pod_autoscaler() -> None:
    hpa = {"metadata": meta("web"),
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 2, "maxReplicas": 10,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                        "type": "Utilization", "averageUtilization": 80}}},
                                {"type": "Resource", "resource": {"name": "memory", "target": {
                                    "type": "AverageValue", "averageValue": "500Mi"}}},
                                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
                                    "type": "AverageValue", "averageValue": "1k"}}}]},
           "status": {"currentReplicas": 3, "currentMetrics": [
               {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45,
                                                                             "averageValue": "90m"}}}]}}
    t = table("horizontalpodautoscalers", hpa, group="autoscaling")
    assert names(t) == ["Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"]
    assert cells(t) == ["web", "Deployment/web", "cpu: 45%/80%, memory: <unknown>/500Mi + 1 more...", "2", 10, 3,
                        "10m"]
    hpa["spec"]["metrics"] = hpa["spec"]["metrics"][:1]
    hpa["spec"].pop("minReplicas")
    hpa["status"] = {}
    r = row(table("horizontalpodautoscalers", hpa, group="autoscaling"))
    assert (r["Targets"], r["MinPods"], r["Replicas"]) == ("cpu: <unknown>/80%", "<unset>", 0)
    hpa["spec"]["metrics"] = []
    assert row(table("horizontalpodautoscalers", hpa, group="autoscaling"))["Targets"] == "<none>"


def test_pod_disruption_budget_and_priority_class() -> None:
    pdb = {"metadata": meta("web"), "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}}
    t = table("poddisruptionbudgets", pdb, group="policy")
    assert names(t) == ["Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"]
    assert cells(t) == ["web", "50%", "N/A", 1, "10m"]
    pdb["spec"] = {"maxUnavailable": 1}
    assert cells(table("poddisruptionbudgets", pdb, group="policy"))[1:3] == ["N/A", "1"]
    pc = {"metadata": {"name": "high", "creationTimestamp": ago(60)}, "value": 1000000, "globalDefault": False,
          "preemptionPolicy": "PreemptLowerPriority"}
    t = table("priorityclasses", pc, group="scheduling.k8s.io")
    assert names(t) == ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
    assert priorities(t) == [0, 0, 0, 0, 0]
    assert cells(t) == ["high", 1000000, False, "60s", "PreemptLowerPriority"]


# ---------------------------------------------------------------------------------------------------- networking


def svc(svc_type: str, ports: list, **spec) -> dict:
    return {"metadata": meta("web"),
            "spec": {"type": svc_type, "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": ports,
                     "selector": {"app": "web"}, **spec}, "status": {"loadBalancer": {}}}


def test_services() -> None:
    t = table("services", svc("ClusterIP", [{"port": 80, "protocol": "TCP", "targetPort": 8080}]))
    assert names(t) == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert priorities(t) == [0, 0, 0, 0, 0, 0, 1]
    assert cells(t) == ["web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP", "10m", "app=web"]
    node_port = svc("NodePort", [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                                 {"port": 53, "protocol": "UDP", "nodePort": 30053}])
    assert cells(table("services", node_port))[3:5] == ["<none>", "80:30080/TCP,53:30053/UDP"]
    lb = svc("LoadBalancer", [{"port": 443, "nodePort": 31443, "protocol": "TCP"}])
    assert cells(table("services", lb))[3:5] == ["<pending>", "443:31443/TCP"]
    lb["status"]["loadBalancer"] = {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"},
                                                {"ip": "203.0.113.9"}]}
    assert row(table("services", lb))["External-IP"] == "203.0.113.9,lb.example.com"
    lb["spec"]["externalIPs"] = ["198.51.100.1"]
    assert row(table("services", lb))["External-IP"] == "203.0.113.9,lb.example.com,198.51.100.1"
    ext = svc("ExternalName", [], externalName="db.example.com")
    ext["spec"].pop("clusterIP")
    ext["spec"].pop("clusterIPs")
    ext["spec"].pop("selector")
    assert cells(table("services", ext)) == ["web", "ExternalName", "<none>", "db.example.com", "<none>", "10m",
                                             "<none>"]
    headless = svc("ClusterIP", [{"port": 5432, "protocol": "TCP"}], clusterIP="None", clusterIPs=["None"],
                   externalIPs=["192.0.2.1", "192.0.2.2"])
    assert cells(table("services", headless))[2:4] == ["None", "192.0.2.1,192.0.2.2"]


def test_endpoints() -> None:
    ep = {"metadata": meta("web"), "subsets": [
        {"addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.0.6"}], "notReadyAddresses": [{"ip": "10.244.0.9"}],
         "ports": [{"port": 8080, "protocol": "TCP"}, {"name": "metrics", "port": 9090}]}]}
    t = table("endpoints", ep)
    assert names(t) == ["Name", "Endpoints", "Age"]
    assert cells(t) == ["web", "10.244.0.5:8080,10.244.0.6:8080,10.244.0.5:9090 + 1 more...", "10m"]
    small = {"metadata": meta("db"), "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 5432}]}]}
    assert cells(table("endpoints", small))[1] == "[fd00::1]:5432"
    headless = {"metadata": meta("h"), "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}]}
    assert cells(table("endpoints", headless))[1] == "10.0.0.1,10.0.0.2"
    assert cells(table("endpoints", {"metadata": meta("none")}))[1] == "<none>"


def test_endpoint_slices() -> None:
    es = {"metadata": meta("web-x7k2p"), "addressType": "IPv4",
          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "any"}],
          "endpoints": [{"addresses": [f"10.244.0.{i}"]} for i in range(1, 6)]}
    t = table("endpointslices", es, group="discovery.k8s.io")
    assert names(t) == ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    assert cells(t) == ["web-x7k2p", "IPv4", "8080,any", "10.244.0.1,10.244.0.2,10.244.0.3 + 2 more...", "10m"]
    empty = {"metadata": meta("e"), "addressType": "IPv6", "ports": [{}], "endpoints": []}
    assert cells(table("endpointslices", empty, group="discovery.k8s.io"))[2:4] == ["*", "<unset>"]


def test_ingress_and_ingress_class() -> None:
    ing = {"metadata": meta("web"),
           "spec": {"ingressClassName": "nginx", "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}],
                    "tls": [{"hosts": ["a.example.com"]}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}
    t = table("ingresses", ing, group="networking.k8s.io")
    assert names(t) == ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    assert cells(t) == ["web", "nginx", "a.example.com,b.example.com", "192.0.2.10", "80, 443", "10m"]
    many = {"metadata": meta("m"), "spec": {"rules": [{"host": f"h{i}.example.com"} for i in range(5)] + [{}]}}
    assert cells(table("ingresses", many, group="networking.k8s.io"))[1:5] == [
        "<none>", "h0.example.com,h1.example.com,h2.example.com + 3 more...", "", "80"]
    assert cells(table("ingresses", {"metadata": meta("d"), "spec": {}}, group="networking.k8s.io"))[2] == "*"
    ic = {"metadata": {"name": "nginx", "creationTimestamp": ago(60)},
          "spec": {"controller": "k8s.io/ingress-nginx",
                   "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}}
    t = table("ingressclasses", ic, group="networking.k8s.io")
    assert names(t) == ["Name", "Controller", "Parameters", "Age"]
    assert cells(t) == ["nginx", "k8s.io/ingress-nginx", "IngressParameters.k8s.example.com/p", "60s"]


def test_network_policy() -> None:
    np = {"metadata": meta("deny"), "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    t = table("networkpolicies", np, group="networking.k8s.io")
    assert names(t) == ["Name", "Pod-Selector", "Age"]
    assert cells(t) == ["deny", "<none>", "10m"]
    np["spec"]["podSelector"] = {"matchLabels": {"role": "db"}}
    assert cells(table("networkpolicies", np, group="networking.k8s.io"))[1] == "role=db"


# ---------------------------------------------------------------------------------------------------- cluster


def node(name: str, ready: str = "True", **extra_spec) -> dict:
    return {"metadata": {"name": name, "creationTimestamp": ago(30 * D),
                         "labels": {"kubernetes.io/hostname": name, "node-role.kubernetes.io/control-plane": "",
                                    "node-role.kubernetes.io/worker": ""}},
            "spec": dict(extra_spec),
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": ready}],
                       "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP",
                                                                            "address": "172.18.0.2"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                    "kernelVersion": "6.8.0", "containerRuntimeVersion": "containerd://1.7.24"}}}


def test_nodes() -> None:
    t = table("nodes", node("cp-1", unschedulable=True))
    assert names(t) == ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
                        "Kernel-Version", "Container-Runtime"]
    assert priorities(t) == [0] * 5 + [1] * 5
    assert cells(t) == ["cp-1", "Ready,SchedulingDisabled", "control-plane,worker", "30d", "v1.32.0", "172.18.0.2",
                        "<none>", "Debian GNU/Linux 12 (bookworm)", "6.8.0", "containerd://1.7.24"]
    assert cells(table("nodes", node("w", ready="Unknown")))[1] == "NotReady"
    bare = {"metadata": {"name": "new", "labels": {"kubernetes.io/role": "edge"}}, "status": {}}
    assert cells(table("nodes", bare)) == ["new", "Unknown", "edge", "<unknown>", "", "<none>", "<none>",
                                           "<unknown>", "<unknown>", "<unknown>"]
    plain = {"metadata": {"name": "p", "creationTimestamp": ago(60)}}
    assert cells(table("nodes", plain))[2] == "<none>"


def test_namespaces_configmaps_secrets_service_accounts() -> None:
    t = table("namespaces", {"metadata": {"name": "default", "creationTimestamp": ago(400 * D)},
                             "status": {"phase": "Active"}})
    assert names(t) == ["Name", "Status", "Age"] and cells(t) == ["default", "Active", "400d"]
    t = table("configmaps", {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}})
    assert names(t) == ["Name", "Data", "Age"] and cells(t) == ["cfg", 3, "10m"]
    t = table("secrets", {"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
    assert names(t) == ["Name", "Type", "Data", "Age"] and cells(t) == ["tls", "kubernetes.io/tls", 2, "10m"]
    t = table("serviceaccounts", {"metadata": meta("default")})
    assert names(t) == ["Name", "Secrets", "Age"] and cells(t) == ["default", 0, "10m"]


def test_core_events() -> None:
    ev = {"metadata": meta("web.17d", 120), "type": "Warning", "reason": "BackOff",
          "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default",
                             "fieldPath": "spec.containers{web}"},
          "source": {"component": "kubelet", "host": "node-1"}, "message": "Back-off restarting failed container\n",
          "firstTimestamp": ago(3600), "lastTimestamp": ago(30), "count": 12}
    t = table("events", ev)
    assert names(t) == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen",
                        "Count", "Name"]
    assert priorities(t) == [0, 0, 0, 0, 1, 1, 0, 1, 1, 1]
    assert t["columnDefinitions"][-1]["format"] == "name" and t["columnDefinitions"][0]["format"] == ""
    assert cells(t) == ["30s", "Warning", "BackOff", "pod/web", "spec.containers{web}", "kubelet, node-1",
                        "Back-off restarting failed container", "60m", 12, "web.17d"]
    new_style = {"metadata": meta("n.1"), "type": "Normal", "reason": "Scheduled",
                 "involvedObject": {"kind": "Pod", "name": "web"}, "message": "ok",
                 "eventTime": "2024-05-31T23:59:00.000000Z", "reportingComponent": "default-scheduler",
                 "reportingInstance": "default-scheduler-cp-1"}
    r = row(table("events", new_style))
    assert (r["Last Seen"], r["First Seen"], r["Count"], r["Source"]) == (
        "60s", "60s", 1, "default-scheduler, default-scheduler-cp-1")
    series = dict(new_style, series={"count": 4, "lastObservedTime": "2024-05-31T23:59:50.000000Z"})
    r = row(table("events", series))
    assert (r["Last Seen"], r["Count"]) == ("10s", 4)
    kind_only = dict(new_style, involvedObject={"kind": "Node"}, eventTime=None)
    r = row(table("events", kind_only))
    assert (r["Object"], r["Last Seen"]) == ("node", "<unknown>")


def test_events_k8s_io_events_print_like_core_events() -> None:
    ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": meta("web.18a"),
          "eventTime": "2024-05-31T23:58:00.000000Z", "reportingController": "kubelet", "reportingInstance": "node-1",
          "action": "Pulling", "reason": "Pulling", "type": "Normal", "note": "Pulling image nginx",
          "regarding": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"},
          "deprecatedCount": 2, "deprecatedLastTimestamp": ago(20), "deprecatedFirstTimestamp": ago(120),
          "deprecatedSource": {"component": "kubelet", "host": "node-1"}}
    t = table("events", ev, group="events.k8s.io")
    assert names(t) == names(table("events"))
    assert cells(t) == ["20s", "Normal", "Pulling", "pod/web", "spec.containers{web}", "kubelet, node-1",
                        "Pulling image nginx", "2m", 2, "web.18a"]


def test_leases_and_storage() -> None:
    lease = {"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "cp-1_abc", "leaseDurationSeconds": 15}}
    t = table("leases", lease, group="coordination.k8s.io")
    assert names(t) == ["Name", "Holder", "Age"] and cells(t) == ["kube-scheduler", "cp-1_abc", "10m"]
    assert cells(table("leases", {"metadata": meta("x"), "spec": {}}, group="coordination.k8s.io"))[1] == ""

    sc = {"metadata": {"name": "standard", "creationTimestamp": ago(D),
                       "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
          "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}
    t = table("storageclasses", sc, group="storage.k8s.io")
    assert names(t) == ["Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode", "AllowVolumeExpansion", "Age"]
    assert cells(t) == ["standard (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", False, "24h"]

    pv = {"metadata": {"name": "pv-1", "creationTimestamp": ago(600)},
          "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                   "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "standard",
                   "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
          "status": {"phase": "Bound"}}
    t = table("persistentvolumes", pv)
    assert names(t) == ["Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
                        "VolumeAttributesClass", "Reason", "Age", "VolumeMode"]
    assert priorities(t) == [0] * 10 + [1]
    assert cells(t) == ["pv-1", "10Gi", "RWO,RWX", "Retain", "Bound", "default/data", "standard", "<unset>", "",
                        "10m", "Filesystem"]

    pvc = {"metadata": meta("data"), "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                                             "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-1",
                                             "volumeMode": "Filesystem"},
           "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}}}
    t = table("persistentvolumeclaims", pvc)
    assert names(t) == ["Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass",
                        "VolumeAttributesClass", "Age", "VolumeMode"]
    assert cells(t) == ["data", "Bound", "pv-1", "10Gi", "RWO", "standard", "<unset>", "10m", "Filesystem"]
    pending = {"metadata": meta("wait", deletionTimestamp=ago(1),
                                annotations={"volume.beta.kubernetes.io/storage-class": "legacy"}),
               "spec": {"storageClassName": "standard"}, "status": {"phase": "Pending"}}
    assert cells(table("persistentvolumeclaims", pending)) == ["wait", "Terminating", "", "", "", "legacy", "<unset>",
                                                               "10m", "<unset>"]


def test_resource_quota() -> None:
    rq = {"metadata": meta("compute"),
          "status": {"hard": {"requests.cpu": "4", "limits.memory": "8Gi", "pods": "10", "limits.cpu": "8"},
                     "used": {"requests.cpu": "500m", "pods": "3", "limits.cpu": "1"}}}
    t = table("resourcequotas", rq)
    assert names(t) == ["Name", "Request", "Limit", "Age"]
    assert cells(t) == ["compute", "pods: 3/10, requests.cpu: 500m/4", "limits.cpu: 1/8, limits.memory: 0/8Gi", "10m"]


def test_rbac() -> None:
    rb = {"metadata": meta("admins"), "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                  "name": "admin"},
          "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                       {"kind": "Group", "name": "ops"},
                       {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}]}
    t = table("rolebindings", rb, group="rbac.authorization.k8s.io")
    assert names(t) == ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
    assert priorities(t) == [0, 0, 0, 1, 1, 1]
    assert cells(t) == ["admins", "ClusterRole/admin", "10m", "alice, bob", "ops", "build/ci"]
    crb = table("clusterrolebindings", {"metadata": {"name": "root", "creationTimestamp": ago(60)},
                                        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}},
                group="rbac.authorization.k8s.io")
    assert names(crb) == names(t)
    assert cells(crb) == ["root", "ClusterRole/cluster-admin", "60s", "", "", ""]
    assert "clusterRoleBinding" in crb["columnDefinitions"][3]["description"]


@pytest.mark.parametrize("resource, group", [("roles", "rbac.authorization.k8s.io"),
                                             ("clusterroles", "rbac.authorization.k8s.io"),
                                             ("limitranges", ""),
                                             ("customresourcedefinitions", "apiextensions.k8s.io")])
def test_kinds_without_printers_get_name_and_created_at(resource: str, group: str) -> None:
    t = table(resource, {"metadata": {"name": "thing", "creationTimestamp": "2024-05-01T10:00:00Z"}},
              {"metadata": {"name": "offset", "creationTimestamp": "2024-05-01T12:00:00+02:00"}},
              {"metadata": {"name": "unset"}}, group=group)
    assert names(t) == ["Name", "Created At"]
    assert t["columnDefinitions"][1]["type"] == "date"
    assert [cells(t, i) for i in range(3)] == [["thing", "2024-05-01T10:00:00Z"], ["offset", "2024-05-01T10:00:00Z"],
                                                ["unset", "0001-01-01T00:00:00Z"]]


# ---------------------------------------------------------------------------------------------------- custom resources

CR_RT = ResourceType("example.com", "v1", "databases", "Database", True)
DB = {"apiVersion": "example.com/v1", "kind": "Database",
      "metadata": {"name": "orders", "namespace": "default", "creationTimestamp": ago(5 * H + 3 * M),
                   "labels": {"app.kubernetes.io/name": "pg"}},
      "spec": {"engine": "postgres", "size": 3, "ratio": 1.5, "whole": 2.0, "ha": True,
               "replicas": [{"name": "r0", "zone": "a"}, {"name": "r1", "zone": "b"}],
               "config": {"b": 1, "a": "x"}},
      "status": {"conditions": [{"type": "Progressing", "status": "False"},
                                {"type": "Ready", "status": "True", "lastTransitionTime": ago(90)}]}}
COLUMNS = [
    {"name": "Engine", "type": "string", "jsonPath": ".spec.engine", "description": "The database engine"},
    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Since", "type": "date", "jsonPath": '.status.conditions[?(@.type=="Ready")].lastTransitionTime'},
    {"name": "Zones", "type": "string", "jsonPath": ".spec.replicas[*].zone", "priority": 1},
    {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio", "format": "float"},
    {"name": "HA", "type": "boolean", "jsonPath": ".spec.ha"},
    {"name": "Missing", "type": "string", "jsonPath": ".spec.nothing.here"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def test_custom_columns() -> None:
    t = to_table(CR_RT, [DB], now=NOW, custom_columns=COLUMNS)
    assert names(t) == ["Name", "Engine", "Size", "Ready", "Since", "Zones", "Ratio", "HA", "Missing", "Age"]
    assert priorities(t) == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    defs = t["columnDefinitions"]
    assert defs[1]["description"] == "The database engine"
    assert defs[2] == {"name": "Size", "type": "integer", "format": "",
                       "description": "Custom resource definition column (in JSONPath format): .spec.size",
                       "priority": 0}
    assert defs[4]["type"] == "date" and defs[6]["format"] == "float"
    assert cells(t) == ["orders", "postgres", 3, "True", "90s", "a", 1.5, True, None, "5h3m"]
    orjson.dumps(t)


def test_custom_column_value_conversions() -> None:
    def one(col_type: str, path: str) -> object:
        return cells(to_table(CR_RT, [DB], now=NOW, custom_columns=[
            {"name": "X", "type": col_type, "jsonPath": path}]))[1]

    assert one("string", ".spec.size") == "3"
    assert one("string", ".spec.whole") == "2"
    assert one("string", ".spec.ha") == "true"
    assert one("string", ".spec.config") == '{"a":"x","b":1}'
    assert one("string", ".spec.replicas[1]") == '{"name":"r1","zone":"b"}'
    assert one("string", ".metadata.labels['app.kubernetes.io/name']") == "pg"
    assert one("integer", ".spec.ratio") == 1
    assert one("integer", ".spec.engine") is None
    assert one("number", ".spec.size") == 3.0
    assert one("boolean", ".spec.size") is None
    assert one("date", ".spec.size") is None
    assert one("date", ".spec.engine") == "<invalid>"
    assert one("string", ".spec[") is None          # unparseable path: an empty cell, as Kubernetes shows


def test_custom_resource_defaults_to_name_and_age() -> None:
    for t in (to_table(CR_RT, [DB], now=NOW), to_table(CR_RT, [DB], now=NOW, custom_columns=[])):
        assert names(t) == ["Name", "Age"]
        assert t["columnDefinitions"][1]["type"] == "date"
        assert cells(t) == ["orders", "5h3m"]


def test_jsonpath_subset() -> None:
    doc = {"items": [{"name": "a", "n": 1, "tags": {"x": "1"}}, {"name": "b", "n": 5}, {"name": "c", "n": 10}],
           "meta": {"a.b": "dotted", "plain": "p"}}
    assert jsonpath_find(doc, "{.items[*].name}") == ["a", "b", "c"]
    assert jsonpath_find(doc, "$.items[0].name") == ["a"]
    assert jsonpath_find(doc, ".items[-1].name") == ["c"]
    assert jsonpath_find(doc, ".items[0:2].name") == ["a", "b"]
    assert jsonpath_find(doc, ".items[0,2].n") == [1, 10]
    assert jsonpath_find(doc, ".items[?(@.n > 3)].name") == ["b", "c"]
    assert jsonpath_find(doc, ".items[?(@.n<=5)].name") == ["a", "b"]
    assert jsonpath_find(doc, ".items[?(@.name != 'b')].name") == ["a", "c"]
    assert jsonpath_find(doc, ".items[?(@.tags)].name") == ["a"]
    assert jsonpath_find(doc, ".items[?(@.tags.x == \"1\")].name") == ["a"]
    assert jsonpath_find(doc, ".meta['a.b']") == ["dotted"]
    assert jsonpath_find(doc, r".meta.a\.b") == ["dotted"]
    assert jsonpath_find(doc, ".meta.*") == ["dotted", "p"]
    assert jsonpath_find(doc, "..name") == ["a", "b", "c"]
    assert jsonpath_find(doc, ".items[7].name") == []
    assert jsonpath_find(doc, ".nothing.at.all") == []
    with pytest.raises(JSONPathError):
        jsonpath_find(doc, ".items[?(@.n > )]")
    with pytest.raises(JSONPathError):
        jsonpath_find(doc, ".items[")


# ---------------------------------------------------------------------------------------------------- every kind


@pytest.mark.parametrize("resource_type", BUILTIN, ids=lambda r: r.qualified)
def test_every_builtin_kind_renders_consistent_rows(resource_type: ResourceType) -> None:
    """A bare object and a (nearly) empty one both give one JSON-typed cell per column."""
    objs = [{"metadata": meta("x")}, {}]
    t = to_table(resource_type, objs, now=NOW)
    assert t["columnDefinitions"], resource_type.qualified
    for r in t["rows"]:
        assert len(r["cells"]) == len(t["columnDefinitions"])
        assert all(c is None or type(c) in (str, int, float, bool) for c in r["cells"])
    orjson.dumps(t)


def test_printer_coverage() -> None:
    with_printers = {(r.group, r.resource) for r in BUILTIN} & TABLE_KINDS
    assert len(with_printers) == len(TABLE_KINDS) == 33
