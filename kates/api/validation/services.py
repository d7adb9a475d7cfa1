"""Services: ports, types, cluster IPs, traffic policies and what may change on update.

Cluster IPs and node ports are allocated by the API server, so a Service may arrive here without them; what is
set must be well-formed, node ports must fall in the service node-port range, and an allocated primary cluster IP
never changes (except when moving to or from ExternalName), as in Kubernetes' ValidateService(Update).
"""
from __future__ import annotations

from typing import Any

from kates.api.validation import formats
from kates.api.validation.field import Errs, GoRepr, as_dict, as_list, go_quote, is_int
from kates.api.validation.meta import validate_labels
from kates.api.validation.containers import validate_port_num_or_name, validate_protocol

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
NODE_PORT_RANGE = (30000, 32767)
KUBELET_PORT = 10250
IP_FAMILIES = ("IPv4", "IPv6")
IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
TRAFFIC_POLICIES = ("Cluster", "Local")


def externally_accessible(spec: dict[str, Any]) -> bool:
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(as_list(spec.get("externalIPs"))))


def _port_key_repr(port: dict[str, Any]) -> GoRepr:
    protocol = port.get("protocol") if isinstance(port.get("protocol"), str) else ""
    number = port.get("port") if is_int(port.get("port")) else 0
    return GoRepr(f"core.ServicePort{{Name:\"\", Protocol:{go_quote(protocol)}, AppProtocol:(*string)(nil), "
                  f"Port:{number}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}")


def _validate_port(port: dict[str, Any], path: str, errs: Errs, *, require_name: bool, names: set[str]) -> None:
    name = port.get("name") or ""
    if require_name and not name:
        errs.required(f"{path}.name")
    elif name:
        for msg in formats.dns1123_label(name):
            errs.invalid(f"{path}.name", name, msg)
        if name in names:
            errs.duplicate(f"{path}.name", name)
        names.add(name)
    number = port.get("port")
    if is_int(number):
        for msg in formats.port_num(number):
            errs.invalid(f"{path}.port", number, msg)
    else:
        errs.required(f"{path}.port")
    validate_protocol(port.get("protocol"), f"{path}.protocol", errs)
    if port.get("targetPort") is not None:
        validate_port_num_or_name(port["targetPort"], f"{path}.targetPort", errs)
    app = port.get("appProtocol")
    if isinstance(app, str):
        for msg in formats.qualified_name(app):
            errs.invalid(f"{path}.appProtocol", app, msg)


