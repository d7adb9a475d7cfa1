"""Hollow-node benchmark: kwok's gate on this machine.

Starts a real `kates server` (SQLite store; the whole control plane: API server, controller manager with every
controller, scheduler; `--minimal` keeps only the node lifecycle controller and the pod GC, no scheduler) and then
`kates hollow-nodes --count N` as its own process, and measures from outside:
1. N hollow nodes registered and Ready (target: 5,000 in < 60 s);
2. P pods Running, created with spec.nodeName already set, round-robin over the nodes, so the hollow kubelet is
   measured alone (target: 10,000 in < 60 s, from the first create to the last pod Running); pods are created at
   --qps per second (default 250, a rate-limited client; 0 sends them as fast as 48 connections allow);
3. the P pods deleted gracefully, each confirmed by its hollow kubelet (target: < 90 s, first DELETE to last pod gone);
4. that no node flapped NotReady meanwhile (leases kept up under load), and the hollow process's RSS and CPU;
5. the control plane's RSS once all P pods are Running: VmRSS (and peak VmHWM) of the API server and of each of its
   children (controller manager, scheduler) from /proc, summed as one figure (target <= 2 GB with 5,000 nodes and
   10,000 pods); the hollow process, which stands in for N machines, is reported apart.
Progress is counted from one watch on pods. Everything shares this machine's cores: the API server, the controller
manager, the hollow process and this client. Usage: python bench/bench_hollow.py [--nodes 5000] [--pods 10000]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kates.api import errors  # noqa: E402
from kates.client.rest import Client, resource  # noqa: E402

NODES, PODS = resource("nodes"), resource("pods")
NAMESPACES = resource("namespaces")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when this benchmark dies, so no server or hollow process outlives it."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(args: list[str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kates.cli.main", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=open(log, "a"), text=True, preexec_fn=_die_with_parent)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds) of one process."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


def proc_memory(pid: int) -> tuple[float, float]:
    """(VmRSS MB, VmHWM MB: the peak) of one process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, kates sub-command) of each direct child of pid, from /proc/*/stat's ppid field."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        words = [a.decode() for a in argv if a]
        sub = words[words.index("kates.cli.main") + 1] if "kates.cli.main" in words[:-1] else " ".join(words[:2])
        found.append((int(d.name), sub))
    return found


def control_plane_memory(server_pid: int, hollow_pid: int | None) -> float:
    """Print VmRSS/VmHWM of the API server and each child; return the control plane's VmRSS sum in MB."""
    rows = [(server_pid, "API server")] + [(pid, name) for pid, name in sorted(children_of(server_pid))]
    total = peak = 0.0
    for pid, name in rows:
        rss, hwm = proc_memory(pid)
        total, peak = total + rss, peak + hwm
        print(f"    {name:<20} pid {pid:<8} RSS {rss:7.0f} MB  (peak {hwm:7.0f} MB)", flush=True)
    print(f"  control plane RSS: {total:.0f} MB (sum of peaks {peak:.0f} MB; target <= 2,048 MB)", flush=True)
    if hollow_pid is not None:
        rss, hwm = proc_memory(hollow_pid)
        print(f"    {'hollow-nodes':<20} pid {hollow_pid:<8} RSS {rss:7.0f} MB  (peak {hwm:7.0f} MB), "
              "apart: it stands in for the machines", flush=True)
    return total


def ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


async def wait_nodes_ready(client: Client, n: int, prefix: str, timeout: float) -> float:
    """Seconds until n nodes named prefix* are Ready at once, counted from one watch on nodes."""
    t0 = time.monotonic()
    ready_now: set[str] = set()
    rv = (await client.list(NODES, limit=1))["metadata"]["resourceVersion"]

    async def watch() -> None:
        nonlocal rv
        while len(ready_now) < n:
            async for ev, node in client.watch(NODES, resource_version=rv, timeout_seconds=600):
                rv = node["metadata"].get("resourceVersion", rv)
                name = node["metadata"].get("name", "")
                if ev == "BOOKMARK" or not name.startswith(prefix):
                    continue
                if ev != "DELETED" and ready(node):
                    ready_now.add(name)
                else:
                    ready_now.discard(name)
                if len(ready_now) >= n:
                    return
    try:
        await asyncio.wait_for(watch(), timeout)
    except asyncio.TimeoutError:
        raise SystemExit(f"only {len(ready_now)}/{n} nodes Ready after {timeout:.0f} s") from None
    return time.monotonic() - t0


async def list_all(client: Client, rt, namespace: str | None = None) -> list[dict]:
    items, token = [], ""
    while True:
        page = await client.list(rt, namespace, limit=1000, continue_token=token)
        items += page["items"]
        token = page["metadata"].get("continue", "")
        if not token:
            return items


class PodCounter:
    """One watch on the namespace's pods: how many are Running, how many are gone."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client, self.namespace = client, namespace
        self.running: set[str] = set()
        self.deleted: set[str] = set()
        self.first_running = self.last_running = self.last_deleted = 0.0
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rv = (await self.client.list(PODS, self.namespace, limit=1))["metadata"]["resourceVersion"]
        self.task = asyncio.create_task(self._watch(rv), name="bench-pod-watch")

    async def _watch(self, rv: str) -> None:
        while True:
            try:
                async for ev, pod in self.client.watch(PODS, self.namespace, resource_version=rv, timeout_seconds=600):
                    rv = pod["metadata"].get("resourceVersion", rv)
                    if ev == "BOOKMARK":
                        continue
                    name = pod["metadata"]["name"]
                    if ev == "DELETED":
                        self.deleted.add(name)
                        self.last_deleted = time.monotonic()
                    elif (pod.get("status") or {}).get("phase") == "Running" and name not in self.running:
                        self.running.add(name)
                        self.last_running = time.monotonic()
            except errors.APIError as e:
                print(f"  (watch restarted: {e})", flush=True)

    async def wait(self, what: str, n: int, timeout: float) -> None:
        """Until n pods were seen Running (or deleted before that: evicted), or n pods deleted."""
        t0 = time.monotonic()
        count = (lambda: len(self.running | self.deleted)) if what == "running" else (lambda: len(self.deleted))
        while count() < n:
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"only {count()}/{n} pods {what} after {timeout:.0f} s")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()


def pod_body(i: int, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i:05d}", "labels": {"app": "bench"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 30,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}


async def for_each(n: int, concurrency: int, fn, qps: float = 0) -> None:
    """fn(i) for i < n, `concurrency` at a time and at most `qps` per second (0: no limit), like a client-go client."""
    sem = asyncio.Semaphore(concurrency)
    t0 = time.monotonic()

    async def one(i: int) -> None:
        if qps:
            await asyncio.sleep(max(0.0, t0 + i / qps - time.monotonic()))
        async with sem:
            for attempt in range(10):
                try:
                    return await fn(i)
                except (errors.ServiceUnavailable, errors.TooManyRequests, errors.Timeout, errors.Conflict):
                    await asyncio.sleep(0.05 * (attempt + 1))
                except errors.NotFound:
                    return None   # a retried DELETE that had gone through
    await asyncio.gather(*(one(i) for i in range(n)))


async def run_pods(client: Client, hollow: subprocess.Popen[str], nodes: int, pods: int, prefix: str,
                   qps: float, server_pid: int) -> None:
    ns = "bench"
    try:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    except errors.AlreadyExists:
        pass
    counter = PodCounter(client, ns)
    await counter.start()
    t0 = time.monotonic()
    await for_each(pods, 48, lambda i: client.create(PODS, pod_body(i, f"{prefix}{i % nodes}"), ns), qps)
    created = time.monotonic() - t0
    print(f"  {pods} pods created in {created:.1f} s ({pods / created:.0f}/s)", flush=True)
    try:
        await counter.wait("running", pods, 600)
    except SystemExit:
        print(f"memory with {nodes} nodes and {pods} pods, only {len(counter.running)} seen Running "
              f"(load average {os.getloadavg()[0]:.1f}):", flush=True)
        control_plane_memory(server_pid, hollow.pid)
        raise
    took = counter.last_running - t0
    evicted = len(counter.deleted - counter.running)
    print(f"{pods} pods Running: {took:.1f} s from the first create (target < 60 s)"
          + (f"; {evicted} were deleted before running (evicted from a node that flapped NotReady)" if evicted else ""),
          flush=True)
    rss, cpu = proc_stats(hollow.pid)
    print(f"  hollow process: RSS {rss:.0f} MB, CPU {cpu:.1f} s so far", flush=True)
    print(f"memory with {nodes} nodes and {pods} pods Running (load average {os.getloadavg()[0]:.1f}):", flush=True)
    control_plane_memory(server_pid, hollow.pid)

    t0 = time.monotonic()
    await for_each(pods, 48, lambda i: client.delete(PODS, f"pod-{i:05d}", ns), qps)
    sent = time.monotonic() - t0
    print(f"  {pods} DELETEs answered in {sent:.1f} s", flush=True)
    await counter.wait("deleted", pods, 600)
    took = counter.last_deleted - t0
    print(f"{pods} pods deleted (confirmed by their kubelets): {took:.1f} s (target < 90 s)", flush=True)
    await counter.stop()


async def run(kubeconfig: Path, data_dir: Path, nodes: int, pods: int, prefix: str, idle: float,
              qps: float, server_pid: int) -> None:
    client = Client.from_kubeconfig(kubeconfig, user_agent="bench-hollow", timeout=120)
    t0 = time.monotonic()
    hollow = start(["hollow-nodes", "--kubeconfig", str(kubeconfig), "--count", str(nodes), "--prefix", prefix],
                   data_dir / "hollow.log")
    try:
        await wait_nodes_ready(client, nodes, prefix, 300)
        took = time.monotonic() - t0
        print(f"{nodes} hollow nodes Ready: {took:.1f} s from starting the process (target < 60 s)", flush=True)
        rss, cpu = proc_stats(hollow.pid)
        print(f"  hollow process: RSS {rss:.0f} MB, CPU {cpu:.1f} s so far", flush=True)

        if pods:
            await run_pods(client, hollow, nodes, pods, prefix, qps, server_pid)
        if idle:
            print(f"  idling {idle:.0f} s with only lease renewals", flush=True)
            await asyncio.sleep(idle)
        all_nodes = await list_all(client, NODES)
        ours = [x for x in all_nodes if x["metadata"]["name"].startswith(prefix)]
        flapped = [x["metadata"]["name"] for x in ours if not ready(x) or (x.get("spec") or {}).get("taints")]
        print(f"nodes not Ready or tainted at the end: {len(flapped)} of {len(ours)}"
              + (f" (e.g. {flapped[:3]})" if flapped else ""), flush=True)
        rss, cpu = proc_stats(hollow.pid)
        print(f"  hollow process: RSS {rss:.0f} MB, CPU {cpu:.1f} s in all", flush=True)
    finally:
        stop(hollow)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--prefix", default="hollow-")
    parser.add_argument("--qps", type=float, default=250,
                        help="pod creates (then deletes) per second, as a rate-limited client sends them (0: no limit)")
    parser.add_argument("--idle", type=float, default=0, help="seconds to idle before the final node check")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--minimal", action="store_true",
                        help="only the node lifecycle controller and the pod GC, no scheduler (the hollow kubelet alone)")
    args = parser.parse_args()
    # stop cleanly (servers, hollow process) on SIGTERM, and on SIGINT even when started in the background
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)",
          flush=True)
    plane = ["--disable-scheduler", "--controllers", "nodelifecycle,podgc"] if args.minimal else []
    data_dir = Path(tempfile.mkdtemp(prefix="kates-bench-hollow-"))
    port = free_port()
    server = start(["server", "--data-dir", str(data_dir), "--port", str(port), "--disable-agent", *plane],
                   data_dir / "server.log")
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("kates is ready"):
            break
    else:
        raise SystemExit(f"server did not start; see {data_dir / 'server.log'}")
    try:
        asyncio.run(run(data_dir / "kubeconfig.yaml", data_dir, args.nodes, args.pods, args.prefix, args.idle,
                        args.qps, server.pid))
        marked = (data_dir / "server.log").read_text().count("marking it Unknown")
        print(f"node lifecycle controller marked nodes Unknown {marked} times (lease renewals late)", flush=True)
        rss, cpu = proc_stats(server.pid)
        print(f"  API server: RSS {rss:.0f} MB, CPU {cpu:.1f} s in all", flush=True)
        for pid, name in children_of(server.pid):
            rss, cpu = proc_stats(pid)
            print(f"  {name}: RSS {rss:.0f} MB, CPU {cpu:.1f} s in all", flush=True)
        peaks = [proc_memory(pid)[1] for pid in [server.pid] + [pid for pid, _ in children_of(server.pid)]]
        print(f"  control plane peak over the run (sum of VmHWM; deletes included): {sum(peaks):.0f} MB", flush=True)
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    finally:
        stop(server)
        print(f"logs: {data_dir}" if args.keep else "", end="")
        if not args.keep:
            import shutil
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
