"""What the proxier hands its backends: one `ServicePort` per (Service, port) with the endpoints it may use.

Backends (nftables, iptables) only turn these values into kernel rules; every Kubernetes decision (which endpoints are
usable, which are node-local, which addresses a Service answers on) is made once, here and in proxier.py, so both
backends program the same semantics.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Protocol

Obj = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One backend address of a service port, with its EndpointSlice conditions."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""


@dataclasses.dataclass(frozen=True)
class ServicePort:
    """One port of one Service, as the data plane sees it."""

    namespace: str
    name: str
    port_name: str
    protocol: str                       # TCP, UDP, SCTP
    cluster_ip: str                     # "" for headless / ExternalName
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    affinity_timeout: int = 0           # seconds of ClientIP affinity; 0: none
    external_local: bool = False        # externalTrafficPolicy: Local
    internal_local: bool = False        # internalTrafficPolicy: Local
    # endpoints the service may use (ready, else serving+terminating), in a stable order
    cluster_endpoints: tuple[Endpoint, ...] = ()
    local_endpoints: tuple[Endpoint, ...] = ()

    @property
    def key(self) -> str:
        """`ns/name/proto/portname`, the name kube-proxy gives a service port."""
        return f"{self.namespace}/{self.name}/{self.protocol.lower()}/{self.port_name}"

    @property
    def has_external(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)

    @property
    def internal_endpoints(self) -> tuple[Endpoint, ...]:
        """Endpoints for traffic to the cluster IP (internalTrafficPolicy applied)."""
        return self.local_endpoints if self.internal_local else self.cluster_endpoints

    @property
    def any_endpoints(self) -> bool:
        return bool(self.cluster_endpoints)


def short_hash(text: str, n: int = 8) -> str:
    """A stable, name-safe digest, so chain and set names stay unique yet short."""
    return hashlib.sha256(text.encode()).hexdigest()[:n].upper()


class Backend(Protocol):
    """A data plane: programs the given service ports atomically, and removes everything it installed."""

    name: str

    def set_local_pod_cidr(self, cidr: str) -> None: ...

    async def sync(self, ports: list[ServicePort]) -> None: ...

    async def cleanup(self) -> None: ...
