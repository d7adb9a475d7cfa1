"""Containers and volumes, the building blocks every pod spec is checked with.

Kubernetes' rules for one container (name, image, pull policy, ports, env, mounts, probes, lifecycle hooks,
resources) and for the pod's volume list, worded as Kubernetes words them. `pods.py` assembles these into the
pod-spec checks; Services and Endpoints reuse the port helpers.
"""
from __future__ import annotations

from typing import Any, Iterable

from kates.api.validation import formats, quantity
from kates.api.validation.field import Errs, as_dict, as_list, is_int

MAX_INT32 = 2**31 - 1

PROTOCOLS = ("SCTP", "TCP", "UDP")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
HOST_PATH_TYPES = ("", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate",
                   "Socket")
MOUNT_PROPAGATIONS = ("Bidirectional", "HostToContainer", "None")

# In the order Kubernetes checks them: with several set, the later ones are reported.
VOLUME_SOURCES = (
    "emptyDir", "hostPath", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore", "secret", "nfs", "iscsi",
    "glusterfs", "persistentVolumeClaim", "rbd", "quobyte", "flexVolume", "cinder", "cephfs", "flocker", "downwardAPI",
    "fc", "azureFile", "vsphereVolume", "photonPersistentDisk", "portworxVolume", "azureDisk", "storageos",
    "configMap", "scaleIO", "projected", "csi", "ephemeral", "image",
)
ENV_FIELD_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid",
                   "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                   "status.podIPs")
VOLUME_FIELD_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                      "metadata.uid")
RESOURCE_FIELD_REFS = ("limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu",
                       "requests.ephemeral-storage", "requests.memory")
STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")


# --- small shared checks --------------------------------------------------------------------------------------------

def validate_port_num_or_name(port: Any, path: str, errs: Errs) -> None:
    """An IntOrString port: a number 1-65535 or an IANA service name."""
    if is_int(port):
        for msg in formats.port_num(port):
            errs.invalid(path, port, msg)
    elif isinstance(port, str):
        for msg in formats.port_name(port):
            errs.invalid(path, port, msg)
    else:
        errs.invalid(path, port, "must be an int or a string")


def validate_protocol(value: Any, path: str, errs: Errs) -> None:
    if not value:
        errs.required(path)
    elif value not in PROTOCOLS:
        errs.not_supported(path, value, PROTOCOLS)


def _relative_path(value: str, path: str, errs: Errs) -> None:
    """Kubernetes' validateLocalDescendingPath: relative and never climbing out with `..`."""
    if value.startswith("/"):
        errs.invalid(path, value, "must be a relative path")
    if ".." in value.replace("\\", "/").split("/"):
        errs.invalid(path, value, "must not contain '..'")


def _mode(value: Any, path: str, errs: Errs) -> None:
    if is_int(value) and not 0 <= value <= 0o777:
        errs.invalid(path, value, "must be a number between 0 and 0777 (octal), both inclusive")


def _key_to_paths(items: Any, path: str, errs: Errs) -> None:
    for i, item in enumerate(as_list(items)):
        item = as_dict(item)
        ipath = f"{path}[{i}]"
        if not item.get("key"):
            errs.required(f"{ipath}.key")
        p = item.get("path") or ""
        if not p:
            errs.required(f"{ipath}.path")
        else:
            _relative_path(p, f"{ipath}.path", errs)
        _mode(item.get("mode"), f"{ipath}.mode", errs)


def validate_resource_quantity(raw: Any, path: str, errs: Errs) -> quantity.Quantity | None:
    try:
        q = quantity.parse(raw)
    except quantity.QuantityError as e:
        errs.invalid(path, raw, str(e))
        return None
    if q.value < 0:
        errs.invalid(path, str(q), "must be greater than or equal to 0")
    return q


def _validate_container_resource_name(name: str, path: str, errs: Errs) -> None:
    for msg in formats.qualified_name(name):
        errs.invalid(path, name, msg)
    if "/" not in name and name not in STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
        errs.invalid(path, name, "must be a standard resource for containers")


