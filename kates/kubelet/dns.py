"""A pod's /etc/resolv.conf from its dnsPolicy and dnsConfig, as pkg/kubelet/network/dns does.

- ClusterFirst (not hostNetwork) and ClusterFirstWithHostNet: the cluster DNS servers, searches
  `<ns>.svc.<domain> svc.<domain> <domain>` then the host's, `ndots:5`. Without a cluster DNS address the kubelet
  falls back to Default (and says so with a MissingClusterDNS event): a pod then resolves through the host's servers.
- ClusterFirst with hostNetwork, and Default: the host's resolv.conf.
- None: only what `spec.dnsConfig` says.
`spec.dnsConfig` is merged on top (duplicates dropped, options overridden by name), then the lists are cut to the
limits Kubernetes applies (3 servers, 32 search domains, 2048 characters of searches).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from ..runtime.interface import DNSConfig

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
DEFAULT_OPTIONS = ("ndots:5",)


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, searches, options) of a resolv.conf; the last `search` line wins, as in libc."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = [s.rstrip(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            options = _merge_options(options, fields[1:])
    return servers, searches, options


SYSTEMD_RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"


def _loopback(server: str) -> bool:
    return server.startswith("127.") or server == "::1"


def _host_config(host_resolv: str) -> tuple[list[str], list[str], list[str]]:
    if not host_resolv:
        return [], [], []
    try:
        servers, searches, options = parse_resolv_conf(Path(host_resolv).read_text())
    except OSError as e:
        log.warning("cannot read the host's resolv.conf %s: %s", host_resolv, e)
        return [], [], []
    if servers and all(_loopback(s) for s in servers) and Path(SYSTEMD_RESOLVED_UPSTREAM).is_file():
        # a local stub (systemd-resolved's 127.0.0.53) is unreachable from a pod's network namespace: use the
        # upstream servers it forwards to, as kubeadm points the kubelet's --resolv-conf at them
        try:
            return parse_resolv_conf(Path(SYSTEMD_RESOLVED_UPSTREAM).read_text())
        except OSError:
            pass
    return servers, searches, options


def _dedup(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [i for i in items if not (i in seen or seen.add(i))]


def _merge_options(existing: list[str], extra: list[str]) -> list[str]:
    """Options by name: a later `ndots:2` replaces an earlier `ndots:5`."""
    merged: dict[str, str] = {}
    for opt in [*existing, *extra]:
        merged[opt.split(":", 1)[0]] = opt
    return list(merged.values())


def cluster_searches(namespace: str, cluster_domain: str, host_searches: list[str]) -> list[str]:
    if not cluster_domain:
        return list(host_searches)
    return [f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain, *host_searches]


def _fit_limits(servers: list[str], searches: list[str], warn: Callable[[str, str], None] | None) -> tuple[
        list[str], list[str]]:
    if len(servers) > MAX_NAMESERVERS:
        if warn:
            warn("DNSConfigForming", "Nameserver limits were exceeded, some nameservers have been omitted, the "
                 f"applied nameserver line is: {' '.join(servers[:MAX_NAMESERVERS])}")
        servers = servers[:MAX_NAMESERVERS]
    kept: list[str] = []
    chars = 0
    for s in searches:
        extra = len(s) + (1 if kept else 0)
        if len(kept) == MAX_SEARCH_PATHS or chars + extra > MAX_SEARCH_CHARS:
            if warn:
                warn("DNSConfigForming", "Search Line limits were exceeded, some search paths have been omitted, "
                     f"the applied search line is: {' '.join(kept)}")
            break
        kept.append(s)
        chars += extra
    return servers, kept


def dns_config(pod: Obj, *, cluster_dns: list[str], cluster_domain: str, host_resolv: str = "/etc/resolv.conf",
               warn: Callable[[str, str], None] | None = None) -> DNSConfig | None:
    """The sandbox's DNS settings; None when nothing at all is to be written (the runtime's default applies).

    `warn(reason, message)` receives what the kubelet reports as Warning events (MissingClusterDNS,
    DNSConfigForming)."""
    spec = pod.get("spec") or {}
    namespace = pod["metadata"].get("namespace", "default")
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    if policy == "None":
        kind = "none"
    elif policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network):
        kind = "cluster"
    else:
        kind = "host"
    if kind == "cluster" and not cluster_dns:
        # without a cluster DNS service address, the host's resolvers are the only ones a pod can reach
        if warn:
            warn("MissingClusterDNS", "pod: kubelet does not have ClusterDNS IP configured and cannot create Pod "
                 f'using "{policy}" policy. Falling back to "Default" policy.')
        kind = "host"

    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if kind == "cluster":
        _, host_searches, _ = _host_config(host_resolv)
        servers = list(cluster_dns)
        searches = cluster_searches(namespace, cluster_domain, host_searches)
        options = list(DEFAULT_OPTIONS)
    elif kind == "host":
        servers, searches, options = _host_config(host_resolv)
        if not host_resolv:
            # kubelet --resolv-conf="": cluster settings stand in for the host's (dns.go does the same)
            servers = list(cluster_dns)
            searches = cluster_searches(namespace, cluster_domain, [])
            options = list(DEFAULT_OPTIONS)

    extra = spec.get("dnsConfig") or {}
    if extra:
        servers = _dedup([*servers, *(extra.get("nameservers") or [])])
        searches = _dedup([*searches, *(extra.get("searches") or [])])
        options = _merge_options(options, [o["name"] + (f":{o['value']}" if o.get("value") is not None else "")
                                           for o in extra.get("options") or [] if o.get("name")])
    servers, searches = _fit_limits(servers, searches, warn)
    if not (servers or searches or options):
        return None
    return DNSConfig(servers=tuple(servers), searches=tuple(searches), options=tuple(options))
