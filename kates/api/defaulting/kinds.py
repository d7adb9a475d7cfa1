"""Per-kind defaults for everything that is not a pod spec (which lives in `pods.py`).

Each function fills, in place, the fields Kubernetes 1.32 sets when it decodes an object of that kind: the
scheme defaults (apps/v1, batch/v1, core/v1 defaults.go and the declarative `+default` markers) and the few
registry-side normalizations users see in `-o yaml` (Service cluster IP families, Secret stringData folding).
"""
from __future__ import annotations

import base64
import ipaddress
from typing import Any

from kates.api.defaulting.pods import (
    ensure_dict, dict_items, is_unset, canonicalize_resource_list, default_pod, default_pod_template, default_pvc_spec,
)

RBAC_GROUP = "rbac.authorization.k8s.io"
MAX_INT32 = 2**31 - 1


# --- core/v1 --------------------------------------------------------------------------------------------------------

def default_namespace(obj: dict[str, Any]) -> None:
    meta = ensure_dict(obj, "metadata")
    name = meta.get("name")
    if isinstance(name, str) and name:
        ensure_dict(meta, "labels")["kubernetes.io/metadata.name"] = name
    status = ensure_dict(obj, "status")
    if is_unset(status, "phase"):
        status["phase"] = "Active"


def default_secret(obj: dict[str, Any]) -> None:
    if is_unset(obj, "type"):
        obj["type"] = "Opaque"
    # stringData is write-only: it is folded into data (base64) and never stored.
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = ensure_dict(obj, "data")
        for key, value in string_data.items():
            text = value if isinstance(value, str) else ""
            data[key] = base64.b64encode(text.encode()).decode()


def _ip_family(ip: Any) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except (ValueError, TypeError):
        return None