def validate_resource_requirements(resources: Any, path: str, errs: Errs) -> None:
    resources = as_dict(resources)
    limits: dict[str, quantity.Quantity] = {}
    for name, raw in as_dict(resources.get("limits")).items():
        kpath = f"{path}.limits[{name}]"
        _validate_container_resource_name(name, kpath, errs)
        q = validate_resource_quantity(raw, kpath, errs)
        if q is not None:
            limits[name] = q
    for name, raw in as_dict(resources.get("requests")).items():
        kpath = f"{path}.requests[{name}]"
        _validate_container_resource_name(name, kpath, errs)
        q = validate_resource_quantity(raw, kpath, errs)
        limit = limits.get(name)
        if q is None or limit is None:
            continue
        overcommit = name in STANDARD_CONTAINER_RESOURCES
        if not overcommit and q.value != limit.value:
            errs.invalid(f"{path}.requests", str(q), f"must be equal to {name} limit of {limit}")
        elif q.value > limit.value:
            errs.invalid(f"{path}.requests", str(q), f"must be less than or equal to {name} limit of {limit}")


# --- containers -----------------------------------------------------------------------------------------------------

def _validate_ports(ports: Any, path: str, errs: Errs, *, host_network: bool) -> None:
    names: set[str] = set()
    for i, port in enumerate(as_list(ports)):
        port = as_dict(port)
        ppath = f"{path}[{i}]"
        name = port.get("name") or ""
        if name:
            msgs = formats.port_name(name)
            for msg in msgs:
                errs.invalid(f"{ppath}.name", name, msg)
            if not msgs:
                if name in names:
                    errs.duplicate(f"{ppath}.name", name)
                names.add(name)
        cport = port.get("containerPort")
        if not cport:
            errs.required(f"{ppath}.containerPort")
        elif is_int(cport):
            for msg in formats.port_num(cport):
                errs.invalid(f"{ppath}.containerPort", cport, msg)
        hport = port.get("hostPort")
        if is_int(hport) and hport != 0:
            for msg in formats.port_num(hport):
                errs.invalid(f"{ppath}.hostPort", hport, msg)
            if host_network and hport != cport:
                errs.invalid(f"{ppath}.hostPort", hport, "must match `containerPort` when `hostNetwork` is true")
        validate_protocol(port.get("protocol"), f"{ppath}.protocol", errs)
        if port.get("hostIP"):
            for msg in formats.ip_address(port["hostIP"]):
                errs.invalid(f"{ppath}.hostIP", port["hostIP"], msg)


def _validate_object_field_selector(ref: dict[str, Any], allowed: Iterable[str], path: str, errs: Errs) -> None:
    if not ref.get("apiVersion"):
        errs.required(f"{path}.apiVersion")
    fp = ref.get("fieldPath") or ""
    if not fp:
        errs.required(f"{path}.fieldPath")
        return
    allowed = tuple(allowed)
    base = fp.split("[", 1)[0]
    if "[" in fp and base in ("metadata.labels", "metadata.annotations"):
        key = fp[len(base):]
        if not (key.startswith("['") and key.endswith("']")) or len(key) <= 4:
            errs.invalid(f"{path}.fieldPath", fp, "error converting fieldPath: field label not supported")
            return
        for msg in formats.qualified_name(key[2:-2].lower() if base == "metadata.annotations" else key[2:-2]):
            errs.invalid(f"{path}.fieldPath", fp, msg)
    elif fp not in allowed:
        errs.not_supported(f"{path}.fieldPath", fp, allowed)


def _validate_resource_field_ref(ref: dict[str, Any], path: str, errs: Errs, *, need_container: bool) -> None:
    if need_container and not ref.get("containerName"):
        errs.required(f"{path}.containerName")
    res = ref.get("resource") or ""
    if not res:
        errs.required(f"{path}.resource")
    elif res not in RESOURCE_FIELD_REFS and not res.startswith(("limits.hugepages-", "requests.hugepages-")):
        errs.not_supported(f"{path}.resource", res, RESOURCE_FIELD_REFS)


