"""kube-proxy benchmarks (issue 5): the data path and the control path.

1. Added latency: the same client opens a connection, sends a request and reads the answer of the same busybox httpd
   pod, alternately through the Service's ClusterIP (nft DNAT) and straight to the pod IP, in one run; reports p50
   of each, the added p50 (target ≤ 50 µs) and the ratio. Needs root and containerd: it starts a real node (the
   tests' `Node`: `kates server` with its agent and its proxy) in a temporary directory.
2. Rule sync: 1,000 services × 10 endpoints programmed by the nftables backend into a table of its own (target
   ≤ 2 s), then one endpoint change applied (target ≤ 100 ms, p50 of repeated changes); `--iptables` adds the
   iptables backend's figures. Then the same through the Proxier (Service and EndpointSlice objects in its
   informer caches → desired state → transaction), one EndpointSlice changed at a time. No cluster needed.
Usage: python bench/bench_proxy.py [--requests 2000] [--services 1000] [--endpoints 10] [--skip-latency] [--iptables]
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "kubelet"))

from kates.proxy.model import Endpoint, ServicePort  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


# -- rule sync ---------------------------------------------------------------------------------------------------
def synthetic_ports(services: int, endpoints: int, changed: int = -1) -> list[ServicePort]:
    """`services` ClusterIP services of `endpoints` endpoints each; service `changed` has its last endpoint moved."""
    ports = []
    for i in range(services):
        eps = tuple(Endpoint(f"10.{200 + (i * endpoints + j) // 65536}.{((i * endpoints + j) // 256) % 256}."
                             f"{(i * endpoints + j) % 256}", 8080) for j in range(endpoints))
        if i == changed:
            eps = eps[:-1] + (Endpoint("10.250.0.1", 8080),)
        ports.append(ServicePort("bench", f"svc-{i}", "http", "TCP", f"10.111.{i // 250}.{i % 250 + 2}", 80,
                                 node_port=0, cluster_endpoints=eps, local_endpoints=eps))
    return ports


async def bench_sync(kind: str, services: int, endpoints: int, changes: int) -> dict[str, float]:
    if kind == "nftables":
        from kates.proxy.nftables import NftablesBackend
        backend = NftablesBackend(table="kates-proxy-bench", cluster_cidr="10.244.0.0/16")
    else:
        from kates.proxy.iptables import IptablesBackend
        backend = IptablesBackend(chain_prefix="kates-proxy-bench", cluster_cidr="10.244.0.0/16")
    base = synthetic_ports(services, endpoints)
    try:
        t0 = time.perf_counter()
        await backend.sync(base)
        full = time.perf_counter() - t0
        times = []
        for n in range(changes):
            ports = synthetic_ports(services, endpoints, changed=n % services) if n % 2 == 0 else base
            t0 = time.perf_counter()
            await backend.sync(ports)
            times.append(time.perf_counter() - t0)
    finally:
        await backend.cleanup()
    return {"full_s": full, "change_p50_ms": statistics.median(times) * 1000, "change_max_ms": max(times) * 1000}


def _objects(i: int, endpoints: int, moved: bool = False, rv: int = 1) -> tuple[dict, dict]:
    svc = {"metadata": {"namespace": "bench", "name": f"svc-{i}", "resourceVersion": "1"},
           "spec": {"type": "ClusterIP", "clusterIP": f"10.111.{i // 250}.{i % 250 + 2}",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
    ips = [f"10.{200 + (i * endpoints + j) // 65536}.{((i * endpoints + j) // 256) % 256}.{(i * endpoints + j) % 256}"
           for j in range(endpoints)]
    if moved:
        ips[-1] = "10.250.0.1"
    eps = {"metadata": {"namespace": "bench", "name": f"svc-{i}-abcde", "resourceVersion": str(rv),
                        "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
           "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "bench"} for ip in ips]}
    return svc, eps


async def bench_proxier(services: int, endpoints: int, changes: int) -> dict[str, float]:
    """The whole control path short of the watch: informer caches → Proxier.sync → nft transaction."""
    import ssl
    from kates.client.informer import InformerFactory
    from kates.client.rest import Client, Connection
    from kates.proxy.nftables import NftablesBackend
    from kates.proxy.proxier import Proxier
    client = Client(Connection("https://127.0.0.1:1", ssl.create_default_context()))
    backend = NftablesBackend(table="kates-proxy-bench", cluster_cidr="10.244.0.0/16")
    proxier = Proxier(client, InformerFactory(client), backend, "bench", min_sync_period=0)
    for i in range(services):
        svc, eps = _objects(i, endpoints)
        proxier.services.store.put(f"bench/svc-{i}", svc)
        proxier.slices.store.put(f"bench/svc-{i}-abcde", eps)
    try:
        t0 = time.perf_counter()
        await proxier.sync("sync")
        full = time.perf_counter() - t0
        times = []
        for n in range(changes):
            _, eps = _objects(n % services, endpoints, moved=n % 2 == 0, rv=n + 2)
            proxier.slices.store.put(f"bench/svc-{n % services}-abcde", eps)
            t0 = time.perf_counter()
            await proxier.sync("sync")
            times.append(time.perf_counter() - t0)
    finally:
        await backend.cleanup()
        await client.close()
    return {"full_s": full, "change_p50_ms": statistics.median(times) * 1000, "change_max_ms": max(times) * 1000}


# -- added latency -----------------------------------------------------------------------------------------------
def one_request(ip: str, port: int) -> float:
    t0 = time.perf_counter()
    with socket.create_connection((ip, port), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while s.recv(4096):
            pass
    return time.perf_counter() - t0


def bench_latency(requests: int) -> dict[str, float]:
    from harness import Kubectl
    from nodeutil import BUSYBOX, Node, _drain_runtime, _bridge, node_ready, wait_for
    node = Node(Path(tempfile.mkdtemp(prefix="kates-bench-proxy-")))
    node.start()
    kubectl = Kubectl(node.kubeconfig)
    try:
        wait_for("the node", lambda: node_ready(kubectl, node.node_name), timeout=60)
        wait_for("the default namespace's service account", lambda: kubectl.run(
            "get", "sa", "default", check=False).returncode == 0, timeout=30)
        kubectl.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  containers:
  - {{name: web, image: {BUSYBOX}, command: [sh, -c, "echo hi > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
""")
        kubectl.run("wait", "--for=condition=Ready", "pod/web", "--timeout=60s")
        pod_ip = kubectl.json("get", "pod", "web")["status"]["podIP"]
        cluster_ip = kubectl.json("get", "svc", "web")["spec"]["clusterIP"]

        def through_service() -> bool:
            try:
                one_request(cluster_ip, 80)
                return True
            except OSError:
                return False
        wait_for("the service to answer", through_service, timeout=20)
        for _ in range(200):   # warm up both paths
            one_request(pod_ip, 8080)
            one_request(cluster_ip, 80)
        direct, via = [], []
        for _ in range(requests):
            direct.append(one_request(pod_ip, 8080))
            via.append(one_request(cluster_ip, 80))
        return {"direct_p50_us": pct(direct, 0.5) * 1e6, "service_p50_us": pct(via, 0.5) * 1e6,
                "direct_p99_us": pct(direct, 0.99) * 1e6, "service_p99_us": pct(via, 0.99) * 1e6,
                "added_p50_us": (pct(via, 0.5) - pct(direct, 0.5)) * 1e6, "ratio": pct(via, 0.5) / pct(direct, 0.5)}
    finally:
        kubectl.run("delete", "pod", "web", "--grace-period=1", check=False)
        asyncio.run(_drain_runtime(node.containerd_socket, timeout=30))
        node.stop()
        subprocess.run(["ip", "link", "delete", _bridge(node.agent_dir)], capture_output=True, check=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--endpoints", type=int, default=10)
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--iptables", action="store_true", help="also measure the iptables backend's syncs")
    args = p.parse_args()
    for kind in ["nftables"] + (["iptables"] if args.iptables else []):
        r = asyncio.run(bench_sync(kind, args.services, args.endpoints, args.changes))
        print(f"{kind}: {args.services} services x {args.endpoints} endpoints programmed in {r['full_s']:.2f} s; "
              f"one endpoint change: p50 {r['change_p50_ms']:.1f} ms, max {r['change_max_ms']:.1f} ms "
              f"({args.changes} changes)")
    r = asyncio.run(bench_proxier(args.services, args.endpoints, args.changes))
    print(f"proxier (caches -> rules): {args.services} services x {args.endpoints} endpoints in {r['full_s']:.2f} s; "
          f"one EndpointSlice change: p50 {r['change_p50_ms']:.1f} ms, max {r['change_max_ms']:.1f} ms")
    if not args.skip_latency:
        r = bench_latency(args.requests)
        print(f"connect+request+answer, {args.requests} each, same client and pod: direct p50 "
              f"{r['direct_p50_us']:.0f} us (p99 {r['direct_p99_us']:.0f}), via ClusterIP p50 "
              f"{r['service_p50_us']:.0f} us (p99 {r['service_p99_us']:.0f}); added p50 {r['added_p50_us']:.0f} us, "
              f"ratio {r['ratio']:.3f}")


if __name__ == "__main__":
    main()
