"""`kates proxy`: run the proxier (and the built-in service load balancer) for one node until SIGTERM, then remove
every rule it installed.

Host-originated traffic to a service address is routed before the nat OUTPUT hook rewrites it, so the service CIDR
needs a route that is not a blackhole: we add the two halves of the CIDR (more specific than the node agent's
blackhole for the whole range) through `lo` with the node address as source. A packet nobody DNATs still goes
nowhere, as with the blackhole; one we DNAT is routed again to its endpoint.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path

from ..cli.lifecycle import stop_event
from ..client.informer import InformerFactory
from ..client.rest import Client
from .conntrack import Conntrack
from .model import Backend
from .proxier import SYNC_KEY, Proxier
from .servicelb import ServiceLB, parse_pool

log = logging.getLogger(__name__)


def make_backend(name: str, table: str, service_cidr: str, cluster_cidr: str) -> Backend:
    if name == "iptables":
        from .iptables import IptablesBackend
        return IptablesBackend(chain_prefix=table, service_cidr=service_cidr, cluster_cidr=cluster_cidr)
    from .nftables import NftablesBackend
    return NftablesBackend(table=table, service_cidr=service_cidr, cluster_cidr=cluster_cidr)


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace").strip()


def service_route_prefixes(service_cidr: str) -> list[str]:
    """The two halves of the service CIDR: routes more specific than a blackhole for the whole of it."""
    net = ipaddress.ip_network(service_cidr, strict=False)
    if net.version != 4 or net.prefixlen >= 32:
        return []
    return [str(n) for n in net.subnets(prefixlen_diff=1)]


async def ensure_service_routes(service_cidr: str, node_ip: str) -> None:
    for prefix in service_route_prefixes(service_cidr):
        args = ["route", "replace", prefix, "dev", "lo"] + (["src", node_ip] if node_ip else [])
        code, out = await _ip(*args)
        if code != 0 and node_ip:   # the node address may not be on this machine: let the kernel pick
            code, out = await _ip("route", "replace", prefix, "dev", "lo")
        if code != 0:
            log.warning("route for service addresses %s: %s", prefix, out)


async def remove_service_routes(service_cidr: str) -> None:
    """Only when no other kates proxy on this machine still has rules (test clusters share the routes)."""
    proc = await asyncio.create_subprocess_exec("nft", "list", "tables", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    others = "kates-proxy" in out.decode()
    if not others:   # an iptables-backend proxy has KATES-* chains in the nat table
        proc = await asyncio.create_subprocess_exec("iptables-save", "-t", "nat", stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        saved, _ = await proc.communicate()
        others = ":KATES-" in saved.decode()
    if others:
        return
    for prefix in service_route_prefixes(service_cidr):
        await _ip("route", "del", prefix, "dev", "lo")


async def run(kubeconfig: str, node_name: str, node_ip: str, backend_name: str = "nftables",
              table: str = "kates-proxy", service_cidr: str = "10.96.0.0/12", cluster_cidr: str = "10.244.0.0/16",
              min_sync_period: float = 0.05, lb_pool: str = "", servicelb: bool = True) -> int:
    client = Client.from_kubeconfig(Path(kubeconfig), user_agent="kates-proxy")
    informers = InformerFactory(client)
    backend = make_backend(backend_name, table, service_cidr, cluster_cidr)
    proxier = Proxier(client, informers, backend, node_name, min_sync_period, Conntrack())
    lb = ServiceLB(client, informers, node_ip, parse_pool(lb_pool)) if servicelb else None
    stop = stop_event()
    await ensure_service_routes(service_cidr, node_ip)
    informers.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        waiter = asyncio.create_task(informers.wait_synced(), name="proxy-informers-synced")
        stopper = asyncio.create_task(stop.wait(), name="proxy-stop")
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for t in (waiter, stopper):
            t.cancel()
        if not stop.is_set():
            proxier.queue.add(SYNC_KEY)
            tasks.append(asyncio.create_task(proxier.run(), name="proxier"))
            if lb is not None:
                tasks.append(asyncio.create_task(lb.run(), name="servicelb"))
            log.info("proxying for node %s with the %s backend", node_name, backend.name)
            await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await informers.stop()
        await backend.cleanup()
        await remove_service_routes(service_cidr)
        await client.close()
        log.info("proxy rules removed")
    return 0


def main(kubeconfig: str, node_name: str, node_ip: str, **kw: object) -> int:
    return asyncio.run(run(kubeconfig, node_name, node_ip, **kw))  # type: ignore[arg-type]