def _validate_key_selector(ref: dict[str, Any], path: str, errs: Errs) -> None:
    name = ref.get("name") or ""
    if not name:
        errs.required(f"{path}.name")
    else:
        for msg in formats.dns1123_subdomain(name):
            errs.invalid(f"{path}.name", name, msg)
    key = ref.get("key") or ""
    if not key:
        errs.required(f"{path}.key")
    else:
        for msg in formats.config_map_key(key):
            errs.invalid(f"{path}.key", key, msg)


def _validate_env(env: Any, path: str, errs: Errs) -> None:
    for i, var in enumerate(as_list(env)):
        var = as_dict(var)
        vpath = f"{path}[{i}]"
        name = var.get("name") or ""
        if not name:
            errs.required(f"{vpath}.name")
        for msg in formats.env_var_name(name):
            errs.invalid(f"{vpath}.name", name, msg)
        value_from = var.get("valueFrom")
        if not isinstance(value_from, dict):
            continue
        fpath = f"{vpath}.valueFrom"
        sources = 0
        if isinstance(value_from.get("fieldRef"), dict):
            sources += 1
            _validate_object_field_selector(value_from["fieldRef"], ENV_FIELD_PATHS, f"{fpath}.fieldRef", errs)
        if isinstance(value_from.get("resourceFieldRef"), dict):
            sources += 1
            _validate_resource_field_ref(value_from["resourceFieldRef"], f"{fpath}.resourceFieldRef", errs,
                                         need_container=False)
        for kind in ("configMapKeyRef", "secretKeyRef"):
            if isinstance(value_from.get(kind), dict):
                sources += 1
                _validate_key_selector(value_from[kind], f"{fpath}.{kind}", errs)
        if sources == 0:
            errs.invalid(fpath, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or "
                                    "`secretKeyRef`")
        elif var.get("value"):
            errs.invalid(fpath, "", "may not be specified when `value` is not empty")
        elif sources > 1:
            errs.invalid(fpath, "", "may not have more than one field specified at a time")


def _validate_env_from(env_from: Any, path: str, errs: Errs) -> None:
    for i, src in enumerate(as_list(env_from)):
        src = as_dict(src)
        spath = f"{path}[{i}]"
        prefix = src.get("prefix") or ""
        if prefix:
            for msg in formats.env_var_name(prefix):
                errs.invalid(f"{spath}.prefix", prefix, msg)
        sources = 0
        for kind in ("configMapRef", "secretRef"):
            ref = src.get(kind)
            if isinstance(ref, dict):
                sources += 1
                name = ref.get("name") or ""
                if not name:
                    errs.required(f"{spath}.{kind}.name")
                else:
                    for msg in formats.dns1123_subdomain(name):
                        errs.invalid(f"{spath}.{kind}.name", name, msg)
        if sources == 0:
            errs.invalid(path, "", "must specify one of: `configMapRef` or `secretRef`")
        elif sources > 1:
            errs.invalid(path, "", "may not have more than one field specified at a time")


def _validate_volume_mounts(mounts: Any, path: str, volumes: set[str], privileged: bool, errs: Errs) -> None:
    seen: set[str] = set()
    for i, mount in enumerate(as_list(mounts)):
        mount = as_dict(mount)
        mpath = f"{path}[{i}]"
        name = mount.get("name") or ""
        if not name:
            errs.required(f"{mpath}.name")
        if name not in volumes:
            errs.not_found(f"{mpath}.name", name)
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            errs.required(f"{mpath}.mountPath")
        if mount_path in seen:
            errs.invalid(f"{mpath}.mountPath", mount_path, "must be unique")
        seen.add(mount_path)
        # Kubernetes reports subPath problems at `volumeMounts.subPath` (no index); kept for fidelity.
        if mount.get("subPath"):
            _relative_path(mount["subPath"], f"{path}.subPath", errs)
        if mount.get("subPathExpr"):
            if mount.get("subPath"):
                errs.invalid(f"{mpath}.subPathExpr", mount["subPathExpr"],
                             "subPathExpr and subPath are mutually exclusive")
            _relative_path(mount["subPathExpr"], f"{path}.subPathExpr", errs)
        prop = mount.get("mountPropagation")
        if prop is not None:
            if prop not in MOUNT_PROPAGATIONS:
                errs.not_supported(f"{mpath}.mountPropagation", prop, MOUNT_PROPAGATIONS)
            elif prop == "Bidirectional" and not privileged:
                errs.forbidden(f"{mpath}.mountPropagation",
                               "Bidirectional mount propagation is available only to privileged containers")


