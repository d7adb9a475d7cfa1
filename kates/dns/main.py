"""`kates dns`: the cluster DNS server as a process of its own, fed by watches, optionally publishing itself as the
kube-dns add-on (`--service-ip`). `kates server` runs it as a child on the node address, port 53.

It waits (at most `--sync-timeout` seconds) for the first lists before it listens, so it never answers NXDOMAIN for
a Service that exists but was not read yet. When the port is taken (another cluster's DNS on this machine), it
listens on a free port of the same address instead and publishes that port in its EndpointSlice: kube-proxy's DNAT
sends 10.96.0.10:53 there all the same.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import socket
from pathlib import Path

from ..cli.lifecycle import stop_event


log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DNSConfig:
    kubeconfig: Path
    host: str
    port: int
    cluster_domain: str = "cluster.local"
    upstream: str = "/etc/resolv.conf"
    service_ip: str = ""           # publish as kube-system/kube-dns with this ClusterIP ("": do not)
    advertise_address: str = ""    # the address in the EndpointSlice (default: the listen address)
    node_name: str = ""
    port_fallback: bool = True
    sync_timeout: float = 10.0
    allow: tuple[str, ...] = ()    # client networks answered (empty: everyone)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--listen", default="", help="ADDR:PORT for UDP and TCP (default: the node address, port 53)")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--upstream", default="/etc/resolv.conf",
                   help="a resolv.conf (loopback stubs skipped) or ADDR[:PORT],... for names outside the cluster")
    p.add_argument("--service-ip", default="",
                   help="publish this server as the Service kube-system/kube-dns with this ClusterIP")
    p.add_argument("--advertise-address", default="", help="address put in the EndpointSlice (default: --listen's)")
    p.add_argument("--node-name", default="", help="names this server's EndpointSlice (default: the hostname)")
    p.add_argument("--no-port-fallback", action="store_true",
                   help="exit when the port is taken instead of listening on a free one")
    p.add_argument("--allow", default="127.0.0.0/8,::1/128,10.244.0.0/16",
                   help="comma-separated client networks to answer (the node's own addresses are added); others get "
                        "REFUSED, so a listener on the node address is no open resolver ('' answers everyone)")
    p.add_argument("-v", "--verbose", action="store_true")


def config_from_args(args: argparse.Namespace) -> DNSConfig:
    from ..kubelet.agent import default_node_ip
    listen = args.listen or f"{default_node_ip()}:53"
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    advertise = args.advertise_address or (host if host not in ("0.0.0.0", "::") else default_node_ip())
    return DNSConfig(kubeconfig=Path(args.kubeconfig), host=host, port=int(port or 53),
                     cluster_domain=args.cluster_domain, upstream=args.upstream, service_ip=args.service_ip,
                     advertise_address=advertise, node_name=args.node_name or socket.gethostname().lower(),
                     port_fallback=not args.no_port_fallback,
                     allow=tuple(n for n in (*args.allow.split(","), *([f"{advertise}/32"] if args.allow else []))
                                 if n.strip()))


async def run(config: DNSConfig, stop: asyncio.Event | None = None) -> int:
    """Serve until `stop` is set (or SIGINT/SIGTERM when none is given)."""
    from ..client.informer import InformerFactory
    from ..client.rest import Client, resource
    from .addon import KubeDNSAddon
    from .records import ClusterRecords
    from .server import DNSServer, Forwarder, upstreams_from
    client = Client.from_kubeconfig(config.kubeconfig, user_agent="kates-dns", field_manager="kates-dns")
    informers = InformerFactory(client)
    records = ClusterRecords(config.cluster_domain, dns_ips=(config.service_ip,) if config.service_ip else ())
    for name, setter in (("services", records.set_service),
                         ("endpointslices.discovery.k8s.io", records.set_slice),
                         ("pods", records.set_pod), ("namespaces", records.set_namespace)):
        informers.informer(resource(name)).add_handler(
            on_add=setter, on_update=lambda _old, new, s=setter: s(new),
            on_delete=lambda old, s=setter: s(old, deleted=True))
    upstreams = upstreams_from(config.upstream)
    if not upstreams:
        log.warning("no upstream resolvers from %s: only cluster names will resolve", config.upstream)
    server = DNSServer(records, Forwarder(upstreams), allow=config.allow)
    informers.start()
    try:
        await informers.wait_synced(config.sync_timeout)
    except asyncio.TimeoutError:
        log.warning("informers not synced after %.0fs: serving what is known", config.sync_timeout)
    _tune_gc()
    try:
        port = await server.start(config.host, config.port)
    except OSError as e:
        # uvloop reports a taken address without an errno: any bind failure gets the fallback, which fails in
        # turn when the address itself is wrong
        try:
            if not config.port_fallback or config.port == 0:
                raise
            port = await server.start(config.host, 0)
        except OSError as e2:
            log.error("cannot listen on %s:%d: %s", config.host, config.port, e2)
            await informers.stop()
            await client.close()
            return 1
        log.warning("%s:%d: %s; listening on port %d instead (published in the EndpointSlice)",
                    config.host, config.port, e, port)
    print(f"kates dns: serving {config.cluster_domain} on {config.host}:{port} "
          f"(upstream {','.join(f'{h}:{p}' for h, p in upstreams) or 'none'})", flush=True)
    addon: "KubeDNSAddon | None" = None
    addon_task: asyncio.Task[None] | None = None
    if config.service_ip:
        addon = KubeDNSAddon(client, informers, service_ip=config.service_ip, address=config.advertise_address,
                             port=port, node_name=config.node_name)
        addon_task = asyncio.create_task(addon.run(), name="kates-dns-addon")
    if stop is None:
        stop = stop_event()
    await stop.wait()
    log.info("stopping: %s", server.stats)
    if addon_task is not None and addon is not None:
        addon_task.cancel()
        await asyncio.gather(addon_task, return_exceptions=True)
        await addon.withdraw()
    await server.stop()
    await informers.stop()
    await client.close()
    return 0


def _tune_gc() -> None:
    """What the first lists brought is long-lived: freeze it, and collect young objects less often, so the cyclic
    GC does not walk every cached object while queries wait (tail latency)."""
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run(config_from_args(args)))
    except KeyboardInterrupt:
        return 0
