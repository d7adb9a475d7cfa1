"""NetworkPolicy enforcement for the pods of one node, with nftables (what Calico or kube-router do for a cluster).

Kubernetes only stores NetworkPolicies; the network plugin enforces them. This controller watches NetworkPolicies,
Pods and Namespaces and renders the whole policy state of this node's pods into one nftables table, replaced in a
single `nft -f` transaction per sync (so a packet sees either the old rules or the new ones, never half of each):

- a pod selected by a policy with policyType Ingress (Egress) is isolated in that direction; its traffic is then
  allowed only if some rule of some policy selecting it allows it (rules are unions, never denials);
- both ends are checked: a connection from pod A to pod B needs A's egress and B's ingress to allow it;
- replies of allowed connections pass (`ct state established,related accept` comes first);
- the node reaches its pods whatever the policies say (kubelet probes): host-originated packets leave through the
  output hook, which the table does not filter.

Pod-to-pod packets on the node's CNI bridge are bridged, not routed; with br_netfilter (`bridge-nf-call-iptables`
= 1) the kernel passes them through the IPv4 forward hook, where the `inet` table's forward chain sees them with
their real addresses. The controller turns the sysctl on if it finds it off.

Chains: `forward` and `input` (base chains) dispatch by pod address through verdict maps to one chain per isolated
pod and direction; a pod chain `return`s for allowed traffic and ends in `drop`. Egress is checked first, then
ingress. The table is named per node (`kates-netpol-<node>`): several test clusters share one machine, and each
node's controller owns only its own table, which it deletes when no policy isolates a pod and at shutdown.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

from ..api.selectors import LabelSelector, selector_from_label_selector
from ..cli.lifecycle import stop_event
from ..client.controller import Controller
from ..client.informer import InformerFactory
from ..client.rest import Client, object_key, resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SYNC_KEY = "node"   # the whole node is one unit of work: every change re-renders one table
BRIDGE_NF_SYSCTL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def table_name(node_name: str) -> str:
    """`kates-netpol-<node name>`: one table per node, since several nodes may share this machine's kernel."""
    safe = re.sub(r"[^a-z0-9-]", "-", node_name.lower())[:200]
    return f"kates-netpol-{safe}"


# -- the model: pods, policies, and what they allow ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PodInfo:
    """What policies need of a pod: identity, labels, addresses and named container ports."""

    namespace: str
    name: str
    node_name: str
    labels: dict[str, str]
    ips: tuple[str, ...]
    named_ports: dict[tuple[str, str], int]   # (name, protocol) -> containerPort

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_info(pod: Obj) -> PodInfo | None:
    """A pod that has an address of its own (not hostNetwork, not finished); None for the others."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ips = tuple(p["ip"] for p in status.get("podIPs") or [] if p.get("ip")) or \
        ((status["podIP"],) if status.get("podIP") else ())
    if not ips:
        return None
    ports: dict[tuple[str, str], int] = {}
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") and p.get("containerPort"):
                ports.setdefault((p["name"], p.get("protocol") or "TCP"), int(p["containerPort"]))
    meta = pod["metadata"]
    return PodInfo(meta.get("namespace", ""), meta["name"], spec.get("nodeName") or "",
                   dict(meta.get("labels") or {}), ips, ports)


@dataclasses.dataclass(frozen=True)
class PortSpec:
    """One entry of a rule's `ports`: a protocol and a port (number, name, or None for all) up to end_port."""

    protocol: str
    port: int | str | None
    end_port: int | None = None