def _validate_handler(handler: dict[str, Any], path: str, errs: Errs, *, lifecycle: bool) -> None:
    count = 0
    for kind in ("exec", "httpGet", "tcpSocket", "grpc", "sleep"):
        action = handler.get(kind)
        if not isinstance(action, dict):
            continue
        if count > 0:
            errs.forbidden(f"{path}.{kind}", "may not specify more than 1 handler type")
            continue
        count += 1
        apath = f"{path}.{kind}"
        if kind == "exec":
            if not as_list(action.get("command")):
                errs.required(f"{apath}.command")
        elif kind == "httpGet":
            if not action.get("path"):
                errs.required(f"{apath}.path")
            validate_port_num_or_name(action.get("port"), f"{apath}.port", errs)
            scheme = action.get("scheme")
            if scheme not in ("HTTP", "HTTPS"):
                errs.not_supported(f"{apath}.scheme", scheme or "", ("HTTP", "HTTPS"))
            for j, header in enumerate(as_list(action.get("httpHeaders"))):
                hname = as_dict(header).get("name") or ""
                for msg in formats.http_header_name(hname):
                    errs.invalid(f"{apath}.httpHeaders[{j}].name", hname, msg)
        elif kind == "tcpSocket":
            validate_port_num_or_name(action.get("port"), f"{apath}.port", errs)
        elif kind == "grpc":
            if lifecycle:
                errs.forbidden(apath, "GRPC is not supported in lifecycle hooks")
            port = action.get("port")
            if is_int(port):
                for msg in formats.port_num(port):
                    errs.invalid(f"{apath}.port", port, msg)
        elif kind == "sleep":
            if not lifecycle:
                errs.forbidden(apath, "sleep is only supported in lifecycle hooks")
    if count == 0:
        errs.required(path, "must specify a handler type")


def _validate_probe(probe: Any, path: str, errs: Errs, *, must_succeed_once: bool, readiness: bool) -> None:
    if not isinstance(probe, dict):
        return
    _validate_handler(probe, path, errs, lifecycle=False)
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs.nonnegative(f"{path}.{key}", probe.get(key))
    grace = probe.get("terminationGracePeriodSeconds")
    if is_int(grace):
        if readiness:
            errs.invalid(f"{path}.terminationGracePeriodSeconds", grace, "must not be set for readinessProbes")
        elif grace <= 0:
            errs.invalid(f"{path}.terminationGracePeriodSeconds", grace, "must be greater than 0")
    if must_succeed_once and is_int(probe.get("successThreshold")) and probe["successThreshold"] != 1:
        errs.invalid(f"{path}.successThreshold", probe["successThreshold"], "must be 1")


def validate_security_context(sc: Any, path: str, errs: Errs) -> None:
    sc = as_dict(sc)
    for key in ("runAsUser", "runAsGroup"):
        v = sc.get(key)
        if is_int(v) and not 0 <= v <= MAX_INT32:
            errs.invalid(f"{path}.{key}", v, formats.inclusive_range_error(0, MAX_INT32))
    if sc.get("privileged") is True and sc.get("allowPrivilegeEscalation") is False:
        errs.invalid(path, "", "cannot set `allowPrivilegeEscalation` to false and `privileged` to true")


