"""Node benchmarks (issue 4): pod startup beside the bare CRI, a Deployment of 100, agent and containerd RSS.

Starts its own `kates server` with the real node agent (`--runtime cri`, its own data dir, containerd, pod CIDR
10.244.N.0/24, node name and kubelet port) and measures from outside:
1. pod startup, image present: create to Running (the Running status seen on a watch) for P pods one after another,
   and, interleaved in the same run on the node's own containerd, the bare CRI sequence (RunPodSandbox +
   CreateContainer + StartContainer, bench_pod_startup.py); p50/p99 of both and their ratio;
2. the agent's RSS idle (node registered, no pods) and containerd's;
3. a Deployment of R replicas from `kubectl apply` to all Ready, then the agent's RSS with R pods beside containerd's
   and its shims';
4. deleting the R pods (grace period 1 s): first DELETE to the last pod gone from the API.
5. the bare CRI floor for 3 and 4: R pods started all at once straight on a containerd of the same recipe (no agent
   beside it to sweep them away), then stopped with a 1 s timeout and removed at once.
Usage: python bench/bench_node.py [--pods 30] [--replicas 100] [--no-bare-burst] [--keep]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from harness import Kubectl, Server, free_port  # noqa: E402

from kates.client.rest import Client, resource  # noqa: E402

PODS, NODES = resource("pods"), resource("nodes")
DEPLOYMENTS, NAMESPACES = resource("deployments.apps"), resource("namespaces")
IMAGE = "localhost/busybox:latest"


class NodeServer(Server):
    """`kates server` with its node agent on a containerd of its own."""

    agent = True

    def __init__(self, data_dir: Path) -> None:
        n = random.randint(100, 250)
        self.pod_cidr = f"10.244.{n}.0/24"
        self.node_name = f"bench-{n}-{uuid.uuid4().hex[:6]}"
        super().__init__(data_dir, extra=["--runtime", "cri", "--node-name", self.node_name, "--pod-cidr",
                                          self.pod_cidr, "--kubelet-port", str(free_port())])

    @property
    def socket(self) -> Path:
        return self.data_dir / "node" / "containerd" / "containerd.sock"

    def agent_pid(self) -> int | None:
        assert self.proc is not None
        for pid in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split():
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"agent" in args and b"kates.cli.main" in args:
                return int(pid)
        return None


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def containerd_rss(server: NodeServer) -> tuple[float, float, int]:
    """(containerd MB, all its shims together MB, shim count) of the node's own containerd."""
    try:
        pid = int((server.socket.parent / "containerd.pid").read_text().strip())
    except (OSError, ValueError):
        pid = None
    needle = f"-address\0{server.socket}\0".encode()
    shims, count = 0.0, 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline.split(b"\0", 1)[0] and needle in cmdline + b"\0":
            shims += rss_mb(int(entry))
            count += 1
    return rss_mb(pid), shims, count