@dataclasses.dataclass(frozen=True)
class IPBlock:
    cidr: IPNet
    excepts: tuple[IPNet, ...] = ()

    def contains(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return addr.version == self.cidr.version and addr in self.cidr and \
            not any(addr in e for e in self.excepts if e.version == addr.version)


@dataclasses.dataclass(frozen=True)
class Peers:
    """Who a rule lets in (ingress) or out to (egress): `everyone`, or pod addresses plus ipBlocks."""

    everyone: bool
    pods: tuple[PodInfo, ...] = ()
    blocks: tuple[IPBlock, ...] = ()


@dataclasses.dataclass(frozen=True)
class Rule:
    peers: Peers
    ports: tuple[PortSpec, ...]   # empty: all ports


@dataclasses.dataclass
class Isolation:
    """The rules that apply to one isolated pod in one direction (empty: deny all)."""

    rules: list[Rule] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class NodePolicy:
    """Everything the node enforces: per local pod, its ingress and egress isolation (absent: not isolated)."""

    ingress: dict[str, tuple[PodInfo, Isolation]] = dataclasses.field(default_factory=dict)
    egress: dict[str, tuple[PodInfo, Isolation]] = dataclasses.field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.ingress and not self.egress


def _selector(sel: Any) -> LabelSelector | None:
    try:
        return selector_from_label_selector(sel if isinstance(sel, dict) else ({} if sel is None else None))
    except (KeyError, TypeError):
        return None   # an operator we do not know selects nothing rather than everything


def _namespace_labels(ns: Obj) -> dict[str, str]:
    meta = ns["metadata"]
    return {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta["name"]}


def _peers(entries: list[Obj] | None, policy_ns: str, pods: list[PodInfo],
           namespaces: dict[str, dict[str, str]]) -> Peers:
    """The peers of one rule's `from`/`to`: absent or empty means every address."""
    if not entries:
        return Peers(everyone=True)
    selected: dict[str, PodInfo] = {}
    blocks: list[IPBlock] = []
    for peer in entries:
        block = peer.get("ipBlock")
        if block:
            try:
                blocks.append(IPBlock(ipaddress.ip_network(block["cidr"], strict=False),
                                      tuple(ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])))
            except (KeyError, ValueError):
                log.warning("ignoring an invalid ipBlock %r of a policy in %s", block, policy_ns)
            continue
        pod_sel = _selector(peer.get("podSelector")) if "podSelector" in peer else None
        ns_sel = _selector(peer.get("namespaceSelector")) if "namespaceSelector" in peer else None
        if ("podSelector" in peer and pod_sel is None) or ("namespaceSelector" in peer and ns_sel is None) or \
                (pod_sel is None and ns_sel is None):
            continue   # a selector we cannot evaluate selects nothing (never more than written)
        for pod in pods:
            if ns_sel is not None:
                if not ns_sel.matches(namespaces.get(pod.namespace, {"kubernetes.io/metadata.name": pod.namespace})):
                    continue
            elif pod.namespace != policy_ns:
                continue
            if pod_sel is not None and not pod_sel.matches(pod.labels):
                continue
            selected[pod.key] = pod
    return Peers(False, tuple(selected.values()), tuple(blocks))


def _ports(entries: list[Obj] | None) -> tuple[PortSpec, ...]:
    specs = []
    for p in entries or []:
        port = p.get("port")
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        specs.append(PortSpec(p.get("protocol") or "TCP", port, p.get("endPort")))
    return tuple(specs)


def compute(policies: Iterable[Obj], pods: Iterable[Obj], namespaces: Iterable[Obj], node_name: str) -> NodePolicy:
    """What this node must enforce, from the listers' contents: pure, so it is tested without a kernel."""
    infos = [i for i in (pod_info(p) for p in pods) if i is not None]
    ns_labels = {ns["metadata"]["name"]: _namespace_labels(ns) for ns in namespaces}
    local = [p for p in infos if p.node_name == node_name]
    result = NodePolicy()
    for policy in sorted(policies, key=object_key):
        spec = policy.get("spec") or {}
        policy_ns = policy["metadata"].get("namespace", "")
        selector = _selector(spec.get("podSelector") or {})
        targets = [p for p in local if p.namespace == policy_ns and selector is not None and selector.matches(p.labels)]
        if not targets:
            continue
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
        for direction, field, peer_field, into in (("Ingress", "ingress", "from", result.ingress),
                                                   ("Egress", "egress", "to", result.egress)):
            if direction not in types:
                continue
            rules = [Rule(_peers(r.get(peer_field), policy_ns, infos, ns_labels), _ports(r.get("ports")))
                     for r in spec.get(field) or []]
            for pod in targets:
                into.setdefault(pod.key, (pod, Isolation()))[1].rules.extend(rules)
    return result


