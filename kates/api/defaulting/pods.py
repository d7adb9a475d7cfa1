"""Pod spec defaults, as Kubernetes 1.32 fills them and `kubectl get -o yaml` shows them.

Three layers, kept apart because Kubernetes applies them in different places:
- `default_pod_spec`: the scheme defaults every PodSpec gets, in Pods and in every workload template
  (restartPolicy, dnsPolicy, container pull policy, probes, volume modes, protocols...);
- `default_pod`: the extra scheme defaults of the Pod object only (enableServiceLinks, requests from limits,
  hostNetwork host ports);
- `admit_pod`: what the default admission plugins add to new Pods (service account name, priority and
  preemption policy, not-ready/unreachable tolerations), since kates has no admission chain.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from kates.api.validation import quantity
from kates.api.validation.containers import VOLUME_SOURCES

# DefaultTolerationSeconds: how long pods stay on a not-ready/unreachable node before eviction. Kubernetes' 300;
# `kates server --default-toleration-seconds` sets this once per process, as NODE_PORT_RANGE is set.
DEFAULT_TOLERATION_SECONDS = 300
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
SYSTEM_PRIORITIES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
QOS_RESOURCES = ("cpu", "memory")


def ensure_dict(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """parent[key] as a dict, created (or replaced when null) if needed."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


