"""The HorizontalPodAutoscaler controller: bounds enforced end to end on a real server (no metrics API is served,
so the HPA reports it cannot compute a replica count), and the replica arithmetic checked as plain functions."""
from __future__ import annotations

import time
import uuid
from typing import Any, Iterator

import pytest

from harness import Kubectl, Server
from test_endpoints import wait_for

from kates.controllers.horizontalpodautoscaler import (HorizontalPodAutoscalerController, PodMetric, ScaleEvent,
                                                       resource_replicas, scale_down_limit, scale_up_limit)


@pytest.fixture(scope="module")
def hpa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("hpa"),
               extra=["--disable-scheduler", "--controllers", "horizontalpodautoscaler"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kubectl(hpa_server: Server) -> Kubectl:
    return Kubectl(hpa_server.kubeconfig)


@pytest.fixture
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = "hpa-" + uuid.uuid4().hex[:8]
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def deployment(name: str, replicas: int) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: c, image: nginx, resources: {{requests: {{cpu: 100m}}}}}}]
"""


def hpa(name: str, min_replicas: int, max_replicas: int) -> str:
    return f"""
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: {name}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: {min_replicas}
  maxReplicas: {max_replicas}
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}
"""


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def test_below_min_replicas_scales_up_and_reports_missing_metrics(kubectl, ns):
    kubectl.apply(deployment("web", 1), "-n", ns)
    kubectl.apply(hpa("web", 2, 5), "-n", ns)
    wait_for(lambda: kubectl.json("get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 2)
    status = wait_for(lambda: (h := kubectl.json("get", "hpa", "web", "-n", ns)) and "ScalingActive" in conditions(h)
                      and h)
    conds = conditions(status)
    assert conds["AbleToScale"]["status"] == "True"
    assert conds["ScalingActive"]["status"] == "False"
    assert conds["ScalingActive"]["reason"] == "FailedGetResourceMetric"
    assert conds["ScalingActive"]["message"].startswith(
        "the HPA was unable to compute the replica count: failed to get cpu utilization: "
        "unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: ")
    assert conds["ScalingLimited"]["status"] == "True" and conds["ScalingLimited"]["reason"] == "TooFewReplicas"
    assert status["status"]["desiredReplicas"] == 2 and status["status"]["currentReplicas"] == 1
    assert "lastScaleTime" in status["status"]

    events = wait_for(lambda: {e["reason"]: e for e in kubectl.json(
        "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler")["items"]}
        if len(kubectl.json("get", "events", "-n", ns)["items"]) >= 2 else None)
    assert events["SuccessfulRescale"]["message"] == "New size: 2; reason: Current number of replicas below " \
                                                     "Spec.MinReplicas"
    assert events["FailedGetResourceMetric"]["type"] == "Warning"
    out = kubectl.run("get", "hpa", "web", "-n", ns).stdout
    assert "Deployment/web" in out and "<unknown>/50%" in out


def test_above_max_replicas_scales_down(kubectl, ns):
    kubectl.apply(deployment("big", 6), "-n", ns)
    kubectl.apply(hpa("big", 1, 3), "-n", ns)
    wait_for(lambda: kubectl.json("get", "deployment", "big", "-n", ns)["spec"]["replicas"] == 3)
    status = wait_for(lambda: (h := kubectl.json("get", "hpa", "big", "-n", ns)) and h.get("status", {}).get(
        "desiredReplicas") == 3 and h)
    assert conditions(status)["ScalingLimited"]["reason"] == "TooManyReplicas"


def test_within_bounds_without_metrics_does_not_scale(kubectl, ns):
    kubectl.apply(deployment("steady", 2), "-n", ns)
    kubectl.apply(hpa("steady", 1, 4), "-n", ns)
    status = wait_for(lambda: (h := kubectl.json("get", "hpa", "steady", "-n", ns)) and "ScalingActive" in
                      conditions(h) and h)
    assert conditions(status)["ScalingActive"]["status"] == "False"
    assert status["status"]["currentReplicas"] == 2
    events = wait_for(lambda: [e for e in kubectl.json("get", "events", "-n", ns)["items"]
                               if e["reason"] == "FailedComputeMetricsReplicas"])
    assert events[0]["message"] == (
        "invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: "
        "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from "
        "resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)")
    assert kubectl.json("get", "deployment", "steady", "-n", ns)["spec"]["replicas"] == 2


def test_missing_scale_target_fails_get_scale(kubectl, ns):
    kubectl.apply(hpa("nothing", 1, 3), "-n", ns)
    status = wait_for(lambda: (h := kubectl.json("get", "hpa", "nothing", "-n", ns)) and "AbleToScale" in
                      conditions(h) and h)
    assert conditions(status)["AbleToScale"] == {**conditions(status)["AbleToScale"], "status": "False",
                                                 "reason": "FailedGetScale"}


# -- the arithmetic, as plain functions ----------------------------------------------------------------------

NOW = 1_000_000.0


def pod(name: str, cpu: str = "100m", ready: bool = True, phase: str = "Running", started: float = NOW - 3600,
        deleted: bool = False) -> dict[str, Any]:
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    meta: dict[str, Any] = {"name": name}
    if deleted:
        meta["deletionTimestamp"] = ts
    return {"metadata": meta,
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": phase, "startTime": ts,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": ts}]}}


def usage(**values: int) -> dict[str, PodMetric]:
    return {k: PodMetric(v, NOW, 30) for k, v in values.items()}


def test_utilization_scales_by_ratio_with_tolerance():
    pods = [pod("a"), pod("b")]
    # 100% used of a 50% target: double
    assert resource_replicas(2, 50, None, usage(a=100, b=100), pods, "cpu", None, NOW) == (4, 100, 100)
    # 53% of 50% is within the 10% tolerance: stay
    assert resource_replicas(2, 50, None, usage(a=53, b=53), pods, "cpu", None, NOW)[0] == 2
    # 10% of 50%: down to ceil(0.2 * 2) = 1
    assert resource_replicas(2, 50, None, usage(a=10, b=10), pods, "cpu", None, NOW)[0] == 1
    # average value targets: 300m average against 100m → 3x
    assert resource_replicas(2, None, 100, usage(a=300, b=300), pods, "cpu", None, NOW) == (6, None, 300)


def test_missing_and_unready_pods_damp_the_change():
    pods = [pod("a"), pod("b"), pod("c", phase="Pending")]
    # scaling up: the pending pod counts as using nothing: 2 pods at 150% of a 50% target would be 3x,
    # with c at 0% the average is 100%, 2x on 3 pods → 6
    replicas, _, _ = resource_replicas(3, 50, None, usage(a=150, b=150), pods, "cpu", None, NOW)
    assert replicas == 6
    # scaling down with a pod missing metrics: it is assumed at 100% of its request, damping the drop
    pods = [pod("a"), pod("b"), pod("c")]
    replicas, _, _ = resource_replicas(3, 50, None, usage(a=10, b=10), pods, "cpu", None, NOW)
    assert replicas == 3   # (10+10+100)/300 = 40% vs 50% → 0.8 → ceil(2.4) = 3
    # deleted and failed pods are ignored
    pods = [pod("a"), pod("b", deleted=True), pod("c", phase="Failed")]
    assert resource_replicas(3, 50, None, usage(a=100, b=500, c=500), pods, "cpu", None, NOW)[0] == 2


def test_missing_requests_and_no_metrics_are_errors():
    from kates.controllers.horizontalpodautoscaler import MetricError
    nreq = pod("a")
    nreq["spec"]["containers"][0]["resources"] = {}
    with pytest.raises(MetricError, match="missing request for cpu in container c of Pod a"):
        resource_replicas(1, 50, None, usage(a=10), [nreq], "cpu", None, NOW)
    with pytest.raises(MetricError, match="no pods returned by selector"):
        resource_replicas(1, 50, None, usage(a=10), [], "cpu", None, NOW)


def test_behavior_policies_limit_the_rate():
    up = {"selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                              {"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert scale_up_limit(10, [], up, NOW) == 20            # max(10 + 4, 10 * 2)
    assert scale_up_limit(10, [ScaleEvent(5, NOW - 5)], up, NOW) == 10   # 5 already added this period: from 5
    assert scale_up_limit(10, [], {**up, "selectPolicy": "Min"}, NOW) == 14
    assert scale_up_limit(10, [], {**up, "selectPolicy": "Disabled"}, NOW) == 10
    down = {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}
    assert scale_down_limit(10, [], down, NOW) == 5
    assert scale_down_limit(10, [ScaleEvent(2, NOW - 10)], down, NOW) == 6


def test_scale_down_is_stabilized_over_the_window():
    class Options:
        clock = staticmethod(lambda: NOW)
    ctl = HorizontalPodAutoscalerController.__new__(HorizontalPodAutoscalerController)
    ctl.recommendations, ctl.scale_up_events, ctl.scale_down_events = {}, {}, {}
    ctl.downscale_stabilization = 300.0
    conds: list[dict[str, Any]] = []
    assert ctl.normalize("k", conds, 5, 5, 1, 10, NOW - 100) == 5
    # a lower recommendation within 5 minutes of a higher one waits
    assert ctl.normalize("k", conds, 5, 2, 1, 10, NOW) == 5
    assert {c["type"]: c["reason"] for c in conds}["AbleToScale"] == "ScaleDownStabilized"
    # once the higher one is older than the window, it applies
    assert ctl.normalize("k", conds, 5, 2, 1, 10, NOW + 301) == 2
    # scaling up is limited to max(2x, 4) per step
    assert ctl.normalize("k", conds, 2, 9, 1, 10, NOW + 302) == 4
    assert {c["type"]: c["reason"] for c in conds}["ScalingLimited"] == "ScaleUpLimit"