def default_service(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    if is_unset(spec, "type"):
        spec["type"] = "ClusterIP"
    stype = spec["type"]
    if is_unset(spec, "sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = ensure_dict(ensure_dict(spec, "sessionAffinityConfig"), "clientIP")
        if client_ip.get("timeoutSeconds") is None:
            client_ip["timeoutSeconds"] = 10800
    for port in dict_items(spec.get("ports")):
        if is_unset(port, "protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    external_ips = spec.get("externalIPs") if isinstance(spec.get("externalIPs"), list) else []
    externally_accessible = stype in ("NodePort", "LoadBalancer") or (stype == "ClusterIP" and bool(external_ips))
    if externally_accessible and is_unset(spec, "externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and stype in ("NodePort", "LoadBalancer", "ClusterIP"):
        spec["internalTrafficPolicy"] = "Cluster"
    if stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    _default_service_ips(spec)
    status = ensure_dict(obj, "status")
    lb = ensure_dict(status, "loadBalancer")
    if stype == "LoadBalancer":
        for ing in dict_items(lb.get("ingress")):
            if ing.get("ip") and ing.get("ipMode") is None:
                ing["ipMode"] = "VIP"


def _default_service_ips(spec: dict[str, Any]) -> None:
    """Keep clusterIP/clusterIPs in step and settle IP families (the registry does this in Kubernetes)."""
    if spec.get("type") == "ExternalName":
        return
    cluster_ip = spec.get("clusterIP") or ""
    cluster_ips = spec.get("clusterIPs") if isinstance(spec.get("clusterIPs"), list) else []
    if cluster_ip and not cluster_ips:
        spec["clusterIPs"] = [cluster_ip]
    elif cluster_ips and not cluster_ip and isinstance(cluster_ips[0], str):
        spec["clusterIP"] = cluster_ips[0]
    cluster_ips = spec.get("clusterIPs") or []
    headless = spec.get("clusterIP") == "None"
    selectorless = not spec.get("selector")
    if spec.get("ipFamilyPolicy") is None:
        if headless and selectorless:
            spec["ipFamilyPolicy"] = "RequireDualStack"
        else:
            spec["ipFamilyPolicy"] = "PreferDualStack" if len(cluster_ips) > 1 else "SingleStack"
    if not spec.get("ipFamilies"):
        families = [f for f in (_ip_family(ip) for ip in cluster_ips) if f]
        spec["ipFamilies"] = families or ["IPv4"]


def default_endpoints(obj: dict[str, Any]) -> None:
    for subset in dict_items(obj.get("subsets")):
        for port in dict_items(subset.get("ports")):
            if is_unset(port, "protocol"):
                port["protocol"] = "TCP"


def default_pv(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    if is_unset(spec, "persistentVolumeReclaimPolicy"):
        spec["persistentVolumeReclaimPolicy"] = "Retain"
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    canonicalize_resource_list(spec.get("capacity"))
    host_path = spec.get("hostPath")
    if isinstance(host_path, dict) and host_path.get("type") is None:
        host_path["type"] = ""
    status = ensure_dict(obj, "status")
    if is_unset(status, "phase"):
        status["phase"] = "Pending"


def default_pvc(obj: dict[str, Any]) -> None:
    default_pvc_spec(ensure_dict(obj, "spec"))
    status = ensure_dict(obj, "status")
    if is_unset(status, "phase"):
        status["phase"] = "Pending"
    canonicalize_resource_list(status.get("capacity"))


def default_node(obj: dict[str, Any]) -> None:
    status = obj.get("status")
    if not isinstance(status, dict):
        return
    canonicalize_resource_list(status.get("capacity"))
    canonicalize_resource_list(status.get("allocatable"))
    if status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def default_replication_controller(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    template = spec.get("template")
    if isinstance(template, dict):
        default_pod_template(template)
        labels = (template.get("metadata") or {}).get("labels") if isinstance(template.get("metadata"), dict) \
            else None
        if isinstance(labels, dict) and labels:
            if not spec.get("selector"):
                spec["selector"] = dict(labels)
            meta = ensure_dict(obj, "metadata")
            if not meta.get("labels"):
                meta["labels"] = dict(labels)


def default_pod_template_object(obj: dict[str, Any]) -> None:
    default_pod_template(ensure_dict(obj, "template"))


def default_limit_range(obj: dict[str, Any]) -> None:
    for item in dict_items(ensure_dict(obj, "spec").get("limits")):
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            canonicalize_resource_list(item.get(key))
        if item.get("type") != "Container":
            continue
        default = ensure_dict(item, "default")
        default_request = ensure_dict(item, "defaultRequest")
        for name, value in (item.get("max") or {}).items():
            default.setdefault(name, value)
        for name, value in default.items():
            default_request.setdefault(name, value)
        for name, value in (item.get("min") or {}).items():
            default_request.setdefault(name, value)


def default_resource_quota(obj: dict[str, Any]) -> None:
    canonicalize_resource_list(ensure_dict(obj, "spec").get("hard"))


# --- apps/v1 --------------------------------------------------------------------------------------------------------

def default_deployment(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = ensure_dict(spec, "strategy")
    if is_unset(strategy, "type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = ensure_dict(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = "25%"
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    default_pod_template(ensure_dict(spec, "template"))


def default_replica_set(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_pod_template(ensure_dict(spec, "template"))


def default_stateful_set(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    if is_unset(spec, "podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    strategy = ensure_dict(spec, "updateStrategy")
    if is_unset(strategy, "type"):
        strategy["type"] = "RollingUpdate"
        if strategy.get("rollingUpdate") is None:
            strategy["rollingUpdate"] = {}
    rolling = strategy.get("rollingUpdate")
    if strategy["type"] == "RollingUpdate" and isinstance(rolling, dict) and rolling.get("partition") is None:
        rolling["partition"] = 0
    retention = ensure_dict(spec, "persistentVolumeClaimRetentionPolicy")
    for key in ("whenDeleted", "whenScaled"):
        if is_unset(retention, key):
            retention[key] = "Retain"
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(ensure_dict(spec, "template"))
    for claim in dict_items(spec.get("volumeClaimTemplates")):
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        default_pvc(claim)


def default_daemon_set(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    strategy = ensure_dict(spec, "updateStrategy")
    if is_unset(strategy, "type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = ensure_dict(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = 1
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(ensure_dict(spec, "template"))


# --- batch/v1 -------------------------------------------------------------------------------------------------------

def default_job_spec(spec: dict[str, Any]) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    if spec.get("completionMode") is None:
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    failure_policy = spec.get("podFailurePolicy")
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if isinstance(failure_policy, dict) else "TerminatingOrFailed"
    if isinstance(failure_policy, dict):
        for rule in dict_items(failure_policy.get("rules")):
            for pattern in dict_items(rule.get("onPodConditions")):
                if is_unset(pattern, "status"):
                    pattern["status"] = "True"
    default_pod_template(ensure_dict(spec, "template"))


def default_job(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    default_job_spec(spec)
    template_meta = spec["template"].get("metadata")
    labels = template_meta.get("labels") if isinstance(template_meta, dict) else None
    meta = ensure_dict(obj, "metadata")
    if isinstance(labels, dict) and labels and not meta.get("labels"):
        meta["labels"] = dict(labels)


def default_cron_job(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    if is_unset(spec, "concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    job_spec = ensure_dict(ensure_dict(spec, "jobTemplate"), "spec")
    default_pod_template(ensure_dict(job_spec, "template"))


# --- other groups ---------------------------------------------------------------------------------------------------

def default_endpoint_slice(obj: dict[str, Any]) -> None:
    for port in dict_items(obj.get("ports")):
        if port.get("name") is None:
            port["name"] = ""
        if is_unset(port, "protocol"):
            port["protocol"] = "TCP"


def default_network_policy(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    for direction in ("ingress", "egress"):
        for rule in dict_items(spec.get(direction)):
            for port in dict_items(rule.get("ports")):
                if is_unset(port, "protocol"):
                    port["protocol"] = "TCP"
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types
    ensure_dict(spec, "podSelector")


def default_ingress_class(obj: dict[str, Any]) -> None:
    params = ensure_dict(obj, "spec").get("parameters")
    if isinstance(params, dict) and params.get("scope") is None:
        params["scope"] = "Cluster"


def default_role_binding(obj: dict[str, Any]) -> None:
    ref = ensure_dict(obj, "roleRef")
    if is_unset(ref, "apiGroup"):
        ref["apiGroup"] = RBAC_GROUP
    for subject in dict_items(obj.get("subjects")):
        if is_unset(subject, "apiGroup"):
            if subject.get("kind") in ("User", "Group"):
                subject["apiGroup"] = RBAC_GROUP
            elif subject.get("kind") == "ServiceAccount":
                subject["apiGroup"] = ""


def default_priority_class(obj: dict[str, Any]) -> None:
    if obj.get("preemptionPolicy") is None:
        obj["preemptionPolicy"] = "PreemptLowerPriority"


def default_storage_class(obj: dict[str, Any]) -> None:
    if obj.get("reclaimPolicy") is None:
        obj["reclaimPolicy"] = "Delete"
    if obj.get("volumeBindingMode") is None:
        obj["volumeBindingMode"] = "Immediate"


_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
             "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                          {"type": "Percent", "value": 100, "periodSeconds": 15}]}
_SCALE_DOWN = {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def default_hpa(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        for key, base in (("scaleUp", _SCALE_UP), ("scaleDown", _SCALE_DOWN)):
            rules = ensure_dict(behavior, key)
            for field_name, value in base.items():
                if rules.get(field_name) is None:
                    rules[field_name] = [dict(p) for p in value] if isinstance(value, list) else value


def default_crd(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    names = ensure_dict(spec, "names")
    kind = names.get("kind")
    if isinstance(kind, str) and kind:
        if is_unset(names, "singular"):
            names["singular"] = kind.lower()
        if is_unset(names, "listKind"):
            names["listKind"] = kind + "List"
    conversion = ensure_dict(spec, "conversion")
    if is_unset(conversion, "strategy"):
        conversion["strategy"] = "None"
    webhook = conversion.get("webhook")
    if isinstance(webhook, dict):
        service = (webhook.get("clientConfig") or {}).get("service") if isinstance(webhook.get("clientConfig"),
                                                                                    dict) else None
        if isinstance(service, dict) and service.get("port") is None:
            service["port"] = 443

