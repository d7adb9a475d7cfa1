"""Forget UDP conntrack entries that point at endpoints that are gone.

TCP recovers by itself (a dead endpoint resets or times out, the client reconnects and is balanced anew), but a UDP
"connection" is an entry that keeps steering a client's datagrams (a resolver's queries, say) to the old endpoint
for as long as it keeps sending. As kube-proxy does, after each sync: entries DNATed to a removed endpoint are
deleted, and so are entries of a UDP service that had no endpoints before (they were rejected and must be retried).
"""
from __future__ import annotations

import asyncio
import logging

from .model import ServicePort

log = logging.getLogger(__name__)


def _addresses(sp: ServicePort) -> list[str]:
    return [sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips]


def stale_flows(before: list[ServicePort], after: list[ServicePort]) -> list[list[str]]:
    """`conntrack -D` argument lists for the UDP flows that the change from `before` to `after` made stale."""
    now = {sp.key: sp for sp in after if sp.protocol == "UDP"}
    commands: list[list[str]] = []
    for old in before:
        if old.protocol != "UDP":
            continue
        new = now.get(old.key)
        kept = {(e.ip, e.port) for e in new.cluster_endpoints} if new else set()
        for ep in old.cluster_endpoints:
            if (ep.ip, ep.port) not in kept:
                commands += [["-p", "udp", "--orig-dst", ip, "--dst-nat", ep.ip] for ip in _addresses(old)]
                if old.node_port:
                    commands.append(["-p", "udp", "--orig-port-dst", str(old.node_port), "--dst-nat", ep.ip])
    had = {sp.key for sp in before if sp.protocol == "UDP" and sp.cluster_endpoints}
    for sp in now.values():
        if sp.cluster_endpoints and sp.key not in had:
            commands += [["-p", "udp", "--orig-dst", ip, "--orig-port-dst", str(sp.port)] for ip in _addresses(sp)]
    return commands


class Conntrack:
    """Runs the `conntrack` tool; a missing tool or an empty match is not an error."""

    def __init__(self, binary: str = "conntrack") -> None:
        self.binary = binary
        self.deleted_runs = 0

    async def delete(self, args: list[str]) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(self.binary, "-D", *args, stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL)
        except FileNotFoundError:
            log.debug("no conntrack tool: stale UDP flows are left to time out")
            return
        await proc.wait()   # exit 1 means "0 flow entries deleted"
        self.deleted_runs += 1

    async def cleanup_stale(self, before: list[ServicePort], after: list[ServicePort]) -> None:
        for args in stale_flows(before, after):
            await self.delete(args)