def validate_container(ctr: dict[str, Any], path: str, volumes: set[str], errs: Errs, *, init: bool,
                        host_network: bool) -> None:
    name = ctr.get("name") or ""
    if not name:
        errs.required(f"{path}.name")
    else:
        for msg in formats.dns1123_label(name):
            errs.invalid(f"{path}.name", name, msg)
    image = ctr.get("image")
    if not image:
        errs.required(f"{path}.image")
    elif isinstance(image, str) and image != image.strip():
        errs.invalid(f"{path}.image", image, "must not have leading or trailing whitespace")
    policy = ctr.get("imagePullPolicy")
    if not policy:
        errs.required(f"{path}.imagePullPolicy")
    elif policy not in PULL_POLICIES:
        errs.not_supported(f"{path}.imagePullPolicy", policy, PULL_POLICIES)
    tmp = ctr.get("terminationMessagePolicy")
    if not tmp:
        errs.required(f"{path}.terminationMessagePolicy")
    elif tmp not in TERMINATION_MESSAGE_POLICIES:
        errs.not_supported(f"{path}.terminationMessagePolicy", tmp, TERMINATION_MESSAGE_POLICIES)
    restart = ctr.get("restartPolicy")
    sidecar = False
    if restart is not None:
        if not init:
            errs.forbidden(f"{path}.restartPolicy", "may not be set for non-init containers")
        elif restart != "Always":
            errs.not_supported(f"{path}.restartPolicy", restart, ("Always",))
        else:
            sidecar = True
    _validate_ports(ctr.get("ports"), f"{path}.ports", errs, host_network=host_network)
    _validate_env(ctr.get("env"), f"{path}.env", errs)
    _validate_env_from(ctr.get("envFrom"), f"{path}.envFrom", errs)
    privileged = as_dict(ctr.get("securityContext")).get("privileged") is True
    _validate_volume_mounts(ctr.get("volumeMounts"), f"{path}.volumeMounts", volumes, privileged, errs)
    validate_resource_requirements(ctr.get("resources"), f"{path}.resources", errs)
    validate_security_context(ctr.get("securityContext"), f"{path}.securityContext", errs)
    probes = ("livenessProbe", "readinessProbe", "startupProbe")
    if init and not sidecar:
        for key in ("lifecycle",) + probes:
            if ctr.get(key) is not None:
                errs.forbidden(f"{path}.{key}", "may not be set for init containers without restartPolicy=Always")
        return
    _validate_probe(ctr.get("livenessProbe"), f"{path}.livenessProbe", errs, must_succeed_once=True,
                    readiness=False)
    _validate_probe(ctr.get("readinessProbe"), f"{path}.readinessProbe", errs, must_succeed_once=False,
                    readiness=True)
    _validate_probe(ctr.get("startupProbe"), f"{path}.startupProbe", errs, must_succeed_once=True,
                    readiness=False)
    lifecycle = as_dict(ctr.get("lifecycle"))
    for hook in ("postStart", "preStop"):
        if isinstance(lifecycle.get(hook), dict):
            _validate_handler(lifecycle[hook], f"{path}.lifecycle.{hook}", errs, lifecycle=True)


# --- volumes --------------------------------------------------------------------------------------------------------

def _validate_volume_source(vol: dict[str, Any], path: str, errs: Errs) -> None:
    present = [k for k in VOLUME_SOURCES if vol.get(k) is not None]
    if not present:
        errs.required(path, "must specify a volume type")
        return
    for extra in present[1:]:
        errs.forbidden(f"{path}.{extra}", "may not specify more than 1 volume type")
    kind = present[0]
    src = as_dict(vol[kind])
    spath = f"{path}.{kind}"
    if kind == "hostPath":
        if not src.get("path"):
            errs.required(f"{spath}.path")
        t = src.get("type")
        if t is not None and t not in HOST_PATH_TYPES:
            errs.not_supported(f"{spath}.type", t, HOST_PATH_TYPES)
    elif kind == "secret":
        if not src.get("secretName"):
            errs.required(f"{spath}.secretName")
        _mode(src.get("defaultMode"), f"{spath}.defaultMode", errs)
        _key_to_paths(src.get("items"), f"{spath}.items", errs)
    elif kind == "configMap":
        if not src.get("name"):
            errs.required(f"{spath}.name")
        _mode(src.get("defaultMode"), f"{spath}.defaultMode", errs)
        _key_to_paths(src.get("items"), f"{spath}.items", errs)
    elif kind == "persistentVolumeClaim":
        if not src.get("claimName"):
            errs.required(f"{spath}.claimName")
    elif kind == "nfs":
        if not src.get("server"):
            errs.required(f"{spath}.server")
        p = src.get("path") or ""
        if not p:
            errs.required(f"{spath}.path")
        elif not p.startswith("/"):
            errs.invalid(f"{spath}.path", p, "must be an absolute path")
    elif kind == "csi":
        if not src.get("driver"):
            errs.required(f"{spath}.driver")
    elif kind == "emptyDir":
        if src.get("sizeLimit") is not None:
            validate_resource_quantity(src["sizeLimit"], f"{spath}.sizeLimit", errs)
    elif kind == "downwardAPI":
        _mode(src.get("defaultMode"), f"{spath}.defaultMode", errs)
        _validate_downward_items(src.get("items"), f"{spath}.items", errs)
    elif kind == "projected":
        _validate_projected(src, spath, errs)


