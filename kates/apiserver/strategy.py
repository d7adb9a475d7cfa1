"""Per-kind rules the registry applies around every write, as Kubernetes' registry strategies do.

What the server owns on create (status reset, generation), how the main endpoint and the status subresource
split an object between them, and which kinds bump `metadata.generation` on spec changes.
"""
from __future__ import annotations

from typing import Any

from ..api.resources import ResourceType

# Kinds whose spec changes bump metadata.generation (custom resources always do).
GENERATION_KINDS = {
    ("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"), ("apps", "DaemonSet"),
    ("batch", "Job"), ("batch", "CronJob"), ("", "ReplicationController"), ("autoscaling", "HorizontalPodAutoscaler"),
    ("networking.k8s.io", "Ingress"), ("networking.k8s.io", "NetworkPolicy"), ("networking.k8s.io", "IngressClass"),
    ("policy", "PodDisruptionBudget"), ("apiextensions.k8s.io", "CustomResourceDefinition"),
}

CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"

SERVER_METADATA = ("uid", "creationTimestamp", "generation", "resourceVersion", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "selfLink")


def tracks_generation(rt: ResourceType) -> bool:
    return rt.definition is None or (rt.group, rt.kind) in GENERATION_KINDS


def spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: what a generation counts."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def prepare_for_create(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Reset what users cannot set on create: status belongs to controllers (except kinds without a status endpoint)."""
    if rt.has_status() and rt.kind not in ("Node", "PersistentVolume", "PersistentVolumeClaim"):
        obj.pop("status", None)
    if rt.group == "" and rt.kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": pod_qos_class(obj.get("spec") or {})}
    elif rt.group == "" and rt.kind == "Namespace":
        obj["status"] = {"phase": "Active"}
    elif rt.group == "" and rt.kind == "PersistentVolumeClaim":
        obj["status"] = {"phase": "Pending"}
    elif rt.group == "" and rt.kind == "PersistentVolume":
        obj["status"] = {"phase": "Pending"}
    elif rt.group == "" and rt.kind == "Service":
        obj["status"] = {"loadBalancer": {}}
    elif rt.kind == "CustomResourceDefinition":
        obj["status"] = {}
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if CRD_CLEANUP not in finalizers:
            finalizers.append(CRD_CLEANUP)
    if tracks_generation(rt):
        obj["metadata"]["generation"] = 1


def prepare_for_update(rt: ResourceType, new: dict[str, Any], old: dict[str, Any], subresource: str) -> None:
    """Split the object between the main endpoint and the status subresource, then bump generation."""
    if subresource == "status":
        kept_meta = new.get("metadata", {})
        status = new.get("status")
        new.clear()
        new.update({k: v for k, v in old.items() if k != "status"})
        new["metadata"] = dict(old["metadata"])
        for field in ("resourceVersion", "managedFields"):
            if field in kept_meta:
                new["metadata"][field] = kept_meta[field]
        if status is not None:
            new["status"] = status
        return
    if rt.has_status() and subresource != "binding":
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    meta, old_meta = new["metadata"], old["metadata"]
    for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if field in old_meta:
            meta[field] = old_meta[field]
        else:
            meta.pop(field, None)
    if tracks_generation(rt):
        generation = old_meta.get("generation", 1)
        if spec_of(new) != spec_of(old):
            generation += 1
        meta["generation"] = generation
    else:
        meta.pop("generation", None)


def pod_qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed when every container sets equal cpu and memory requests and limits; BestEffort when none set any."""
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        if requests or limits:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in limits or str(requests.get(r, limits[r])) != str(limits[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def reset_fields(rt: ResourceType, subresource: str) -> tuple[tuple[str, ...], ...] | None:
    """Fields an endpoint ignores, for managedFields: None keeps the default split (main: status, status: spec)."""
    if subresource == "status" or (rt.has_status() and subresource == ""):
        return None
    return ()