def validate_service(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    stype = spec.get("type")
    cluster_ips = [ip for ip in as_list(spec.get("clusterIPs")) if isinstance(ip, str)]
    headless = spec.get("clusterIP") == "None" or cluster_ips[:1] == ["None"]
    ports = [as_dict(p) for p in as_list(spec.get("ports"))]

    if not ports and not headless and stype != "ExternalName":
        errs.required("spec.ports")
    if stype == "LoadBalancer":
        if headless:
            errs.invalid("spec.clusterIPs[0]", "None", "may not be set to 'None' for LoadBalancer services")
        for i, p in enumerate(ports):
            if p.get("port") == KUBELET_PORT:
                errs.invalid(f"spec.ports[{i}]", KUBELET_PORT,
                             f"may not expose port {KUBELET_PORT} externally since it is used by kubelet")
    elif stype == "NodePort":
        if headless:
            errs.invalid("spec.clusterIPs[0]", "None", "may not be set to 'None' for NodePort services")
    elif stype == "ExternalName":
        if cluster_ips or spec.get("clusterIP"):
            errs.forbidden("spec.clusterIPs", "may not be set for ExternalName services")
        if as_list(spec.get("ipFamilies")):
            errs.forbidden("spec.ipFamilies", "may not be set for ExternalName services")
        if spec.get("ipFamilyPolicy") is not None:
            errs.forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services")
        cname = spec.get("externalName") or ""
        cname = cname[:-1] if cname.endswith(".") else cname
        if not cname:
            errs.required("spec.externalName")
        else:
            for msg in formats.dns1123_subdomain(cname):
                errs.invalid("spec.externalName", cname, msg)

    names: set[str] = set()
    for i, p in enumerate(ports):
        _validate_port(p, f"spec.ports[{i}]", errs, require_name=len(ports) > 1, names=names)
    if spec.get("selector") is not None:
        validate_labels(spec.get("selector"), "spec.selector", errs)

    affinity = spec.get("sessionAffinity")
    if not affinity:
        errs.required("spec.sessionAffinity")
    elif affinity not in ("ClientIP", "None"):
        errs.not_supported("spec.sessionAffinity", affinity, ("ClientIP", "None"))
    elif affinity == "ClientIP":
        timeout = as_dict(as_dict(spec.get("sessionAffinityConfig")).get("clientIP")).get("timeoutSeconds")
        if not is_int(timeout) or not 0 < timeout <= 86400:
            errs.invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                         "must be greater than 0 and less than 86400")
    elif spec.get("sessionAffinityConfig") is not None:
        errs.forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None")

    _validate_cluster_ips(spec, cluster_ips, errs)
    for i, ip in enumerate(as_list(spec.get("externalIPs"))):
        for msg in formats.ip_address(ip if isinstance(ip, str) else ""):
            errs.invalid(f"spec.externalIPs[{i}]", ip, msg)

    if not stype:
        errs.required("spec.type")
    elif stype not in SERVICE_TYPES:
        errs.not_supported("spec.type", stype, SERVICE_TYPES)
    _validate_node_ports(spec, ports, errs)
    seen_ports: set[tuple[Any, Any]] = set()
    for i, p in enumerate(ports):
        key = (p.get("protocol"), p.get("port"))
        if key in seen_ports:
            errs.duplicate(f"spec.ports[{i}]", _port_key_repr(p))
        seen_ports.add(key)

    ranges = as_list(spec.get("loadBalancerSourceRanges"))
    if ranges and stype != "LoadBalancer":
        errs.forbidden("spec.loadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'")
    for i, r in enumerate(ranges):
        for msg in formats.cidr(r.strip() if isinstance(r, str) else ""):
            errs.invalid(f"spec.loadBalancerSourceRanges[{i}]", r, msg)
    if spec.get("allocateLoadBalancerNodePorts") is not None and stype != "LoadBalancer":
        errs.forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'")
    if spec.get("loadBalancerClass") is not None and stype != "LoadBalancer":
        errs.forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'")

    etp = spec.get("externalTrafficPolicy")
    if not externally_accessible(spec):
        if etp:
            errs.invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services")
    elif not etp:
        errs.required("spec.externalTrafficPolicy")
    elif etp not in TRAFFIC_POLICIES:
        errs.not_supported("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES)
    hc = spec.get("healthCheckNodePort")
    if is_int(hc) and hc != 0:
        if not (stype == "LoadBalancer" and etp == "Local"):
            errs.invalid("spec.healthCheckNodePort", hc,
                         "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'")
        else:
            for msg in formats.port_num(hc):
                errs.invalid("spec.healthCheckNodePort", hc, msg)
    itp = spec.get("internalTrafficPolicy")
    if itp is None:
        if stype in ("ClusterIP", "NodePort", "LoadBalancer"):
            errs.required("spec.internalTrafficPolicy")
    elif itp not in TRAFFIC_POLICIES:
        errs.not_supported("spec.internalTrafficPolicy", itp, TRAFFIC_POLICIES)
    td = spec.get("trafficDistribution")
    if td is not None and td != "PreferClose":
        errs.not_supported("spec.trafficDistribution", td, ("PreferClose",))


def _validate_cluster_ips(spec: dict[str, Any], cluster_ips: list[str], errs: Errs) -> None:
    cluster_ip = spec.get("clusterIP") or ""
    if cluster_ip:
        if not cluster_ips:
            errs.required("spec.clusterIPs")
        elif cluster_ips[0] != cluster_ip:
            errs.invalid("spec.clusterIPs", cluster_ips, "first value must match `clusterIP`")
    elif cluster_ips:
        errs.invalid("spec.clusterIPs", cluster_ips, "must be empty when `clusterIP` is not specified")
    families = as_list(spec.get("ipFamilies"))
    seen: set[Any] = set()
    for i, fam in enumerate(families):
        if fam not in IP_FAMILIES:
            errs.not_supported(f"spec.ipFamilies[{i}]", fam, IP_FAMILIES)
        if fam in seen:
            errs.duplicate(f"spec.ipFamilies[{i}]", fam)
        seen.add(fam)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        errs.not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES)
    if len(families) > 1 and policy == "SingleStack":
        errs.invalid("spec.ipFamilies", families, "when multiple IP families are specified, `ipFamilyPolicy` must "
                                                  "be 'RequireDualStack' or 'PreferDualStack'")
    for i, ip in enumerate(cluster_ips):
        if i == 0 and ip == "None":
            if len(cluster_ips) > 1:
                errs.invalid("spec.clusterIPs", cluster_ips, "'None' must be the first and only value")
            continue
        msgs = formats.ip_address(ip)
        for msg in msgs:
            errs.invalid(f"spec.clusterIPs[{i}]", ip, msg)
        if not msgs and i < len(families) and formats.ip_family(ip) != families[i]:
            errs.invalid(f"spec.clusterIPs[{i}]", ip,
                         f"expected an {families[i]} value as indicated by `ipFamilies[{i}]`")
    if len(cluster_ips) > 2:
        errs.invalid("spec.clusterIPs", cluster_ips, "may only hold up to 2 values")
    if len(cluster_ips) == 2 and formats.ip_family(cluster_ips[0]) == formats.ip_family(cluster_ips[1]):
        errs.invalid("spec.clusterIPs", cluster_ips, "may specify no more than one IP for each IP family")