# -- rendering: the model as one nftables transaction -----------------------------------------------------------

def _family(addr: str) -> str:
    return "ip6" if ":" in addr else "ip"


def _set(items: Iterable[str]) -> str:
    items = list(dict.fromkeys(items))
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _collapse(nets: Iterable[IPNet]) -> dict[str, list[str]]:
    """Networks per nft family, merged so that an anonymous interval set never gets overlapping elements."""
    by_version: dict[int, list[IPNet]] = {4: [], 6: []}
    for n in nets:
        by_version[n.version].append(n)
    out: dict[str, list[str]] = {}
    for version, family in ((4, "ip"), (6, "ip6")):
        merged = list(ipaddress.collapse_addresses(by_version[version]))  # type: ignore[type-var]
        if merged:
            out[family] = [str(n) if n.prefixlen != n.max_prefixlen else str(n.network_address) for n in merged]
    return out


def _address_matches(peers: Peers, field: str) -> list[str]:
    """nft match expressions, one per alternative, for the peers' addresses (`saddr` or `daddr`)."""
    if peers.everyone:
        return [""]
    matches = []
    ips = sorted({ip for p in peers.pods for ip in p.ips})   # host addresses: no intervals to merge
    for family in ("ip", "ip6"):
        items = [ip for ip in ips if _family(ip) == family]
        if items:
            matches.append(f"{family} {field} {_set(items)} ")
    for block in peers.blocks:
        family = "ip6" if block.cidr.version == 6 else "ip"
        text = f"{family} {field} {_set(_collapse([block.cidr])[family])} "
        excepts = _collapse(e for e in block.excepts if e.version == block.cidr.version).get(family)
        if excepts:
            text += f"{family} {field} != {_set(excepts)} "
        matches.append(text)
    return matches


def _port_text(spec: PortSpec, port: int) -> str:
    if spec.end_port and spec.end_port > port:
        return f"{port}-{spec.end_port}"
    return str(port)


def _port_matches(ports: tuple[PortSpec, ...], resolve: PodInfo | None) -> list[str] | None:
    """nft protocol/port matches of a rule's ports, named ports resolved on `resolve` (the destination pod);
    None when a port list exists but nothing in it can match."""
    if not ports:
        return [""]
    by_proto: dict[str, list[str] | None] = {}   # None: every port of the protocol
    for spec in ports:
        proto = PROTOCOLS.get(spec.protocol)
        if proto is None:
            continue
        if spec.port is None:
            by_proto[proto] = None
            continue
        if isinstance(spec.port, str):
            number = resolve.named_ports.get((spec.port, spec.protocol)) if resolve else None
            if number is None:
                continue
            text = str(number)
        else:
            text = _port_text(spec, spec.port)
        if proto not in by_proto or by_proto[proto] is not None:
            by_proto.setdefault(proto, [])
            by_proto[proto].append(text)  # type: ignore[union-attr]
    if not by_proto:
        return None
    return [f"meta l4proto {proto} " + (f"th dport {_set(nums)} " if nums is not None else "")
            for proto, nums in sorted(by_proto.items())]


def _ingress_lines(pod: PodInfo, iso: Isolation) -> list[str]:
    lines = []
    for rule in iso.rules:
        ports = _port_matches(rule.ports, pod)
        if ports is None:
            continue
        for addr in _address_matches(rule.peers, "saddr"):
            lines += [f"{addr}{p}return" for p in ports]
    return lines


