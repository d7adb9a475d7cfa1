"""The HorizontalPodAutoscaler controller (autoscaling/v2): scales a workload so its metrics meet their targets.

Modelled on Kubernetes' `pkg/controller/podautoscaler` (horizontal.go, replica_calculator.go). Every 15 s each
HPA is reconciled: the target's scale subresource gives its replica count and pod selector; each metric gives
a replica proposal (for a Resource metric: ceil(current * usage / target), not acting within a 10% tolerance,
pods that are unready or missing metrics counted so as to damp the change); the largest proposal wins, is
stabilized (scale-down waits for the highest recommendation of the last 5 minutes, or the behavior's windows
and policies), and clamped to [minReplicas, maxReplicas]. The outcome is written to the scale subresource and
the HPA's status, with the AbleToScale / ScalingActive / ScalingLimited conditions Kubernetes reports.

Metrics come from the metrics APIs (metrics.k8s.io for Resource metrics, custom.metrics.k8s.io and
external.metrics.k8s.io for the others). When they are not served the HPA says so, as Kubernetes does
(ScalingActive False, FailedGetResourceMetric), and only enforces the replica bounds.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from ..api import errors
from ..api.resources import BUILTIN, ResourceType
from ..api.selectors import parse_label_selector
from ..api.validation.quantity import DECIMAL_SI, Quantity, QuantityError, canonical, parse
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory
from ..client.rest import Client, resource
from ..api.timestamps import parse_rfc3339 as parse_time, rfc3339

log = logging.getLogger(__name__)

Obj = dict[str, Any]

TOLERANCE = 0.1
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4
CPU_INITIALIZATION_PERIOD = 300.0
DELAY_OF_INITIAL_READINESS_STATUS = 30.0


class MetricError(Exception):
    """A metric could not be turned into a replica count; `reason` is the ScalingActive condition's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def milli(raw: Any) -> int:
    """A quantity in thousandths, rounded up (Kubernetes' MilliValue)."""
    q = parse(raw)
    return int((q.value * 1000).to_integral_value(rounding="ROUND_CEILING"))


def milli_quantity(value: int) -> str:
    return canonical(Quantity(Decimal(value) / 1000, DECIMAL_SI))


def api_error_text(e: errors.APIError, what: str) -> str:
    """client-go's wording for a 404 without a Status body: what the HPA events show when an API is missing."""
    if isinstance(e, errors.NotFound) or getattr(e, "code", 0) == 404:
        return f"the server could not find the requested resource (get {what})"
    return str(e)


def metric_value_what(metric: Obj) -> str:
    """How Kubernetes prefixes a metric's failure in the FailedComputeMetricsReplicas event."""
    mtype = metric.get("type")
    if mtype == "Resource":
        return f"failed to get {(metric.get('resource') or {}).get('name')} resource metric value"
    if mtype == "ContainerResource":
        return f"failed to get {(metric.get('containerResource') or {}).get('name')} container metric value"
    if mtype == "Pods":
        return "failed to get pods metric value"
    if mtype == "Object":
        return "failed to get object metric value"
    if mtype == "External":
        return f"failed to get {((metric.get('external') or {}).get('metric') or {}).get('name')} external metric"
    return "failed to get metric value"


def scale_target_type(api_version: str, kind: str) -> ResourceType | None:
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return next((rt for rt in BUILTIN if rt.group == group and rt.kind == kind and rt.subresource("scale")), None)


# -- conditions ------------------------------------------------------------------------------------------

def set_condition(conditions: list[Obj], type_: str, status: str, reason: str, message: str, now: float) -> None:
    for c in conditions:
        if c["type"] == type_:
            if c.get("status") != status:
                c["lastTransitionTime"] = rfc3339(now)
            c.update(status=status, reason=reason, message=message)
            return
    conditions.append({"type": type_, "status": status, "lastTransitionTime": rfc3339(now), "reason": reason,
                       "message": message})


# -- pods ------------------------------------------------------------------------------------------------

def container_request(container: Obj, name: str) -> int | None:
    raw = ((container.get("resources") or {}).get("requests") or {}).get(name)
    return None if raw is None else milli(raw)


