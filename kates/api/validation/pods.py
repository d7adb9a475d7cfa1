"""Pod specs, wherever they appear: Pods themselves and the templates of every workload kind.

Follows Kubernetes' core validation (ValidatePodSpec, ValidatePodTemplateSpec, ValidatePodUpdate): the pod-level
fields, scheduling (tolerations, affinity, spread constraints) and what a Pod update may change; containers and
volumes are checked by `containers.py`. Paths are passed in so that the same checks report
`spec.containers[0].image` for a Pod and `spec.template.spec.containers[0].image` for a Deployment.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

from kates.api.validation import formats
from kates.api.validation.containers import (
    MAX_INT32, validate_container, validate_resource_quantity, validate_security_context, validate_volumes,
)
from kates.api.validation.field import Errs, GoRepr, as_dict, as_list, go_quote, go_value, is_int
from kates.api.validation.meta import validate_annotations, validate_label_selector, validate_labels

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TOLERATION_OPERATORS = ("Equal", "Exists")
NODE_SELECTOR_OPERATORS = ("DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn")
PREEMPTION_POLICIES = ("Never", "PreemptLowerPriority")

UPDATABLE_POD_FIELDS = (
    "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it "
    "was previously negative)")


# --- scheduling -----------------------------------------------------------------------------------------------------

def _toleration_repr(tol: dict[str, Any]) -> GoRepr:
    seconds = tol.get("tolerationSeconds")
    seconds_text = f"&{seconds}" if is_int(seconds) else "(*int64)(nil)"
    fields = ", ".join(f"{k}:{go_quote(str(tol.get(j) or ''))}" for k, j in
                       (("Key", "key"), ("Operator", "operator"), ("Value", "value"), ("Effect", "effect")))
    return GoRepr(f"core.Toleration{{{fields}, TolerationSeconds:{seconds_text}}}")


def validate_tolerations(tolerations: Any, path: str, errs: Errs) -> None:
    for i, tol in enumerate(as_list(tolerations)):
        tol = as_dict(tol)
        tpath = f"{path}[{i}]"
        key = tol.get("key") or ""
        if key:
            for msg in formats.qualified_name(key):
                errs.invalid(f"{tpath}.key", key, msg)
        op = tol.get("operator") or "Equal"
        if not key and op != "Exists":
            errs.invalid(f"{tpath}.operator", op, "operator must be Exists when `key` is empty, which means "
                                                  "\"match all values and all keys\"")
        effect = tol.get("effect") or ""
        if tol.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.invalid(f"{tpath}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set")
        value = tol.get("value") or ""
        if op == "Equal":
            for msg in formats.label_value(value):
                errs.invalid(f"{tpath}.operator", value, msg)
        elif op == "Exists":
            if value:
                errs.invalid(f"{tpath}.operator", _toleration_repr(tol), "value must be empty when `operator` is 'Exists'")
        else:
            errs.not_supported(f"{tpath}.operator", op, TOLERATION_OPERATORS)
        if effect and effect not in TAINT_EFFECTS:
            errs.not_supported(f"{tpath}.effect", effect, TAINT_EFFECTS)


def _validate_node_selector_requirements(reqs: Any, path: str, errs: Errs) -> None:
    for i, req in enumerate(as_list(reqs)):
        req = as_dict(req)
        rpath = f"{path}[{i}]"
        op = req.get("operator") or ""
        values = as_list(req.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.required(f"{rpath}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.forbidden(f"{rpath}.values", "may not be specified when `operator` is 'Exists' or "
                                                  "'DoesNotExist'")
        elif op in ("Gt", "Lt"):
            if len(values) != 1:
                errs.required(f"{rpath}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'")
        else:
            errs.not_supported(f"{rpath}.operator", op, NODE_SELECTOR_OPERATORS)
        key = req.get("key") or ""
        for msg in formats.qualified_name(key):
            errs.invalid(f"{rpath}.key", key, msg)


def _validate_node_selector_term(term: Any, path: str, errs: Errs) -> None:
    term = as_dict(term)
    _validate_node_selector_requirements(term.get("matchExpressions"), f"{path}.matchExpressions", errs)


def _validate_pod_affinity_term(term: Any, path: str, errs: Errs) -> None:
    term = as_dict(term)
    validate_label_selector(term.get("labelSelector"), f"{path}.labelSelector", errs)
    validate_label_selector(term.get("namespaceSelector"), f"{path}.namespaceSelector", errs)
    for j, ns in enumerate(as_list(term.get("namespaces"))):
        for msg in formats.dns1123_label(ns if isinstance(ns, str) else ""):
            errs.invalid(f"{path}.namespaces[{j}]", ns, msg)
    key = term.get("topologyKey") or ""
    if not key:
        errs.required(f"{path}.topologyKey", "can not be empty")
    else:
        for msg in formats.qualified_name(key):
            errs.invalid(f"{path}.topologyKey", key, msg)


def _validate_weight(weight: Any, path: str, errs: Errs) -> None:
    if is_int(weight) and not 1 <= weight <= 100:
        errs.invalid(path, weight, "must be in the range 1-100")


def _validate_affinity(affinity: Any, path: str, errs: Errs) -> None:
    affinity = as_dict(affinity)
    node = as_dict(affinity.get("nodeAffinity"))
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    if isinstance(required, dict):
        rpath = f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        terms = as_list(required.get("nodeSelectorTerms"))
        if not terms:
            errs.required(f"{rpath}.nodeSelectorTerms", "must have at least one node selector term")
        for i, term in enumerate(terms):
            _validate_node_selector_term(term, f"{rpath}.nodeSelectorTerms[{i}]", errs)
    for i, pref in enumerate(as_list(node.get("preferredDuringSchedulingIgnoredDuringExecution"))):
        pref = as_dict(pref)
        ppath = f"{path}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
        _validate_weight(pref.get("weight"), f"{ppath}.weight", errs)
        _validate_node_selector_term(pref.get("preference"), f"{ppath}.preference", errs)
    for kind in ("podAffinity", "podAntiAffinity"):
        pa = as_dict(affinity.get(kind))
        for i, term in enumerate(as_list(pa.get("requiredDuringSchedulingIgnoredDuringExecution"))):
            _validate_pod_affinity_term(term, f"{path}.{kind}.requiredDuringSchedulingIgnoredDuringExecution[{i}]",
                                        errs)
        for i, wt in enumerate(as_list(pa.get("preferredDuringSchedulingIgnoredDuringExecution"))):
            wt = as_dict(wt)
            wpath = f"{path}.{kind}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            _validate_weight(wt.get("weight"), f"{wpath}.weight", errs)
            _validate_pod_affinity_term(wt.get("podAffinityTerm"), f"{wpath}.podAffinityTerm", errs)


def _validate_topology_spread(constraints: Any, path: str, errs: Errs) -> None:
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(as_list(constraints)):
        c = as_dict(c)
        cpath = f"{path}[{i}]"
        skew = c.get("maxSkew")
        if not is_int(skew) or skew <= 0:
            errs.invalid(f"{cpath}.maxSkew", skew, "must be greater than zero")
        key = c.get("topologyKey") or ""
        if not key:
            errs.required(f"{cpath}.topologyKey", "can not be empty")
        else:
            for msg in formats.qualified_name(key):
                errs.invalid(f"{cpath}.topologyKey", key, msg)
        when = c.get("whenUnsatisfiable") or ""
        if when not in ("DoNotSchedule", "ScheduleAnyway"):
            errs.not_supported(f"{cpath}.whenUnsatisfiable", when, ("DoNotSchedule", "ScheduleAnyway"))
        if (key, when) in seen:
            errs.duplicate(f"{cpath}.{{topologyKey, whenUnsatisfiable}}", f"{{{key}, {when}}}")
        seen.add((key, when))
        min_domains = c.get("minDomains")
        if min_domains is not None:
            if not is_int(min_domains) or min_domains <= 0:
                errs.invalid(f"{cpath}.minDomains", min_domains, "must be greater than 0")
            elif when != "DoNotSchedule":
                errs.invalid(f"{cpath}.minDomains", min_domains,
                             "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway")
        validate_label_selector(c.get("labelSelector"), f"{cpath}.labelSelector", errs)


# --- the pod spec ---------------------------------------------------------------------------------------------------

def validate_pod_spec(spec: Any, path: str, errs: Errs, *, extra_volumes: Iterable[str] = ()) -> None:
    """Kubernetes' ValidatePodSpec. `extra_volumes` names volumes provided by the owner (StatefulSet claims)."""
    spec = as_dict(spec)
    volumes = validate_volumes(spec.get("volumes"), f"{path}.volumes", errs) | set(extra_volumes)
    host_network = spec.get("hostNetwork") is True
    containers = as_list(spec.get("containers"))
    if not containers:
        errs.required(f"{path}.containers")
    names: set[str] = set()
    for key, init in (("initContainers", True), ("containers", False)):
        for i, ctr in enumerate(as_list(spec.get(key))):
            ctr = as_dict(ctr)
            cpath = f"{path}.{key}[{i}]"
            validate_container(ctr, cpath, volumes, errs, init=init, host_network=host_network)
            name = ctr.get("name") or ""
            if name:
                if name in names:
                    errs.duplicate(f"{cpath}.name", name)
                names.add(name)
    for i, ctr in enumerate(as_list(spec.get("ephemeralContainers"))):
        name = as_dict(ctr).get("name") or ""
        if name and name in names:
            errs.duplicate(f"{path}.ephemeralContainers[{i}].name", name)
        names.add(name)

    restart = spec.get("restartPolicy")
    if not restart:
        errs.required(f"{path}.restartPolicy")
    elif restart not in RESTART_POLICIES:
        errs.not_supported(f"{path}.restartPolicy", restart, RESTART_POLICIES)
    dns = spec.get("dnsPolicy")
    if not dns:
        errs.required(f"{path}.dnsPolicy")
    elif dns not in DNS_POLICIES:
        errs.not_supported(f"{path}.dnsPolicy", dns, DNS_POLICIES)
    _validate_dns_config(spec, path, errs)
    validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector", errs)
    for key, checker in (("serviceAccountName", formats.dns1123_subdomain), ("nodeName", formats.dns1123_subdomain),
                         ("priorityClassName", formats.dns1123_subdomain), ("hostname", formats.dns1123_label),
                         ("subdomain", formats.dns1123_label), ("runtimeClassName", formats.dns1123_subdomain)):
        value = spec.get(key)
        if isinstance(value, str) and value:
            for msg in checker(value):
                errs.invalid(f"{path}.{key}", value, msg)
    ads = spec.get("activeDeadlineSeconds")
    if is_int(ads) and not 1 <= ads <= MAX_INT32:
        errs.invalid(f"{path}.activeDeadlineSeconds", ads, formats.inclusive_range_error(1, MAX_INT32))
    preemption = spec.get("preemptionPolicy")
    if preemption is not None and preemption not in PREEMPTION_POLICIES:
        errs.not_supported(f"{path}.preemptionPolicy", preemption, PREEMPTION_POLICIES)
    validate_tolerations(spec.get("tolerations"), f"{path}.tolerations", errs)
    _validate_affinity(spec.get("affinity"), f"{path}.affinity", errs)
    _validate_topology_spread(spec.get("topologySpreadConstraints"), f"{path}.topologySpreadConstraints", errs)
    validate_security_context(spec.get("securityContext"), f"{path}.securityContext", errs)
    if spec.get("shareProcessNamespace") is True and spec.get("hostPID") is True:
        errs.invalid(f"{path}.shareProcessNamespace", True, "ShareProcessNamespace and HostPID cannot both be enabled")
    for i, alias in enumerate(as_list(spec.get("hostAliases"))):
        alias = as_dict(alias)
        ip = alias.get("ip") or ""
        for msg in formats.ip_address(ip):
            errs.invalid(f"{path}.hostAliases[{i}].ip", ip, msg)
        for j, host in enumerate(as_list(alias.get("hostnames"))):
            for msg in formats.dns1123_subdomain(host if isinstance(host, str) else ""):
                errs.invalid(f"{path}.hostAliases[{i}].hostnames[{j}]", host, msg)
    gates: set[str] = set()
    for i, gate in enumerate(as_list(spec.get("schedulingGates"))):
        gname = as_dict(gate).get("name") or ""
        for msg in formats.qualified_name(gname):
            errs.invalid(f"{path}.schedulingGates[{i}].name", gname, msg)
        if gname in gates:
            errs.duplicate(f"{path}.schedulingGates[{i}].name", gname)
        gates.add(gname)
    for i, gate in enumerate(as_list(spec.get("readinessGates"))):
        ctype = as_dict(gate).get("conditionType") or ""
        for msg in formats.qualified_name(ctype):
            errs.invalid(f"{path}.readinessGates[{i}].conditionType", ctype, msg)
    for name, raw in as_dict(spec.get("overhead")).items():
        validate_resource_quantity(raw, f"{path}.overhead[{name}]", errs)


