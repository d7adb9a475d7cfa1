"""ClusterIP and NodePort allocation that never hands out a value twice.

Each allocated value is a key in the store (`/ranges/serviceips/<ip>`, `/ranges/nodeports/<port>`) created
with create-if-absent, so uniqueness holds even with several API servers on one store: the store's
compare-and-swap is the lock. Kubernetes does the same with IPAddress objects.
"""
from __future__ import annotations

import ipaddress
import random

from ..api import errors
from ..store.interface import KeyExists, KeyNotFound, Store

IP_PREFIX = "/ranges/serviceips/"
PORT_PREFIX = "/ranges/nodeports/"


class ServiceAllocator:
    def __init__(self, store: Store, service_cidr: str = "10.96.0.0/12",
                 node_ports: tuple[int, int] = (30000, 32767)) -> None:
        self.store = store
        self.network = ipaddress.ip_network(service_cidr)
        self.node_ports = node_ports

    @property
    def first_ip(self) -> str:
        """The `kubernetes` service's address: the first usable one of the range."""
        return str(self.network.network_address + 1)

    def dns_ip(self) -> str:
        return str(self.network.network_address + 10)

    def contains(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.network
        except ValueError:
            return False

    async def reserve_ip(self, ip: str, owner: str) -> None:
        if not self.contains(ip):
            raise errors.Invalid("Service", owner.rsplit("/", 1)[-1], [errors.cause(
                "spec.clusterIPs", f"Invalid value: \"{ip}\": provided IP is not in the valid range. "
                f"The range of valid IPs is {self.network}")])
        try:
            await self.store.create(IP_PREFIX + ip, owner.encode())
        except KeyExists:
            raise errors.Invalid("Service", owner.rsplit("/", 1)[-1], [errors.cause(
                "spec.clusterIPs", f"Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: provided IP is already "
                "allocated")]) from None

    async def allocate_ip(self, owner: str) -> str:
        size = self.network.num_addresses
        # the lower part of the range is for static choices, like Kubernetes' split of the service CIDR
        for _ in range(64):
            offset = random.randrange(2, size - 1)
            ip = str(self.network.network_address + offset)
            try:
                await self.store.create(IP_PREFIX + ip, owner.encode())
                return ip
            except KeyExists:
                continue
        raise errors.InternalError("failed to allocate a service IP: range is full")

    async def reserve_port(self, port: int, owner: str, field: str) -> None:
        lo, hi = self.node_ports
        name = owner.rsplit("/", 1)[-1]
        if not lo <= port <= hi:
            raise errors.Invalid("Service", name, [errors.cause(
                field, f"Invalid value: {port}: provided port is not in the valid range. "
                f"The range of valid ports is {lo}-{hi}")])
        try:
            await self.store.create(PORT_PREFIX + str(port), owner.encode())
        except KeyExists:
            raise errors.Invalid("Service", name, [errors.cause(
                field, f"Invalid value: {port}: provided port is already allocated")]) from None

    async def allocate_port(self, owner: str) -> int:
        lo, hi = self.node_ports
        for _ in range(64):
            port = random.randint(lo, hi)
            try:
                await self.store.create(PORT_PREFIX + str(port), owner.encode())
                return port
            except KeyExists:
                continue
        raise errors.InternalError("failed to allocate a node port: range is full")

    async def release_ip(self, ip: str) -> None:
        try:
            await self.store.delete(IP_PREFIX + ip)
        except KeyNotFound:
            pass

    async def release_port(self, port: int) -> None:
        try:
            await self.store.delete(PORT_PREFIX + str(port))
        except KeyNotFound:
            pass
