"""A container's environment, as the kubelet computes it (kubelet_pods.go makeEnvironmentVariables).

In order: envFrom sources (configMaps and secrets, with prefix; keys that are not valid variable names are skipped
and reported), then `env` in declared order, each `value` expanded with `$(VAR)` against the variables defined so
far and the service variables (`$$` escapes, unknown references stay as written), each `valueFrom` resolved
(configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef); then the service variables (pkg/kubelet/envvars) of the
pod's namespace (when enableServiceLinks is not false) and of the `kubernetes` service in `default`, unless a
variable of the same name is already set. A missing configMap, secret or key that is not optional fails the
container with CreateContainerConfigError, with Kubernetes' messages.
"""
from __future__ import annotations

import base64
import ipaddress
import math
import re
from typing import Any, Callable, Mapping

from ..api import errors
from ..client.rest import resource
from ..api.validation import quantity

Obj = dict[str, Any]

CONFIGMAPS = resource("configmaps")
SECRETS = resource("secrets")
NODES = resource("nodes")

ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
MASTER_SERVICES = ("kubernetes",)


class CreateContainerConfigError(Exception):
    """The container's configuration cannot be built yet (missing configMap, secret or key); the kubelet retries
    and shows the message as the container's waiting state."""


# -- $(VAR) expansion (third_party/forked/golang/expansion) -----------------------------------------------------


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """Look a name up in each context in turn; an unknown name expands to itself, `$(NAME)`."""
    def lookup(name: str) -> str:
        for ctx in contexts:
            if name in ctx:
                return ctx[name]
        return f"$({name})"
    return lookup


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`, an unterminated `$(` stays as written."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    out.append(mapping(text[cursor + 2:close]))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


# -- service links -----------------------------------------------------------------------------------------------


def _env_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def _join_host_port(host: str, port: int) -> str:
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def from_services(services: list[Obj]) -> list[tuple[str, str]]:
    """The Docker-link style variables of each service (pkg/kubelet/envvars FromServices)."""
    result: list[tuple[str, str]] = []
    for svc in services:
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        if not _ip_set(svc) or not ports:
            continue
        ip = spec["clusterIP"]
        prefix = _env_name(svc["metadata"]["name"])
        result.append((f"{prefix}_SERVICE_HOST", ip))
        result.append((f"{prefix}_SERVICE_PORT", str(ports[0]["port"])))
        for p in ports:
            if p.get("name"):
                result.append((f"{prefix}_SERVICE_PORT_{_env_name(p['name'])}", str(p["port"])))
        for i, p in enumerate(ports):
            proto = p.get("protocol") or "TCP"
            url = f"{proto.lower()}://{_join_host_port(ip, p['port'])}"
            if i == 0:
                result.append((f"{prefix}_PORT", url))
            pp = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
            result += [(pp, url), (f"{pp}_PROTO", proto.lower()), (f"{pp}_PORT", str(p["port"])), (f"{pp}_ADDR", ip)]
    return result


def service_env(pod: Obj, services: list[Obj]) -> dict[str, str]:
    """getServiceEnvVarMap: the namespace's services when links are enabled, and always the master service."""
    ns = pod["metadata"].get("namespace", "default")
    links = (pod.get("spec") or {}).get("enableServiceLinks", True) is not False
    chosen: dict[str, Obj] = {}
    for svc in services:
        if not _ip_set(svc):
            continue
        meta = svc["metadata"]
        name, svc_ns = meta["name"], meta.get("namespace", "default")
        if svc_ns == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif svc_ns == ns and links:
            chosen[name] = svc
    return dict(from_services([chosen[k] for k in sorted(chosen)]))


# -- field and resource references -------------------------------------------------------------------------------

_SUBSCRIPT_RE = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def _go_quote(s: str) -> str:
    """strconv.Quote for the printable text labels and annotations hold."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif not ch.isprintable():
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x80 else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_map(m: Mapping[str, str]) -> str:
    """fieldpath.FormatMap: sorted `key="value"` lines, as a downward API file of all labels shows them."""
    return "\n".join(f"{k}={_go_quote(m[k])}" for k in sorted(m))


def field_value(pod: Obj, path: str, *, node_ip: str = "", pod_ip: str = "", pod_ips: list[str] | None = None,
                host_ips: list[str] | None = None) -> str:
    """A `fieldRef.fieldPath` of the pod (env vars and downwardAPI volumes)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    if path == "spec.nodeName":
        return spec.get("nodeName", "")
    if path == "spec.serviceAccountName":
        return spec.get("serviceAccountName", "")
    if path == "status.hostIP":
        return node_ip
    if path == "status.hostIPs":
        return ",".join(host_ips or ([node_ip] if node_ip else []))
    if path == "status.podIP":
        return pod_ip
    if path == "status.podIPs":
        return ",".join(pod_ips if pod_ips is not None else ([pod_ip] if pod_ip else []))
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return meta.get(path.split(".", 1)[1], "")
    if path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(path.split(".", 1)[1]) or {})
    m = _SUBSCRIPT_RE.match(path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise CreateContainerConfigError(f"unsupported fieldPath: {path}")


def _divisor(raw: Any) -> quantity.Quantity:
    if raw in (None, "", 0, "0"):
        return quantity.parse("1")
    q = quantity.parse(raw)
    return q if q.value != 0 else quantity.parse("1")


def resource_value(selector: Obj, container: Obj, node_allocatable: Mapping[str, Any]) -> str:
    """A `resourceFieldRef` (ExtractContainerResourceValue): limits default to the node's allocatable, the result is
    the quantity over the divisor rounded up (CPU in millicores first, as Kubernetes does)."""
    res = container.get("resources") or {}
    limits = dict(res.get("limits") or {})
    requests = dict(res.get("requests") or {})
    for name in ("cpu", "memory", "ephemeral-storage"):
        if name not in limits and name in node_allocatable:
            limits[name] = node_allocatable[name]
        if name not in requests and name in (res.get("limits") or {}):
            requests[name] = res["limits"][name]
    which, _, name = (selector.get("resource") or "").partition(".")
    source = {"limits": limits, "requests": requests}.get(which)
    if source is None or not (name in ("cpu", "memory", "ephemeral-storage") or name.startswith("hugepages-")):
        raise CreateContainerConfigError(f"unsupported container resource : {selector.get('resource')}")
    q = quantity.parse(source.get(name, "0"))
    d = _divisor(selector.get("divisor"))
    if name == "cpu":
        milli = math.ceil(q.value * 1000)
        dmilli = math.ceil(d.value * 1000)
        return str(math.ceil(milli / dmilli))
    return str(math.ceil(math.ceil(q.value) / math.ceil(d.value)))


# -- the environment ---------------------------------------------------------------------------------------------


# how Kubernetes' messages name the two kinds (CreateContainerConfigError, InvalidEnvironmentVariableNames)
KEY_REF_KIND = {"configmap": "ConfigMap", "secret": "Secret"}
ENV_FROM_KIND = {"configmap": "configMap", "secret": "secret"}


class _Sources:
    """ConfigMaps, secrets and the node, each read once per computation."""

    def __init__(self, client: Any, namespace: str, node_name: str,
                 node_allocatable: Mapping[str, Any] | None) -> None:
        self.client = client
        self.namespace = namespace
        self.node_name = node_name
        self.node_allocatable = node_allocatable
        self._values: dict[tuple[str, str], dict[str, str] | None] = {}

    async def values(self, kind: str, name: str) -> dict[str, str] | None:
        """The data of the ConfigMap or Secret (`kind` "configmap" or "secret") as text; None when it is missing."""
        if (kind, name) not in self._values:
            try:
                obj = await self.client.get(CONFIGMAPS if kind == "configmap" else SECRETS, name, self.namespace)
                self._values[kind, name] = configmap_data(obj) if kind == "configmap" else secret_data(obj)
            except errors.NotFound:
                self._values[kind, name] = None
        return self._values[kind, name]

    async def allocatable(self) -> Mapping[str, Any]:
        if self.node_allocatable is None:
            try:
                node = await self.client.get(NODES, self.node_name)
                self.node_allocatable = (node.get("status") or {}).get("allocatable") or {}
            except errors.APIError:
                self.node_allocatable = {}
        return self.node_allocatable


def secret_data(secret: Obj) -> dict[str, str]:
    """A secret's values as text (data is base64; stringData never reaches a client)."""
    return {k: base64.b64decode(v).decode("utf-8", errors="replace") for k, v in (secret.get("data") or {}).items()}


def configmap_data(cm: Obj) -> dict[str, str]:
    return dict(cm.get("data") or {})


async def container_env(client: Any, pod: Obj, container: Obj, *, services: list[Obj], node_name: str,
                        node_ip: str, pod_ip: str, pod_ips: list[str],
                        node_allocatable: Mapping[str, Any] | None = None,
                        warn: Callable[[str, str], None] | None = None) -> list[tuple[str, str]]:
    """The container's environment variables in the order the kubelet builds them.

    `services`: Services of the pod's namespace and of `default` (others are ignored). `node_allocatable`: the
    Node's status.allocatable (read from the API when a resourceFieldRef needs it and it is not given).
    `warn(reason, message)` receives what the kubelet reports as Warning events (InvalidEnvironmentVariableNames).
    Raises CreateContainerConfigError."""
    ns = pod["metadata"].get("namespace", "default")
    src = _Sources(client, ns, node_name, node_allocatable)
    svc_env = service_env(pod, services)
    env: dict[str, str] = {}

    for ef in container.get("envFrom") or []:
        prefix = ef.get("prefix") or ""
        field = "configMapRef" if ef.get("configMapRef") else "secretRef" if ef.get("secretRef") else None
        if field is None:
            continue
        ref, kind = ef[field], ("configmap" if field == "configMapRef" else "secret")
        data = await src.values(kind, ref.get("name", ""))
        if data is None:
            if ref.get("optional"):
                continue
            raise CreateContainerConfigError(f'{kind} "{ref.get("name", "")}" not found')
        invalid = []
        for k, v in data.items():
            k = prefix + k
            if not ENV_NAME_RE.match(k):
                invalid.append(k)
                continue
            env[k] = v
        if invalid and warn:
            warn("InvalidEnvironmentVariableNames",
                 f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {ENV_FROM_KIND[kind]} {ns}/{ref.get('name', '')} were "
                 "skipped since they are considered invalid environment variable names.")

    mapping = mapping_for(env, svc_env)
    for var in container.get("env") or []:
        name = var["name"]
        val = var.get("value") or ""
        vf = var.get("valueFrom")
        if val:
            val = expand(val, mapping)
        elif vf:
            if vf.get("fieldRef"):
                val = field_value(pod, vf["fieldRef"].get("fieldPath", ""), node_ip=node_ip, pod_ip=pod_ip,
                                  pod_ips=pod_ips)
            elif vf.get("resourceFieldRef"):
                sel = vf["resourceFieldRef"]
                target = container
                if sel.get("containerName"):
                    target = next((c for c in [*(pod["spec"].get("containers") or []),
                                               *(pod["spec"].get("initContainers") or [])]
                                   if c.get("name") == sel["containerName"]), container)
                val = resource_value(sel, target, await src.allocatable())
            elif vf.get("configMapKeyRef") or vf.get("secretKeyRef"):
                kind = "configmap" if vf.get("configMapKeyRef") else "secret"
                ref = vf["configMapKeyRef" if kind == "configmap" else "secretKeyRef"]
                ref_name, key = ref.get("name", ""), ref.get("key", "")
                data = await src.values(kind, ref_name)
                if data is None or key not in data:
                    if ref.get("optional"):
                        continue
                    raise CreateContainerConfigError(
                        f'{kind} "{ref_name}" not found' if data is None
                        else f"couldn't find key {key} in {KEY_REF_KIND[kind]} {ns}/{ref_name}")
                val = data[key]
        env[name] = val

    result = list(env.items())
    result += [(k, v) for k, v in svc_env.items() if k not in env]
    return result
