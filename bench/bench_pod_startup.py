"""Pod startup on the bare CRI: RunPodSandbox + CreateContainer + StartContainer straight to containerd.

The floor the kubelet path is compared with (issue 4: kubelet create-to-Running ≤ 2× this, same containerd, same
run). `bare_cri_startup(endpoint, n, ...)` measures N pods one after another (image present, busybox `sleep`) and
returns the per-pod seconds; `summarize` turns them into p50/p99. Run alone it starts its own containerd (kates'
supervisor, a temporary data dir and pod CIDR) unless `--endpoint` names a running one.
Usage: python bench/bench_pod_startup.py [--pods 30] [--endpoint unix:///path/containerd.sock] [--concurrency 1]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402
from cri_api.v1 import api_pb2, api_pb2_grpc  # noqa: E402

IMAGE = "localhost/busybox:latest"


def summarize(seconds: list[float]) -> dict[str, float]:
    """p50, p99, mean and max in milliseconds."""
    s = sorted(seconds)
    if not s:
        return {"n": 0}
    pick = lambda q: s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]  # noqa: E731  (nearest rank)
    return {"n": len(s), "p50_ms": pick(0.50) * 1000, "p99_ms": pick(0.99) * 1000,
            "mean_ms": statistics.fmean(s) * 1000, "max_ms": s[-1] * 1000}


async def bare_cri_startup(endpoint: str, n: int, *, log_dir: str, concurrency: int = 1,
                           cgroup_parent: str = "/kates/bench", cleanup: bool = True,
                           tolerate_errors: bool = False) -> list[float]:
    """Start `n` one-container pods through the CRI alone; seconds from RunPodSandbox to StartContainer's answer
    for each. Pods are stopped and removed afterwards unless `cleanup` is false. With `tolerate_errors` a pod whose
    calls fail (a kubelet on the same runtime removed it as a stranger) is left out of the times."""
    channel = grpc.aio.insecure_channel(endpoint if "://" in endpoint else "unix://" + endpoint)
    rt = api_pb2_grpc.RuntimeServiceStub(channel)
    sandboxes: list[str] = []
    times: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    run = uuid.uuid4().hex[:8]

    async def one(i: int) -> None:
        async with gate:
            name, uid = f"bench-{run}-{i}", f"{run}-{i}"
            config = api_pb2.PodSandboxConfig(
                metadata=api_pb2.PodSandboxMetadata(name=name, namespace="bench", uid=uid),
                hostname=name, log_directory=os.path.join(log_dir, f"bench_{name}_{uid}"),
                linux=api_pb2.LinuxPodSandboxConfig(cgroup_parent=f"{cgroup_parent}/pod{uid}"))
            started = time.perf_counter()
            try:
                sid = (await rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config))).pod_sandbox_id
                sandboxes.append(sid)
                cid = (await rt.CreateContainer(api_pb2.CreateContainerRequest(
                    pod_sandbox_id=sid, sandbox_config=config, config=api_pb2.ContainerConfig(
                        metadata=api_pb2.ContainerMetadata(name="main"), image=api_pb2.ImageSpec(image=IMAGE),
                        command=["sleep", "3600"], log_path="main/0.log")))).container_id
                await rt.StartContainer(api_pb2.StartContainerRequest(container_id=cid))
            except grpc.aio.AioRpcError:
                if not tolerate_errors:
                    raise
                return
            times.append(time.perf_counter() - started)

    async def remove(sid: str) -> None:
        try:
            await rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sid))
            await rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sid))
        except grpc.aio.AioRpcError as e:    # already gone (a kubelet on the same runtime removes strangers)
            if e.code() != grpc.StatusCode.NOT_FOUND and not tolerate_errors:
                raise

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        if cleanup:
            await asyncio.gather(*(remove(sid) for sid in sandboxes))
            from kates.runtime.containerd import remove_pod_cgroups
            await asyncio.to_thread(remove_pod_cgroups, cgroup_parent)
        await channel.close()
    return times


async def _remove_all(endpoint: str, cgroup_parent: str = "/kates/bench") -> None:
    """Stop and remove every `bench` pod of this runtime."""
    channel = grpc.aio.insecure_channel(endpoint if "://" in endpoint else "unix://" + endpoint)
    rt = api_pb2_grpc.RuntimeServiceStub(channel)
    try:
        for s in (await rt.ListPodSandbox(api_pb2.ListPodSandboxRequest())).items:
            if s.metadata.namespace == "bench":
                await rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=s.id))
                await rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=s.id))
    finally:
        await channel.close()
    from kates.runtime.containerd import remove_pod_cgroups
    await asyncio.to_thread(remove_pod_cgroups, cgroup_parent)


async def _main(args: argparse.Namespace) -> None:
    from kates.runtime import cni, open_runtime
    runtime = None
    data_dir = None
    endpoint = args.endpoint
    if not endpoint:
        data_dir = Path(tempfile.mkdtemp(prefix="ktb", dir="/tmp"))
        t0 = time.perf_counter()
        runtime = await open_runtime("cri", data_dir=data_dir)
        print(f"containerd ready (images imported) in {(time.perf_counter() - t0) * 1000:.0f} ms, "
              f"handler {runtime.containerd.default_handler}")
        await runtime.update_runtime_config(f"10.244.{random.randint(100, 250)}.0/24")
        endpoint = runtime.containerd.address
    try:
        log_dir = str((data_dir or Path(tempfile.gettempdir())) / "bench-logs")
        await bare_cri_startup(endpoint, 2, log_dir=log_dir)       # warm-up: first shim start, page cache
        if runtime is not None:
            rss = await asyncio.to_thread(runtime.containerd.rss_bytes)
            print(f"containerd RSS idle: {rss['containerd'] / 2**20:.0f} MiB")
        times = await bare_cri_startup(endpoint, args.pods, log_dir=log_dir, concurrency=args.concurrency,
                                       cleanup=False)
        if runtime is not None:
            rss = await asyncio.to_thread(runtime.containerd.rss_bytes)
            print(f"with {args.pods} pods: containerd RSS {rss['containerd'] / 2**20:.0f} MiB, "
                  f"{rss['shim_count']} shims {rss['shims'] / 2**20:.0f} MiB together")
        s = summarize(times)
        print(f"bare CRI pod startup (RunPodSandbox+CreateContainer+StartContainer), {s['n']} pods, "
              f"concurrency {args.concurrency}: p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms, "
              f"mean {s['mean_ms']:.0f} ms, max {s['max_ms']:.0f} ms")
    finally:
        await _remove_all(endpoint)
        if runtime is not None and data_dir is not None:
            await runtime.close()
            await cni.delete_bridge(data_dir)
            from kates.runtime.containerd import remove_pod_cgroups
            await asyncio.to_thread(remove_pod_cgroups, f"/kates/{cni.bridge_name(data_dir)}")
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=30)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--endpoint", default="", help="a running CRI endpoint (default: start a containerd)")
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
