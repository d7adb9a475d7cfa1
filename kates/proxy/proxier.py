"""kube-proxy's brain: watch Services, EndpointSlices and Nodes, compute each service port's usable endpoints, and
hand the whole picture to a backend, which applies only the difference in one atomic transaction.

Every change enqueues the same key; the single worker waits out `min_sync_period` since the last sync, so a burst
of changes (a Deployment rolling) costs one transaction, not one per event. The desired state is recomputed from
the informer caches each time (level-triggered): which event woke us never matters.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any

from ..client.controller import Controller
from ..client.informer import InformerFactory
from ..client.rest import Client, resource
from .conntrack import Conntrack
from .model import Backend, Endpoint, ServicePort

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SYNC_KEY = "sync"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def slice_index(obj: Obj) -> list[str]:
    """EndpointSlices by the `namespace/name` of their Service."""
    name = (obj["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{obj['metadata'].get('namespace', '')}/{name}"] if name else []


def _cond(ep: Obj, name: str, default: bool) -> bool:
    value = (ep.get("conditions") or {}).get(name)
    return default if value is None else bool(value)


def service_ports(service: Obj, slices: list[Obj], node_name: str) -> list[ServicePort]:
    """The ServicePorts of one Service with the endpoints new connections may use.

    Ready endpoints when there are any; otherwise the serving-but-terminating ones, so a Service whose last pods
    are shutting down still answers (kube-proxy's terminating fallback); terminating endpoints are drained
    otherwise. ExternalName and headless Services have no virtual IP and so no rules."""
    spec = service.get("spec") or {}
    meta = service["metadata"]
    cluster_ip = spec.get("clusterIP") or ""
    if spec.get("type") == "ExternalName" or cluster_ip in ("", "None"):
        return []
    try:
        if ipaddress.ip_address(cluster_ip).version != 4:
            return []
    except ValueError:
        return []
    lb_ips = tuple(i["ip"] for i in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                   if i.get("ip") and i.get("ipMode", "VIP") == "VIP") if spec.get("type") == "LoadBalancer" else ()
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = int(((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
                       or 10800)
    external_local = spec.get("externalTrafficPolicy") == "Local" and spec.get("type") in ("NodePort",
                                                                                          "LoadBalancer")
    out = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        port_name = port.get("name") or ""
        eps: dict[tuple[str, int], Endpoint] = {}
        for s in slices:
            if s.get("addressType", "IPv4") != "IPv4":
                continue
            number = next((p.get("port") for p in s.get("ports") or []
                           if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol), None)
            if number is None:
                continue
            for ep in s.get("endpoints") or []:
                ready = _cond(ep, "ready", True)
                serving = _cond(ep, "serving", ready)
                terminating = _cond(ep, "terminating", False)
                for ip in ep.get("addresses") or []:
                    eps[(ip, number)] = Endpoint(ip, number, ready, serving, terminating, ep.get("nodeName") or "")
        ordered = sorted(eps.values(), key=lambda e: (e.ip, e.port))
        usable = [e for e in ordered if e.ready] or [e for e in ordered if e.serving and e.terminating]
        out.append(ServicePort(
            namespace=meta.get("namespace", ""), name=meta["name"], port_name=port_name, protocol=protocol,
            cluster_ip=cluster_ip, port=int(port["port"]), node_port=int(port.get("nodePort") or 0),
            external_ips=tuple(spec.get("externalIPs") or ()), load_balancer_ips=lb_ips,
            affinity_timeout=affinity, external_local=external_local,
            internal_local=spec.get("internalTrafficPolicy") == "Local",
            cluster_endpoints=tuple(usable),
            local_endpoints=tuple(e for e in usable if e.node_name == node_name)))
    return out


class Proxier(Controller):
    """Keeps the backend's rules equal to what the API says; one worker, so syncs never overlap."""

    name = "kube-proxy"
    workers = 1

    def __init__(self, client: Client, informers: InformerFactory, backend: Backend, node_name: str,
                 min_sync_period: float = 0.05, conntrack: Conntrack | None = None) -> None:
        super().__init__(client, informers)
        self.backend = backend
        self.node_name = node_name
        self.min_sync_period = min_sync_period
        self.conntrack = conntrack
        self.services = informers.informer(resource("services"))
        self.slices = informers.informer(resource("endpointslices.discovery.k8s.io"))
        self.nodes = informers.informer(resource("nodes"))
        self.slices.store.add_index("service", slice_index)
        for inf in (self.services, self.slices):
            inf.add_handler(self._changed, lambda old, new: self._changed(new), self._changed)
        self.nodes.add_handler(self._node_changed, lambda old, new: self._node_changed(new), None)
        self._last_sync = 0.0
        self._last_ports: list[ServicePort] = []
        self._cache: dict[str, tuple[tuple[str, ...], list[ServicePort]]] = {}
        self.syncs = 0
        self.synced = asyncio.Event()

    def _changed(self, obj: Obj) -> None:
        self.queue.add(SYNC_KEY)

    def _node_changed(self, node: Obj) -> None:
        if node["metadata"]["name"] == self.node_name:
            self.queue.add(SYNC_KEY)

    def local_pod_cidr(self) -> str:
        node = self.nodes.store.get(self.node_name)
        return ((node or {}).get("spec") or {}).get("podCIDR") or ""

    def desired(self) -> list[ServicePort]:
        """Every service port; a Service whose object and slices kept their resourceVersions reuses its last
        result, so one endpoint change costs one Service's computation, not a thousand."""
        ports: list[ServicePort] = []
        cache: dict[str, tuple[tuple[str, ...], list[ServicePort]]] = {}
        for svc in self.services.store.list():
            key = f"{svc['metadata'].get('namespace', '')}/{svc['metadata']['name']}"
            slices = self.slices.store.by_index("service", key)
            signature = (svc["metadata"].get("resourceVersion", ""),
                         *sorted(f"{s['metadata']['name']}@{s['metadata'].get('resourceVersion', '')}" for s in slices))
            hit = self._cache.get(key)
            if hit is not None and hit[0] == signature and signature[0]:
                computed = hit[1]
            else:
                computed = service_ports(svc, slices, self.node_name)
            cache[key] = (signature, computed)
            ports += computed
        self._cache = cache
        return ports

    async def sync(self, key: str) -> None:
        wait = self._last_sync + self.min_sync_period - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        ports = self.desired()
        started = time.monotonic()
        self.backend.set_local_pod_cidr(self.local_pod_cidr())
        await self.backend.sync(ports)
        self._last_sync = time.monotonic()
        self.syncs += 1
        log.debug("synced %d service ports in %.1f ms", len(ports), (self._last_sync - started) * 1000)
        if self.conntrack is not None:
            await self.conntrack.cleanup_stale(self._last_ports, ports)
        self._last_ports = ports
        self.synced.set()
