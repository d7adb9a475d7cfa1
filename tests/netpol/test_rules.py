"""From NetworkPolicies to nftables without a cluster: which pods are isolated, what their chains allow, and that
the kernel accepts the script (`nft -c`, and one real apply of a large rule set into a table of its own, on
addresses of the benchmarking range 198.18.0.0/15 that no pod here uses)."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from typing import Any

import pytest

from kates.proxy.networkpolicy import compute, nft, pod_info, render

NODE = "n1"


def pod(ns: str, name: str, ip: str, labels: dict[str, str] | None = None, node: str = NODE,
        ports: tuple[tuple[str, int], ...] = (), **status: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels or {}},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports]}]},
            "status": {"phase": "Running", "podIP": ip, **status}}


def policy(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


NAMESPACES = [{"metadata": {"name": "a"}}, {"metadata": {"name": "b", "labels": {"team": "x"}}}]
PODS = [pod("a", "web", "10.244.1.2", {"app": "web"}, ports=(("http", 8080),)),
        pod("a", "client", "10.244.1.3", {"role": "client"}),
        pod("b", "remote", "10.244.2.3", {"role": "client"}, node="n2", ports=(("http", 80),)),
        pod("a", "done", "10.244.1.9", {"role": "client"}, phase="Succeeded")]


def chain(script: str, name: str) -> list[str]:
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"chain {name} "))
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "}")
    return [line.strip() for line in lines[start + 2:end]]


def test_no_policy_means_no_table() -> None:
    result = compute([], PODS, NAMESPACES, NODE)
    assert result.empty
    assert render(result, "t") == "table inet t {}\ndelete table inet t\n"


def test_policies_isolate_only_selected_local_pods_in_their_directions() -> None:
    pols = [policy("a", "p", podSelector={"matchLabels": {"app": "web"}}, policyTypes=["Ingress"]),
            policy("b", "q", podSelector={}, policyTypes=["Egress"])]
    result = compute(pols, PODS, NAMESPACES, NODE)
    assert set(result.ingress) == {"a/web"} and result.egress == {}, "b/remote runs on another node"
    assert chain(render(result, "t"), "ingress_a_web") == ["drop"]


def test_selectors_ports_and_ip_blocks() -> None:
    pols = [policy("a", "p", podSelector={"matchLabels": {"app": "web"}}, policyTypes=["Ingress"], ingress=[{
        "from": [{"podSelector": {"matchLabels": {"role": "client"}}},
                 {"namespaceSelector": {"matchLabels": {"team": "x"}}},
                 {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25", "192.0.2.128/26"]}}],
        "ports": [{"protocol": "TCP", "port": "http"}, {"protocol": "UDP", "port": 53, "endPort": 60},
                  {"protocol": "TCP", "port": "missing"}]}])]
    assert chain(render(compute(pols, PODS, NAMESPACES, NODE), "t"), "ingress_a_web") == [
        "ip saddr { 10.244.1.3, 10.244.2.3 } meta l4proto tcp th dport 8080 return",
        "ip saddr { 10.244.1.3, 10.244.2.3 } meta l4proto udp th dport 53-60 return",
        "ip saddr 192.0.2.0/24 ip saddr != 192.0.2.128/25 meta l4proto tcp th dport 8080 return",
        "ip saddr 192.0.2.0/24 ip saddr != 192.0.2.128/25 meta l4proto udp th dport 53-60 return",
        "drop"], "a finished pod is no peer; overlapping excepts merge; an unknown named port matches nothing"


def test_both_selectors_in_one_peer_must_both_match() -> None:
    pols = [policy("a", "p", podSelector={"matchLabels": {"app": "web"}}, ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}},
         "podSelector": {"matchLabels": {"role": "client"}}}]}])]
    assert chain(render(compute(pols, PODS, NAMESPACES, NODE), "t"), "ingress_a_web") == [
        "ip saddr 10.244.2.3 return", "drop"]


def test_egress_named_ports_resolve_on_each_destination() -> None:
    pols = [policy("a", "p", podSelector={"matchLabels": {"role": "client"}}, policyTypes=["Egress"],
                   egress=[{"ports": [{"protocol": "TCP", "port": "http"}]},
                           {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "UDP", "port": 53}]}])]
    result = compute(pols, PODS, NAMESPACES, NODE)
    infos = [i for i in (pod_info(p) for p in PODS) if i is not None]
    assert chain(render(result, "t", infos), "egress_a_client") == [
        "ip daddr 10.244.1.2 meta l4proto tcp th dport 8080 return",
        "ip daddr 10.244.2.3 meta l4proto tcp th dport 80 return",
        "ip daddr 0.0.0.0/0 meta l4proto udp th dport 53 return",
        "drop"]


needs_nft = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nft")


@needs_nft
def test_the_kernel_accepts_the_script() -> None:
    pols = [policy("a", "p", podSelector={}, policyTypes=["Ingress", "Egress"],
                   ingress=[{"from": [{"podSelector": {}},
                                      {"ipBlock": {"cidr": "fd00::/64", "except": ["fd00::1/128"]}}],
                             "ports": [{"protocol": "SCTP", "port": 9}, {"protocol": "TCP"}]}],
                   egress=[{"to": [{"namespaceSelector": {}}]}])]
    script = render(compute(pols, PODS, NAMESPACES, NODE), "kates-netpol-check")
    proc = subprocess.run(["nft", "-c", "-f", "-"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@needs_nft
async def test_a_large_rule_set_applies_in_one_transaction_and_goes_away() -> None:
    """200 local pods, 20 policies: rendering and one `nft -f`, timed (printed for the README)."""
    table = f"kates-netpol-bench-{uuid.uuid4().hex[:6]}"
    pods = [pod(f"ns{i % 20}", f"p{i}", f"198.18.{i // 250}.{i % 250 + 1}", {"app": f"a{i % 10}", "tier": "x"},
                ports=(("http", 8080),)) for i in range(200)]
    namespaces = [{"metadata": {"name": f"ns{i}", "labels": {"team": str(i % 2)}}} for i in range(20)]
    pols = [policy(f"ns{i}", "p", podSelector={"matchLabels": {"tier": "x"}}, policyTypes=["Ingress", "Egress"],
                   ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "a1"}}},
                                      {"namespaceSelector": {"matchLabels": {"team": "1"}}}],
                             "ports": [{"port": "http"}, {"port": 9000, "endPort": 9100}]}],
                   egress=[{"to": [{"podSelector": {}}], "ports": [{"port": 8080}]}]) for i in range(20)]
    started = time.perf_counter()
    infos = [i for i in (pod_info(p) for p in pods) if i is not None]
    script = render(compute(pols, pods, namespaces, NODE), table, infos)
    rendered = time.perf_counter()
    try:
        await nft(script)
        applied = time.perf_counter()
        print(f"\n200 pods x 20 policies: render {1000 * (rendered - started):.1f} ms, "
              f"nft -f {1000 * (applied - rendered):.1f} ms, {script.count(chr(10))} lines")
        listing = await asyncio.to_thread(subprocess.run, ["nft", "list", "table", "inet", table],
                                          capture_output=True, text=True)
        assert listing.stdout.count("chain ingress_") == 200 and listing.stdout.count("chain egress_") == 200
    finally:
        await nft(render(compute([], [], [], NODE), table))
    assert subprocess.run(["nft", "list", "table", "inet", table], capture_output=True).returncode != 0
