"""The nftables data plane (the default, as in current kube-proxy): everything lives in one table, `ip kates-proxy`.

Service addresses dispatch through verdict maps (`address . protocol . port : goto chain`) so a packet costs one
lookup however many Services exist; a service chain picks an endpoint with `numgen random mod N`; endpoint chains
DNAT, remember ClientIP affinity in a timeout set and mark hairpin traffic for masquerade. Services without
endpoints are listed in `no-endpoint-*` maps that a filter chain (before DNAT) rejects, so clients get "connection
refused" at once instead of hanging.

Each sync is one `nft -f` transaction: the first recreates the table from scratch (atomically, so a crashed
predecessor's leftovers vanish); later ones only touch the chains, sets and map elements that changed.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from .model import Endpoint, ServicePort, short_hash

log = logging.getLogger(__name__)

MASQ_MARK = "0x4000"
DEFAULT_TABLE = "kates-proxy"

MAPS = {
    "service-ips": "ipv4_addr . inet_proto . inet_service : verdict",
    "service-nodeports": "inet_proto . inet_service : verdict",
    "no-endpoint-services": "ipv4_addr . inet_proto . inet_service : verdict",
    "no-endpoint-nodeports": "inet_proto . inet_service : verdict",
}
NODEPORT_MATCH = "fib daddr type local ip daddr != 127.0.0.0/8"


class NftError(RuntimeError):
    """`nft -f` refused a transaction (nothing of it was applied)."""


async def run_nft(script: str, *args: str) -> str:
    """Run `nft [args] -f -` with `script` on stdin; the transaction is all-or-nothing."""
    proc = await asyncio.create_subprocess_exec("nft", *args, "-f", "-", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise NftError(err.decode(errors="replace").strip()[:2000])
    return out.decode()


@dataclasses.dataclass
class _State:
    chains: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    sets: dict[str, str] = dataclasses.field(default_factory=dict)
    maps: dict[str, dict[str, str]] = dataclasses.field(default_factory=lambda: {m: {} for m in MAPS})
    hairpin: frozenset[str] = frozenset()   # endpoint addresses: a pod reaching itself is masqueraded

    def merge(self, other: "_State") -> None:
        self.chains.update(other.chains)
        self.sets.update(other.sets)
        for m, elements in other.maps.items():
            self.maps[m].update(elements)


def _proto(sp: ServicePort) -> str:
    return sp.protocol.lower()


class NftablesBackend:
    """Programs `ServicePort`s into the table; keeps what it wrote to compute the next incremental transaction."""

    name = "nftables"

    def __init__(self, table: str = DEFAULT_TABLE, service_cidr: str = "10.96.0.0/12", cluster_cidr: str = "") -> None:
        self.table = table
        self.service_cidr = service_cidr
        self.cluster_cidr = cluster_cidr
        self.local_pod_cidr = ""
        # what the kernel holds, per service port; None: unknown, rewrite the table whole
        self._state: dict[str, tuple[ServicePort, _State]] | None = None
        self.last_sync_seconds = 0.0
        self.last_script_lines = 0

    # -- desired state -----------------------------------------------------------------------------------------
    def _chain_names(self, sp: ServicePort) -> tuple[str, str]:
        h = short_hash(sp.key)
        return f"service-{h}-{sp.key}", f"external-{h}-{sp.key}"

    def _endpoint_chain(self, sp: ServicePort, ep: Endpoint) -> str:
        return f"endpoint-{short_hash(f'{sp.key}/{ep.ip}/{ep.port}')}-{sp.key}__{ep.ip}/{ep.port}"

    def _affinity_set(self, sp: ServicePort, ep: Endpoint) -> str:
        return f"affinity-{short_hash(f'{sp.key}/{ep.ip}/{ep.port}/{sp.affinity_timeout}', 12)}"

    def _balance(self, sp: ServicePort, eps: tuple[Endpoint, ...]) -> list[str]:
        """Rules that send a new connection to one of `eps` (sticky first when ClientIP affinity is on)."""
        if not eps:
            return ["drop"]     # endpoints exist, none usable for this traffic policy
        rules = []
        if sp.affinity_timeout:   # sticky clients first, then a pick that the endpoint chain remembers
            rules += [f"ip saddr @{self._affinity_set(sp, ep)} goto {self._endpoint_chain(sp, ep)}" for ep in eps]
            if len(eps) == 1:
                rules.append(f"goto {self._endpoint_chain(sp, eps[0])}")
            else:
                arms = ", ".join(f"{i} : goto {self._endpoint_chain(sp, ep)}" for i, ep in enumerate(eps))
                rules.append(f"numgen random mod {len(eps)} vmap {{ {arms} }}")
            return rules
        # no affinity: DNAT right here, no chain per endpoint (nft's cost per transaction grows with chains)
        proto = _proto(sp)
        if len(eps) == 1:
            rules.append(f"meta l4proto {proto} dnat to {eps[0].ip}:{eps[0].port}")
        else:
            arms = ", ".join(f"{i} : {ep.ip} . {ep.port}" for i, ep in enumerate(eps))
            rules.append(f"meta l4proto {proto} dnat ip addr . port to numgen random mod {len(eps)} map {{ {arms} }}")
        return rules

    def desired(self, ports: list[ServicePort]) -> dict[str, tuple[ServicePort, _State]]:
        """Each service port with its chains, sets and map elements; unchanged ports reuse the last computation."""
        old = self._state or {}
        out: dict[str, tuple[ServicePort, _State]] = {}
        for sp in ports:
            if not sp.cluster_ip:
                continue
            prev = old.get(sp.key)
            out[sp.key] = prev if prev is not None and prev[0] == sp else (sp, self._fragment(sp))
        return out

    def _fragment(self, sp: ServicePort) -> _State:
        st = _State()
        proto = _proto(sp)
        svc_chain, ext_chain = self._chain_names(sp)
        external_addresses = [*sp.external_ips, *sp.load_balancer_ips]
        if not sp.any_endpoints:
            for ip in (sp.cluster_ip, *external_addresses):
                st.maps["no-endpoint-services"][f"{ip} . {proto} . {sp.port}"] = "goto reject-chain"
            if sp.node_port:
                st.maps["no-endpoint-nodeports"][f"{proto} . {sp.node_port}"] = "goto reject-chain"
            return st
        rules = []
        if self.cluster_cidr:   # traffic from outside the pod network must come back through this node
            rules.append(f"ip daddr {sp.cluster_ip} ip saddr != {self.cluster_cidr} jump mark-for-masquerade")
        rules += self._balance(sp, sp.internal_endpoints)
        st.chains[svc_chain] = tuple(rules)
        st.maps["service-ips"][f"{sp.cluster_ip} . {proto} . {sp.port}"] = f"goto {svc_chain}"
        if sp.has_external:
            if sp.external_local:   # source preserved, only this node's endpoints; the host itself may use any
                ext = ["fib saddr type local jump mark-for-masquerade", f"fib saddr type local goto {svc_chain}",
                       *self._balance(sp, sp.local_endpoints)]
            else:
                ext = ["jump mark-for-masquerade", f"goto {svc_chain}"]
            st.chains[ext_chain] = tuple(ext)
            for ip in external_addresses:
                st.maps["service-ips"][f"{ip} . {proto} . {sp.port}"] = f"goto {ext_chain}"
            if sp.node_port:
                st.maps["service-nodeports"][f"{proto} . {sp.node_port}"] = f"goto {ext_chain}"
        used = {*sp.internal_endpoints, *(sp.local_endpoints if sp.external_local else ())}
        st.hairpin = frozenset(ep.ip for ep in used)
        if sp.affinity_timeout:
            for ep in used:
                aff = self._affinity_set(sp, ep)
                st.sets[aff] = f"{{ type ipv4_addr; flags dynamic,timeout; timeout {sp.affinity_timeout}s; }}"
                st.chains[self._endpoint_chain(sp, ep)] = (f"update @{aff} {{ ip saddr }}",
                                                           f"meta l4proto {proto} dnat to {ep.ip}:{ep.port}")
        return st

    def set_local_pod_cidr(self, cidr: str) -> None:
        """This node's pod CIDR: service traffic of pods elsewhere in the cluster CIDR is not ours to translate
        (several test clusters share one machine and their service addresses); a change rewrites the table."""
        if cidr != self.local_pod_cidr:
            self.local_pod_cidr = cidr
            self._state = None

    # -- transactions --------------------------------------------------------------------------------------------
    def _base(self) -> list[str]:
        t = f"ip {self.table}"
        lines = [f"add table {t}", f"delete table {t}", f"add table {t} {{ comment \"kates proxy rules\"; }}"]
        for name, typ in MAPS.items():
            lines.append(f"add map {t} {name} {{ type {typ}; }}")
        lines.append(f"add set {t} hairpin {{ type ipv4_addr . ipv4_addr; }}")
        chains = {
            "filter-prerouting": ("type filter hook prerouting priority -110;", ["ct state new jump endpoints-check"]),
            "filter-output": ("type filter hook output priority -110;", ["ct state new jump endpoints-check"]),
            "endpoints-check": ("", ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
                                     f"{NODEPORT_MATCH} meta l4proto . th dport vmap @no-endpoint-nodeports"]),
            "nat-prerouting": ("type nat hook prerouting priority -100;", ["jump services"]),
            "nat-output": ("type nat hook output priority -100;", ["jump services"]),
            "nat-postrouting": ("type nat hook postrouting priority 100;", ["jump masquerading"]),
            "services": ("", ["ip daddr . meta l4proto . th dport vmap @service-ips",
                              f"{NODEPORT_MATCH} meta l4proto . th dport vmap @service-nodeports"]),
            "masquerading": ("", ["ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random",
                                  f"meta mark & {MASQ_MARK} == 0 return",
                                  f"meta mark set meta mark ^ {MASQ_MARK}", "masquerade fully-random"]),
            "mark-for-masquerade": ("", [f"meta mark set meta mark | {MASQ_MARK}"]),
            "reject-chain": ("", ["meta l4proto tcp reject with tcp reset", "reject"]),
        }
        for name, (hook, _) in chains.items():   # every chain exists before any rule jumps to it
            lines.append(f"add chain {t} {name} {{ {hook} }}" if hook else f"add chain {t} {name}")
        if self.cluster_cidr and self.local_pod_cidr:
            foreign = f"ip saddr {self.cluster_cidr} ip saddr != {self.local_pod_cidr} return"
            chains["services"][1].insert(0, foreign)
            chains["endpoints-check"][1].insert(0, foreign)
        for name, (_, rules) in chains.items():
            lines += [f"add rule {t} {name} {r}" for r in rules]
        return lines

    def script(self, want: dict[str, tuple[ServicePort, _State]]) -> list[str]:
        """The nft commands that take the kernel from the last applied state to `want`: only the service ports
        that changed are compared (their chains, sets and map elements are theirs alone)."""
        lines: list[str] = []
        previous = self._state
        if previous is None:
            lines += self._base()
            previous = {}
        old, new = _State(), _State()
        for key, (_, fragment) in want.items():
            prev = previous.get(key)
            if prev is not None and prev[1] is fragment:
                continue
            new.merge(fragment)
            if prev is not None:
                old.merge(prev[1])
        for key, (_, fragment) in previous.items():
            if key not in want:
                old.merge(fragment)
        lines += self._diff(old, new)
        # endpoints are shared between service ports: the hairpin set is compared as a whole
        t = f"ip {self.table}"
        had: set[str] = set().union(*(f.hairpin for _, f in previous.values()))
        need: set[str] = set().union(*(f.hairpin for _, f in want.values()))
        gone, added = sorted(had - need), sorted(need - had)
        for i in range(0, len(gone), 1000):
            lines.append(f"delete element {t} hairpin {{ {', '.join(f'{ip} . {ip}' for ip in gone[i:i + 1000])} }}")
        for i in range(0, len(added), 1000):
            lines.append(f"add element {t} hairpin {{ {', '.join(f'{ip} . {ip}' for ip in added[i:i + 1000])} }}")
        return lines

    def _diff(self, old: _State, want: _State) -> list[str]:
        t = f"ip {self.table}"
        lines: list[str] = []
        for name, decl in want.sets.items():
            if name not in old.sets:
                lines.append(f"add set {t} {name} {decl}")
        lines += [f"add chain {t} {name}" for name in want.chains if name not in old.chains]
        for name, rules in want.chains.items():
            previous = old.chains.get(name)
            if previous == rules:
                continue
            if previous is not None:
                lines.append(f"flush chain {t} {name}")
            lines += [f"add rule {t} {name} {r}" for r in rules]
        for m in MAPS:
            have, need = old.maps[m], want.maps[m]
            gone = [k for k, v in have.items() if need.get(k) != v]
            new = [f"{k} : {v}" for k, v in need.items() if have.get(k) != v]
            for i in range(0, len(gone), 1000):
                lines.append(f"delete element {t} {m} {{ {', '.join(gone[i:i + 1000])} }}")
            for i in range(0, len(new), 1000):
                lines.append(f"add element {t} {m} {{ {', '.join(new[i:i + 1000])} }}")
        stale = [name for name in old.chains if name not in want.chains]
        lines += [f"flush chain {t} {name}" for name in stale]
        lines += [f"delete chain {t} {name}" for name in stale]
        lines += [f"delete set {t} {name}" for name in old.sets if name not in want.sets]
        return lines

    async def sync(self, ports: list[ServicePort]) -> None:
        started = time.monotonic()
        want = self.desired(ports)
        lines = self.script(want)
        self.last_script_lines = len(lines)
        if lines:
            try:
                await run_nft("\n".join(lines) + "\n")
            except NftError:
                self._state = None   # unknown now: the next sync rewrites the table whole
                raise
        self._state = want
        self.last_sync_seconds = time.monotonic() - started

    async def cleanup(self) -> None:
        """Remove the table (and so every rule this backend installed)."""
        self._state = None
        try:
            await run_nft(f"add table ip {self.table}\ndelete table ip {self.table}\n")
        except NftError as e:
            log.warning("removing table %s: %s", self.table, e)