def _validate_dns_config(spec: dict[str, Any], path: str, errs: Errs) -> None:
    config = spec.get("dnsConfig")
    if spec.get("dnsPolicy") == "None" and not isinstance(config, dict):
        errs.required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None")
        return
    config = as_dict(config)
    servers = as_list(config.get("nameservers"))
    if len(servers) > 3:
        errs.invalid(f"{path}.dnsConfig.nameservers", servers, "must not have more than 3 nameservers")
    for i, ns in enumerate(servers):
        for msg in formats.ip_address(ns if isinstance(ns, str) else ""):
            errs.invalid(f"{path}.dnsConfig.nameservers[{i}]", ns, msg)
    if spec.get("dnsPolicy") == "None" and not servers:
        errs.required(f"{path}.dnsConfig.nameservers", "must provide at least one DNS nameserver when `dnsPolicy` "
                                                        "is None")
    searches = as_list(config.get("searches"))
    if len(searches) > 32:
        errs.invalid(f"{path}.dnsConfig.searches", searches, "must not have more than 32 search paths")
    for i, s in enumerate(searches):
        s = s if isinstance(s, str) else ""
        for msg in formats.dns1123_subdomain(s[:-1] if s.endswith(".") else s):
            errs.invalid(f"{path}.dnsConfig.searches[{i}]", s, msg)