def dict_items(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def is_unset(obj: dict[str, Any], key: str) -> bool:
    return obj.get(key) in (None, "")


def image_pull_policy(image: Any) -> str:
    """Always for `:latest` or an untagged image without digest, IfNotPresent otherwise."""
    if not isinstance(image, str):
        return "IfNotPresent"
    ref = image
    if "@" in ref:
        return "IfNotPresent"
    last = ref.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def canonicalize_resource_list(resources: Any) -> None:
    """Kubernetes stores resource lists rounded up to milli precision, in canonical quantity form."""
    if isinstance(resources, dict):
        for name, raw in list(resources.items()):
            resources[name] = quantity.canonicalize(raw)


def _default_http_get(action: Any) -> None:
    if isinstance(action, dict):
        if is_unset(action, "path"):
            action["path"] = "/"
        if is_unset(action, "scheme"):
            action["scheme"] = "HTTP"


def _default_handler(handler: Any) -> None:
    if not isinstance(handler, dict):
        return
    _default_http_get(handler.get("httpGet"))
    grpc = handler.get("grpc")
    if isinstance(grpc, dict) and grpc.get("service") is None:
        grpc["service"] = ""


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        if not probe.get(key):
            probe[key] = value
    _default_handler(probe)


def _default_field_ref(ref: Any) -> None:
    if isinstance(ref, dict) and is_unset(ref, "apiVersion"):
        ref["apiVersion"] = "v1"


def default_container(ctr: dict[str, Any]) -> None:
    if is_unset(ctr, "imagePullPolicy"):
        ctr["imagePullPolicy"] = image_pull_policy(ctr.get("image"))
    if is_unset(ctr, "terminationMessagePath"):
        ctr["terminationMessagePath"] = "/dev/termination-log"
    if is_unset(ctr, "terminationMessagePolicy"):
        ctr["terminationMessagePolicy"] = "File"
    resources = ensure_dict(ctr, "resources")
    canonicalize_resource_list(resources.get("limits"))
    canonicalize_resource_list(resources.get("requests"))
    for port in dict_items(ctr.get("ports")):
        if is_unset(port, "protocol"):
            port["protocol"] = "TCP"
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(ctr.get(key))
    lifecycle = ctr.get("lifecycle")
    if isinstance(lifecycle, dict):
        _default_handler(lifecycle.get("postStart"))
        _default_handler(lifecycle.get("preStop"))
    for env in dict_items(ctr.get("env")):
        value_from = env.get("valueFrom")
        if isinstance(value_from, dict):
            _default_field_ref(value_from.get("fieldRef"))
            res_ref = value_from.get("resourceFieldRef")
            if isinstance(res_ref, dict) and res_ref.get("divisor") is not None:
                res_ref["divisor"] = quantity.canonicalize(res_ref["divisor"], round_milli=False)


def _default_downward_items(items: Any) -> None:
    for item in dict_items(items):
        _default_field_ref(item.get("fieldRef"))
        res_ref = item.get("resourceFieldRef")
        if isinstance(res_ref, dict) and res_ref.get("divisor") is not None:
            res_ref["divisor"] = quantity.canonicalize(res_ref["divisor"], round_milli=False)




def default_volume(vol: dict[str, Any]) -> None:
    if not any(vol.get(k) is not None for k in VOLUME_SOURCES):
        vol["emptyDir"] = {}
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        src = vol.get(key)
        if isinstance(src, dict) and src.get("defaultMode") is None:
            src["defaultMode"] = 420
    host_path = vol.get("hostPath")
    if isinstance(host_path, dict) and host_path.get("type") is None:
        host_path["type"] = ""
    empty_dir = vol.get("emptyDir")
    if isinstance(empty_dir, dict) and empty_dir.get("sizeLimit") is not None:
        empty_dir["sizeLimit"] = quantity.canonicalize(empty_dir["sizeLimit"], round_milli=False)
    downward = vol.get("downwardAPI")
    if isinstance(downward, dict):
        _default_downward_items(downward.get("items"))
    projected = vol.get("projected")
    if isinstance(projected, dict):
        for source in dict_items(projected.get("sources")):
            token = source.get("serviceAccountToken")
            if isinstance(token, dict) and token.get("expirationSeconds") is None:
                token["expirationSeconds"] = 3600
            d = source.get("downwardAPI")
            if isinstance(d, dict):
                _default_downward_items(d.get("items"))
    image = vol.get("image")
    if isinstance(image, dict) and is_unset(image, "pullPolicy"):
        image["pullPolicy"] = image_pull_policy(image.get("reference"))
    ephemeral = vol.get("ephemeral")
    if isinstance(ephemeral, dict):
        template = ephemeral.get("volumeClaimTemplate")
        if isinstance(template, dict):
            default_pvc_spec(ensure_dict(template, "spec"))


def default_pvc_spec(spec: dict[str, Any]) -> None:
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    resources = spec.get("resources")
    if isinstance(resources, dict):
        canonicalize_resource_list(resources.get("requests"))
        canonicalize_resource_list(resources.get("limits"))


def default_pod_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_PodSpec and everything nested in a PodSpec."""
    if is_unset(spec, "dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if is_unset(spec, "restartPolicy"):
        spec["restartPolicy"] = "Always"
    if not isinstance(spec.get("securityContext"), dict):
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if is_unset(spec, "schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    # `serviceAccount` is the deprecated spelling; Kubernetes keeps both in step.
    if is_unset(spec, "serviceAccountName") and not is_unset(spec, "serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if not is_unset(spec, "serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for ctr in dict_items(spec.get(key)):
            default_container(ctr)
    for vol in dict_items(spec.get("volumes")):
        default_volume(vol)
    canonicalize_resource_list(spec.get("overhead"))


def default_pod_template(template: Any) -> None:
    if isinstance(template, dict):
        default_pod_spec(ensure_dict(template, "spec"))


def default_pod(pod: dict[str, Any]) -> None:
    """Scheme defaults of the Pod object itself (SetDefaults_Pod on top of SetDefaults_PodSpec)."""
    spec = ensure_dict(pod, "spec")
    default_pod_spec(spec)
    for key in ("containers", "initContainers"):
        for ctr in dict_items(spec.get(key)):
            resources = ensure_dict(ctr, "resources")
            limits = resources.get("limits")
            if isinstance(limits, dict) and limits:
                requests = resources.get("requests")
                if not isinstance(requests, dict):
                    requests = resources["requests"] = {}
                for name, value in limits.items():
                    requests.setdefault(name, value)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    if spec.get("hostNetwork") is True:
        for key in ("containers", "initContainers"):
            for ctr in dict_items(spec.get(key)):
                for port in dict_items(ctr.get("ports")):
                    if not port.get("hostPort"):
                        port["hostPort"] = port.get("containerPort")
    admit_pod(pod)


def admit_pod(pod: dict[str, Any]) -> None:
    """What the ServiceAccount, Priority and DefaultTolerationSeconds admission plugins add to Pods."""
    spec = ensure_dict(pod, "spec")
    if is_unset(spec, "serviceAccountName"):
        spec["serviceAccountName"] = "default"
        spec["serviceAccount"] = "default"
    if spec.get("priority") is None:
        cls = spec.get("priorityClassName") or ""
        if not cls:
            spec["priority"] = 0
        elif cls in SYSTEM_PRIORITIES:
            spec["priority"] = SYSTEM_PRIORITIES[cls]
    if spec.get("preemptionPolicy") is None:
        spec["preemptionPolicy"] = "PreemptLowerPriority"
    tolerations = spec.get("tolerations")
    if not isinstance(tolerations, list):
        tolerations = []
    for taint in (NOT_READY_TAINT, UNREACHABLE_TAINT):
        tolerated = any((t.get("key") in (taint, None, "")) and (t.get("effect") in ("NoExecute", None, ""))
                        for t in dict_items(tolerations))
        if not tolerated:
            tolerations.append({"key": taint, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS})
    if tolerations:
        spec["tolerations"] = tolerations


def qos_class(pod: dict[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort, from the cpu/memory requests and limits of all containers."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    containers = dict_items(spec.get("containers")) + dict_items(spec.get("initContainers"))
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    for ctr in containers:
        res = ctr.get("resources") if isinstance(ctr.get("resources"), dict) else {}
        ctr_limits: set[str] = set()
        for kind, acc in (("requests", requests), ("limits", limits)):
            for name, raw in (res.get(kind) or {}).items():
                if name not in QOS_RESOURCES:
                    continue
                try:
                    value = quantity.parse(raw).value
                except quantity.QuantityError:
                    continue
                if value > 0:
                    acc[name] = acc.get(name, 0) + value
                    if kind == "limits":
                        ctr_limits.add(name)
        if ctr_limits != set(QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and set(requests) == set(QOS_RESOURCES) and set(limits) == set(QOS_RESOURCES) and \
            all(requests[r] == limits[r] for r in QOS_RESOURCES):
        return "Guaranteed"
    return "Burstable"