def pod_request(pod: Obj, name: str, container: str | None = None) -> int:
    """The pod's request for a resource in milli-units (one container's, for ContainerResource metrics)."""
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        if container is not None and c.get("name") != container:
            continue
        req = container_request(c, name)
        if req is None:
            raise MetricError("FailedGetResourceMetric",
                              f"missing request for {name} in container {c.get('name')} of Pod "
                              f"{pod['metadata']['name']}")
        total += req
    return total


@dataclasses.dataclass
class PodMetric:
    value: int          # milli-units
    timestamp: float
    window: float


@dataclasses.dataclass
class PodGroups:
    ready_count: int = 0
    unready: set[str] = dataclasses.field(default_factory=set)
    missing: set[str] = dataclasses.field(default_factory=set)
    ignored: set[str] = dataclasses.field(default_factory=set)


def group_pods(pods: list[Obj], metrics: dict[str, PodMetric], resource_name: str, now: float) -> PodGroups:
    """Which pods count: deleted and failed ones never; pending, unready (for cpu) and metric-less apart."""
    groups = PodGroups()
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or status.get("phase") == "Failed":
            groups.ignored.add(name)
            continue
        if status.get("phase") == "Pending":
            groups.unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            groups.missing.add(name)
            continue
        if resource_name == "cpu":
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
            start = parse_time(status.get("startTime"))
            if ready is None or start is None:
                groups.unready.add(name)
                continue
            transition = parse_time(ready.get("lastTransitionTime")) or start
            if start + CPU_INITIALIZATION_PERIOD > now:
                unready = ready.get("status") == "False" or metric.timestamp < transition + metric.window
            else:
                unready = ready.get("status") == "False" and start + DELAY_OF_INITIAL_READINESS_STATUS > transition
            if unready:
                groups.unready.add(name)
                continue
        groups.ready_count += 1
    return groups


def utilization_ratio(metrics: dict[str, PodMetric], requests: dict[str, int],
                      target: int) -> tuple[float, int, int]:
    """(usage ratio, current utilization %, average raw value) over the pods with both a metric and a request."""
    metrics_total = requests_total = entries = 0
    for name, metric in metrics.items():
        if name not in requests:
            continue
        metrics_total += metric.value
        requests_total += requests[name]
        entries += 1
    if requests_total == 0:
        raise MetricError("FailedGetResourceMetric", "no metrics returned matched known pods")
    utilization = metrics_total * 100 // requests_total
    return utilization / target, utilization, metrics_total // entries


def within_tolerance(ratio: float) -> bool:
    return abs(1.0 - ratio) <= TOLERANCE


