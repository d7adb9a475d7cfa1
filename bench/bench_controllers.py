"""Control-plane benchmarks on hollow nodes: a big Deployment to available, node loss to recovery, RSS.

Starts `kates server --hollow-nodes N` (controllers, scheduler and hollow nodes as its children) and measures
from outside through the API:
- a Deployment of R replicas from create to `availableReplicas == R`;
- node loss: one hollow node's agent stops (the hollow-only annotation `kates.io/hollow-stopped`), and the time
  until every replica is Running and Ready again on the other nodes;
- resident memory of the server and its child processes.
Usage: python bench/bench_controllers.py [--nodes 10] [--replicas 1000]
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kates.client.rest import Client, resource  # noqa: E402

from bench_apiserver import Server  # noqa: E402

DEPLOYMENTS = resource("deployments.apps")
PODS = resource("pods")
NODES = resource("nodes")


def rss_tree_mb(pid: int) -> float:
    """RSS of a process and all its descendants."""
    total = 0
    children = {pid}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().split()
        except OSError:
            continue
        if int(stat[3]) in children or int(proc.name) == pid:
            children.add(int(proc.name))
    for p in children:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def wait_for(pred, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await pred()
        if result:
            return result
        await asyncio.sleep(interval)
    raise TimeoutError


async def bench(server: Server, nodes: int, replicas: int) -> None:
    client = Client.from_kubeconfig(server.data_dir / "kubeconfig.yaml")
    try:
        await wait_for(lambda: _ready_nodes(client, nodes), 120)
        t0 = time.monotonic()
        await client.create(DEPLOYMENTS, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "big"}},
                     "template": {"metadata": {"labels": {"app": "big"}},
                                  "spec": {"containers": [{"name": "c", "image": "localhost/busybox:latest",
                                                           "resources": {"requests": {"cpu": "10m"}}}]}}}},
            "default")

        async def available() -> bool:
            d = await client.get(DEPLOYMENTS, "big", "default")
            return (d.get("status") or {}).get("availableReplicas") == replicas
        await wait_for(available, 300)
        print(f"Deployment of {replicas} replicas on {nodes} hollow nodes: create to all available "
              f"{time.monotonic() - t0:.1f} s")
        print(f"control plane RSS (server + children) with {nodes} nodes and {replicas} pods: "
              f"{rss_tree_mb(server.proc.pid):.0f} MB")

        victim = "hollow-0"
        pods = (await client.list(PODS, "default", field_selector=f"spec.nodeName={victim}"))["items"]
        t0 = time.monotonic()
        await client.patch(NODES, victim, {"metadata": {"annotations": {"kates.io/hollow-stopped": "true"}}})

        async def recovered() -> bool:
            items = (await client.list(PODS, "default", label_selector="app=big"))["items"]
            healthy = [p for p in items if p["spec"].get("nodeName") != victim
                       and not p["metadata"].get("deletionTimestamp")
                       and p.get("status", {}).get("phase") == "Running"
                       and any(c["type"] == "Ready" and c["status"] == "True"
                               for c in p["status"].get("conditions") or [])]
            return len(healthy) >= replicas
        await wait_for(recovered, 180, 0.5)
        print(f"node loss ({len(pods)} pods on {victim}): agent stopped to all {replicas} replicas Running "
              f"elsewhere {time.monotonic() - t0:.1f} s")
    finally:
        await client.close()


async def _ready_nodes(client: Client, want: int) -> bool:
    items = (await client.list(NODES))["items"]
    ready = [n for n in items if any(c["type"] == "Ready" and c["status"] == "True"
                                     for c in n.get("status", {}).get("conditions") or [])]
    return len(ready) >= want


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kates-bench-cp-"))
    server = Server(tmp, extra=["--hollow-nodes", str(args.nodes)])
    server.start()
    try:
        asyncio.run(bench(server, args.nodes, args.replicas))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
