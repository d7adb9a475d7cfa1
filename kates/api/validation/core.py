"""The other core/v1 kinds: Namespace, ConfigMap, Secret, Node, PersistentVolume(Claim), Endpoints, Event,
ResourceQuota, LimitRange, ServiceAccount and Binding.

Mostly data-shape rules (keys, sizes, enums) plus the update rules users run into: Secret type is fixed,
`immutable: true` freezes ConfigMap/Secret data, claims keep their spec, nodes keep their pod CIDRs.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from kates.api.validation import formats, quantity
from kates.api.validation.field import Errs, GoRepr, as_dict, as_list, go_quote, is_int
from kates.api.validation.meta import validate_label_selector
from kates.api.validation.containers import VOLUME_SOURCES, validate_protocol, validate_resource_quantity
from kates.api.validation.pods import TAINT_EFFECTS

MAX_SECRET_SIZE = 1024 * 1024
STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")
ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
VOLUME_MODES = ("Block", "Filesystem")
RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")


# --- Namespace ------------------------------------------------------------------------------------------------------

def _validate_finalizer_name(name: Any, path: str, errs: Errs) -> None:
    name = name if isinstance(name, str) else ""
    msgs = formats.qualified_name(name)
    for msg in msgs:
        errs.invalid(path, name, msg)
    if not msgs and "/" not in name and name not in STANDARD_FINALIZERS:
        errs.invalid(path, name, "name is neither a standard finalizer name nor is it fully qualified")


def validate_namespace(obj: dict[str, Any], errs: Errs) -> None:
    for f in as_list(as_dict(obj.get("spec")).get("finalizers")):
        _validate_finalizer_name(f, "spec.finalizers", errs)


def validate_namespace_status_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    phase = as_dict(new.get("status")).get("phase")
    deleting = bool(as_dict(new.get("metadata")).get("deletionTimestamp"))
    if not phase:
        return   # defaulted to Active
    if not deleting and phase != "Active":
        errs.invalid("status.Phase", phase or "", "may only be 'Active' if `deletionTimestamp` is empty")
    elif deleting and phase != "Terminating":
        errs.invalid("status.Phase", phase or "", "may only be 'Terminating' if `deletionTimestamp` is not empty")


# --- ConfigMap and Secret ---------------------------------------------------------------------------------------------

def _b64_size(value: Any, path: str, errs: Errs) -> int:
    """Decoded size of a JSON []byte (base64 string); reports undecodable values."""
    if not isinstance(value, str):
        return 0
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        errs.invalid(path, "<secret contents redacted>", "illegal base64 data")
        return len(value)


def _b64_bytes(value: Any) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        return None


def validate_config_map(obj: dict[str, Any], errs: Errs) -> None:
    data, binary = as_dict(obj.get("data")), as_dict(obj.get("binaryData"))
    total = 0
    for key, value in data.items():
        for msg in formats.config_map_key(key):
            errs.invalid(f"data[{key}]", key, msg)
        if key in binary:
            errs.invalid(f"data[{key}]", key, "duplicate of key present in binaryData")
        total += len(value.encode()) if isinstance(value, str) else 0
    for key, value in binary.items():
        for msg in formats.config_map_key(key):
            errs.invalid(f"binaryData[{key}]", key, msg)
        total += _b64_size(value, f"binaryData[{key}]", errs)
    if total > MAX_SECRET_SIZE:
        # Kubernetes reports this one against the whole object, printed as `[]`.
        errs.too_long("[]", MAX_SECRET_SIZE)


def _immutable_data(new: dict[str, Any], old: dict[str, Any], keys: tuple[str, ...], errs: Errs) -> None:
    if old.get("immutable") is not True:
        return
    if new.get("immutable") is not True:
        errs.forbidden("immutable", "field is immutable when `immutable` is set")
    for key in keys:
        if as_dict(new.get(key)) != as_dict(old.get(key)):
            errs.forbidden(key, "field is immutable when `immutable` is set")


def validate_config_map_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    _immutable_data(new, old, ("data", "binaryData"), errs)


def validate_secret(obj: dict[str, Any], errs: Errs) -> None:
    data = as_dict(obj.get("data"))
    total = 0
    for key, value in data.items():
        for msg in formats.config_map_key(key):
            errs.invalid(f"data[{key}]", key, msg)
        total += _b64_size(value, f"data[{key}]", errs)
    if total > MAX_SECRET_SIZE:
        errs.too_long("data", MAX_SECRET_SIZE)
    stype = obj.get("type") or ""
    annotations = as_dict(as_dict(obj.get("metadata")).get("annotations"))
    if stype == "kubernetes.io/service-account-token":
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.required("metadata.annotations[kubernetes.io/service-account.name]")
    elif stype in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = ".dockercfg" if stype == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if key not in data:
            errs.required(f"data[{key}]")
        else:
            raw = _b64_bytes(data[key])
            try:
                parsed = json.loads(raw or b"")
                if not isinstance(parsed, dict):
                    raise ValueError("json: cannot unmarshal into Go value of type map[string]interface {}")
            except ValueError as e:
                errs.invalid(f"data[{key}]", "<secret contents redacted>", str(e))
    elif stype == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs.required("data[username]")
            errs.required("data[password]")
    elif stype == "kubernetes.io/ssh-auth":
        if not _b64_bytes(data.get("ssh-privatekey")):
            errs.required("data[ssh-privatekey]")
    elif stype == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                errs.required(f"data[{key}]")


def validate_secret_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    if (new.get("type") or "") != (old.get("type") or ""):
        errs.immutable("type", new.get("type") or "")
    _immutable_data(new, old, ("data",), errs)


# --- Node -----------------------------------------------------------------------------------------------------------

def validate_node(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    seen: set[tuple[str, str]] = set()
    # Kubernetes reports taint problems under `metadata.taints` (sic).
    for i, taint in enumerate(as_list(spec.get("taints"))):
        taint = as_dict(taint)
        tpath = f"metadata.taints[{i}]"
        key = taint.get("key") or ""
        for msg in formats.qualified_name(key):
            errs.invalid(f"{tpath}.key", key, msg)
        value = taint.get("value") or ""
        msgs = formats.label_value(value)
        if msgs:
            errs.invalid(f"{tpath}.value", value, ";".join(msgs))
        effect = taint.get("effect") or ""
        if not effect:
            errs.required(f"{tpath}.effect")
        elif effect not in TAINT_EFFECTS:
            errs.not_supported(f"{tpath}.effect", effect, TAINT_EFFECTS)
        if (key, effect) in seen:
            errs.add(tpath, "FieldValueDuplicate",
                     f"Duplicate value: core.Taint{{Key:{go_quote(key)}, Value:{go_quote(value)}, "
                     f"Effect:{go_quote(effect)}, TimeAdded:<nil>}}: taints must be unique by key and effect pair")
        seen.add((key, effect))
    cidrs = as_list(spec.get("podCIDRs"))
    for i, c in enumerate(cidrs):
        for msg in formats.cidr(c if isinstance(c, str) else ""):
            errs.invalid(f"spec.podCIDRs[{i}]", c, msg)
    if len(cidrs) > 1:
        families = {formats.ip_family(str(c).split("/")[0]) for c in cidrs}
        if len(cidrs) > 2 or len(families) != 2:
            errs.invalid("spec.podCIDRs", cidrs, "may specify no more than one CIDR for each IP family")


def validate_node_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    old_cidrs = as_list(old_spec.get("podCIDRs"))
    if old_cidrs and as_list(new_spec.get("podCIDRs")) != old_cidrs:
        errs.forbidden("spec.podCIDRs", "node updates may not change podCIDR except from \"\" to valid")
    old_provider = old_spec.get("providerID") or ""
    if old_provider and (new_spec.get("providerID") or "") != old_provider:
        errs.forbidden("spec.providerID", "node updates may not change providerID except from \"\" to valid")
    validate_node_status_update(new, old, errs)


def validate_node_status_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    seen: list[Any] = []
    for i, addr in enumerate(as_list(as_dict(new.get("status")).get("addresses"))):
        if addr in seen:
            errs.duplicate(f"status.addresses[{i}]", addr)
        seen.append(addr)
    status = as_dict(new.get("status"))
    for key in ("capacity", "allocatable"):
        for name, raw in as_dict(status.get(key)).items():
            validate_resource_quantity(raw, f"status.{key}[{name}]", errs)


# --- volumes and claims -----------------------------------------------------------------------------------------------

def _validate_access_modes(modes: Any, path: str, errs: Errs) -> None:
    modes = as_list(modes)
    if not modes:
        errs.required(path, "at least 1 access mode is required")
    for m in modes:
        if m not in ACCESS_MODES:
            errs.not_supported(path, m, ACCESS_MODES)
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.forbidden(path, "may not use ReadWriteOncePod with other access modes")


def _validate_storage_request(resources: Any, path: str, errs: Errs, *, required: bool = True) -> None:
    requests = as_dict(resources)
    raw = requests.get("storage")
    if raw is None:
        if required:
            errs.required(f"{path}[storage]")
        return
    q = validate_resource_quantity(raw, f"{path}[storage]", errs)
    if q is not None and q.value <= 0:
        errs.invalid(f"{path}[storage]", str(q), "must be greater than zero")


def validate_pvc(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    _validate_pvc_spec(spec, "spec", errs)


def _validate_pvc_spec(spec: dict[str, Any], path: str, errs: Errs) -> None:
    _validate_access_modes(spec.get("accessModes"), f"{path}.accessModes", errs)
    validate_label_selector(spec.get("selector"), f"{path}.selector", errs)
    _validate_storage_request(as_dict(spec.get("resources")).get("requests"), f"{path}.resources", errs)
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        errs.not_supported(f"{path}.volumeMode", mode, VOLUME_MODES)
    sc = spec.get("storageClassName")
    if isinstance(sc, str) and sc:
        for msg in formats.dns1123_subdomain(sc):
            errs.invalid(f"{path}.storageClassName", sc, msg)


def validate_pvc_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    new_spec = json.loads(json.dumps(as_dict(new.get("spec"))))
    old_spec = json.loads(json.dumps(as_dict(old.get("spec"))))
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = new_spec.get("volumeName")
    if old_spec.get("storageClassName") is None and new_spec.get("storageClassName") is not None:
        old_spec["storageClassName"] = new_spec["storageClassName"]
    bound = as_dict(new.get("status")).get("phase") == "Bound"
    new_storage = as_dict(as_dict(new_spec.get("resources")).get("requests")).get("storage")
    old_storage = as_dict(as_dict(old_spec.get("resources")).get("requests")).get("storage")
    if bound:
        as_dict(new_spec.setdefault("resources", {})).setdefault("requests", {})["storage"] = old_storage
        new_spec.pop("volumeAttributesClassName", None)
        old_spec.pop("volumeAttributesClassName", None)
    if {k: v for k, v in new_spec.items() if v is not None} != {k: v for k, v in old_spec.items() if v is not None}:
        errs.forbidden("spec", "spec is immutable after creation except resources.requests and "
                               "volumeAttributesClassName for bound claims")
    try:
        if new_storage is not None and old_storage is not None and \
                quantity.parse(new_storage).value < quantity.parse(old_storage).value:
            errs.forbidden("spec.resources.requests.storage", "field can not be less than previous value")
    except quantity.QuantityError:
        pass


def validate_pv(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    _validate_access_modes(spec.get("accessModes"), "spec.accessModes", errs)
    capacity = as_dict(spec.get("capacity"))
    if not capacity:
        errs.required("spec.capacity")
    else:
        _validate_storage_request(capacity, "spec.capacity", errs)
    sources = [k for k in VOLUME_SOURCES + ("local",) if spec.get(k) is not None]
    if not sources:
        errs.required("spec", "must specify a volume type")
    for extra in sources[1:]:
        errs.forbidden(f"spec.{extra}", "may not specify more than 1 volume type")
    if "hostPath" in sources and not as_dict(spec.get("hostPath")).get("path"):
        errs.required("spec.hostPath.path")
    if "local" in sources:
        p = as_dict(spec.get("local")).get("path") or ""
        if not p:
            errs.required("spec.local.path")
        if not spec.get("nodeAffinity"):
            errs.required("spec.nodeAffinity", "Local volume requires node affinity")
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy is not None and policy not in RECLAIM_POLICIES:
        errs.not_supported("spec.persistentVolumeReclaimPolicy", policy, RECLAIM_POLICIES)
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        errs.not_supported("spec.volumeMode", mode, VOLUME_MODES)
    sc = spec.get("storageClassName")
    if isinstance(sc, str) and sc:
        for msg in formats.dns1123_subdomain(sc):
            errs.invalid("spec.storageClassName", sc, msg)


def validate_pv_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    for key in VOLUME_SOURCES + ("local",):
        if new_spec.get(key) != old_spec.get(key):
            errs.forbidden("spec.persistentvolumesource", "spec.persistentvolumesource is immutable after creation")
            break
    if old_spec.get("volumeMode") != new_spec.get("volumeMode"):
        errs.immutable("spec.volumeMode", new_spec.get("volumeMode"))
    if old_spec.get("nodeAffinity") and new_spec.get("nodeAffinity") != old_spec.get("nodeAffinity"):
        errs.immutable("spec.nodeAffinity", GoRepr("core.VolumeNodeAffinity{...}"))


# --- Endpoints, Events, quotas, accounts ------------------------------------------------------------------------------

def _validate_endpoint_address(addr: Any, path: str, errs: Errs) -> None:
    addr = as_dict(addr)
    ip = addr.get("ip") or ""
    for msg in formats.ip_address(ip):
        errs.invalid(f"{path}.ip", ip, msg)
    hostname = addr.get("hostname")
    if isinstance(hostname, str) and hostname:
        for msg in formats.dns1123_label(hostname):
            errs.invalid(f"{path}.hostname", hostname, msg)
    node = addr.get("nodeName")
    if isinstance(node, str) and node:
        for msg in formats.dns1123_subdomain(node):
            errs.invalid(f"{path}.nodeName", node, msg)


def validate_endpoints(obj: dict[str, Any], errs: Errs) -> None:
    for i, subset in enumerate(as_list(obj.get("subsets"))):
        subset = as_dict(subset)
        spath = f"subsets[{i}]"
        if not as_list(subset.get("addresses")) and not as_list(subset.get("notReadyAddresses")):
            errs.required(spath, "must specify `addresses` or `notReadyAddresses`")
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(as_list(subset.get(key))):
                _validate_endpoint_address(addr, f"{spath}.{key}[{j}]", errs)
        ports = as_list(subset.get("ports"))
        for j, port in enumerate(ports):
            validate_endpoint_port(as_dict(port), f"{spath}.ports[{j}]", errs, require_name=len(ports) > 1)


def validate_endpoint_port(port: dict[str, Any], path: str, errs: Errs, *, require_name: bool) -> None:
    name = port.get("name") or ""
    if require_name and not name:
        errs.required(f"{path}.name")
    elif name:
        for msg in formats.dns1123_label(name):
            errs.invalid(f"{path}.name", name, msg)
    number = port.get("port")
    if is_int(number):
        for msg in formats.port_num(number):
            errs.invalid(f"{path}.port", number, msg)
    validate_protocol(port.get("protocol"), f"{path}.protocol", errs)


def validate_event(obj: dict[str, Any], errs: Errs) -> None:
    """core/v1 Events: the involved object's namespace must be the event's (for namespaced objects)."""
    namespace = as_dict(obj.get("metadata")).get("namespace") or ""
    involved = as_dict(obj.get("involvedObject"))
    ins = involved.get("namespace") or ""
    if ins and ins != namespace:
        errs.invalid("involvedObject.namespace", ins, "does not match event.namespace")
    etype = obj.get("type")
    if obj.get("reportingController") and etype not in ("Normal", "Warning"):
        errs.not_supported("type", etype or "", ("Normal", "Warning"))


def validate_events_v1_event(obj: dict[str, Any], errs: Errs) -> None:
    """events.k8s.io/v1 requires the new-style reporting fields."""
    if not obj.get("eventTime"):
        errs.required("eventTime")
    etype = obj.get("type")
    if etype not in ("Normal", "Warning"):
        errs.not_supported("type", etype or "", ("Normal", "Warning"))
    for key, limit in (("reportingController", 253), ("reportingInstance", 128), ("action", 128), ("reason", 128)):
        value = obj.get(key) or ""
        if not value:
            errs.required(key)
        elif len(value) > limit:
            errs.invalid(key, "", f"can have at most {limit} characters")
    if isinstance(obj.get("reportingController"), str) and obj["reportingController"]:
        for msg in formats.qualified_name(obj["reportingController"]):
            errs.invalid("reportingController", obj["reportingController"], msg)
    note = obj.get("note") or ""
    if len(note) > 1024:
        errs.invalid("note", "", "can have at most 1024 characters")


_QUOTA_SCOPES = ("BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating", "PriorityClass",
                 "Terminating", "VolumeAttributesClass")


def validate_resource_quota(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    for name, raw in as_dict(spec.get("hard")).items():
        for msg in formats.qualified_name(name):
            errs.invalid(f"spec.hard[{name}]", name, msg)
        validate_resource_quantity(raw, f"spec.hard[{name}]", errs)
    for i, scope in enumerate(as_list(spec.get("scopes"))):
        if scope not in _QUOTA_SCOPES:
            errs.not_supported(f"spec.scopes[{i}]", scope, _QUOTA_SCOPES)


def validate_limit_range(obj: dict[str, Any], errs: Errs) -> None:
    for i, item in enumerate(as_list(as_dict(obj.get("spec")).get("limits"))):
        item = as_dict(item)
        ipath = f"spec.limits[{i}]"
        ltype = item.get("type")
        if ltype not in ("Container", "Pod", "PersistentVolumeClaim"):
            errs.not_supported(f"{ipath}.type", ltype or "", ("Container", "PersistentVolumeClaim", "Pod"))
        parsed: dict[str, dict[str, Any]] = {}
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            parsed[key] = {}
            for name, raw in as_dict(item.get(key)).items():
                q = validate_resource_quantity(raw, f"{ipath}.{key}[{name}]", errs)
                if q is not None:
                    parsed[key][name] = q
        if ltype == "Pod" and (item.get("default") or item.get("defaultRequest")):
            key = "default" if item.get("default") else "defaultRequest"
            errs.forbidden(f"{ipath}.{key}", "may not be specified when `type` is 'Pod'")
        for name, lo in parsed["min"].items():
            hi = parsed["max"].get(name)
            if hi is not None and lo.value > hi.value:
                errs.invalid(f"{ipath}.min[{name}]", str(lo), f"min value {lo} is greater than max value {hi}")
        for key in ("default", "defaultRequest"):
            for name, q in parsed[key].items():
                lo, hi = parsed["min"].get(name), parsed["max"].get(name)
                if lo is not None and q.value < lo.value:
                    errs.invalid(f"{ipath}.{key}[{name}]", str(q), f"min value {lo} is greater than {key} value {q}")
                if hi is not None and q.value > hi.value:
                    errs.invalid(f"{ipath}.{key}[{name}]", str(q), f"{key} value {q} is greater than max value {hi}")


def validate_service_account(obj: dict[str, Any], errs: Errs) -> None:
    for i, ref in enumerate(as_list(obj.get("secrets"))):
        name = as_dict(ref).get("name") or ""
        if name:
            for msg in formats.dns1123_subdomain(name):
                errs.invalid(f"secrets[{i}].name", name, msg)


def validate_binding(obj: dict[str, Any], errs: Errs) -> None:
    target = as_dict(obj.get("target"))
    if not target.get("name"):
        errs.required("target.name")
    kind = target.get("kind")
    if kind not in (None, "", "Node"):
        errs.not_supported("target.kind", kind, ("Node", "<empty>"))
