"""The iptables data plane, for hosts where nftables is not the choice: `iptables-restore --noflush` into KATES-*
chains of the nat and filter tables, one restore per table per sync (each restore is one atomic commit).

Same semantics as the nftables backend, in iptables vocabulary: a KATES-…-SERVICES chain matches each service address
and port (a linear list, which is why nftables' maps are the default), `statistic --mode random` picks endpoints,
the `recent` module remembers ClientIP affinity, REJECT in the filter table refuses services without endpoints, and a
mark asks POSTROUTING to masquerade. Chain names are limited to 28 characters, so they carry hashes; the hooks in
the built-in chains carry a comment naming this proxy's prefix, which is also how cleanup finds them.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from .model import Endpoint, ServicePort, short_hash

log = logging.getLogger(__name__)

MASQ_MARK = "0x4000"


class IptablesError(RuntimeError):
    """iptables-restore refused a transaction (nothing of it was applied)."""


async def _run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE if stdin is not None else None,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


@dataclasses.dataclass
class _Table:
    chains: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


class IptablesBackend:
    name = "iptables"

    def __init__(self, chain_prefix: str = "kates-proxy", service_cidr: str = "10.96.0.0/12",
                 cluster_cidr: str = "") -> None:
        self.label = chain_prefix
        self.tag = "KATES-" + short_hash(chain_prefix, 4)      # KATES-XXXX-…, within 28 characters
        self.service_cidr = service_cidr
        self.cluster_cidr = cluster_cidr
        self.local_pod_cidr = ""
        self._state: dict[str, _Table] | None = None
        self.last_sync_seconds = 0.0

    def set_local_pod_cidr(self, cidr: str) -> None:
        """This node's pod CIDR: pods of other nodes (other clusters on this machine) are not ours to translate."""
        self.local_pod_cidr = cidr

    # chain names (KATES-XXXX-SERVICES-BODY is the longest: 24 characters)
    def _c(self, kind: str, text: str = "") -> str:
        return f"{self.tag}-{kind}" + (f"-{short_hash(text, 10)}" if text else "")

    @property
    def hooks(self) -> list[tuple[str, str, str]]:
        """(table, built-in chain, our chain) jumps installed once."""
        return [("nat", "PREROUTING", self._c("SERVICES")), ("nat", "OUTPUT", self._c("SERVICES")),
                ("nat", "POSTROUTING", self._c("POSTROUTING")), ("filter", "INPUT", self._c("CHECK")),
                ("filter", "FORWARD", self._c("CHECK")), ("filter", "OUTPUT", self._c("CHECK"))]

    def _hook_rule(self, chain: str, target: str) -> list[str]:
        extra = ["-m", "conntrack", "--ctstate", "NEW"] if target.endswith("-CHECK") else []
        return [chain, *extra, "-m", "comment", "--comment", f"kates-proxy {self.label}", "-j", target]

    def _balance(self, sp: ServicePort, eps: tuple[Endpoint, ...]) -> list[str]:
        if not eps:
            return ["-j DROP"]
        rules = []
        if sp.affinity_timeout:
            rules += [f"-m recent --name {self._sep(sp, ep)} --rcheck --seconds {sp.affinity_timeout} --reap "
                      f"-j {self._sep(sp, ep)}" for ep in eps]
        n = len(eps)
        for i, ep in enumerate(eps):
            prob = "" if i == n - 1 else f"-m statistic --mode random --probability {1 / (n - i):.10f} "
            rules.append(f"{prob}-j {self._sep(sp, ep)}")
        return rules

    def _sep(self, sp: ServicePort, ep: Endpoint) -> str:
        return self._c("SEP", f"{sp.key}/{ep.ip}/{ep.port}")

    def desired(self, ports: list[ServicePort]) -> dict[str, _Table]:
        nat: dict[str, list[str]] = {self._c("SERVICES"): [], self._c("NODEPORTS"): [],
                                     self._c("MARK-MASQ"): [f"-j MARK --or-mark {MASQ_MARK}"],
                                     self._c("POSTROUTING"): [f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
                                                              f"-j MARK --xor-mark {MASQ_MARK}",
                                                              "-j MASQUERADE --random-fully"]}
        check: list[str] = []
        services, nodeports, masq = nat[self._c("SERVICES")], nat[self._c("NODEPORTS")], self._c("MARK-MASQ")
        for sp in ports:
            if not sp.cluster_ip:
                continue
            p = sp.protocol.lower()
            addresses = [*sp.external_ips, *sp.load_balancer_ips]
            if not sp.any_endpoints:
                # a TCP reset reaches a local client at once; an ICMP error for a locally routed address may not
                reject = "REJECT --reject-with tcp-reset" if p == "tcp" else "REJECT"
                for ip in (sp.cluster_ip, *addresses):
                    check.append(f"-d {ip}/32 -p {p} --dport {sp.port} -j {reject}")
                if sp.node_port:
                    check.append(f"-m addrtype --dst-type LOCAL -p {p} --dport {sp.node_port} -j {reject}")
                continue
            svc, ext = self._c("SVC", sp.key), self._c("EXT", sp.key)
            rules = [f"-d {sp.cluster_ip}/32 ! -s {self.cluster_cidr} -j {masq}"] if self.cluster_cidr else []
            nat[svc] = rules + self._balance(sp, sp.internal_endpoints)
            services.append(f"-d {sp.cluster_ip}/32 -p {p} --dport {sp.port} -j {svc}")
            if sp.has_external:
                if sp.external_local:
                    nat[ext] = [f"-m addrtype --src-type LOCAL -j {masq}", f"-m addrtype --src-type LOCAL -j {svc}",
                                *self._balance(sp, sp.local_endpoints)]
                else:
                    nat[ext] = [f"-j {masq}", f"-j {svc}"]
                services += [f"-d {ip}/32 -p {p} --dport {sp.port} -j {ext}" for ip in addresses]
                if sp.node_port:
                    nodeports.append(f"-p {p} --dport {sp.node_port} -j {ext}")
            for ep in {*sp.internal_endpoints, *(sp.local_endpoints if sp.external_local else ())}:
                rules = [f"-s {ep.ip}/32 -j {masq}"]
                if sp.affinity_timeout:
                    rules.append(f"-p {p} -m recent --name {self._sep(sp, ep)} --set")
                rules.append(f"-p {p} -j DNAT --to-destination {ep.ip}:{ep.port}")
                nat[self._sep(sp, ep)] = rules
        services.append(f"-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j {self._c('NODEPORTS')}")
        filters = {self._c("CHECK"): check}
        if self.cluster_cidr and self.local_pod_cidr:
            # only this node's pods and sources outside the cluster CIDR (one -s per rule: a gate of two rules)
            for table, entry in ((nat, self._c("SERVICES")), (filters, self._c("CHECK"))):
                table[entry + "-BODY"] = table[entry]
                table[entry] = [f"-s {self.local_pod_cidr} -j {entry}-BODY",
                                f"! -s {self.cluster_cidr} -j {entry}-BODY"]
        return {"nat": _Table({k: tuple(v) for k, v in nat.items()}),
                "filter": _Table({k: tuple(v) for k, v in filters.items()})}

    def restore_input(self, table: str, old: _Table | None, want: _Table) -> str:
        have = old.chains if old else {}
        changed = [c for c, rules in want.chains.items() if have.get(c) != rules]
        stale = [c for c in have if c not in want.chains]
        if not changed and not stale:
            return ""
        lines = [f"*{table}"]
        lines += [f":{c} - [0:0]" for c in (*changed, *stale)]   # declaring a chain flushes it
        for c in changed:
            lines += [f"-A {c} {r}" for r in want.chains[c]]
        lines += [f"-X {c}" for c in stale]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    async def _ensure_hooks(self) -> None:
        for table, chain, target in self.hooks:
            rule = self._hook_rule(chain, target)
            code, _, _ = await _run("iptables", "-w", "-t", table, "-C", *rule)
            if code != 0:
                code, _, err = await _run("iptables", "-w", "-t", table, "-I", *rule)
                if code != 0:
                    raise IptablesError(f"hooking {table}/{chain}: {err.strip()}")

    async def sync(self, ports: list[ServicePort]) -> None:
        started = time.monotonic()
        want = self.desired(ports)
        first = self._state is None
        try:
            for table in ("nat", "filter"):
                old = None if first else self._state[table]  # type: ignore[index]
                text = self.restore_input(table, old, want[table])
                if text:
                    code, _, err = await _run("iptables-restore", "-w", "--noflush", stdin=text)
                    if code != 0:
                        raise IptablesError(err.strip()[:2000])
            if first:
                await self._ensure_hooks()
        except IptablesError:
            self._state = None
            raise
        self._state = want
        self.last_sync_seconds = time.monotonic() - started

    async def cleanup(self) -> None:
        """Remove the hooks, then every KATES chain of this proxy (found in iptables-save, not only remembered)."""
        self._state = None
        for table, chain, target in self.hooks:
            while (await _run("iptables", "-w", "-t", table, "-D", *self._hook_rule(chain, target)))[0] == 0:
                pass
        for table in ("nat", "filter"):
            _, saved, _ = await _run("iptables-save", "-t", table)
            ours = [line[1:].split()[0] for line in saved.splitlines() if line.startswith(f":{self.tag}-")]
            if ours:
                text = "\n".join([f"*{table}", *[f":{c} - [0:0]" for c in ours], *[f"-X {c}" for c in ours],
                                  "COMMIT"]) + "\n"
                code, _, err = await _run("iptables-restore", "-w", "--noflush", stdin=text)
                if code != 0:
                    log.warning("removing %s chains: %s", table, err.strip())
