"""The remaining API groups: rbac, coordination, policy, scheduling, storage, autoscaling and apiextensions.

Each function checks one kind the way the matching Kubernetes validation package does, keeping the rules a user
can trip over through kubectl (enums, required fields, value ranges, immutability on update).
"""
from __future__ import annotations

from typing import Any

from kates.api.validation import formats
from kates.api.validation.field import Errs, GoRepr, as_dict, as_list, go_quote, is_int
from kates.api.validation.meta import validate_label_selector
from kates.api.validation.workloads import not_more_than_100_percent, validate_int_or_percent

RBAC_GROUP = "rbac.authorization.k8s.io"


# --- rbac.authorization.k8s.io --------------------------------------------------------------------------------------

def _validate_rules(obj: dict[str, Any], errs: Errs, *, namespaced: bool) -> None:
    for i, rule in enumerate(as_list(obj.get("rules"))):
        rule = as_dict(rule)
        path = f"rules[{i}]"
        if not as_list(rule.get("verbs")):
            errs.required(f"{path}.verbs", "verbs must contain at least one value")
        urls = as_list(rule.get("nonResourceURLs"))
        if urls:
            if namespaced:
                errs.invalid(f"{path}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs")
            if as_list(rule.get("apiGroups")) or as_list(rule.get("resources")) or \
                    as_list(rule.get("resourceNames")):
                errs.invalid(f"{path}.nonResourceURLs", urls,
                             "rules cannot apply to both regular resources and non-resource URLs")
            continue
        if not as_list(rule.get("apiGroups")):
            errs.required(f"{path}.apiGroups", "resource rules must supply at least one api group")
        if not as_list(rule.get("resources")):
            errs.required(f"{path}.resources", "resource rules must supply at least one resource")


def validate_role(obj: dict[str, Any], errs: Errs) -> None:
    _validate_rules(obj, errs, namespaced=True)


def validate_cluster_role(obj: dict[str, Any], errs: Errs) -> None:
    agg = obj.get("aggregationRule")
    if isinstance(agg, dict):
        selectors = as_list(agg.get("clusterRoleSelectors"))
        if not selectors:
            errs.required("aggregationRule.clusterRoleSelectors",
                          "at least one clusterRoleSelector required if aggregationRule is non-nil")
        for i, sel in enumerate(selectors):
            validate_label_selector(sel, f"aggregationRule.clusterRoleSelectors[{i}]", errs)
    _validate_rules(obj, errs, namespaced=False)


def _validate_binding(obj: dict[str, Any], errs: Errs, *, cluster: bool) -> None:
    ref = as_dict(obj.get("roleRef"))
    if ref.get("apiGroup") != RBAC_GROUP:
        errs.not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", (RBAC_GROUP,))
    kinds = ("ClusterRole",) if cluster else ("Role", "ClusterRole")
    if ref.get("kind") not in kinds:
        errs.not_supported("roleRef.kind", ref.get("kind") or "", kinds)
    name = ref.get("name") or ""
    if not name:
        errs.required("roleRef.name")
    else:
        for msg in formats.path_segment_name(name):
            errs.invalid("roleRef.name", name, msg)
    for i, subject in enumerate(as_list(obj.get("subjects"))):
        subject = as_dict(subject)
        spath = f"subjects[{i}]"
        sname = subject.get("name") or ""
        if not sname:
            errs.required(f"{spath}.name")
        kind = subject.get("kind")
        group = subject.get("apiGroup") or ""
        if kind == "ServiceAccount":
            for msg in formats.dns1123_subdomain(sname) if sname else ():
                errs.invalid(f"{spath}.name", sname, msg)
            if group:
                errs.not_supported(f"{spath}.apiGroup", group, ("",))
            if cluster and not subject.get("namespace"):
                errs.required(f"{spath}.namespace")
        elif kind in ("User", "Group"):
            if group != RBAC_GROUP:
                errs.not_supported(f"{spath}.apiGroup", group, (RBAC_GROUP,))
        else:
            errs.not_supported(f"{spath}.kind", kind or "", ("ServiceAccount", "User", "Group"))


