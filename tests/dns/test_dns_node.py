"""End to end on a real node: a pod's resolv.conf points at 10.96.0.10, kube-proxy carries that to `kates dns` on the
node address, and names resolve through the search path, as a Deployment's clients do.

busybox's nslookup sends the name as given (no search path): it asks fully qualified names. The search path is
exercised by the pod's libc resolver (getaddrinfo), through busybox ping, which prints the address it resolved."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
from nodeutil import BUSYBOX, wait_for

pytestmark = [pytest.mark.node]


def exec_in(kubectl, ns: str, script: str, check: bool = False):
    return kubectl.run("exec", "client", "-n", ns, "--", "sh", "-c", script, check=check)


def resolved_by_libc(kubectl, ns: str, name: str) -> str:
    """The address getaddrinfo gave for `name` in the pod (ping prints it before its first probe)."""
    out = exec_in(kubectl, ns, f"timeout 2 ping -c 1 -W 1 {name} 2>&1").stdout
    m = re.search(r"PING \S+ \(([0-9.]+)\)", out)
    return m.group(1) if m else ""


def nslookup(kubectl, ns: str, name: str, server: str = "") -> str:
    proc = exec_in(kubectl, ns, f"timeout 5 nslookup {name} {server}")
    return proc.stdout if proc.returncode == 0 else ""


def test_pod_resolves_services_through_its_resolv_conf(node, node_kubectl, node_ns):
    k = node_kubectl
    k.apply(json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": node_ns},
                        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}))
    web_ip = k.json("get", "svc", "web", "-n", node_ns)["spec"]["clusterIP"]
    api_ip = k.json("get", "svc", "kubernetes", "-n", "default")["spec"]["clusterIP"]
    slices = wait_for("kube-dns to be published", lambda: k.json(
        "get", "endpointslices", "-n", "kube-system", "-l", "kubernetes.io/service-name=kube-dns")["items"],
        timeout=20)
    address, port = slices[0]["endpoints"][0]["addresses"][0], slices[0]["ports"][0]["port"]
    internal = [a["address"] for a in k.json("get", "node", node.node_name)["status"]["addresses"]
                if a["type"] == "InternalIP"]
    assert address in internal, "the DNS server listens on the node address"
    k.run("run", "client", f"--image={BUSYBOX}", "-n", node_ns, "--", "sleep", "3600")
    k.run("wait", "--for=condition=Ready", "pod/client", "-n", node_ns, "--timeout=60s")
    resolv = exec_in(k, node_ns, "cat /etc/resolv.conf", check=True).stdout
    assert "nameserver 10.96.0.10" in resolv
    assert f"search {node_ns}.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "ndots:5" in resolv
    # the DNS server itself, straight from the pod through the bridge gateway (no kube-proxy involved)
    direct = nslookup(k, node_ns, f"-port={port} web.{node_ns}.svc.cluster.local", address)
    assert web_ip in direct, direct
    # through the Service address 10.96.0.10 (kube-proxy's DNAT)
    try:
        out = wait_for("web to resolve through 10.96.0.10", lambda: web_ip in (o := nslookup(
            k, node_ns, f"web.{node_ns}.svc.cluster.local")) and o, timeout=20)
    except AssertionError as e:
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.split()
        foreign = [t for t in tables if t.startswith("kates-proxy") and not t.endswith(node.node_name)]
        raise AssertionError(f"{e}; kube-proxy tables of other clusters on this machine, which may DNAT "
                             f"10.96.0.10 to their own DNS first: {foreign or 'none'}") from None
    assert "10.96.0.10" in out
    # the search path: short names as applications write them
    assert wait_for("kubernetes.default through the search path",
                    lambda: resolved_by_libc(k, node_ns, "kubernetes.default"), timeout=10) == api_ip
    assert resolved_by_libc(k, node_ns, "web") == web_ip
    assert resolved_by_libc(k, node_ns, f"web.{node_ns}") == web_ip
    # a missing name (in the cluster zone: every candidate of the search path stays on this machine)
    assert resolved_by_libc(k, node_ns, "nope-nothing.svc.cluster.local") == ""
