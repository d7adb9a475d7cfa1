"""Per-kind defaults, like Kubernetes 1.32: what `kubectl get -o yaml` shows that the user never wrote.

Three entry points, in the order the API server calls them on a create:

1. `apply_defaults(rt, obj)` on every write (create, update, patch results): scheme defaults such as a
   Deployment's replicas/strategy/revisionHistoryLimit, every pod spec's restartPolicy/dnsPolicy/pull policies,
   Service ports' protocol and targetPort. Idempotent, so running it on an already-defaulted object is harmless.
2. `prepare_for_create(rt, obj)` once, after the server assigned name, namespace and metadata.uid: what Kubernetes'
   registry strategies set on creation only — a Job's generated selector and controller-uid/job-name labels,
   a Pod's Pending phase and QoS class, a Namespace's `kubernetes` finalizer and Active phase.
3. `prepare_for_update(rt, new, old)` on main-resource updates, after `apply_defaults` and before validation:
   what Kubernetes' update strategies do — a Service whose type changed forgets what only the old type had
   (cluster IPs, node ports, traffic policies), a replacement that left out allocated cluster IPs and node ports
   keeps them, and Namespace spec.finalizers only change through the finalize subresource.

Kinds are dispatched by (group, kind); kinds without an entry (custom resources included) get no defaults here.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from kates.api.defaulting import kinds, pods
from kates.api.defaulting.pods import ensure_dict, dict_items, qos_class
from kates.api.resources import ResourceType

Defaulter = Callable[[dict[str, Any]], None]

DEFAULTERS: dict[tuple[str, str], Defaulter] = {
    ("", "Namespace"): kinds.default_namespace,
    ("", "Pod"): pods.default_pod,
    ("", "Service"): kinds.default_service,
    ("", "Endpoints"): kinds.default_endpoints,
    ("", "Secret"): kinds.default_secret,
    ("", "Node"): kinds.default_node,
    ("", "PersistentVolume"): kinds.default_pv,
    ("", "PersistentVolumeClaim"): kinds.default_pvc,
    ("", "ReplicationController"): kinds.default_replication_controller,
    ("", "PodTemplate"): kinds.default_pod_template_object,
    ("", "LimitRange"): kinds.default_limit_range,
    ("", "ResourceQuota"): kinds.default_resource_quota,
    ("apps", "Deployment"): kinds.default_deployment,
    ("apps", "ReplicaSet"): kinds.default_replica_set,
    ("apps", "StatefulSet"): kinds.default_stateful_set,
    ("apps", "DaemonSet"): kinds.default_daemon_set,
    ("batch", "Job"): kinds.default_job,
    ("batch", "CronJob"): kinds.default_cron_job,
    ("autoscaling", "HorizontalPodAutoscaler"): kinds.default_hpa,
    ("networking.k8s.io", "NetworkPolicy"): kinds.default_network_policy,
    ("networking.k8s.io", "IngressClass"): kinds.default_ingress_class,
    ("discovery.k8s.io", "EndpointSlice"): kinds.default_endpoint_slice,
    ("rbac.authorization.k8s.io", "RoleBinding"): kinds.default_role_binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): kinds.default_role_binding,
    ("scheduling.k8s.io", "PriorityClass"): kinds.default_priority_class,
    ("storage.k8s.io", "StorageClass"): kinds.default_storage_class,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): kinds.default_crd,
}

JOB_CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"


def apply_defaults(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Fill in the defaults Kubernetes 1.32 sets, in place (users see them in -o yaml)."""
    defaulter = DEFAULTERS.get((rt.group, rt.kind))
    if defaulter is not None and isinstance(obj, dict):
        defaulter(obj)


# --- create-time preparation ----------------------------------------------------------------------------------------

def _prepare_pod(obj: dict[str, Any]) -> None:
    obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj)}


def _prepare_namespace(obj: dict[str, Any]) -> None:
    spec = ensure_dict(obj, "spec")
    finalizers = spec.get("finalizers") if isinstance(spec.get("finalizers"), list) else []
    if "kubernetes" not in finalizers:
        finalizers = [*finalizers, "kubernetes"]
    spec["finalizers"] = finalizers
    obj["status"] = {"phase": "Active"}


def _prepare_job(obj: dict[str, Any]) -> None:
    """Generate the Job's selector and pod labels from its uid, unless the user chose `manualSelector`."""
    spec = ensure_dict(obj, "spec")
    if spec.get("manualSelector") is True:
        return
    meta = ensure_dict(obj, "metadata")
    uid, name = meta.get("uid") or "", meta.get("name") or ""
    template_meta = ensure_dict(ensure_dict(spec, "template"), "metadata")
    labels = ensure_dict(template_meta, "labels")
    user_labels = dict(labels)
    for key, value in ((LEGACY_CONTROLLER_UID, uid), (JOB_CONTROLLER_UID, uid), (LEGACY_JOB_NAME, name),
                       (JOB_NAME, name)):
        labels.setdefault(key, value)
    selector = ensure_dict(spec, "selector")
    match_labels = ensure_dict(selector, "matchLabels")
    match_labels.setdefault(JOB_CONTROLLER_UID, uid)
    # Kubernetes copies the template's labels onto a Job without labels of its own (the same map, so the
    # generated labels show up there too).
    if not meta.get("labels") or meta.get("labels") == user_labels:
        meta["labels"] = dict(labels)