def validate_role_binding(obj: dict[str, Any], errs: Errs) -> None:
    _validate_binding(obj, errs, cluster=False)


def validate_cluster_role_binding(obj: dict[str, Any], errs: Errs) -> None:
    _validate_binding(obj, errs, cluster=True)


def validate_binding_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    new_ref, old_ref = as_dict(new.get("roleRef")), as_dict(old.get("roleRef"))
    if new_ref != old_ref:
        errs.invalid("roleRef", GoRepr(
            f"rbac.RoleRef{{APIGroup:{go_quote(str(new_ref.get('apiGroup', '')))}, "
            f"Kind:{go_quote(str(new_ref.get('kind', '')))}, Name:{go_quote(str(new_ref.get('name', '')))}}}"),
            "cannot change roleRef")


# --- coordination, policy, scheduling, storage ----------------------------------------------------------------------

def validate_lease(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    duration = spec.get("leaseDurationSeconds")
    if is_int(duration) and duration <= 0:
        errs.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0")
    transitions = spec.get("leaseTransitions")
    if is_int(transitions) and transitions < 0:
        errs.invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0")
    strategy = spec.get("strategy")
    if strategy is not None and strategy != "OldestEmulationVersion":
        errs.not_supported("spec.strategy", strategy, ("OldestEmulationVersion",))


def validate_pdb(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errs.invalid("spec", GoRepr("policy.PodDisruptionBudgetSpec{...}"),
                     "minAvailable and maxUnavailable cannot be both set")
    for key in ("minAvailable", "maxUnavailable"):
        if spec.get(key) is not None:
            validate_int_or_percent(spec[key], f"spec.{key}", errs)
            not_more_than_100_percent(spec[key], f"spec.{key}", errs)
    validate_label_selector(spec.get("selector"), "spec.selector", errs)
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("AlwaysAllow", "IfHealthyBudget"):
        errs.not_supported("spec.unhealthyPodEvictionPolicy", policy, ("AlwaysAllow", "IfHealthyBudget"))


SYSTEM_PRIORITY_CLASSES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
HIGHEST_USER_PRIORITY = 1000000000


def validate_priority_class(obj: dict[str, Any], errs: Errs) -> None:
    name = as_dict(obj.get("metadata")).get("name") or ""
    value = obj.get("value")
    if name.startswith("system-"):
        known = SYSTEM_PRIORITY_CLASSES.get(name)
        if known is None:
            reason = f"{name} is not a known system priority class"
        elif value != known:
            reason = f"value of {name} PriorityClass must be {known}"
        else:
            reason = ""
        if reason:
            errs.forbidden("metadata.name", "priority class names with 'system-' prefix are reserved for system use "
                                            f"only. error: {reason}")
    elif is_int(value) and value > HIGHEST_USER_PRIORITY:
        errs.forbidden("value", f"maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}")
    policy = obj.get("preemptionPolicy")
    if policy is not None and policy not in ("Never", "PreemptLowerPriority"):
        errs.not_supported("preemptionPolicy", policy, ("Never", "PreemptLowerPriority"))


def validate_priority_class_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    if new.get("value") != old.get("value"):
        errs.forbidden("value", "may not be changed in an update.")
    if new.get("preemptionPolicy") != old.get("preemptionPolicy"):
        errs.immutable("preemptionPolicy", new.get("preemptionPolicy"))


def validate_storage_class(obj: dict[str, Any], errs: Errs) -> None:
    provisioner = obj.get("provisioner") or ""
    if not provisioner:
        errs.required("provisioner", "")
    else:
        if len(provisioner) > 63:
            errs.too_long("provisioner", 63)
        for msg in formats.qualified_name(provisioner.lower()):
            errs.invalid("provisioner", provisioner, msg)
    params = as_dict(obj.get("parameters"))
    if len(params) > 512:
        errs.too_many("parameters", len(params), 512)
    if sum(len(k) + len(str(v)) for k, v in params.items()) > 256 * 1024:
        errs.too_long("parameters", 256 * 1024)
    policy = obj.get("reclaimPolicy")
    if policy is not None and policy not in ("Delete", "Retain"):
        errs.not_supported("reclaimPolicy", policy, ("Delete", "Retain"))
    mode = obj.get("volumeBindingMode")
    if mode is None:
        errs.required("volumeBindingMode")
    elif mode not in ("Immediate", "WaitForFirstConsumer"):
        errs.not_supported("volumeBindingMode", mode, ("Immediate", "WaitForFirstConsumer"))


def validate_storage_class_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    if as_dict(new.get("parameters")) != as_dict(old.get("parameters")):
        errs.forbidden("parameters", "updates to parameters are forbidden.")
    if new.get("provisioner") != old.get("provisioner"):
        errs.forbidden("provisioner", "updates to provisioner are forbidden.")
    if new.get("reclaimPolicy") != old.get("reclaimPolicy"):
        errs.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden.")
    if new.get("volumeBindingMode") != old.get("volumeBindingMode"):
        errs.immutable("volumeBindingMode", new.get("volumeBindingMode"))


# --- autoscaling/v2 -------------------------------------------------------------------------------------------------

_METRIC_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
_TARGET_TYPES = ("AverageValue", "Utilization", "Value")


def _validate_metric_target(target: Any, path: str, errs: Errs) -> None:
    target = as_dict(target)
    ttype = target.get("type")
    if not ttype:
        errs.required(f"{path}.type", "must specify a metric target type")
    elif ttype not in _TARGET_TYPES:
        errs.not_supported(f"{path}.type", ttype, _TARGET_TYPES)
    util = target.get("averageUtilization")
    if is_int(util) and util < 1:
        errs.invalid(f"{path}.averageUtilization", util, "must be greater than 0")
    if ttype == "Utilization" and util is None:
        errs.required(f"{path}.averageUtilization", "must set either a target raw value or a target utilization")
    if ttype == "Value" and target.get("value") is None:
        errs.required(f"{path}.value", "must set either a target value for metric or a per-pod target")
    if ttype == "AverageValue" and target.get("averageValue") is None:
        errs.required(f"{path}.averageValue", "must set either a target value for metric or a per-pod target")


def validate_hpa(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    min_r, max_r = spec.get("minReplicas"), spec.get("maxReplicas")
    if is_int(min_r) and min_r < 1:
        errs.invalid("spec.minReplicas", min_r, "must be greater than or equal to 1")
    if not is_int(max_r) or max_r < 1:
        errs.invalid("spec.maxReplicas", max_r if is_int(max_r) else 0, "must be greater than 0")
    elif is_int(min_r) and max_r < min_r:
        errs.invalid("spec.maxReplicas", max_r, "must be greater than or equal to `minReplicas`")
    ref = as_dict(spec.get("scaleTargetRef"))
    before = len(errs)
    for key in ("kind", "name"):
        value = ref.get(key) or ""
        if not value:
            errs.required(f"spec.scaleTargetRef.{key}")
        else:
            for msg in formats.path_segment_name(value):
                errs.invalid(f"spec.scaleTargetRef.{key}", value, msg)
    if len(errs) > before:
        return
    for i, metric in enumerate(as_list(spec.get("metrics"))):
        metric = as_dict(metric)
        mpath = f"spec.metrics[{i}]"
        mtype = metric.get("type")
        if not mtype:
            errs.required(f"{mpath}.type", "must specify a metric source type")
            continue
        if mtype not in _METRIC_TYPES:
            errs.not_supported(f"{mpath}.type", mtype, _METRIC_TYPES)
            continue
        key = mtype[0].lower() + mtype[1:]
        source = metric.get(key)
        if not isinstance(source, dict):
            errs.required(f"{mpath}.{key}", f"must populate information for the given metric source")
            continue
        if mtype in ("Resource", "ContainerResource") and not source.get("name"):
            errs.required(f"{mpath}.{key}.name", "must specify a resource name")
        if mtype == "ContainerResource" and not source.get("container"):
            errs.required(f"{mpath}.{key}.container", "must specify a container")
        _validate_metric_target(source.get("target"), f"{mpath}.{key}.target", errs)
    behavior = as_dict(spec.get("behavior"))
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior.get(direction)
        if not isinstance(rules, dict):
            continue
        bpath = f"spec.behavior.{direction}"
        window = rules.get("stabilizationWindowSeconds")
        if is_int(window) and not 0 <= window <= 3600:
            errs.invalid(f"{bpath}.stabilizationWindowSeconds", window,
                         "must be less than or equal to 3600" if window > 0 else "must be greater than or equal to 0")
        select = rules.get("selectPolicy")
        if select is not None and select not in ("Disabled", "Max", "Min"):
            errs.not_supported(f"{bpath}.selectPolicy", select, ("Disabled", "Max", "Min"))
        policies = as_list(rules.get("policies"))
        if not policies and select != "Disabled":
            errs.required(f"{bpath}.policies", "must specify at least one Policy")
        for j, policy in enumerate(policies):
            policy = as_dict(policy)
            ppath = f"{bpath}.policies[{j}]"
            if policy.get("type") not in ("Percent", "Pods"):
                errs.not_supported(f"{ppath}.type", policy.get("type") or "", ("Percent", "Pods"))
            if not is_int(policy.get("value")) or policy["value"] <= 0:
                errs.invalid(f"{ppath}.value", policy.get("value"), "must be greater than zero")
            period = policy.get("periodSeconds")
            if not is_int(period) or period <= 0:
                errs.invalid(f"{ppath}.periodSeconds", period, "must be greater than zero")
            elif period > 1800:
                errs.invalid(f"{ppath}.periodSeconds", period, "must be less than or equal to 1800")


# --- apiextensions.k8s.io -------------------------------------------------------------------------------------------

def validate_crd(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    names = as_dict(spec.get("names"))
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    name = as_dict(obj.get("metadata")).get("name") or ""
    if name and name != f"{plural}.{group}":
        errs.invalid("metadata.name", name, "must be spec.names.plural+\".\"+spec.group")
    if not group:
        errs.required("spec.group")
    else:
        for msg in formats.dns1123_subdomain(group):
            errs.invalid("spec.group", group, msg)
        if "." not in group:
            errs.invalid("spec.group", group, "should be a domain with at least one dot")
    if not plural:
        errs.required("spec.names.plural")
    else:
        for msg in formats.dns1035_label(plural):
            errs.invalid("spec.names.plural", plural, msg)
    if not names.get("kind"):
        errs.required("spec.names.kind")
    for key in ("singular", "listKind"):
        value = names.get(key)
        if key == "singular" and isinstance(value, str) and value:
            for msg in formats.dns1035_label(value):
                errs.invalid(f"spec.names.{key}", value, msg)
    scope = spec.get("scope")
    if scope not in ("Cluster", "Namespaced"):
        errs.not_supported("spec.scope", scope or "", ("Cluster", "Namespaced"))
    versions = as_list(spec.get("versions"))
    if not versions:
        errs.required("spec.versions", "must have exactly one version marked as storage version")
        return
    seen: set[str] = set()
    storage = 0
    for i, version in enumerate(versions):
        version = as_dict(version)
        vname = version.get("name") or ""
        if not vname:
            errs.required(f"spec.versions[{i}].name")
        else:
            for msg in formats.dns1035_label(vname):
                errs.invalid(f"spec.versions[{i}].name", vname, msg)
        if vname in seen:
            errs.invalid("spec.versions", GoRepr("[]apiextensions.CustomResourceDefinitionVersion{...}"),
                         "must contain unique version names")
        seen.add(vname)
        if version.get("storage") is True:
            storage += 1
    if storage != 1:
        errs.invalid("spec.versions", GoRepr("[]apiextensions.CustomResourceDefinitionVersion{...}"),
                     "must have exactly one version marked as storage version")
    if not any(as_dict(v).get("served") is True for v in versions):
        errs.invalid("spec.versions", GoRepr("[]apiextensions.CustomResourceDefinitionVersion{...}"),
                     "must have at least one version marked as served")


def validate_crd_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    if new_spec.get("group") != old_spec.get("group"):
        errs.immutable("spec.group", new_spec.get("group") or "")
    if new_spec.get("scope") != old_spec.get("scope"):
        errs.immutable("spec.scope", new_spec.get("scope") or "")