def _validate_downward_items(items: Any, path: str, errs: Errs) -> None:
    for i, item in enumerate(as_list(items)):
        item = as_dict(item)
        ipath = f"{path}[{i}]"
        p = item.get("path") or ""
        if not p:
            errs.required(f"{ipath}.path")
        else:
            _relative_path(p, f"{ipath}.path", errs)
        _mode(item.get("mode"), f"{ipath}.mode", errs)
        has_field = isinstance(item.get("fieldRef"), dict)
        has_res = isinstance(item.get("resourceFieldRef"), dict)
        if has_field:
            _validate_object_field_selector(item["fieldRef"], VOLUME_FIELD_PATHS, f"{ipath}.fieldRef", errs)
        if has_res:
            _validate_resource_field_ref(item["resourceFieldRef"], f"{ipath}.resourceFieldRef", errs,
                                         need_container=True)
        if has_field and has_res:
            errs.invalid(ipath, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously")


def _validate_projected(src: dict[str, Any], path: str, errs: Errs) -> None:
    _mode(src.get("defaultMode"), f"{path}.defaultMode", errs)
    for i, source in enumerate(as_list(src.get("sources"))):
        source = as_dict(source)
        spath = f"{path}.sources[{i}]"
        kinds = [k for k in ("secret", "configMap", "downwardAPI", "serviceAccountToken", "clusterTrustBundle")
                 if source.get(k) is not None]
        if not kinds:
            errs.required(spath, "must specify exactly 1 of: `secret`, `configMap`, `downwardAPI`, "
                                 "`serviceAccountToken`, `clusterTrustBundle`")
        for extra in kinds[1:]:
            errs.forbidden(f"{spath}.{extra}", "may not specify more than 1 volume type per source")
        for k in kinds[:1]:
            inner = as_dict(source[k])
            if k in ("secret", "configMap"):
                _key_to_paths(inner.get("items"), f"{spath}.{k}.items", errs)
            elif k == "downwardAPI":
                _validate_downward_items(inner.get("items"), f"{spath}.downwardAPI.items", errs)
            elif k == "serviceAccountToken":
                exp = inner.get("expirationSeconds")
                if is_int(exp) and exp < 600:
                    errs.invalid(f"{spath}.serviceAccountToken.expirationSeconds", exp,
                                 "may not specify a duration less than 10 minutes")
                if not inner.get("path"):
                    errs.required(f"{spath}.serviceAccountToken.path")


def validate_volumes(volumes: Any, path: str, errs: Errs) -> set[str]:
    names: set[str] = set()
    for i, vol in enumerate(as_list(volumes)):
        vol = as_dict(vol)
        vpath = f"{path}[{i}]"
        _validate_volume_source(vol, vpath, errs)
        name = vol.get("name") or ""
        if not name:
            errs.required(f"{vpath}.name")
        else:
            for msg in formats.dns1123_label(name):
                errs.invalid(f"{vpath}.name", name, msg)
        if name in names:
            errs.duplicate(f"{vpath}.name", name)
        names.add(name)
    return names
