"""Scheduler benchmark: pods bound per second with N nodes and M pending pods.

Starts a real `kates server --disable-controllers --disable-scheduler --store memory://`, registers N Node objects
(32 cpu, 256Gi, 110 pods, Ready) and M pending pods (100m cpu, 128Mi each) through the API, then starts the
scheduler (`kates scheduler` as its own process, as `kates server` runs it, or in this process with
--in-process) and watches the pods until every one has a spec.nodeName. Everything shares this machine.

Prints the rate from scheduler start (includes its informers' initial list of N nodes and M pods) and the
steady rate from the first binding to the last, plus the CPU seconds the scheduler and the server used.
Usage: python bench/bench_scheduler.py [--nodes 500] [--pods 1000] [--profile default | --config FILE]
       [--in-process]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kates.api import errors  # noqa: E402
from kates.client.rest import Client, resource  # noqa: E402

NAMESPACE = "bench"


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-m", "kates.cli.main", "server", "--data-dir", str(data_dir),
                             "--port", str(free_port()), "--store", "memory://", "--disable-controllers",
                             "--disable-scheduler"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=open(data_dir / "server.log", "w"), text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("kates is ready: KUBECONFIG="):
            return proc, Path(line.strip().split("=", 1)[1])
    raise SystemExit("kates server did not start; see " + str(data_dir / "server.log"))


def node(i: int) -> dict:
    name = f"node-{i:05d}"
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
            "status": {"capacity": resources, "allocatable": resources,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status"}]}}


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i:05d}", "namespace": NAMESPACE, "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


async def create_all(client: Client, rt, objs: list[dict], namespace: str | None, concurrency: int = 48) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(obj: dict) -> None:
        async with sem:
            try:
                await client.create(rt, obj, namespace)
            except errors.AlreadyExists:
                pass
    await asyncio.gather(*(one(o) for o in objs))


async def bench(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="kates-bench-sched-"))
    server, kubeconfig = start_server(data_dir)
    sched_proc: subprocess.Popen[bytes] | None = None
    client = Client.from_kubeconfig(kubeconfig, user_agent="bench")
    ok = False
    try:
        t = time.monotonic()
        nodes = [node(i) for i in range(args.nodes)]
        await create_all(client, resource("nodes"), nodes, None)
        await client.create(resource("namespaces"), {"metadata": {"name": NAMESPACE}})
        await create_all(client, resource("pods"), [pod(i) for i in range(args.pods)], NAMESPACE)
        print(f"setup: {args.nodes} nodes and {args.pods} pods created in {time.monotonic() - t:.1f}s", flush=True)

        listed = await client.list(resource("pods"), NAMESPACE, limit=1)
        rv = listed["metadata"]["resourceVersion"]
        bound: set[str] = set()
        first = last = 0.0
        server_cpu0 = cpu_seconds(server.pid)
        own_cpu0 = time.process_time()
        started = time.monotonic()
        scheduler_task = None
        if args.in_process:
            from kates.scheduler.config import resolve_profiles
            from kates.scheduler.scheduler import Scheduler
            sched_client = Client.from_kubeconfig(kubeconfig, user_agent="kates-scheduler")
            scheduler = Scheduler(sched_client, resolve_profiles(args.profile, args.config))
            scheduler_task = asyncio.create_task(scheduler.run())
        else:
            extra = ["--config", args.config] if args.config else ["--profile", args.profile]
            sched_proc = subprocess.Popen([sys.executable, "-m", "kates.scheduler.main", "--kubeconfig",
                                           str(kubeconfig), *extra], cwd=ROOT,
                                          stderr=open(data_dir / "scheduler.log", "w"))
        deadline = started + args.timeout
        while len(bound) < args.pods and time.monotonic() < deadline:
            try:
                async for ev_type, obj in client.watch(resource("pods"), NAMESPACE, resource_version=rv,
                                                       timeout_seconds=max(1, int(deadline - time.monotonic()))):
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if ev_type in ("ADDED", "MODIFIED") and (obj.get("spec") or {}).get("nodeName"):
                        name = obj["metadata"]["name"]
                        if name not in bound:
                            bound.add(name)
                            last = time.monotonic()
                            if len(bound) == 1:
                                first = last
                            if len(bound) == args.pods:
                                break
            except errors.APIError:
                continue
        total = last - started
        if sched_proc is not None:
            sched_cpu = f"scheduler {cpu_seconds(sched_proc.pid):.1f}s"
        else:
            sched_cpu = f"scheduler and watcher (this process) {time.process_time() - own_cpu0:.1f}s"
        server_cpu = cpu_seconds(server.pid) - server_cpu0
        print(f"{args.nodes} nodes, {args.pods} pods ({args.profile}): {len(bound)} bound in {total:.2f}s "
              f"from scheduler start = {len(bound) / total:.0f} pods/s; steady (first to last binding) "
              f"{(len(bound) - 1) / max(last - first, 1e-9):.0f} pods/s", flush=True)
        print(f"cpu: {sched_cpu}, server {server_cpu:.1f}s", flush=True)
        if scheduler_task is not None:
            scheduler_task.cancel()
            await asyncio.gather(scheduler_task, return_exceptions=True)
            await sched_client.close()
        ok = len(bound) == args.pods
    finally:
        await client.close()
        if sched_proc is not None:
            sched_proc.terminate()
            sched_proc.wait(15)
        server.terminate()
        server.wait(20)
        if ok:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"logs kept in {data_dir}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--pods", type=int, default=1000)
    p.add_argument("--profile", default="default", help="named scheduler profile: default, bin-packing")
    p.add_argument("--config", default=None, help="a KubeSchedulerConfiguration file for the scheduler")
    p.add_argument("--in-process", action="store_true", help="run the scheduler in this process")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
