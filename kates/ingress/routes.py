"""Ingress rules turned into one routing table the proxy consults per request, with no I/O.

Kept pure so the semantics Kubernetes defines for Ingress matching (host exact vs `*.` wildcard, path types
Exact / Prefix element-wise / ImplementationSpecific, longest match, oldest Ingress wins a conflict, default
backend) are table-testable. The controller rebuilds a `RouteTable` from its caches on every change and swaps it in
as a whole, so a request in flight keeps the backend it picked.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

CLASS_NAME = "kates"
CONTROLLER_NAME = "kates.io/ingress-controller"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

Obj = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ServiceRef:
    """A Service port an Ingress path sends to: `port` is a number, or a port name."""

    namespace: str
    name: str
    port: int | str


@dataclasses.dataclass(frozen=True)
class Backend:
    """Where one request goes: the Service reference and its ready endpoints `(ip, port)` at table-build time;
    `missing` says why there are none (no such service or port), so the proxy answers 503 with that reason."""

    service: ServiceRef
    ingress: str                      # namespace/name of the Ingress the rule came from
    endpoints: tuple[tuple[str, int], ...] = ()
    missing: str = ""


@dataclasses.dataclass(frozen=True)
class PathRule:
    path: str
    path_type: str                    # Exact or Prefix (ImplementationSpecific is treated as Prefix)
    backend: ServiceRef
    ingress: str
    created: str                      # creationTimestamp: the oldest Ingress wins a conflict

    def matches(self, path: str) -> bool:
        if self.path_type == "Exact":
            return path == self.path
        return prefix_matches(self.path, path)

    def rank(self) -> tuple[int, int, str]:
        # longest path first; at equal length Exact before Prefix; then the oldest Ingress
        return (-len(self.path.rstrip("/") or "/"), 0 if self.path_type == "Exact" else 1, self.created)


def prefix_matches(prefix: str, path: str) -> bool:
    """Element-wise prefix match as Kubernetes defines it: `/foo` matches `/foo`, `/foo/` and `/foo/bar` but not
    `/foobar`; trailing slashes of the rule are ignored; `/` matches everything."""
    p = prefix.rstrip("/")
    if not p:
        return True
    if not path.startswith(p):
        return False
    return len(path) == len(p) or path[len(p)] == "/"


def host_matches(rule_host: str, host: str) -> bool:
    """Exact, or a `*.example.com` wildcard, which covers exactly one more leading label."""
    if rule_host.startswith("*."):
        suffix = rule_host[1:]
        return host.endswith(suffix) and "." not in host[: -len(suffix)] and len(host) > len(suffix)
    return rule_host == host


@dataclasses.dataclass
class RouteTable:
    """Routing for every Ingress of our class: paths grouped by host; TLS secrets by host."""

    exact: dict[str, list[PathRule]] = dataclasses.field(default_factory=dict)
    wildcard: dict[str, list[PathRule]] = dataclasses.field(default_factory=dict)   # "*.example.com" → rules
    any_host: list[PathRule] = dataclasses.field(default_factory=list)
    default: PathRule | None = None
    tls: dict[str, str] = dataclasses.field(default_factory=dict)       # host or *.suffix → "ns/secret"
    backends: dict[ServiceRef, Backend] = dataclasses.field(default_factory=dict)

    def match(self, host: str, path: str) -> PathRule | None:
        """The rule for a request: the most specific host group with a matching path, else the default backend."""
        host = normalize_host(host)
        groups: list[list[PathRule]] = []
        if host in self.exact:
            groups.append(self.exact[host])
        dot = host.find(".")
        if dot > 0 and "*" + host[dot:] in self.wildcard:
            groups.append(self.wildcard["*" + host[dot:]])
        groups.append(self.any_host)
        for rules in groups:
            for rule in rules:
                if rule.matches(path):
                    return rule
        return self.default

    def route(self, host: str, path: str) -> Backend | None:
        rule = self.match(host, path)
        if rule is None:
            return None
        return self.backends.get(rule.backend) or Backend(rule.backend, rule.ingress, missing="no such service")

    def tls_secret(self, server_name: str) -> str | None:
        host = normalize_host(server_name)
        if host in self.tls:
            return self.tls[host]
        dot = host.find(".")
        return self.tls.get("*" + host[dot:]) if dot > 0 else None

    def services(self) -> set[ServiceRef]:
        refs = {r.backend for rules in (*self.exact.values(), *self.wildcard.values(), self.any_host) for r in rules}
        if self.default is not None:
            refs.add(self.default.backend)
        return refs


def normalize_host(host: str) -> str:
    """The Host header without its port, lower case ("A.example.com:8080" → "a.example.com"; IPv6 kept whole)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_default_class(ingress_class: Obj | None) -> bool:
    return bool(ingress_class) and (ingress_class or {}).get("metadata", {}).get("annotations", {}).get(
        DEFAULT_CLASS_ANNOTATION) == "true"