def resource_replicas(current: int, target_utilization: int | None, target_average: int | None,
                      metrics: dict[str, PodMetric], pods: list[Obj], resource_name: str, container: str | None,
                      now: float) -> tuple[int, int | None, int]:
    """Kubernetes' GetResourceReplicas / GetRawResourceReplicas: (replicas, utilization %, average milli-value)."""
    if not pods:
        raise MetricError("FailedGetResourceMetric", "no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, resource_name, now)
    metrics = {k: v for k, v in metrics.items() if k not in groups.ignored and k not in groups.unready
               and k in {p["metadata"]["name"] for p in pods}}
    if not metrics:
        raise MetricError("FailedGetResourceMetric",
                          "did not receive metrics for targeted pods (pods might be unready)")
    requests = {p["metadata"]["name"]: pod_request(p, resource_name, container) for p in pods} \
        if target_utilization is not None else {}

    def ratio_of(ms: dict[str, PodMetric]) -> tuple[float, int | None, int]:
        if target_utilization is not None:
            return utilization_ratio(ms, requests, target_utilization)
        average = sum(m.value for m in ms.values()) // len(ms)
        return average / target_average if target_average else 0.0, None, average

    ratio, utilization, raw = ratio_of(metrics)
    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if within_tolerance(ratio):
            return current, utilization, raw
        return math.ceil(ratio * groups.ready_count), utilization, raw
    filled = dict(metrics)
    for name in groups.missing:
        # a pod without metrics is assumed to use what it asked for when scaling down, nothing when scaling up
        if ratio < 1.0:
            value = requests.get(name, 0) if target_utilization is not None else (target_average or 0)
        else:
            value = 0
        filled[name] = PodMetric(value, now, 0)
    if scale_up_with_unready:
        for name in groups.unready:
            filled[name] = PodMetric(0, now, 0)
    new_ratio, _, _ = ratio_of(filled)
    if within_tolerance(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current, utilization, raw
    replicas = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current, utilization, raw
    return replicas, utilization, raw


# -- behavior --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ScaleEvent:
    change: int
    timestamp: float


def replicas_changed_in(period: float, events: list[ScaleEvent], now: float) -> int:
    return sum(e.change for e in events if e.timestamp > now - period)


def scale_up_limit(current: int, events: list[ScaleEvent], rules: Obj, now: float) -> int:
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick = min if select == "Min" else max
    result: int | None = None
    for policy in rules.get("policies") or []:
        start = current - replicas_changed_in(policy.get("periodSeconds", 15), events, now)
        if policy.get("type") == "Pods":
            proposed = start + policy.get("value", 0)
        else:
            proposed = math.ceil(start * (1 + policy.get("value", 0) / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def scale_down_limit(current: int, events: list[ScaleEvent], rules: Obj, now: float) -> int:
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick = max if select == "Min" else min
    result: int | None = None
    for policy in rules.get("policies") or []:
        start = current + replicas_changed_in(policy.get("periodSeconds", 15), events, now)
        if policy.get("type") == "Pods":
            proposed = start - policy.get("value", 0)
        else:
            proposed = int(start * (1 - policy.get("value", 0) / 100))
        result = proposed if result is None else pick(result, proposed)
    return 0 if result is None else result


# -- the controller --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Proposal:
    replicas: int
    metric_name: str
    status: Obj


class HorizontalPodAutoscalerController(Controller):
    name = "horizontal-pod-autoscaler"
    workers = 2
    resync_period = 15.0
    downscale_stabilization = 300.0

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.hpa_rt = resource("horizontalpodautoscalers.autoscaling")
        self.hpas = informers.informer(self.hpa_rt)
        self.pods = informers.informer(resource("pods"))
        self.hpas.add_handler(self.enqueue, self.on_update, self.on_delete)
        self.recommendations: dict[str, list[tuple[int, float]]] = {}
        self.scale_up_events: dict[str, list[ScaleEvent]] = {}
        self.scale_down_events: dict[str, list[ScaleEvent]] = {}

    def on_update(self, old: Obj, new: Obj) -> None:
        # status writes (ours) wait for the resync; spec changes act now
        if old.get("spec") != new.get("spec") or old["metadata"].get("labels") != new["metadata"].get("labels"):
            self.enqueue(new)

    def on_delete(self, hpa: Obj) -> None:
        self.enqueue(hpa)

    def now(self) -> float:
        return self.options.clock()

    async def sync(self, key: str) -> None:
        hpa = self.hpas.store.get(key)
        if hpa is None:
            for state in (self.recommendations, self.scale_up_events, self.scale_down_events):
                state.pop(key, None)
            return
        try:
            await self.reconcile(key, copy.deepcopy(hpa))
        except errors.Conflict:
            raise
        except errors.APIError as e:
            log.debug("hpa %s: %s", key, e)
        finally:
            self.queue.add_after(key, self.resync_period)

    # -- reconcile -----------------------------------------------------------------------------------------
    async def reconcile(self, key: str, hpa: Obj) -> None:
        spec = hpa.get("spec") or {}
        original = copy.deepcopy(hpa.get("status") or {})
        status = hpa.setdefault("status", {})
        conditions: list[Obj] = status.setdefault("conditions", []) or []
        status["conditions"] = conditions
        now = self.now()
        ref = spec.get("scaleTargetRef") or {}
        namespace = hpa["metadata"]["namespace"]
        target_rt = scale_target_type(ref.get("apiVersion", ""), ref.get("kind", ""))
        try:
            if target_rt is None:
                raise errors.NotFound(f'no matches for kind "{ref.get("kind")}" in group '
                                      f'"{ref.get("apiVersion", "").rpartition("/")[0]}"')
            scale = await self.client.get(target_rt, ref.get("name", ""), namespace, subresource="scale")
        except errors.APIError as e:
            self.recorder.event(hpa, "Warning", "FailedGetScale", str(e))
            set_condition(conditions, "AbleToScale", "False", "FailedGetScale",
                          f"the HPA controller was unable to get the target's current scale: {e}", now)
            await self.update_status(hpa, original)
            return
        set_condition(conditions, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale", now)
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        self.recommendations.setdefault(key, [(current, now)])
        min_replicas = spec["minReplicas"] if spec.get("minReplicas") is not None else 1
        max_replicas = int(spec.get("maxReplicas") or 0)

        metric_statuses: list[Obj] | None = None
        rescale_reason = ""
        desired = current
        if current == 0 and min_replicas != 0:
            set_condition(conditions, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero", now)
            rescale = False
        else:
            proposal, metric_statuses, failure = await self.compute_replicas_for_metrics(hpa, scale, conditions, now)
            if current > max_replicas:
                desired, rescale_reason = max_replicas, "Current number of replicas above Spec.MaxReplicas"
                set_condition(conditions, "ScalingLimited", "True", "TooManyReplicas",
                              "the desired replica count is more than the maximum replica count", now)
            elif current < min_replicas:
                desired, rescale_reason = min_replicas, "Current number of replicas below Spec.MinReplicas"
                set_condition(conditions, "ScalingLimited", "True", "TooFewReplicas",
                              "the desired replica count is less than the minimum replica count", now)
            elif proposal is None:
                self.recorder.event(hpa, "Warning", "FailedComputeMetricsReplicas", failure)
                desired = int(status.get("desiredReplicas") or current)
                await self.update_status(hpa, original, current=current, desired=desired, metrics=metric_statuses)
                return
            else:
                desired = proposal.replicas
                if desired > current:
                    rescale_reason = f"{proposal.metric_name} above target"
                elif desired < current:
                    rescale_reason = "All metrics below target"
                if spec.get("behavior") is None:
                    desired = self.normalize(key, conditions, current, desired, min_replicas, max_replicas, now)
                else:
                    desired = self.normalize_with_behaviors(key, spec["behavior"], conditions, current, desired,
                                                            min_replicas, max_replicas, now)
            rescale = desired != current
        if rescale:
            try:
                body = copy.deepcopy(scale)
                body["spec"]["replicas"] = desired
                await self.client.update(target_rt, body, subresource="scale")
            except errors.APIError as e:
                self.recorder.event(hpa, "Warning", "FailedRescale",
                                    f"New size: {desired}; reason: {rescale_reason}; error: {e}")
                set_condition(conditions, "AbleToScale", "False", "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: {e}", now)
                await self.update_status(hpa, original, current=current,
                                         desired=int(status.get("desiredReplicas") or 0),
                                         metrics=status.get("currentMetrics"))
                return
            set_condition(conditions, "AbleToScale", "True", "SucceededRescale",
                          f"the HPA controller was able to update the target scale to {desired}", now)
            self.recorder.event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {rescale_reason}")
            self.store_scale_event(key, spec.get("behavior"), current, desired, now)
            status["lastScaleTime"] = rfc3339(now)
        else:
            desired = current
        await self.update_status(hpa, original, current=current, desired=desired, metrics=metric_statuses)

    async def update_status(self, hpa: Obj, original: Obj, *, current: int | None = None, desired: int | None = None,
                            metrics: list[Obj] | None = None) -> None:
        status = hpa["status"]
        if current is not None:
            status["currentReplicas"] = current
            status["desiredReplicas"] = desired if desired is not None else status.get("desiredReplicas", 0)
            if metrics:
                status["currentMetrics"] = metrics
            else:
                status.pop("currentMetrics", None)
        status.setdefault("desiredReplicas", 0)
        if status == original:
            return
        await self.client.update_status(self.hpa_rt, hpa)

    # -- metrics -------------------------------------------------------------------------------------------
    async def compute_replicas_for_metrics(self, hpa: Obj, scale: Obj, conditions: list[Obj],
                                           now: float) -> tuple[Proposal | None, list[Obj], str]:
        """The largest replica proposal over the HPA's metrics, their statuses, and the failure message if none."""
        spec = hpa["spec"]
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        selector_text = (scale.get("status") or {}).get("selector") or ""
        if not selector_text:
            msg = "the HPA target's scale is missing a selector"
            self.recorder.event(hpa, "Warning", "SelectorRequired", msg)
            set_condition(conditions, "ScalingActive", "False", "InvalidSelector", msg, now)
            return None, [], msg
        try:
            selector = parse_label_selector(selector_text)
        except errors.APIError as e:
            self.recorder.event(hpa, "Warning", "InvalidSelector", str(e))
            set_condition(conditions, "ScalingActive", "False", "InvalidSelector", str(e), now)
            return None, [], str(e)
        pods = [p for p in self.pods.store.in_namespace(hpa["metadata"]["namespace"])
                if selector.matches(p["metadata"].get("labels"))]
        specs = spec.get("metrics") or []
        best: Proposal | None = None
        statuses: list[Obj] = []
        first_error: MetricError | None = None
        first_failure = ""
        invalid = 0
        for metric in specs:
            try:
                proposal = await self.compute_metric(hpa, metric, current, selector_text, pods, now)
            except MetricError as e:
                invalid += 1
                if first_error is None:
                    first_error, first_failure = e, f"{metric_value_what(metric)}: {e}"
                self.recorder.event(hpa, "Warning", e.reason, str(e))
                continue
            statuses.append(proposal.status)
            if best is None or proposal.replicas > best.replicas:
                best = proposal
        if first_error is not None and (invalid >= len(specs) or (best is not None and best.replicas < current)):
            set_condition(conditions, "ScalingActive", "False", first_error.reason,
                          f"the HPA was unable to compute the replica count: {first_error}", now)
            return None, statuses, \
                f"invalid metrics ({invalid} invalid out of {len(specs)}), first error is: {first_failure}"
        if best is None:
            return None, statuses, "no metrics to compute a replica count from"
        set_condition(conditions, "ScalingActive", "True", "ValidMetricFound",
                      f"the HPA was able to successfully calculate a replica count from {best.metric_name}", now)
        return best, statuses, ""

    async def compute_metric(self, hpa: Obj, metric: Obj, current: int, selector: str, pods: list[Obj],
                             now: float) -> Proposal:
        mtype = metric.get("type")
        if mtype in ("Resource", "ContainerResource"):
            return await self.resource_metric(hpa, metric, current, selector, pods, now)
        if mtype == "Pods":
            return await self.pods_metric(hpa, metric, current, selector, pods)
        if mtype == "External":
            return await self.external_metric(hpa, metric, current)
        if mtype == "Object":
            return await self.object_metric(hpa, metric, current)
        raise MetricError("InvalidMetricSourceType", f"unknown metric source type {mtype!r}")

    async def resource_metric(self, hpa: Obj, metric: Obj, current: int, selector: str, pods: list[Obj],
                              now: float) -> Proposal:
        container_metric = metric["type"] == "ContainerResource"
        source = metric.get("containerResource" if container_metric else "resource") or {}
        name, container = source.get("name", ""), source.get("container") if container_metric else None
        target = source.get("target") or {}
        reason = "FailedGetContainerResourceMetric" if container_metric else "FailedGetResourceMetric"
        utilization_target = target.get("averageUtilization") if target.get("type") == "Utilization" else None
        average_target = milli(target["averageValue"]) if utilization_target is None and target.get("averageValue") \
            else None
        what = "utilization" if utilization_target is not None else "usage"
        if utilization_target is None and average_target is None:
            raise MetricError(reason, f"invalid resource metric source: neither an average utilization target "
                                      f"nor an average value (usage) target was set")
        try:
            metrics = await self.pod_resource_metrics(hpa["metadata"]["namespace"], selector, name, container)
            replicas, utilization, raw = resource_replicas(current, utilization_target, average_target, metrics,
                                                           pods, name, container, now)
        except MetricError as e:
            scope = f"container {container} " if container else ""
            raise MetricError(reason, f"failed to get {name} {scope}{what}: {e}") from None
        current_value: Obj = {"averageValue": milli_quantity(raw)}
        if utilization is not None:
            current_value = {"averageUtilization": utilization, **current_value}
        kind = "container resource" if container_metric else "resource"
        metric_name = f"{name} {kind} utilization (percentage of request)" if utilization is not None \
            else f"{name} {kind}"
        body: Obj = {"name": name, "current": current_value}
        if container_metric:
            body = {"name": name, "container": container, "current": current_value}
        return Proposal(replicas, metric_name,
                        {"type": metric["type"], "containerResource" if container_metric else "resource": body})

    async def pod_resource_metrics(self, namespace: str, selector: str, name: str,
                                   container: str | None) -> dict[str, PodMetric]:
        """metrics.k8s.io PodMetrics as milli-values per pod; pods missing a container's sample are skipped."""
        try:
            body = await self.client.request("GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods",
                                             params={"labelSelector": selector})
        except errors.APIError as e:
            raise MetricError("FailedGetResourceMetric",
                              f"unable to get metrics for resource {name}: unable to fetch metrics from resource "
                              f"metrics API: {api_error_text(e, 'pods.metrics.k8s.io')}") from None
        out: dict[str, PodMetric] = {}
        for item in (body or {}).get("items") or []:
            total, complete = 0, True
            containers = item.get("containers") or []
            for c in containers:
                if container is not None and c.get("name") != container:
                    continue
                usage = (c.get("usage") or {}).get(name)
                if usage is None:
                    complete = False
                    break
                try:
                    total += milli(usage)
                except QuantityError:
                    complete = False
                    break
            if container is not None and not any(c.get("name") == container for c in containers):
                complete = False
            if complete and containers:
                window = item.get("window") or "0s"
                out[item["metadata"]["name"]] = PodMetric(total, parse_time(item.get("timestamp")) or 0.0,
                                                          _seconds(window))
        if not out:
            raise MetricError("FailedGetResourceMetric",
                              f"unable to get metrics for resource {name}: no metrics returned from resource "
                              "metrics API")
        return out

    async def pods_metric(self, hpa: Obj, metric: Obj, current: int, selector: str, pods: list[Obj]) -> Proposal:
        source = metric.get("pods") or {}
        ident = source.get("metric") or {}
        name = ident.get("name", "")
        target = milli((source.get("target") or {}).get("averageValue") or 0)
        namespace = hpa["metadata"]["namespace"]
        try:
            body = await self.client.request(
                "GET", f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/*/{quote(name)}",
                params={"labelSelector": selector})
        except errors.APIError as e:
            raise MetricError("FailedGetPodsMetric",
                              f"unable to get metric {name}: unable to fetch "
                              f"metrics from custom metrics API: {api_error_text(e, 'pods.custom.metrics.k8s.io')}"
                              ) from None
        values = {i["describedObject"]["name"]: milli(i["value"]) for i in (body or {}).get("items") or []}
        live = {p["metadata"]["name"] for p in pods}
        values = {k: v for k, v in values.items() if k in live}
        if not values:
            raise MetricError("FailedGetPodsMetric", f"unable to get metric {name}: "
                                                     "no metrics returned from custom metrics API")
        average = sum(values.values()) // len(values)
        ratio = average / target if target else 0.0
        replicas = current if within_tolerance(ratio) else math.ceil(ratio * len(values))
        return Proposal(replicas, f"pods metric {name}",
                        {"type": "Pods",
                         "pods": {"metric": ident, "current": {"averageValue": milli_quantity(average)}}})

    async def external_metric(self, hpa: Obj, metric: Obj, current: int) -> Proposal:
        source = metric.get("external") or {}
        ident = source.get("metric") or {}
        name = ident.get("name", "")
        target = source.get("target") or {}
        namespace = hpa["metadata"]["namespace"]
        from ..api.selectors import format_label_selector
        try:
            body = await self.client.request(
                "GET", f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{quote(name)}",
                params={"labelSelector": format_label_selector(ident.get("selector"))})
        except errors.APIError as e:
            raise MetricError("FailedGetExternalMetric",
                              f"unable to get external metric "
                              f"{namespace}/{name}/{ident.get('selector')}: unable to fetch metrics from external "
                              f"metrics API: {api_error_text(e, name + '.external.metrics.k8s.io')}") from None
        total = sum(milli(i["value"]) for i in (body or {}).get("items") or [])
        if target.get("averageValue") is not None:
            average_target = milli(target["averageValue"])
            ratio = total / (average_target * current) if average_target and current else 0.0
            replicas = current if within_tolerance(ratio) else math.ceil(total / average_target) \
                if average_target else current
            value = {"averageValue": milli_quantity(total // max(current, 1))}
        else:
            value_target = milli(target.get("value") or 0)
            ratio = total / value_target if value_target else 0.0
            replicas = current if within_tolerance(ratio) else math.ceil(ratio * current)
            value = {"value": milli_quantity(total)}
        return Proposal(replicas, f"external metric {name}",
                        {"type": "External", "external": {"metric": ident, "current": value}})

    async def object_metric(self, hpa: Obj, metric: Obj, current: int) -> Proposal:
        source = metric.get("object") or {}
        ident = source.get("metric") or {}
        described = source.get("describedObject") or {}
        name = ident.get("name", "")
        target = source.get("target") or {}
        namespace = hpa["metadata"]["namespace"]
        rt = next((r for r in BUILTIN if r.kind == described.get("kind")), None)
        plural = rt.resource if rt else described.get("kind", "").lower() + "s"
        try:
            body = await self.client.request(
                "GET", f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/{plural}/"
                       f"{quote(described.get('name', ''))}/{quote(name)}")
        except errors.APIError as e:
            raise MetricError("FailedGetObjectMetric",
                              f"unable to get metric {name}: "
                              f"{described.get('kind')} on {namespace} {described.get('name')}/unable to fetch "
                              f"metrics from custom metrics API: "
                              f"{api_error_text(e, plural + '.custom.metrics.k8s.io')}") from None
        items = (body or {}).get("items") or [body or {}]
        usage = milli(items[0].get("value") or 0)
        if target.get("averageValue") is not None:
            average_target = milli(target["averageValue"])
            replicas = math.ceil(usage / average_target) if average_target else current
            value = {"averageValue": milli_quantity(usage // max(current, 1))}
        else:
            value_target = milli(target.get("value") or 0)
            ratio = usage / value_target if value_target else 0.0
            replicas = current if within_tolerance(ratio) else math.ceil(ratio * current)
            value = {"value": milli_quantity(usage)}
        return Proposal(replicas, f"{described.get('kind')} metric {name}",
                        {"type": "Object", "object": {"metric": ident, "describedObject": described, "current": value}})

    # -- normalization -------------------------------------------------------------------------------------
    def stabilize(self, key: str, recommendation: int, now: float) -> int:
        """Scale-down stabilization: the highest recommendation of the window, which the new one joins."""
        cutoff = now - self.downscale_stabilization
        recs = [r for r in self.recommendations.get(key, []) if r[1] >= cutoff]
        best = max([recommendation] + [r[0] for r in recs])
        self.recommendations[key] = recs + [(recommendation, now)]
        return best

    def normalize(self, key: str, conditions: list[Obj], current: int, desired: int, min_replicas: int,
                  max_replicas: int, now: float) -> int:
        stabilized = self.stabilize(key, desired, now)
        if stabilized != desired:
            set_condition(conditions, "AbleToScale", "True", "ScaleDownStabilized",
                          "recent recommendations were higher than current one, applying the highest recent "
                          "recommendation", now)
        else:
            set_condition(conditions, "AbleToScale", "True", "ReadyForNewScale",
                          "recommended size matches current size", now)
        limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
        if max_replicas > limit:
            maximum, reason, message = limit, "ScaleUpLimit", \
                "the desired replica count is increasing faster than the maximum scale rate"
        else:
            maximum, reason, message = max_replicas, "TooManyReplicas", \
                "the desired replica count is more than the maximum replica count"
        if stabilized < min_replicas:
            result, reason, message = min_replicas, "TooFewReplicas", \
                "the desired replica count is less than the minimum replica count"
        elif stabilized > maximum:
            result = maximum
        else:
            result, reason, message = stabilized, "DesiredWithinRange", \
                "the desired count is within the acceptable range"
        set_condition(conditions, "ScalingLimited", "False" if result == stabilized else "True", reason, message, now)
        return result

    def normalize_with_behaviors(self, key: str, behavior: Obj, conditions: list[Obj], current: int, desired: int,
                                 min_replicas: int, max_replicas: int, now: float) -> int:
        up = behavior.get("scaleUp") or {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                                         "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                                      {"type": "Percent", "value": 100, "periodSeconds": 15}]}
        down = behavior.get("scaleDown") or {"selectPolicy": "Max",
                                             "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
        up_window = up.get("stabilizationWindowSeconds") or 0
        down_window = down.get("stabilizationWindowSeconds")
        if down_window is None:
            down_window = self.downscale_stabilization
        # stabilization: scaling up takes the lowest recent recommendation, scaling down the highest
        if desired >= current:
            window, better = up_window, min
            reason, message = "ScaleUpStabilized", \
                "recent recommendations were lower than current one, applying the lowest recent recommendation"
        else:
            window, better = down_window, max
            reason, message = "ScaleDownStabilized", \
                "recent recommendations were higher than current one, applying the highest recent recommendation"
        recs = self.recommendations.get(key, [])
        stabilized = desired
        for value, ts in recs:
            if ts > now - window:
                stabilized = better(value, stabilized)
        keep = max(up_window, down_window)
        self.recommendations[key] = [r for r in recs if r[1] >= now - keep] + [(desired, now)]
        if stabilized != desired:
            set_condition(conditions, "AbleToScale", "True", reason, message, now)
        else:
            set_condition(conditions, "AbleToScale", "True", "ReadyForNewScale",
                          "recommended size matches current size", now)
        result, reason, message = stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"
        if stabilized > current:
            limit = max(scale_up_limit(current, self.scale_up_events.get(key, []), up, now), current)
            if max_replicas > limit:
                maximum, r, m = limit, "ScaleUpLimit", \
                    "the desired replica count is increasing faster than the maximum scale rate"
            else:
                maximum, r, m = max_replicas, "TooManyReplicas", \
                    "the desired replica count is more than the maximum replica count"
            if stabilized > maximum:
                result, reason, message = maximum, r, m
        elif stabilized < current:
            limit = min(scale_down_limit(current, self.scale_down_events.get(key, []), down, now), current)
            if min_replicas < limit:
                minimum, r, m = limit, "ScaleDownLimit", \
                    "the desired replica count is decreasing faster than the maximum scale rate"
            else:
                minimum, r, m = min_replicas, "TooFewReplicas", \
                    "the desired replica count is less than the minimum replica count"
            if stabilized < minimum:
                result, reason, message = minimum, r, m
        set_condition(conditions, "ScalingLimited", "False" if result == stabilized else "True", reason, message, now)
        return result

    def store_scale_event(self, key: str, behavior: Obj | None, before: int, after: int, now: float) -> None:
        if behavior is None:
            return
        rules = behavior.get("scaleUp" if after > before else "scaleDown") or {}
        longest = max([p.get("periodSeconds", 15) for p in rules.get("policies") or []] or [15])
        events = self.scale_up_events if after > before else self.scale_down_events
        kept = [e for e in events.get(key, []) if e.timestamp > now - longest]
        kept.append(ScaleEvent(abs(after - before), now))
        events[key] = kept


def _seconds(duration: str) -> float:
    """A Go duration such as `30s`, `1m0s` or `15.5s` in seconds."""
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    i = 0
    while i < len(duration):
        ch = duration[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if duration[i:i + 2] == "ms" else ch
        total += float(number or 0) * units.get(unit, 0.0)
        number = ""
        i += len(unit)
    return total
