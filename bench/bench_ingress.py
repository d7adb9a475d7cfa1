"""Ingress throughput: requests/s and p99 through the kates Ingress controller vs straight to the pod, same run.

Starts a real node (`kates server` with its agent on containerd, as tests/kubelet/nodeutil.py does, without the
server's own ingress child so no port is contended), one busybox httpd pod behind a Service, an Ingress for it
and a `kates ingress` process on free ports; then `wrk` (Debian package) alternately against the pod IP and
through the controller with the Ingress host, and prints each round and the throughput ratio (issue 5 target:
≥ 50% of direct). Usage: python bench/bench_ingress.py [--duration 5] [--connections 16] [--rounds 2] [--workers 1]

Reading the figures: busybox httpd answers `Connection: close`, so each request costs a new TCP connection and a
fork in the pod. wrk starts its latency clock after connecting, so the direct p99 leaves that out; through the
ingress the backend connection is part of every request. busybox listens with a backlog of 9: at 16 connections
SYNs get dropped (1 s kernel resend) and the proxy's fast connect retry (proxy.FAST_CONNECT_TIMEOUT) bounds that.
"""
from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "kubelet")]

from harness import Kubectl, free_port  # noqa: E402
from nodeutil import BUSYBOX, Node, _bridge, _drain_runtime, node_ready, wait_for  # noqa: E402

NODE_IP = "192.0.2.2"
HOST = "bench.example.com"
MANIFEST = f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: default, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {BUSYBOX}
    command: ["sh", "-c", "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web, namespace: default}}
spec:
  rules:
  - host: {HOST}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, duration: int, connections: int, host: str | None = None) -> dict[str, float]:
    """One wrk run: requests/s, p50/p99 in ms, and errors (socket errors + non-2xx)."""
    args = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency", url]
    if host:
        args[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 30).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)", out, re.M)
        result[f"p{q}_ms"] = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = errors + (int(m.group(1)) if m else 0)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=1, help="`kates ingress --workers`")
    a = p.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="kib", dir="/tmp"))
    node = Node(data_dir)
    node.extra.append("--disable-ingress")
    ingress = None
    try:
        node.start()
        kubectl = Kubectl(node.kubeconfig)
        wait_for("the node to be Ready", lambda: node_ready(kubectl, node.node_name), timeout=60)
        http_port = free_port()
        ingress = subprocess.Popen([sys.executable, "-m", "kates.cli.main", "ingress", "--kubeconfig",
                                    str(node.kubeconfig), "--http-port", str(http_port), "--https-port", "-1",
                                    "--node-ip", NODE_IP, "--workers", str(a.workers)], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("the default service account", lambda: kubectl.run(
            "get", "serviceaccount", "default", check=False).returncode == 0, timeout=20)
        kubectl.run("apply", "-f", "-", input=MANIFEST)
        kubectl.run("wait", "--for=condition=Ready", "pod/web", "--timeout=60s")
        pod_ip = kubectl.json("get", "pod", "web")["status"]["podIP"]
        direct, through = f"http://{pod_ip}:8080/", f"http://{NODE_IP}:{http_port}/"
        wait_for("the ingress route", lambda: subprocess.run(
            ["curl", "-s", "--max-time", "3", "-H", f"Host: {HOST}", through], capture_output=True,
            text=True).stdout.startswith("hello"), timeout=30)
        wrk(direct, 1, a.connections)                 # warm-up both paths
        wrk(through, 1, a.connections, HOST)
        rows: dict[str, list[dict[str, float]]] = {"direct": [], "ingress": []}
        for i in range(a.rounds):
            rows["direct"].append(wrk(direct, a.duration, a.connections))
            rows["ingress"].append(wrk(through, a.duration, a.connections, HOST))
            for name in rows:
                r = rows[name][-1]
                print(f"round {i + 1} {name:8s}: {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                      f"p99 {r['p99_ms']:6.2f} ms  errors {r['errors']:.0f}")
        started = time.monotonic()
        kubectl.run("apply", "-f", "-", input=MANIFEST.split("---")[-1].replace(HOST, "new." + HOST)
                    .replace("name: web, namespace", "name: new, namespace"))
        wait_for("the new route", lambda: subprocess.run(
            ["curl", "-s", "--max-time", "1", "-H", f"Host: new.{HOST}", through], capture_output=True,
            text=True).stdout.startswith("hello"), timeout=30, interval=0.01)
        update = time.monotonic() - started
        mean = {n: statistics.fmean(r["rps"] for r in rs) for n, rs in rows.items()}
        p99 = {n: statistics.fmean(r["p99_ms"] for r in rs) for n, rs in rows.items()}
        print(f"wrk -c {a.connections}, {a.duration}s x {a.rounds} rounds, busybox httpd pod, "
              f"{a.workers} ingress worker(s):")
        print(f"  direct to the pod   : {mean['direct']:8.0f} req/s, p99 {p99['direct']:.2f} ms")
        print(f"  through the ingress : {mean['ingress']:8.0f} req/s, p99 {p99['ingress']:.2f} ms")
        print(f"  ratio ingress/direct: {mean['ingress'] / mean['direct']:.0%} (target >= 50%)")
        print(f"new Ingress applied (kubectl apply included) to its first routed request: {update * 1000:.0f} ms")
    finally:
        if ingress is not None:
            ingress.terminate()
            ingress.wait(10)
        if node.proc is not None:
            kubectl = Kubectl(node.kubeconfig)
            kubectl.run("delete", "pods", "--all", "--grace-period=1", "--timeout=60s", check=False, timeout=90)
            asyncio.run(_drain_runtime(node.containerd_socket, timeout=30))
            node.stop()
            subprocess.run(["ip", "link", "delete", _bridge(node.agent_dir)], capture_output=True, check=False)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