PREPARERS: dict[tuple[str, str], Defaulter] = {
    ("", "Pod"): _prepare_pod,
    ("", "Namespace"): _prepare_namespace,
    ("batch", "Job"): _prepare_job,
}


def prepare_for_create(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Create-only, uid-dependent defaults; call after metadata.uid (and name) are assigned, before validation."""
    preparer = PREPARERS.get((rt.group, rt.kind))
    if preparer is not None and isinstance(obj, dict):
        preparer(obj)


# --- update-time preparation ----------------------------------------------------------------------------------------

def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type", "ClusterIP") in ("ClusterIP", "NodePort", "LoadBalancer")


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "NodePort" or (spec.get("type") == "LoadBalancer" and
                                              spec.get("allocateLoadBalancerNodePorts") is not False)


def _drop_type_dependent_fields(new_spec: dict[str, Any], old_spec: dict[str, Any]) -> None:
    """After a type change, forget what only the old type had, unless the user changed it too (Kubernetes'
    dropTypeDependentFields); the allocator then frees released IPs and ports."""
    if _needs_cluster_ip(old_spec) and not _needs_cluster_ip(new_spec):
        if new_spec.get("clusterIP") == old_spec.get("clusterIP") and \
                new_spec.get("clusterIPs") == old_spec.get("clusterIPs"):
            new_spec.pop("clusterIP", None)
            new_spec.pop("clusterIPs", None)
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if new_spec.get(key) == old_spec.get(key):
                new_spec.pop(key, None)
    if _needs_node_ports(old_spec) and not _needs_node_ports(new_spec):
        old_ports = [p.get("nodePort") for p in dict_items(old_spec.get("ports"))]
        if [p.get("nodePort") for p in dict_items(new_spec.get("ports"))] == old_ports:
            for port in dict_items(new_spec.get("ports")):
                port.pop("nodePort", None)
    if old_spec.get("type") == "LoadBalancer" and new_spec.get("type") != "LoadBalancer":
        for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if new_spec.get(key) == old_spec.get(key):
                new_spec.pop(key, None)
    if not (new_spec.get("type") == "LoadBalancer" and new_spec.get("externalTrafficPolicy") == "Local") and \
            new_spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
        new_spec.pop("healthCheckNodePort", None)
    external_ips = new_spec.get("externalIPs") if isinstance(new_spec.get("externalIPs"), list) else []
    if new_spec.get("type") not in ("NodePort", "LoadBalancer") and not \
            (new_spec.get("type") == "ClusterIP" and external_ips):
        new_spec.pop("externalTrafficPolicy", None)
    if new_spec.get("type") == "ExternalName":
        new_spec.pop("internalTrafficPolicy", None)


def _prepare_service_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Type-change cleanup, then a replace that omits allocated values keeps them (patchAllocatedValues)."""
    new_spec, old_spec = ensure_dict(new, "spec"), old.get("spec") if isinstance(old.get("spec"), dict) else {}
    _drop_type_dependent_fields(new_spec, old_spec)
    if _needs_cluster_ip(old_spec) and _needs_cluster_ip(new_spec):
        if not new_spec.get("clusterIP") and old_spec.get("clusterIP"):
            new_spec["clusterIP"] = old_spec["clusterIP"]
        if not new_spec.get("clusterIPs") and old_spec.get("clusterIPs"):
            if new_spec.get("clusterIP") == (old_spec["clusterIPs"] or [None])[0]:
                new_spec["clusterIPs"] = list(old_spec["clusterIPs"])
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if not new_spec.get(key) and old_spec.get(key):
                new_spec[key] = copy.deepcopy(old_spec[key])
    if _needs_node_ports(old_spec) and _needs_node_ports(new_spec):
        old_ports = {(p.get("port"), p.get("protocol") or "TCP"): p.get("nodePort")
                     for p in dict_items(old_spec.get("ports")) if p.get("nodePort")}
        for port in dict_items(new_spec.get("ports")):
            if not port.get("nodePort"):
                allocated = old_ports.get((port.get("port"), port.get("protocol") or "TCP"))
                if allocated:
                    port["nodePort"] = allocated
    if new_spec.get("type") == "LoadBalancer" and new_spec.get("externalTrafficPolicy") == "Local" and \
            not new_spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
        new_spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


def _prepare_namespace_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    old_spec = old.get("spec") if isinstance(old.get("spec"), dict) else {}
    new_spec = ensure_dict(new, "spec")
    if "finalizers" in old_spec:
        new_spec["finalizers"] = copy.deepcopy(old_spec["finalizers"])
    else:
        new_spec.pop("finalizers", None)


UPDATE_PREPARERS: dict[tuple[str, str], Callable[[dict[str, Any], dict[str, Any]], None]] = {
    ("", "Service"): _prepare_service_update,
    ("", "Namespace"): _prepare_namespace_update,
}


def prepare_for_update(rt: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> None:
    """Main-resource updates only (not status or other subresources); call before validate_update."""
    preparer = UPDATE_PREPARERS.get((rt.group, rt.kind))
    if preparer is not None and isinstance(new, dict) and isinstance(old, dict):
        preparer(new, old)


__all__ = ["apply_defaults", "prepare_for_create", "prepare_for_update", "DEFAULTERS", "PREPARERS",
           "UPDATE_PREPARERS"]
