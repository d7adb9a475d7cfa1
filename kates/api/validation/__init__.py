"""Per-kind validation of API objects, with Kubernetes' rules and messages.

The API server calls `validate_create` / `validate_update` / `validate_status_update` after the schema check and
defaulting; every problem found becomes one cause of a single `errors.Invalid` (HTTP 422), worded like Kubernetes
(`metadata.name: Invalid value: "Not_Valid": a lowercase RFC 1123 subdomain must ...`), because kubectl users and
tests match on that text.

Rules are looked up by (group, kind) in `RULES`; each entry names the metadata.name format and the create, update
and status checks. Kinds not listed (custom resources included) get metadata checks only: the name must be a
DNS subdomain and labels/annotations well-formed. Server-owned metadata (uid, resourceVersion, generation,
timestamps, managedFields) is not checked here.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from kates.api.resources import ResourceType
from kates.api.validation import core, formats, groups, networking, pods, services, workloads
from kates.api.validation.field import Errs, as_dict
from kates.api.validation.meta import NameFn, validate_object_meta, validate_object_meta_update

Check = Callable[[dict[str, Any], Errs], None]
UpdateCheck = Callable[[dict[str, Any], dict[str, Any], Errs], None]


@dataclasses.dataclass(frozen=True)
class KindRules:
    name: NameFn | None = formats.dns1123_subdomain
    create: Check | None = None            # spec rules, also re-run on update unless `recheck_on_update` is False
    update: UpdateCheck | None = None      # extra rules comparing with the stored object (immutability)
    status: UpdateCheck | None = None      # checks on the status subresource
    recheck_on_update: bool = True


_DEFAULT = KindRules()

RULES: dict[tuple[str, str], KindRules] = {
    # core/v1
    ("", "Namespace"): KindRules(name=formats.dns1123_label, create=core.validate_namespace,
                                 status=core.validate_namespace_status_update),
    ("", "Pod"): KindRules(create=pods.validate_pod, update=pods.validate_pod_update,
                           status=pods.validate_pod_status_update, recheck_on_update=False),
    ("", "Service"): KindRules(name=formats.dns1035_label, create=services.validate_service,
                               update=services.validate_service_update,
                               status=services.validate_service_status_update),
    ("", "Endpoints"): KindRules(create=core.validate_endpoints),
    ("", "ConfigMap"): KindRules(create=core.validate_config_map, update=core.validate_config_map_update),
    ("", "Secret"): KindRules(create=core.validate_secret, update=core.validate_secret_update),
    ("", "ServiceAccount"): KindRules(create=core.validate_service_account),
    ("", "Node"): KindRules(create=core.validate_node, update=core.validate_node_update,
                            status=core.validate_node_status_update),
    ("", "Event"): KindRules(create=core.validate_event),
    ("", "PersistentVolume"): KindRules(create=core.validate_pv, update=core.validate_pv_update),
    ("", "PersistentVolumeClaim"): KindRules(create=core.validate_pvc, update=core.validate_pvc_update),
    ("", "ReplicationController"): KindRules(create=workloads.validate_replication_controller),
    ("", "ResourceQuota"): KindRules(create=core.validate_resource_quota),
    ("", "LimitRange"): KindRules(create=core.validate_limit_range),
    ("", "PodTemplate"): KindRules(create=workloads.validate_pod_template_object),
    ("", "Binding"): KindRules(create=core.validate_binding),
    # apps/v1
    ("apps", "Deployment"): KindRules(create=workloads.validate_deployment,
                                      update=workloads.validate_deployment_update),
    ("apps", "ReplicaSet"): KindRules(create=workloads.validate_replica_set,
                                      update=workloads.validate_deployment_update),
    ("apps", "StatefulSet"): KindRules(create=workloads.validate_stateful_set,
                                       update=workloads.validate_stateful_set_update),
    ("apps", "DaemonSet"): KindRules(create=workloads.validate_daemon_set,
                                     update=workloads.validate_deployment_update),
    ("apps", "ControllerRevision"): KindRules(create=workloads.validate_controller_revision,
                                              update=workloads.validate_controller_revision_update),
    # batch/v1
    ("batch", "Job"): KindRules(create=workloads.validate_job, update=workloads.validate_job_update),
    ("batch", "CronJob"): KindRules(create=workloads.validate_cron_job, update=workloads.validate_cron_job_update,
                                    recheck_on_update=False),
    # autoscaling/v2
    ("autoscaling", "HorizontalPodAutoscaler"): KindRules(create=groups.validate_hpa),
    # networking.k8s.io/v1
    ("networking.k8s.io", "Ingress"): KindRules(create=networking.validate_ingress,
                                                status=networking.validate_ingress_status_update),
    ("networking.k8s.io", "IngressClass"): KindRules(create=networking.validate_ingress_class,
                                                     update=networking.validate_ingress_class_update),
    ("networking.k8s.io", "NetworkPolicy"): KindRules(create=networking.validate_network_policy),
    # discovery.k8s.io/v1
    ("discovery.k8s.io", "EndpointSlice"): KindRules(create=networking.validate_endpoint_slice,
                                                     update=networking.validate_endpoint_slice_update),
    # coordination.k8s.io/v1
    ("coordination.k8s.io", "Lease"): KindRules(create=groups.validate_lease),
    # rbac.authorization.k8s.io/v1: names only need to be URL-path safe (`system:controller:x` is fine)
    ("rbac.authorization.k8s.io", "Role"): KindRules(name=formats.path_segment_name, create=groups.validate_role),
    ("rbac.authorization.k8s.io", "ClusterRole"): KindRules(name=formats.path_segment_name,
                                                            create=groups.validate_cluster_role),
    ("rbac.authorization.k8s.io", "RoleBinding"): KindRules(name=formats.path_segment_name,
                                                            create=groups.validate_role_binding,
                                                            update=groups.validate_binding_update),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): KindRules(name=formats.path_segment_name,
                                                                   create=groups.validate_cluster_role_binding,
                                                                   update=groups.validate_binding_update),
    # storage.k8s.io/v1
    ("storage.k8s.io", "StorageClass"): KindRules(create=groups.validate_storage_class,
                                                  update=groups.validate_storage_class_update),
    # policy/v1
    ("policy", "PodDisruptionBudget"): KindRules(create=groups.validate_pdb),
    # scheduling.k8s.io/v1
    ("scheduling.k8s.io", "PriorityClass"): KindRules(create=groups.validate_priority_class,
                                                      update=groups.validate_priority_class_update),
    # events.k8s.io/v1
    ("events.k8s.io", "Event"): KindRules(create=core.validate_events_v1_event),
    # apiextensions.k8s.io/v1
    ("apiextensions.k8s.io", "CustomResourceDefinition"): KindRules(create=groups.validate_crd,
                                                                    update=groups.validate_crd_update),
}


def rules_for(rt: ResourceType) -> KindRules:
    return RULES.get((rt.group, rt.kind), _DEFAULT)


def _name_of(obj: dict[str, Any]) -> str:
    meta = as_dict(obj.get("metadata"))
    name = meta.get("name") or meta.get("generateName") or ""
    return name if isinstance(name, str) else ""


def validate_create(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Check a new object (defaults applied, name generated); raises errors.Invalid listing every problem."""
    rules = rules_for(rt)
    errs = Errs()
    validate_object_meta(obj.get("metadata"), namespaced=rt.namespaced, name_fn=rules.name, errs=errs)
    if rules.create is not None:
        rules.create(obj, errs)
    errs.raise_if_any(rt.kind, _name_of(obj), rt.group)


def validate_update(rt: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> None:
    """Check a replacement: the create rules on `new`, plus what may not change from `old`."""
    rules = rules_for(rt)
    errs = Errs()
    validate_object_meta_update(new.get("metadata"), old.get("metadata"), namespaced=rt.namespaced, errs=errs)
    if rules.create is not None and rules.recheck_on_update:
        rules.create(new, errs)
    if rules.update is not None:
        rules.update(new, old, errs)
    errs.raise_if_any(rt.kind, _name_of(new), rt.group)


def validate_status_update(rt: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> None:
    """Light checks for writes to the status subresource."""
    rules = rules_for(rt)
    errs = Errs()
    validate_object_meta_update(new.get("metadata"), old.get("metadata"), namespaced=rt.namespaced, errs=errs)
    if rules.status is not None:
        rules.status(new, old, errs)
    errs.raise_if_any(rt.kind, _name_of(new), rt.group)


__all__ = ["validate_create", "validate_update", "validate_status_update", "RULES", "KindRules", "rules_for"]