def _running(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


class PodWatch:
    """One watch on a namespace's pods; `until(name, predicate)` resolves when an event satisfies it."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client, self.namespace = client, namespace
        self.waiters: dict[str, list[tuple[Any, asyncio.Future[float]]]] = {}
        self.task: asyncio.Task[None] | None = None
        self.pods: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()

    async def start(self) -> None:
        rv = (await self.client.list(PODS, self.namespace))["metadata"]["resourceVersion"]
        self.task = asyncio.create_task(self._run(rv))

    async def _run(self, rv: str) -> None:
        while True:
            async for type_, obj in self.client.watch(PODS, self.namespace, resource_version=rv):
                now = time.perf_counter()
                if type_ == "BOOKMARK":
                    rv = obj["metadata"]["resourceVersion"]
                    continue
                rv = obj["metadata"]["resourceVersion"]
                name = obj["metadata"]["name"]
                if type_ == "DELETED":
                    self.pods.pop(name, None)
                else:
                    self.pods[name] = obj
                self.changed.set()
                for predicate, fut in self.waiters.get(name, ()):
                    if not fut.done() and predicate(obj):
                        fut.set_result(now)

    def until(self, name: str, predicate: Any) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(name, []).append((predicate, fut))
        return fut

    async def wait_count(self, predicate: Any, n: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while sum(1 for p in self.pods.values() if predicate(p)) != n:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{sum(1 for p in self.pods.values() if predicate(p))} of {n}")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        return time.perf_counter()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def pod_manifest(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                     "command": ["sleep", "3600"]}]}}


async def startup(server: NodeServer, client: Client, ns: str, n: int) -> None:
    from bench_pod_startup import bare_cri_startup, summarize
    watch = PodWatch(client, ns)
    await watch.start()
    kubelet: list[float] = []
    node_side: list[float] = []
    bare: list[float] = []
    log_dir = str(server.data_dir / "bench-logs")
    try:
        for i in range(-2, n):           # two warm-up rounds
            name = f"start-{i + 2}"
            running = watch.until(name, _running)
            bound = watch.until(name, lambda p: bool(p["spec"].get("nodeName")))
            t0 = time.perf_counter()
            await client.create(PODS, pod_manifest(name), ns)
            t1 = await asyncio.wait_for(running, 30)
            tb = await bound
            b = await bare_cri_startup(str(server.socket), 1, log_dir=log_dir, cgroup_parent="/kates/bench-node",
                                       tolerate_errors=True)
            if i >= 0:
                kubelet.append(t1 - t0)
                node_side.append(t1 - tb)
                bare += b
        k, c, nd = summarize(kubelet), summarize(bare), summarize(node_side)
        print(f"pod startup, {n} pods one after another, image present (create to Running seen on a watch):")
        print(f"  kubelet  p50 {k['p50_ms']:4.0f} ms  p99 {k['p99_ms']:4.0f} ms  mean {k['mean_ms']:4.0f} ms  "
              f"max {k['max_ms']:4.0f} ms")
        print(f"  of which bound (seen on the watch) to Running: p50 {nd['p50_ms']:4.0f} ms  p99 {nd['p99_ms']:4.0f} ms")
        print(f"  bare CRI p50 {c['p50_ms']:4.0f} ms  p99 {c['p99_ms']:4.0f} ms  mean {c['mean_ms']:4.0f} ms  "
              f"max {c['max_ms']:4.0f} ms  (RunPodSandbox + CreateContainer + StartContainer)")
        print(f"  ratio kubelet / bare CRI: p50 {k['p50_ms'] / c['p50_ms']:.2f}x, p99 {k['p99_ms'] / c['p99_ms']:.2f}x")
        t0 = time.perf_counter()
        await client.request("DELETE", client.path(PODS, ns), params={"gracePeriodSeconds": 1})
        t1 = await watch.wait_count(lambda p: True, 0, 120)
        print(f"  deleting those {n + 2} pods (grace 1 s): {t1 - t0:.1f} s")
    finally:
        await watch.stop()


async def _remove_bare(socket: Path) -> None:
    """Stop (containers with a 1 s timeout, as the kubelet's grace period) and remove the bare CRI pods (namespace
    `bench`) all at once."""
    from kates.runtime.cri import CRIRuntime
    from kates.runtime.interface import NotFoundError, RuntimeServiceError
    runtime = CRIRuntime(str(socket))

    async def remove(sid: str) -> None:
        try:
            for c in await runtime.list_containers(sid):
                await runtime.stop_container(c.id, 1)
            await runtime.stop_pod_sandbox(sid)
            await runtime.remove_pod_sandbox(sid)
        except (NotFoundError, RuntimeServiceError):    # the agent's orphan sweep is removing it too
            pass
    try:
        for _ in range(3):
            sandboxes = [s for s in await runtime.list_pod_sandbox() if s.metadata.namespace == "bench"]
            if not sandboxes:
                break
            await asyncio.gather(*(remove(s.id) for s in sandboxes))
    finally:
        await runtime.close()


async def bare_floor(n: int) -> None:
    """The bare CRI floor for the Deployment: n pods started at once straight on a containerd of the same recipe
    (kates' supervisor, its own data dir: the node's containerd would see its agent sweep them away as strangers),
    then stopped (1 s timeout, as the grace period) and removed at once."""
    from bench_pod_startup import bare_cri_startup
    from kates.runtime import cni, open_runtime
    from kates.runtime.containerd import remove_pod_cgroups
    data_dir = Path(tempfile.mkdtemp(prefix="kbf", dir="/tmp"))
    runtime = await open_runtime("cri", data_dir=data_dir)
    try:
        await runtime.update_runtime_config(f"10.244.{random.randint(100, 250)}.0/24")
        await asyncio.sleep(3)
        t0 = time.perf_counter()
        await bare_cri_startup(runtime.containerd.address, n, log_dir=str(data_dir / "logs"), concurrency=n,
                               cgroup_parent="/kates/bench-floor", cleanup=False)
        t1 = time.perf_counter()
        await _remove_bare(Path(runtime.containerd.socket))
        print(f"  bare CRI floor (a containerd of the same recipe, no agent): {n} pods started at once in "
              f"{t1 - t0:.1f} s; stopped (1 s timeout) and removed at once in {time.perf_counter() - t1:.1f} s")
    finally:
        await runtime.close()
        await cni.delete_bridge(data_dir)
        await asyncio.to_thread(remove_pod_cgroups, "/kates/bench-floor")
        await asyncio.to_thread(remove_pod_cgroups, f"/kates/{cni.bridge_name(data_dir)}")
        shutil.rmtree(data_dir, ignore_errors=True)


async def deployment(server: NodeServer, client: Client, ns: str, replicas: int, bare_burst: bool = True) -> None:
    kubectl = Kubectl(server.kubeconfig)
    watch = PodWatch(client, ns)
    await watch.start()
    manifest = json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hundred", "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "hundred"}},
                 "template": {"metadata": {"labels": {"app": "hundred"}},
                              "spec": {"terminationGracePeriodSeconds": 1,
                                       "containers": [{"name": "main", "image": IMAGE,
                                                       "imagePullPolicy": "IfNotPresent",
                                                       "command": ["sleep", "3600"]}]}}}})
    agent = server.agent_pid()
    try:
        cpu0 = cpu_seconds(agent)
        t0 = time.perf_counter()
        await asyncio.to_thread(kubectl.apply, manifest)
        t1 = await watch.wait_count(_ready, replicas, 120)
        cpu1 = cpu_seconds(agent)
        print(f"Deployment of {replicas}: kubectl apply to all {replicas} pods Ready {t1 - t0:.1f} s "
              f"(agent CPU {cpu1 - cpu0:.1f} s)")
        await asyncio.sleep(5)
        c, shims, count = containerd_rss(server)
        print(f"RSS with {replicas} pods: agent {rss_mb(agent):.0f} MB; containerd {c:.0f} MB, "
              f"{count} shims {shims:.0f} MB together")
        await asyncio.to_thread(kubectl.run, "scale", "deployment", "hundred", "-n", ns, "--replicas=0")
        t0 = time.perf_counter()
        t1 = await watch.wait_count(lambda p: True, 0, 180)
        print(f"scaling to 0 (grace 1 s): {replicas} pods gone from the API in {t1 - t0:.1f} s")
        if bare_burst:
            await bare_floor(replicas)
    finally:
        await watch.stop()


async def drain(socket: Path, timeout: float) -> list[str]:
    """Wait until the agent removed every sandbox; remove what is left after `timeout` (and name it)."""
    from kates.runtime.cri import CRIRuntime
    runtime = CRIRuntime(str(socket))
    try:
        deadline = time.monotonic() + timeout
        while True:
            sandboxes = await runtime.list_pod_sandbox()
            if not sandboxes or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        for s in sandboxes:
            try:
                await runtime.stop_pod_sandbox(s.id)
                await runtime.remove_pod_sandbox(s.id)
            except Exception:  # noqa: BLE001 (best effort)
                pass
        return [f"{s.metadata.namespace}/{s.metadata.name}" for s in sandboxes]
    finally:
        await runtime.close()


async def bench(server: NodeServer, args: argparse.Namespace) -> None:
    client = Client.from_kubeconfig(server.kubeconfig)
    try:
        t0 = time.monotonic()
        while True:
            try:
                node = await client.get(NODES, server.node_name)
                if _ready(node):
                    break
            except Exception:  # noqa: BLE001 (not registered yet)
                pass
            if time.monotonic() - t0 > 60:
                raise TimeoutError("the node did not become Ready")
            await asyncio.sleep(0.2)
        print(f"node {server.node_name} Ready {time.monotonic() - t0:.1f} s after the server; load "
              f"{os.getloadavg()[0]:.2f}")
        await asyncio.sleep(3)
        agent = server.agent_pid()
        c, shims, count = containerd_rss(server)
        print(f"RSS idle: agent {rss_mb(agent):.0f} MB; containerd {c:.0f} MB ({count} shims)")
        ns = "bench-" + uuid.uuid4().hex[:6]
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for _ in range(100):    # the service account controller's default account (pods need it)
            try:
                await client.get(resource("serviceaccounts"), "default", ns)
                break
            except Exception:  # noqa: BLE001
                await asyncio.sleep(0.1)
        if args.pods:
            await startup(server, client, ns, args.pods)
        if args.replicas:
            await deployment(server, client, ns, args.replicas, bare_burst=not args.no_bare_burst)
        await asyncio.sleep(2)
        print(f"agent RSS after: {rss_mb(agent):.0f} MB; load {os.getloadavg()[0]:.2f}")
    finally:
        await client.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=30, help="pods for the startup latency (0: skip)")
    p.add_argument("--replicas", type=int, default=100, help="replicas of the Deployment (0: skip)")
    p.add_argument("--no-bare-burst", action="store_true",
                   help="skip the bare CRI floor for the Deployment (R pods started at once on the same containerd)")
    p.add_argument("--keep", action="store_true", help="keep the data dir (logs) afterwards")
    args = p.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="kbn", dir="/tmp"))
    server = NodeServer(data_dir)
    server.start(timeout=60)
    try:
        asyncio.run(bench(server, args))
    finally:
        kubectl = Kubectl(server.kubeconfig)
        try:
            kubectl.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force",
                        check=False, timeout=90)
        except subprocess.TimeoutExpired:
            pass
        left = asyncio.run(drain(server.socket, 30))
        if left:
            print(f"removed sandboxes the agent left behind: {left}")
        server.stop()
        from kates.runtime.cni import bridge_name
        from kates.runtime.containerd import remove_pod_cgroups
        subprocess.run(["ip", "link", "delete", bridge_name(data_dir / "node")], capture_output=True, check=False)
        remove_pod_cgroups("/kates/bench-node")
        remove_pod_cgroups(f"/kates/{bridge_name(data_dir / 'node')}")
        if args.keep:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
