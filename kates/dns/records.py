"""The cluster's DNS records, answered from memory: Services, EndpointSlices, Pods and Namespaces fed by watches.

Semantics follow CoreDNS's kubernetes plugin (the DNS specification of Kubernetes):
- `svc.ns.svc.ZONE`: A/AAAA of the ClusterIPs; for a headless Service one record per ready endpoint (not-ready ones
  too with publishNotReadyAddresses); an ExternalName Service is a CNAME to its externalName.
- `ep.svc.ns.svc.ZONE` for the endpoints of a headless Service: `ep` is the endpoint's hostname (StatefulSet pods
  with a subdomain) or its dashed address.
- `_port._proto.svc.ns.svc.ZONE`: SRV for each named port (to the Service name, or to each endpoint when headless).
- `a-b-c-d.ns.pod.ZONE`: a pod's A record, only when a pod of that namespace has that address ("pods verified").
- PTR for ClusterIPs, endpoint addresses and pod addresses; other reverse names are not ours (forwarded).
- A name that exists without records of the asked type is NODATA (NOERROR, empty); a name that does not exist is
  NXDOMAIN; both carry the zone's SOA. Records live 5 seconds.
Handlers of the informers update the maps in place (they are quick and keep no API calls on the query path);
`generation` moves only when an answer could change, so the server can cache encoded answers until it moves.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
from typing import Any, Callable

from dns import rdatatype

log = logging.getLogger(__name__)

Obj = dict[str, Any]
TTL = 5
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DNS_SCHEMA_VERSION = "1.1.0"


@dataclasses.dataclass(frozen=True)
class RR:
    """One record: owner name (absolute, no final dot), type, and its data in presentation form."""

    name: str
    rdtype: int
    value: str
    ttl: int = TTL


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the cluster zone says about a question: rcode 0 (with or without records) or 3 (NXDOMAIN)."""

    rcode: int
    answers: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()


NOERROR, NXDOMAIN = 0, 3


@dataclasses.dataclass(frozen=True)
class Endpoint:
    address: str
    hostname: str
    ready: bool
    ports: tuple[tuple[str, str, int], ...]     # (name, protocol, port) of the slice

    @property
    def label(self) -> str:
        """The endpoint's first label under its Service: hostname, else the address with dashes."""
        return self.hostname or dashed(self.address)


def dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _family(ip: str) -> int:
    return rdatatype.AAAA if ":" in ip else rdatatype.A


def _slice_endpoints(sl: Obj) -> list[Endpoint]:
    ports = tuple((p.get("name") or "", (p.get("protocol") or "TCP").lower(), int(p["port"]))
                  for p in sl.get("ports") or [] if p.get("port") is not None)
    out = []
    for ep in sl.get("endpoints") or []:
        conditions = ep.get("conditions") or {}
        ready = conditions.get("ready") is not False      # unset means ready
        for address in ep.get("addresses") or []:
            out.append(Endpoint(address, ep.get("hostname") or "", ready, ports))
    return out


