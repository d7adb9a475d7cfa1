"""A built-in load balancer for `type: LoadBalancer` Services, like k3s's ServiceLB.

There is no cloud to ask for an address: a Service gets the node addresses (InternalIP of every node) or, with
`--lb-pool`, one free address of that pool, written to status.loadBalancer.ingress. The proxier then serves those
addresses like externalIPs, so the Service answers on them. Services with a loadBalancerClass belong to another
implementation and are left alone.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from ..api import errors
from ..client.controller import Controller
from ..client.informer import InformerFactory
from ..client.rest import Client, resource, split_key

Obj = dict[str, Any]
SERVICES = resource("services")


def parse_pool(text: str) -> list[str]:
    """`10.0.0.0/30,10.1.0.5` → the addresses, in order (CIDRs expand to their usable hosts)."""
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "/" in part:
            net = ipaddress.ip_network(part, strict=False)
            out += [str(h) for h in (net.hosts() if net.num_addresses > 2 else net)]
        else:
            out.append(str(ipaddress.ip_address(part)))
    return out


def _ingress_ips(svc: Obj) -> list[str]:
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if i.get("ip")]


def wants_lb(svc: Obj) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


class ServiceLB(Controller):
    name = "servicelb"
    workers = 1   # pool allocation reads what others hold: one at a time

    def __init__(self, client: Client, informers: InformerFactory, node_ip: str = "", pool: list[str] | None = None
                 ) -> None:
        super().__init__(client, informers)
        self.node_ip = node_ip
        self.pool = pool or []
        self.services = informers.informer(SERVICES)
        self.nodes = informers.informer(resource("nodes"))
        self.services.add_handler(self.enqueue, lambda old, new: self.enqueue(new), None)
        self.nodes.add_handler(self._nodes_changed, lambda old, new: self._nodes_changed(new), self._nodes_changed)

    def _nodes_changed(self, node: Obj) -> None:
        if not self.pool:
            for svc in self.services.store.list():
                if wants_lb(svc):
                    self.enqueue(svc)

    def node_addresses(self) -> list[str]:
        ips = []
        for node in self.nodes.store.list():
            for a in (node.get("status") or {}).get("addresses") or []:
                if a.get("type") == "InternalIP" and a.get("address") and ":" not in a["address"]:
                    ips.append(a["address"])
        if self.node_ip and self.node_ip not in ips:
            ips.append(self.node_ip)
        return sorted(set(ips))

    def desired_ips(self, svc: Obj) -> list[str]:
        if not self.pool:
            return self.node_addresses()
        current = [ip for ip in _ingress_ips(svc) if ip in self.pool]
        if current:
            return current[:1]
        taken = {ip for other in self.services.store.list() if other is not svc and wants_lb(other)
                 for ip in _ingress_ips(other)}
        requested = (svc.get("spec") or {}).get("loadBalancerIP")
        if requested in self.pool and requested not in taken:
            return [requested]
        free = next((ip for ip in self.pool if ip not in taken), None)
        return [free] if free else []

    async def sync(self, key: str) -> None:
        svc = self.services.store.get(key)
        if svc is None or not wants_lb(svc):
            return   # a Service that stops being a LoadBalancer has its status cleared by the API server
        ips = self.desired_ips(svc)
        if not ips:
            self.recorder.event(svc, "Warning", "AllocationFailed", "no free address in the load balancer pool")
            return
        ingress = [{"ip": ip, "ipMode": "VIP"} for ip in ips]
        if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") == ingress:
            return
        ns, name = split_key(key)
        body = {"metadata": {"resourceVersion": svc["metadata"]["resourceVersion"]},
                "status": {"loadBalancer": {"ingress": ingress}}}
        try:
            await self.client.patch(SERVICES, name, body, ns, subresource="status")
        except errors.NotFound:
            return
        self.recorder.event(svc, "Normal", "EnsuredLoadBalancer", f"load balancer addresses: {', '.join(ips)}")