def _egress_lines(iso: Isolation, all_pods: list[PodInfo]) -> list[str]:
    lines = []
    for rule in iso.rules:
        named = [s for s in rule.ports if isinstance(s.port, str)]
        plain = tuple(s for s in rule.ports if not isinstance(s.port, str))
        if plain or not rule.ports:
            ports = _port_matches(plain, None)
            if ports is not None:
                for addr in _address_matches(rule.peers, "daddr"):
                    lines += [f"{addr}{p}return" for p in ports]
        if named:
            # a named port means "that port of the destination pod": one match per destination pod that has it
            candidates = all_pods if rule.peers.everyone or rule.peers.blocks else list(rule.peers.pods)
            chosen = {p.key for p in rule.peers.pods}
            for pod in candidates:
                if not (rule.peers.everyone or pod.key in chosen
                        or any(b.contains(ip) for b in rule.peers.blocks for ip in pod.ips)):
                    continue
                ports = _port_matches(tuple(named), pod)
                if ports is None:
                    continue
                for ip in pod.ips:
                    lines += [f"{_family(ip)} daddr {ip} {p}return" for p in ports]
    return lines


def _chain_name(direction: str, pod: PodInfo) -> str:
    """`ingress_<ns>_<pod>` (`_` never occurs in either name); a hash past the kernel's 255 characters."""
    name = f"{direction}_{pod.namespace}_{pod.name}"
    if len(name) > 200:
        name = f"{direction}_{hashlib.sha256(pod.key.encode()).hexdigest()[:16]}"
    return name


def render(policy: NodePolicy, table: str, all_pods: list[PodInfo] | None = None) -> str:
    """The nft script that replaces `table` with `policy`, atomically (create, delete, re-create in one file)."""
    pods = all_pods or []
    out = [f"table inet {table} {{}}", f"delete table inet {table}"]
    if policy.empty:
        return "\n".join(out) + "\n"
    out.append(f"table inet {table} {{")
    maps: dict[tuple[str, str], list[str]] = {}
    for direction, entries in (("ingress", policy.ingress), ("egress", policy.egress)):
        for key in sorted(entries):
            pod, iso = entries[key]
            chain = _chain_name(direction, pod)
            body = _ingress_lines(pod, iso) if direction == "ingress" else _egress_lines(iso, pods)
            out.append(f'\tchain {chain} {{\n\t\tcomment "{direction} of {pod.key}"')
            out += [f"\t\t{line}" for line in body]
            out.append("\t\tdrop\n\t}")
            for ip in pod.ips:
                maps.setdefault((direction, _family(ip)), []).append(f"{ip} : jump {chain}")
    for (direction, family), elements in sorted(maps.items()):
        addr_type = "ipv6_addr" if family == "ip6" else "ipv4_addr"
        out.append(f"\tmap {direction}-{family} {{\n\t\ttype {addr_type} : verdict\n"
                   f"\t\telements = {{ {', '.join(elements)} }}\n\t}}")
    dispatch_egress = [f"\t\t{family} saddr vmap @egress-{family}" for (d, family) in sorted(maps) if d == "egress"]
    dispatch_ingress = [f"\t\t{family} daddr vmap @ingress-{family}" for (d, family) in sorted(maps) if d == "ingress"]
    out.append("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n"
               "\t\tct state established,related accept")
    out += dispatch_egress + dispatch_ingress
    out.append("\t}")
    # pods reaching the node itself are egress too; the node reaching its pods (output hook) is never filtered
    out.append("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
               "\t\tct state established,related accept")
    out += dispatch_egress
    out.append("\t}\n}")
    return "\n".join(out) + "\n"


# -- the kernel side ----------------------------------------------------------------------------------------------