def validate_pod_template(template: Any, path: str, errs: Errs, *, extra_volumes: Iterable[str] = ()) -> None:
    """Kubernetes' ValidatePodTemplateSpec (note: its label errors say `<path>.labels`, not `.metadata.labels`)."""
    template = as_dict(template)
    meta = as_dict(template.get("metadata"))
    validate_labels(meta.get("labels"), f"{path}.labels", errs)
    validate_annotations(meta.get("annotations"), f"{path}.annotations", errs)
    spec = as_dict(template.get("spec"))
    validate_pod_spec(spec, f"{path}.spec", errs, extra_volumes=extra_volumes)
    if as_list(spec.get("ephemeralContainers")):
        errs.forbidden(f"{path}.spec.ephemeralContainers", "ephemeral containers not allowed in pod template")


# --- Pods -----------------------------------------------------------------------------------------------------------

def validate_pod(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    validate_pod_spec(spec, "spec", errs)
    if as_list(spec.get("ephemeralContainers")):
        errs.forbidden("spec.ephemeralContainers", "cannot be set on create")
    if spec.get("nodeName") and as_list(spec.get("schedulingGates")):
        errs.forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared")


def validate_pod_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    validate_pod_spec(new_spec, "spec", errs)
    for key in ("containers", "initContainers"):
        new_ctrs, old_ctrs = as_list(new_spec.get(key)), as_list(old_spec.get(key))
        if len(new_ctrs) != len(old_ctrs):
            errs.forbidden(f"spec.{key}", "pod updates may not add or remove containers")
            return
    new_ads, old_ads = new_spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if is_int(new_ads):
        if not 0 <= new_ads <= MAX_INT32:
            errs.invalid("spec.activeDeadlineSeconds", new_ads, formats.inclusive_range_error(0, MAX_INT32))
            return
        if is_int(old_ads) and old_ads < new_ads:
            errs.invalid("spec.activeDeadlineSeconds", new_ads, "must be less than or equal to previous value")
            return
    elif is_int(old_ads):
        errs.invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value")
    _validate_only_added_tolerations(new_spec.get("tolerations"), old_spec.get("tolerations"), errs)

    munged = copy.deepcopy(new_spec)
    for key in ("containers", "initContainers"):
        for n, o in zip(as_list(munged.get(key)), as_list(old_spec.get(key))):
            if isinstance(n, dict) and isinstance(o, dict):
                if "image" in o:
                    n["image"] = o["image"]
                else:
                    n.pop("image", None)
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        if key in old_spec:
            munged[key] = copy.deepcopy(old_spec[key])
        else:
            munged.pop(key, None)
    old_grace, new_grace = old_spec.get("terminationGracePeriodSeconds"), munged.get("terminationGracePeriodSeconds")
    if is_int(old_grace) and old_grace < 0 and new_grace == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if as_list(old_spec.get("schedulingGates")):
        # Gated pods may gain node selectors and affinity; compare the rest only.
        for key in ("nodeSelector", "affinity"):
            if key in old_spec:
                munged[key] = copy.deepcopy(old_spec[key])
            else:
                munged.pop(key, None)
    if _strip_empty(munged) != _strip_empty(old_spec):
        changed = sorted(k for k in set(munged) | set(old_spec)
                         if _strip_empty(munged.get(k)) != _strip_empty(old_spec.get(k)))
        diff = "\n".join(f"  spec.{k}: {go_value(old_spec.get(k))} -> {go_value(munged.get(k))}"
                         for k in changed)
        errs.forbidden("spec", f"pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{diff}")


def _strip_empty(value: Any) -> Any:
    """Compare like Go's semantic DeepEqual after JSON round-trips: absent, null, {} and [] all mean unset."""
    if isinstance(value, dict):
        out = {k: _strip_empty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "", False, 0)}
    if isinstance(value, list):
        return [_strip_empty(v) for v in value]
    return value


def _validate_only_added_tolerations(new: Any, old: Any, errs: Errs) -> None:
    new_list = [as_dict(t) for t in as_list(new)]
    for tol in as_list(old):
        tol = as_dict(tol)
        if not any(_strip_empty({**tol, "tolerationSeconds": n.get("tolerationSeconds")}) == _strip_empty(n)
                   for n in new_list):
            errs.forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds")
            return


def validate_pod_status_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    """Light checks on what kubelets write: metadata stays put and reported IPs parse."""
    status = as_dict(new.get("status"))
    for key in ("podIP", "hostIP"):
        value = status.get(key)
        if isinstance(value, str) and value:
            for msg in formats.ip_address(value):
                errs.invalid(f"status.{key}", value, msg)
    for key in ("podIPs", "hostIPs"):
        for i, entry in enumerate(as_list(status.get(key))):
            ip = as_dict(entry).get("ip") or ""
            for msg in formats.ip_address(ip):
                errs.invalid(f"status.{key}[{i}].ip", ip, msg)
