"""networking.k8s.io and discovery.k8s.io: Ingress, IngressClass, NetworkPolicy and EndpointSlice.

Each function checks one kind the way Kubernetes' networking and discovery validation does: hosts and paths,
backends, peers and ports, address types, with Kubernetes' wording.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from kates.api.validation import formats
from kates.api.validation.containers import validate_protocol
from kates.api.validation.field import Errs, GoRepr, as_dict, as_list, is_int
from kates.api.validation.meta import validate_label_selector


# --- networking.k8s.io ----------------------------------------------------------------------------------------------

_PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
_BAD_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_BAD_PATH_SUFFIXES = ("/..", "/.")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _validate_host(host: str, path: str, errs: Errs) -> None:
    if "*" in host:
        for msg in formats.wildcard_dns1123_subdomain(host):
            errs.invalid(path, host, msg)
    else:
        for msg in formats.dns1123_subdomain(host):
            errs.invalid(path, host, msg)


def _validate_typed_ref(ref: dict[str, Any], path: str, errs: Errs, *, need_group: bool = False) -> None:
    group = ref.get("apiGroup")
    if isinstance(group, str) and group:
        for msg in formats.dns1123_subdomain(group):
            errs.invalid(f"{path}.apiGroup", group, msg)
    elif need_group:
        errs.required(f"{path}.apiGroup")
    for key in ("kind", "name"):
        value = ref.get(key) or ""
        if not value:
            errs.required(f"{path}.{key}")
        else:
            for msg in formats.path_segment_name(value):
                errs.invalid(f"{path}.{key}", value, msg)


def _validate_ingress_backend(backend: dict[str, Any], path: str, errs: Errs) -> None:
    has_resource = isinstance(backend.get("resource"), dict)
    service = backend.get("service")
    if has_resource and isinstance(service, dict):
        errs.invalid(path, "", "cannot set both resource and service backends")
        return
    if has_resource:
        _validate_typed_ref(backend["resource"], f"{path}.resource", errs)
        return
    if not isinstance(service, dict):
        errs.invalid(path, "", "resource or service backend is required")
        return
    name = service.get("name") or ""
    if not name:
        errs.required(f"{path}.service.name")
    else:
        for msg in formats.dns1035_label(name):
            errs.invalid(f"{path}.service.name", name, msg)
    port = as_dict(service.get("port"))
    pname, pnum = port.get("name") or "", port.get("number") or 0
    if pname and pnum:
        errs.invalid(path, "", "cannot set both port name & port number")
    elif pname:
        for msg in formats.port_name(pname):
            errs.invalid(f"{path}.service.port.name", pname, msg)
    elif pnum:
        for msg in formats.port_num(pnum if is_int(pnum) else 0):
            errs.invalid(f"{path}.service.port.number", pnum, msg)
    else:
        errs.required(path, "port name or number is required")


def _validate_ingress_path(p: dict[str, Any], path: str, errs: Errs) -> None:
    ptype = p.get("pathType")
    value = p.get("path") or ""
    if not ptype:
        errs.required(f"{path}.pathType", "pathType must be specified")
        return
    if ptype in ("Exact", "Prefix"):
        if not value.startswith("/"):
            errs.invalid(f"{path}.path", value, "must be an absolute path")
        for seq in _BAD_PATH_SEQUENCES:
            if value and seq in value:
                errs.invalid(f"{path}.path", value, f"must not contain '{seq}'")
        for suffix in _BAD_PATH_SUFFIXES:
            if value.endswith(suffix):
                errs.invalid(f"{path}.path", value, f"cannot end with '{suffix}'")
    elif ptype == "ImplementationSpecific":
        if value and not value.startswith("/"):
            errs.invalid(f"{path}.path", value, "must be an absolute path")
    else:
        errs.not_supported(f"{path}.pathType", ptype, _PATH_TYPES)
    _validate_ingress_backend(as_dict(p.get("backend")), f"{path}.backend", errs)


def validate_ingress(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    rules = as_list(spec.get("rules"))
    default = spec.get("defaultBackend")
    if not rules and not isinstance(default, dict):
        errs.invalid("spec", GoRepr("[]networking.IngressRule(nil)"),
                     "either `defaultBackend` or `rules` must be specified")
    if isinstance(default, dict):
        _validate_ingress_backend(default, "spec.defaultBackend", errs)
    for i, rule in enumerate(rules):
        rule = as_dict(rule)
        rpath = f"spec.rules[{i}]"
        host = rule.get("host") or ""
        if host:
            if _is_ip(host):
                errs.invalid(f"{rpath}.host", host, "must be a DNS name, not an IP address")
            _validate_host(host, f"{rpath}.host", errs)
        http = rule.get("http")
        if isinstance(http, dict):
            paths = as_list(http.get("paths"))
            if not paths:
                errs.required(f"{rpath}.http.paths")
            for j, p in enumerate(paths):
                _validate_ingress_path(as_dict(p), f"{rpath}.http.paths[{j}]", errs)
    for i, tls in enumerate(as_list(spec.get("tls"))):
        tls = as_dict(tls)
        for j, host in enumerate(as_list(tls.get("hosts"))):
            _validate_host(host if isinstance(host, str) else "", f"spec.tls[{i}].hosts[{j}]", errs)
        secret = tls.get("secretName")
        if isinstance(secret, str) and secret:
            for msg in formats.dns1123_subdomain(secret):
                errs.invalid(f"spec.tls[{i}].secretName", secret, msg)
    cls = spec.get("ingressClassName")
    if isinstance(cls, str):
        for msg in formats.dns1123_subdomain(cls):
            errs.invalid("spec.ingressClassName", cls, msg)


def validate_ingress_class(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    controller = spec.get("controller") or ""
    if len(controller) > 250:
        errs.too_long("spec.controller", 250)
    if not controller:
        errs.required("spec.controller")
    else:
        host, _, rest = controller.partition("/")
        if not host or not rest:
            errs.invalid("spec.controller", controller, "must be a domain-prefixed path (such as \"acme.io/foo\")")
        else:
            for msg in formats.dns1123_subdomain(host):
                errs.invalid("spec.controller", host, msg)
    params = spec.get("parameters")
    if isinstance(params, dict):
        _validate_typed_ref(params, "spec.parameters", errs)
        scope = params.get("scope")
        if scope is not None and scope not in ("Cluster", "Namespace"):
            errs.not_supported("spec.parameters.scope", scope, ("Cluster", "Namespace"))
        if scope == "Namespace" and not params.get("namespace"):
            errs.required("spec.parameters.namespace", "`parameters.scope` is set to 'Namespace'")
        if scope == "Cluster" and params.get("namespace"):
            errs.forbidden("spec.parameters.namespace", "`parameters.scope` is set to 'Cluster'")


def validate_ingress_class_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    nc, oc = as_dict(new.get("spec")).get("controller"), as_dict(old.get("spec")).get("controller")
    if nc != oc:
        errs.immutable("spec.controller", nc or "")


def _validate_lb_ingress_status(obj: dict[str, Any], errs: Errs) -> None:
    for i, ing in enumerate(as_list(as_dict(as_dict(obj.get("status")).get("loadBalancer")).get("ingress"))):
        ip = as_dict(ing).get("ip")
        if isinstance(ip, str) and ip:
            for msg in formats.ip_address(ip):
                errs.invalid(f"status.loadBalancer.ingress[{i}].ip", ip, msg)


def validate_ingress_status_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    _validate_lb_ingress_status(new, errs)


def _validate_np_port(port: dict[str, Any], path: str, errs: Errs) -> None:
    protocol = port.get("protocol")
    if protocol is not None and protocol not in ("TCP", "UDP", "SCTP"):
        errs.not_supported(f"{path}.protocol", protocol, ("TCP", "UDP", "SCTP"))
    number, end = port.get("port"), port.get("endPort")
    if is_int(number):
        for msg in formats.port_num(number):
            errs.invalid(f"{path}.port", number, msg)
        if is_int(end):
            if end < number:
                errs.invalid(f"{path}.endPort", number, "must be greater than or equal to `port`")
            for msg in formats.port_num(end):
                errs.invalid(f"{path}.endPort", end, msg)
    elif isinstance(number, str):
        if end is not None:
            errs.invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric")
        for msg in formats.port_name(number):
            errs.invalid(f"{path}.port", number, msg)
    elif end is not None:
        errs.invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified")


def _validate_np_peer(peer: dict[str, Any], path: str, errs: Errs) -> None:
    count = 0
    for key in ("podSelector", "namespaceSelector"):
        if isinstance(peer.get(key), dict):
            count += 1
            validate_label_selector(peer[key], f"{path}.{key}", errs)
    block = peer.get("ipBlock")
    if isinstance(block, dict):
        count += 1
        cidr = block.get("cidr") or ""
        if not cidr:
            errs.required(f"{path}.ipBlock.cidr")
        else:
            msgs = formats.cidr(cidr)
            for msg in msgs:
                errs.invalid(f"{path}.ipBlock.cidr", cidr, msg)
            net = None if msgs else ipaddress.ip_network(cidr, strict=False)
            for i, exc in enumerate(as_list(block.get("except"))):
                exc = exc if isinstance(exc, str) else ""
                emsgs = formats.cidr(exc)
                for msg in emsgs:
                    errs.invalid(f"{path}.ipBlock.except[{i}]", exc, msg)
                if net is not None and not emsgs:
                    enet = ipaddress.ip_network(exc, strict=False)
                    if enet.version != net.version or not enet.subnet_of(net) or enet.prefixlen <= net.prefixlen:  # type: ignore[arg-type]
                        errs.invalid(f"{path}.ipBlock.except[{i}]", exc, "must be a strict subset of `cidr`")
    if count == 0:
        errs.required(path, "must specify a peer")
    elif count > 1 and isinstance(block, dict):
        errs.forbidden(path, "may not specify both ipBlock and another peer")


def validate_network_policy(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    validate_label_selector(spec.get("podSelector"), "spec.podSelector", errs)
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(as_list(spec.get(direction))):
            rule = as_dict(rule)
            rpath = f"spec.{direction}[{i}]"
            for j, port in enumerate(as_list(rule.get("ports"))):
                _validate_np_port(as_dict(port), f"{rpath}.ports[{j}]", errs)
            for j, peer in enumerate(as_list(rule.get(peers))):
                _validate_np_peer(as_dict(peer), f"{rpath}.{peers}[{j}]", errs)
    types = as_list(spec.get("policyTypes"))
    if len(types) > 2:
        errs.invalid("spec.policyTypes", types, "may not specify more than two policyTypes")
        return
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            errs.not_supported(f"spec.policyTypes[{i}]", t, ("Ingress", "Egress"))


# --- discovery.k8s.io -----------------------------------------------------------------------------------------------

_ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")


def validate_endpoint_slice(obj: dict[str, Any], errs: Errs) -> None:
    atype = obj.get("addressType")
    if not atype:
        errs.required("addressType")
    elif atype not in _ADDRESS_TYPES:
        errs.not_supported("addressType", atype, _ADDRESS_TYPES)
    endpoints = as_list(obj.get("endpoints"))
    if len(endpoints) > 1000:
        errs.too_many("endpoints", len(endpoints), 1000)
    for i, ep in enumerate(endpoints):
        ep = as_dict(ep)
        epath = f"endpoints[{i}]"
        addresses = as_list(ep.get("addresses"))
        if not addresses:
            errs.required(f"{epath}.addresses", "must contain at least 1 address")
        elif len(addresses) > 100:
            errs.too_many(f"{epath}.addresses", len(addresses), 100)
        for j, addr in enumerate(addresses):
            addr = addr if isinstance(addr, str) else ""
            apath = f"{epath}.addresses[{j}]"
            if atype in ("IPv4", "IPv6"):
                fam = formats.ip_family(addr)
                if fam != atype:
                    errs.invalid(apath, addr, f"must be a valid {atype} address")
            elif atype == "FQDN":
                for msg in formats.dns1123_subdomain(addr[:-1] if addr.endswith(".") else addr):
                    errs.invalid(apath, addr, msg)
        hostname = ep.get("hostname")
        if isinstance(hostname, str):
            for msg in formats.dns1123_label(hostname):
                errs.invalid(f"{epath}.hostname", hostname, msg)
        node = ep.get("nodeName")
        if isinstance(node, str):
            for msg in formats.dns1123_subdomain(node):
                errs.invalid(f"{epath}.nodeName", node, msg)
    ports = as_list(obj.get("ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        ppath = f"ports[{i}]"
        name = port.get("name") or ""
        if name:
            for msg in formats.dns1123_label(name):
                errs.invalid(f"{ppath}.name", name, msg)
        if name in names:
            errs.duplicate(f"{ppath}.name", name)
        names.add(name)
        validate_protocol(port.get("protocol"), f"{ppath}.protocol", errs)
        number = port.get("port")
        if is_int(number):
            for msg in formats.port_num(number):
                errs.invalid(f"{ppath}.port", number, msg)
        app = port.get("appProtocol")
        if isinstance(app, str):
            for msg in formats.qualified_name(app):
                errs.invalid(f"{ppath}.appProtocol", app, msg)


def validate_endpoint_slice_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    if new.get("addressType") != old.get("addressType"):
        errs.immutable("addressType", new.get("addressType") or "")