async def nft(script: str) -> None:
    """Apply one nft script as one transaction (`nft -f -`); raises with nft's message if the kernel refuses it."""
    proc = await asyncio.create_subprocess_exec("nft", "-f", "-", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise RuntimeError(f"nft -f failed ({proc.returncode}): {err.decode(errors='replace').strip()}")


def _ensure_bridge_netfilter() -> None:
    """Bridged pod-to-pod packets reach the inet forward hook only with bridge-nf-call-iptables on."""
    try:
        if BRIDGE_NF_SYSCTL.read_text().strip() != "1":
            BRIDGE_NF_SYSCTL.write_text("1\n")
            log.info("turned on %s: bridged pod traffic must pass the forward hook", BRIDGE_NF_SYSCTL)
    except OSError as e:
        log.warning("cannot read or set %s (%s): pods on one bridge may bypass policies", BRIDGE_NF_SYSCTL, e)


# -- the controller -------------------------------------------------------------------------------------------------

class NetworkPolicyController(Controller):
    """Renders the node's policy state and applies it when it changed; any watched change triggers one sync."""

    name = "network-policy"
    workers = 1

    def __init__(self, client: Client, informers: InformerFactory, node_name: str, table: str | None = None) -> None:
        super().__init__(client, informers)
        self.node_name = node_name
        self.table = table or table_name(node_name)
        self.policies = informers.informer(resource("networkpolicies.networking.k8s.io"))
        self.pods = informers.informer(resource("pods"))
        self.namespaces = informers.informer(resource("namespaces"))
        self.applied: str | None = None
        self.syncs = 0
        kick = lambda *_: self.queue.add(SYNC_KEY)
        for inf in (self.policies, self.pods, self.namespaces):
            inf.add_handler(kick, kick, kick)

    def desired(self) -> str:
        """The nft script of the listers' current state."""
        policy = compute(self.policies.store.list(), self.pods.store.list(), self.namespaces.store.list(),
                         self.node_name)
        pods = [i for i in (pod_info(p) for p in self.pods.store.list()) if i is not None] if policy.egress else []
        return render(policy, self.table, pods)

    async def sync(self, key: str) -> None:
        script = self.desired()
        if script == self.applied:
            return
        await nft(script)
        self.applied = script
        self.syncs += 1
        log.debug("applied %s (%d lines)", self.table, script.count("\n"))

    async def cleanup(self) -> None:
        """Remove the table (shutdown): nothing of this node's policies stays in the kernel."""
        await nft(f"table inet {self.table} {{}}\ndelete table inet {self.table}\n")
        self.applied = None


async def _resync(controller: NetworkPolicyController, period: float) -> None:
    """Re-apply the table every `period` seconds even without changes: a rule set someone flushed comes back."""
    while True:
        await asyncio.sleep(period)
        controller.applied = None
        controller.queue.add(SYNC_KEY)


async def run(kubeconfig: str, node_name: str, table: str | None = None, resync_period: float = 60.0) -> None:
    """Enforce until cancelled, then remove the table."""
    client = Client.from_kubeconfig(kubeconfig, user_agent="kates-network-policy")
    informers = InformerFactory(client)
    controller = NetworkPolicyController(client, informers, node_name, table)
    await asyncio.to_thread(_ensure_bridge_netfilter)
    try:
        informers.start()
        await informers.wait_synced()
        controller.queue.add(SYNC_KEY)
        log.info("enforcing NetworkPolicies for node %s in table inet %s", node_name, controller.table)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(controller.run(), name="network-policy-controller")
            tasks.create_task(_resync(controller, resync_period), name="network-policy-resync")
    finally:
        try:
            await controller.cleanup()
        except Exception as e:  # noqa: BLE001 (shutdown goes on; the message says what is left)
            log.warning("could not remove table inet %s: %s", controller.table, e)
        await informers.stop()
        await client.close()


def main(kubeconfig: str, node_name: str, table: str | None = None) -> int:
    """`kates network-policy`: enforce until SIGTERM/SIGINT, then remove the rules. Without root or nft there is
    nothing to enforce with: say so and idle (the supervisor would otherwise restart it forever)."""
    async def go() -> None:
        stop = stop_event()
        if os.geteuid() != 0 or not shutil.which("nft"):
            log.warning("NetworkPolicies are not enforced on %s: needs root and nft", node_name)
            await stop.wait()
            return
        task = asyncio.create_task(run(kubeconfig, node_name, table), name="network-policy")
        waiter = asyncio.create_task(stop.wait(), name="network-policy-stop")
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    asyncio.run(go())
    return 0