class ClusterRecords:
    """An in-memory view of what DNS needs, kept by informer handlers; `lookup` answers one question."""

    def __init__(self, zone: str = "cluster.local", dns_ips: tuple[str, ...] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.zone = zone.strip(".").lower()
        self.dns_ips = dns_ips
        self.clock = clock
        self.generation = 0
        self.services: dict[tuple[str, str], Obj] = {}
        self.endpoints: dict[tuple[str, str], dict[str, list[Endpoint]]] = {}   # (ns, svc) -> slice -> endpoints
        self._slice_service: dict[tuple[str, str], str] = {}                     # (ns, slice) -> svc
        self.pod_ips: dict[tuple[str, str], tuple[str, ...]] = {}                # (ns, pod) -> ips
        self._pods_at: dict[tuple[str, str], int] = {}                           # (ns, ip) -> pods with it
        self.namespaces: set[str] = set()
        self._reverse: dict[str, list[str]] | None = None
        self.serial = int(clock())
        self.listeners: list[Callable[[], None]] = []

    # -- feeding ---------------------------------------------------------------------------------------------
    def _changed(self) -> None:
        self.generation += 1
        self.serial = max(self.serial + 1, int(self.clock()))
        self._reverse = None
        for listener in self.listeners:
            listener()

    def set_service(self, svc: Obj, deleted: bool = False) -> None:
        meta = svc["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if deleted:
            if self.services.pop(key, None) is not None:
                self._changed()
            return
        old = self.services.get(key)
        if old is None or old.get("spec") != svc.get("spec"):
            self.services[key] = svc
            self._changed()
        else:
            self.services[key] = svc

    def set_slice(self, sl: Obj, deleted: bool = False) -> None:
        meta = sl["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL, "")
        previous = self._slice_service.get((ns, name))
        changed = False
        if previous is not None and (deleted or previous != svc):
            by_slice = self.endpoints.get((ns, previous), {})
            if by_slice.pop(name, None) is not None:
                changed = True
            if not by_slice:
                self.endpoints.pop((ns, previous), None)
            del self._slice_service[(ns, name)]
        if not deleted and svc:
            endpoints = _slice_endpoints(sl)
            by_slice = self.endpoints.setdefault((ns, svc), {})
            if by_slice.get(name) != endpoints:
                by_slice[name] = endpoints
                changed = True
            self._slice_service[(ns, name)] = svc
        if changed:
            self._changed()

    def set_pod(self, pod: Obj, deleted: bool = False) -> None:
        meta = pod["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        status = pod.get("status") or {}
        host_network = (pod.get("spec") or {}).get("hostNetwork", False)
        ips: tuple[str, ...] = ()
        if not deleted and not host_network:
            ips = tuple(p["ip"] for p in status.get("podIPs") or [] if p.get("ip")) or \
                ((status["podIP"],) if status.get("podIP") else ())
        old = self.pod_ips.get(key, ())
        if old == ips:
            return
        for ip in old:
            n = self._pods_at.get((key[0], ip), 0) - 1
            if n > 0:
                self._pods_at[(key[0], ip)] = n
            else:
                self._pods_at.pop((key[0], ip), None)
        for ip in ips:
            self._pods_at[(key[0], ip)] = self._pods_at.get((key[0], ip), 0) + 1
        if ips:
            self.pod_ips[key] = ips
        else:
            self.pod_ips.pop(key, None)
        self._changed()

    def set_namespace(self, ns: Obj, deleted: bool = False) -> None:
        name = ns["metadata"]["name"]
        if deleted == (name in self.namespaces):
            (self.namespaces.discard if deleted else self.namespaces.add)(name)
            self._changed()

    # -- answering -------------------------------------------------------------------------------------------
    def in_zone(self, qname: str) -> bool:
        return qname == self.zone or qname.endswith("." + self.zone)

    def soa(self) -> RR:
        return RR(self.zone, rdatatype.SOA,
                  f"ns.dns.{self.zone}. hostmaster.{self.zone}. {self.serial % 2**32} 7200 1800 86400 {TTL}")

    def lookup(self, qname: str, qtype: int) -> Answer | None:
        """The answer for `qname` (lower case, no final dot) and `qtype`, or None when the name is not ours."""
        if qname.endswith(".in-addr.arpa") or qname.endswith(".ip6.arpa"):
            return self._reverse_lookup(qname, qtype)
        if not self.in_zone(qname):
            return None
        if qname == self.zone:
            if qtype == rdatatype.SOA:
                return Answer(NOERROR, (self.soa(),))
            if qtype == rdatatype.NS:
                return Answer(NOERROR, (RR(self.zone, rdatatype.NS, f"ns.dns.{self.zone}."),),
                              additional=tuple(RR(f"ns.dns.{self.zone}", _family(ip), ip) for ip in self.dns_ips))
            return self._nodata()
        labels = qname[: -len(self.zone) - 1].split(".")
        kind = labels[-1]
        if kind == "svc":
            return self._service_lookup(qname, labels[:-1], qtype)
        if kind == "pod":
            return self._pod_lookup(qname, labels[:-1], qtype)
        if labels == ["dns-version"]:
            return self._records(qname, qtype, [RR(qname, rdatatype.TXT, f'"{DNS_SCHEMA_VERSION}"')])
        if labels == ["ns", "dns"] or labels == ["dns"]:
            rrs = [RR(qname, _family(ip), ip) for ip in self.dns_ips] if labels[0] == "ns" else []
            return self._records(qname, qtype, rrs)
        return self._nxdomain()

    def _nodata(self) -> Answer:
        return Answer(NOERROR, authority=(self.soa(),))

    def _nxdomain(self) -> Answer:
        return Answer(NXDOMAIN, authority=(self.soa(),))

    def _records(self, qname: str, qtype: int, rrs: list[RR], additional: list[RR] | None = None) -> Answer:
        """Records of the asked type from those of an existing name; NODATA when none is of that type."""
        cnames = [r for r in rrs if r.rdtype == rdatatype.CNAME]
        if cnames and qtype != rdatatype.CNAME:
            return Answer(NOERROR, tuple(cnames))
        matching = tuple(r for r in rrs if r.rdtype == qtype or qtype == rdatatype.ANY)
        if not matching:
            return self._nodata()
        glue = any(r.rdtype in (rdatatype.SRV, rdatatype.NS) for r in matching)
        return Answer(NOERROR, matching, tuple(additional or ()) if glue else ())

    def _ready(self, svc: Obj, key: tuple[str, str]) -> list[Endpoint]:
        publish = (svc.get("spec") or {}).get("publishNotReadyAddresses", False)
        seen: set[str] = set()
        out = []
        for endpoints in self.endpoints.get(key, {}).values():
            for ep in endpoints:
                if (ep.ready or publish) and ep.address not in seen:
                    seen.add(ep.address)
                    out.append(ep)
        return out

    def _service_lookup(self, qname: str, labels: list[str], qtype: int) -> Answer:
        if not labels:
            return self._nodata()                                   # svc.ZONE
        ns = labels[-1]
        if len(labels) == 1:                                        # ns.svc.ZONE
            return self._nodata() if self._namespace_exists(ns) else self._nxdomain()
        name = labels[-2]
        svc = self.services.get((ns, name))
        if svc is None:
            return self._nxdomain()
        spec = svc.get("spec") or {}
        base = f"{name}.{ns}.svc.{self.zone}"
        rest = labels[:-2]
        if spec.get("type") == "ExternalName":
            if rest:
                return self._nxdomain()
            target = (spec.get("externalName") or "").strip(".")
            if not target or _is_ip(target):
                return self._nxdomain()        # an address is no name to alias (CoreDNS serves nothing either)
            return self._records(qname, qtype, [RR(qname, rdatatype.CNAME, target + ".")])
        headless = spec.get("clusterIP") == "None"
        port_name = proto = None
        if len(rest) >= 2 and rest[0].startswith("_") and rest[1].startswith("_"):
            port_name, proto, rest = rest[0][1:], rest[1][1:], rest[2:]
        elif len(rest) == 1 and rest[0].startswith("_"):            # _proto.svc.ns.svc.ZONE: an empty non-terminal
            known = any(_port_matches(p, None, rest[0][1:]) for p in spec.get("ports") or [])
            return self._nodata() if known else self._nxdomain()
        if len(rest) > 1:
            return self._nxdomain()
        endpoint = rest[0] if rest else None
        if headless or endpoint is not None:
            # as CoreDNS: one record per (ready endpoint, matching port); none at all is NXDOMAIN
            found = [(e, port) for e in self._ready(svc, (ns, name))
                     if endpoint is None or e.label == endpoint
                     for port in (e.ports or (("", "", 0),)) if _port_matches(port, port_name, proto)]
            if not found:
                return self._nxdomain()
            addresses = list(dict.fromkeys(e.address for e, _ in found))
            srv = [RR(qname, rdatatype.SRV, f"0 {{w}} {port[2]} {e.label}.{base}.") for e, port in found if port[2]]
            extra = list(dict.fromkeys(RR(f"{e.label}.{base}", _family(e.address), e.address) for e, _ in found))
        else:
            ports = [p for p in spec.get("ports") or [] if _port_matches(p, port_name, proto)]
            if not ports:
                return self._nxdomain()
            addresses = _cluster_ips(spec)
            srv = [RR(qname, rdatatype.SRV, f"0 {{w}} {int(p['port'])} {base}.") for p in ports]
            extra = [RR(base, _family(ip), ip) for ip in addresses]
        weight = str(100 // len(srv)) if srv else "0"
        srv = [dataclasses.replace(r, value=r.value.replace("{w}", weight)) for r in srv]
        return self._records(qname, qtype, [RR(qname, _family(ip), ip) for ip in addresses] + srv, extra)

    def _namespace_exists(self, ns: str) -> bool:
        return ns in self.namespaces or any(k[0] == ns for k in self.services)

    def _pod_lookup(self, qname: str, labels: list[str], qtype: int) -> Answer:
        if not labels:
            return self._nodata()
        ns = labels[-1]
        if len(labels) == 1:
            return self._nodata() if self._namespace_exists(ns) else self._nxdomain()
        if len(labels) != 2:
            return self._nxdomain()
        ip = _undash(labels[0])
        if ip is None or (ns, ip) not in self._pods_at:
            return self._nxdomain()
        return self._records(qname, qtype, [RR(qname, _family(ip), ip)])

    def _reverse_lookup(self, qname: str, qtype: int) -> Answer | None:
        ip = _reverse_ip(qname)
        if ip is None:
            return None
        names = self._reverse_map().get(ip)
        if not names:
            return None
        return self._records(qname, qtype, [RR(qname, rdatatype.PTR, n + ".") for n in names])

    def _reverse_map(self) -> dict[str, list[str]]:
        if self._reverse is None:
            reverse: dict[str, list[str]] = {}
            for (ns, name), svc in self.services.items():
                spec = svc.get("spec") or {}
                for ip in _cluster_ips(spec):
                    reverse.setdefault(ip, []).append(f"{name}.{ns}.svc.{self.zone}")
            for (ns, name), by_slice in self.endpoints.items():
                for endpoints in by_slice.values():
                    for e in endpoints:
                        fqdn = f"{e.label}.{name}.{ns}.svc.{self.zone}"
                        names = reverse.setdefault(e.address, [])
                        if fqdn not in names:
                            names.append(fqdn)
            for (ns, ip) in self._pods_at:
                if ip not in reverse:       # a Service's or endpoint's name wins over the pod's
                    reverse[ip] = [f"{dashed(ip)}.{ns}.pod.{self.zone}"]
            self._reverse = {ip: names for ip, names in reverse.items()}
        return self._reverse


def _port_matches(port: Obj | tuple[str, str, int], name: str | None, proto: str | None) -> bool:
    """A Service port (dict) or an endpoint port (name, protocol, port) against `_name._proto` labels; None matches
    anything, so the bare name's SRV lists every port."""
    if isinstance(port, dict):
        port_name, port_proto = (port.get("name") or "").lower(), (port.get("protocol") or "TCP").lower()
    else:
        port_name, port_proto = port[0].lower(), port[1] or "tcp"
    return (name is None or name == port_name) and (proto is None or proto == port_proto)


def _cluster_ips(spec: Obj) -> list[str]:
    ips = [ip for ip in spec.get("clusterIPs") or [] if ip and ip != "None"]
    if not ips and spec.get("clusterIP") not in (None, "", "None"):
        ips = [spec["clusterIP"]]
    return ips


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _undash(label: str) -> str | None:
    """`10-244-0-5` → `10.244.0.5`; IPv6 addresses with `-` for `:` (`fd00--5` → `fd00::5`)."""
    for candidate in (label.replace("-", "."), label.replace("-", ":")):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def _reverse_ip(qname: str) -> str | None:
    try:
        if qname.endswith(".in-addr.arpa"):
            parts = qname[: -len(".in-addr.arpa")].split(".")
            if len(parts) != 4:
                return None
            return str(ipaddress.IPv4Address(".".join(reversed(parts))))
        nibbles = qname[: -len(".ip6.arpa")].split(".")
        if len(nibbles) != 32:
            return None
        h = "".join(reversed(nibbles))
        return str(ipaddress.IPv6Address(":".join(h[i:i + 4] for i in range(0, 32, 4))))
    except ValueError:
        return None