def _validate_node_ports(spec: dict[str, Any], ports: list[dict[str, Any]], errs: Errs) -> None:
    stype = spec.get("type")
    seen: set[tuple[Any, int]] = set()
    lo, hi = NODE_PORT_RANGE
    for i, p in enumerate(ports):
        node_port = p.get("nodePort")
        if not is_int(node_port) or node_port == 0:
            continue
        path = f"spec.ports[{i}].nodePort"
        if stype == "ClusterIP":
            errs.forbidden(path, "may not be used when `type` is 'ClusterIP'")
            continue
        msgs = formats.port_num(node_port)
        for msg in msgs:
            errs.invalid(path, node_port, msg)
        if not msgs and not lo <= node_port <= hi:
            errs.invalid(path, node_port, f"provided port is not in the valid range. The range of valid ports is "
                                          f"{lo}-{hi}")
        key = (p.get("protocol"), node_port)
        if key in seen:
            errs.duplicate(path, node_port)
        seen.add(key)


def validate_service_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    if new_spec.get("type") == "ExternalName" or old_spec.get("type") == "ExternalName":
        return
    new_ips = [ip for ip in as_list(new_spec.get("clusterIPs")) if isinstance(ip, str)]
    old_ips = [ip for ip in as_list(old_spec.get("clusterIPs")) if isinstance(ip, str)]
    if not new_ips and new_spec.get("clusterIP"):
        new_ips = [new_spec["clusterIP"]]
    if not old_ips and old_spec.get("clusterIP"):
        old_ips = [old_spec["clusterIP"]]
    if not new_ips:
        # A replacement that leaves the cluster IP out keeps the allocated one (Kubernetes patches allocated
        # values in before validating; see defaulting.prepare_for_update and the registry's allocator).
        new_ips = old_ips
    if old_ips[:1] == ["None"] and new_ips[:1] == ["None"]:
        return
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.invalid(f"spec.clusterIPs[{i}]", new_ips, "may not change once set")
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.invalid("spec.clusterIPs[0]", new_ips, "primary clusterIP can not be unset")
        elif new_ips[0] != old_ips[0]:
            errs.invalid("spec.clusterIPs[0]", new_ips, "may not change once set")
        if len(new_ips) == 1 and new_spec.get("ipFamilyPolicy") != "SingleStack":
            errs.invalid("spec.clusterIPs[0]", new_ips,
                         "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary clusterIP")
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.invalid("spec.clusterIPs[0]", new_ips, "may not change once set")
    old_fams, new_fams = as_list(old_spec.get("ipFamilies")), as_list(new_spec.get("ipFamilies"))
    if old_fams and new_fams and old_fams[0] != new_fams[0]:
        errs.invalid("spec.ipFamilies[0]", new_fams[0], "may not change once set")
    old_class, new_class = old_spec.get("loadBalancerClass"), new_spec.get("loadBalancerClass")
    if old_spec.get("type") == "LoadBalancer" and new_spec.get("type") == "LoadBalancer" and old_class != new_class:
        errs.invalid("spec.loadBalancerClass", new_class, "may not change once set")


def validate_service_status_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    for i, ing in enumerate(as_list(as_dict(as_dict(new.get("status")).get("loadBalancer")).get("ingress"))):
        ing = as_dict(ing)
        ip = ing.get("ip")
        if isinstance(ip, str) and ip:
            for msg in formats.ip_address(ip):
                errs.invalid(f"status.loadBalancer.ingress[{i}].ip", ip, msg)
        hostname = ing.get("hostname")
        if isinstance(hostname, str) and hostname:
            for msg in formats.dns1123_subdomain(hostname):
                errs.invalid(f"status.loadBalancer.ingress[{i}].hostname", hostname, msg)
        mode = ing.get("ipMode")
        if mode is not None and mode not in ("Proxy", "VIP"):
            errs.not_supported(f"status.loadBalancer.ingress[{i}].ipMode", mode, ("Proxy", "VIP"))