def is_ours(ingress: Obj, our_class: Obj | None, class_name: str = CLASS_NAME) -> bool:
    """Whether an Ingress belongs to this controller: its class names ours (field, or the legacy annotation), or
    it names none and our IngressClass is the cluster's default."""
    name = ingress.get("spec", {}).get("ingressClassName")
    if name is None:
        name = ingress.get("metadata", {}).get("annotations", {}).get(LEGACY_CLASS_ANNOTATION)
    if name is not None:
        return name == class_name
    return is_default_class(our_class)


def _service_ref(namespace: str, backend: Mapping[str, Any] | None) -> ServiceRef | None:
    svc = (backend or {}).get("service")
    if not svc or not svc.get("name"):
        return None           # resource backends are not supported
    port = svc.get("port") or {}
    return ServiceRef(namespace, svc["name"], port.get("number") or port.get("name") or 0)


def build_table(ingresses: Iterable[Obj]) -> RouteTable:
    """Routes of the given Ingresses (already filtered to our class). Duplicate (host, path, type) keep the
    oldest Ingress's backend, as controllers conventionally do; so does the default backend."""
    table = RouteTable()
    seen: set[tuple[str, str, str]] = set()
    ordered = sorted(ingresses, key=lambda i: (i["metadata"].get("creationTimestamp", ""),
                                               i["metadata"].get("namespace", ""), i["metadata"]["name"]))
    for ing in ordered:
        meta, spec = ing["metadata"], ing.get("spec") or {}
        ns, key, created = meta.get("namespace", "default"), f"{meta.get('namespace')}/{meta['name']}", \
            meta.get("creationTimestamp", "")
        default = _service_ref(ns, spec.get("defaultBackend"))
        if default is not None and table.default is None:
            table.default = PathRule("/", "Prefix", default, key, created)
        for rule in spec.get("rules") or []:
            host = (rule.get("host") or "").lower()
            for p in (rule.get("http") or {}).get("paths") or []:
                ref = _service_ref(ns, p.get("backend"))
                if ref is None:
                    continue
                path_type = p.get("pathType") or "Prefix"
                if path_type == "ImplementationSpecific":
                    path_type = "Prefix"
                path = p.get("path") or "/"
                ident = (host, path, path_type)
                if ident in seen:
                    continue
                seen.add(ident)
                pr = PathRule(path, path_type, ref, key, created)
                if not host:
                    table.any_host.append(pr)
                elif host.startswith("*."):
                    table.wildcard.setdefault(host, []).append(pr)
                else:
                    table.exact.setdefault(host, []).append(pr)
        for tls in spec.get("tls") or []:
            if not tls.get("secretName"):
                continue
            for host in tls.get("hosts") or []:
                table.tls.setdefault(host.lower(), f"{ns}/{tls['secretName']}")
    for rules in (*table.exact.values(), *table.wildcard.values(), table.any_host):
        rules.sort(key=PathRule.rank)
    return table


def resolve_backends(table: RouteTable, services: Mapping[str, Obj],
                     slices_by_service: Mapping[str, list[Obj]]) -> None:
    """Fill `table.backends` with each referenced Service port's ready endpoints (terminating and not-ready ones
    left out), matching the Service port to the EndpointSlice port of the same name, as kube-proxy does."""
    for ref in table.services():
        key = f"{ref.namespace}/{ref.name}"
        svc = services.get(key)
        if svc is None:
            table.backends[ref] = Backend(ref, "", missing=f"service {key} not found")
            continue
        port = next((p for p in (svc.get("spec") or {}).get("ports") or []
                     if p.get("port") == ref.port or (p.get("name") and p.get("name") == ref.port)), None)
        if port is None:
            table.backends[ref] = Backend(ref, "", missing=f"service {key} has no port {ref.port}")
            continue
        name = port.get("name") or ""
        endpoints: list[tuple[str, int]] = []
        for eps in slices_by_service.get(key, ()):
            if eps.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
                continue
            number = next((p.get("port") for p in eps.get("ports") or [] if (p.get("name") or "") == name), None)
            if not number:
                continue
            for ep in eps.get("endpoints") or []:
                cond = ep.get("conditions") or {}
                if cond.get("ready") is False or cond.get("terminating") is True:
                    continue
                for addr in ep.get("addresses") or []:
                    endpoints.append((addr, int(number)))
        table.backends[ref] = Backend(ref, "", tuple(sorted(set(endpoints))),
                                      "" if endpoints else f"service {key} has no ready endpoints")
