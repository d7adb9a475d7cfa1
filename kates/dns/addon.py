"""What makes the DNS server reachable at the cluster DNS address, as the kube-dns add-on's objects do.

The Service kube-system/kube-dns holds the well-known ClusterIP (the 10th address of the service CIDR, 10.96.0.10 by
default) with ports dns/53 UDP and dns-tcp/53 TCP and no selector; this server publishes itself behind it with an
EndpointSlice of its own (`kube-dns-<node>`, managed by kates-dns) naming the address and port it really listens on.
kube-proxy then DNATs 10.96.0.10:53 to it like any other endpoint, so pods whose resolv.conf says
`nameserver 10.96.0.10` reach it. One slice per DNS instance keeps several nodes' servers side by side. The slice is
deleted at a clean shutdown, so kube-proxy stops sending queries to a server that is gone.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from ..api import errors
from ..client.controller import Controller
from ..client.informer import InformerFactory
from ..client.rest import Client, resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NAMESPACE = "kube-system"
SERVICE = "kube-dns"
MANAGED_BY = "kates-dns"
KEY = f"{NAMESPACE}/{SERVICE}"


def cluster_dns_ip(service_cidr: str) -> str:
    """The 10th address of the (first) service CIDR: where kubeadm and k3s put the cluster DNS."""
    net = ipaddress.ip_network(service_cidr.split(",")[0].strip(), strict=False)
    return str(net.network_address + 10)


def desired_service(service_ip: str) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE,
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "kates-dns",
                                "kubernetes.io/cluster-service": "true"}},
        "spec": {"type": "ClusterIP", "clusterIP": service_ip, "clusterIPs": [service_ip],
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
    }


class KubeDNSAddon(Controller):
    """Keeps kube-system/kube-dns and this server's EndpointSlice as they should be (level-triggered)."""

    name = "kates-dns-addon"
    workers = 1

    def __init__(self, client: Client, informers: InformerFactory, *, service_ip: str, address: str, port: int,
                 node_name: str) -> None:
        super().__init__(client, informers)
        self.service_ip = service_ip
        self.address = address
        self.port = port
        self.node_name = node_name
        self.slice_name = f"{SERVICE}-{node_name}" if node_name else f"{SERVICE}-kates"
        self.service_rt = resource("services")
        self.slice_rt = resource("endpointslices.discovery.k8s.io")
        self.services = informers.informer(self.service_rt)
        self.slices = informers.informer(self.slice_rt)
        self.services.add_handler(self._on, lambda _old, new: self._on(new), self._on)
        self.slices.add_handler(self._on, lambda _old, new: self._on(new), self._on)
        self.queue.add(KEY)

    def _on(self, obj: Obj) -> None:
        meta = obj["metadata"]
        if meta.get("namespace") == NAMESPACE and meta["name"] in (SERVICE, self.slice_name):
            self.queue.add(KEY)

    def desired_slice(self, svc: Obj) -> Obj:
        family = "IPv6" if ":" in self.address else "IPv4"
        endpoint: Obj = {"addresses": [self.address], "conditions": {"ready": True, "serving": True,
                                                                     "terminating": False}}
        if self.node_name:
            endpoint["nodeName"] = self.node_name
        return {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": self.slice_name, "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": SERVICE,
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": SERVICE,
                                              "uid": svc["metadata"]["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "addressType": family,
            "endpoints": [endpoint],
            "ports": [{"name": "dns", "port": self.port, "protocol": "UDP"},
                      {"name": "dns-tcp", "port": self.port, "protocol": "TCP"}],
        }

    async def sync(self, key: str) -> None:
        svc = self.services.store.get(KEY)
        if svc is None:
            try:
                svc = await self.client.create(self.service_rt, desired_service(self.service_ip), NAMESPACE)
                log.info("created Service %s with clusterIP %s", KEY, self.service_ip)
            except errors.AlreadyExists:
                svc = await self.client.get(self.service_rt, SERVICE, NAMESPACE)
        elif (svc.get("spec") or {}).get("clusterIP") != self.service_ip:
            log.warning("Service %s has clusterIP %s, not %s: pods told to use %s will not reach this server",
                        KEY, svc["spec"].get("clusterIP"), self.service_ip, self.service_ip)
        want = self.desired_slice(svc)
        have = self.slices.store.get(f"{NAMESPACE}/{self.slice_name}")
        if have is None:
            try:
                await self.client.create(self.slice_rt, want, NAMESPACE)
                log.info("published %s:%d as an endpoint of %s", self.address, self.port, KEY)
            except errors.AlreadyExists:
                self.queue.add_rate_limited(key)
            return
        if any(have.get(f) != want[f] for f in ("addressType", "endpoints", "ports")) or \
                have["metadata"].get("ownerReferences") != want["metadata"]["ownerReferences"] or \
                any((have["metadata"].get("labels") or {}).get(k) != v
                    for k, v in want["metadata"]["labels"].items()):
            want["metadata"]["resourceVersion"] = have["metadata"]["resourceVersion"]
            await self.client.update(self.slice_rt, want)

    async def withdraw(self, timeout: float = 3.0) -> None:
        """Delete this server's EndpointSlice (best effort): queries stop going to a server that is gone."""
        try:
            await asyncio.wait_for(self.client.delete(self.slice_rt, self.slice_name, NAMESPACE), timeout)
        except Exception as e:   # the API server may already be gone at shutdown
            log.debug("could not delete EndpointSlice %s/%s: %s", NAMESPACE, self.slice_name, e)
