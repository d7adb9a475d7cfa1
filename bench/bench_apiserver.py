"""API server benchmarks: start time, idle RSS, GET and create throughput, LIST of 10,000 pods, watch fan-out.

Runs a real `kates server` (SQLite store, durable writes) in a subprocess and measures it from outside, over
HTTPS, on this machine: `wrk` (Debian package) for request rates and latency percentiles, aiohttp for lists
and watches. Prints one line per figure. Usage: python bench/bench_apiserver.py [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.extra = extra or []

    def start(self) -> float:
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "kates.cli.main", "server", "--data-dir",
                                      str(self.data_dir), "--port", str(self.port), *self.extra], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("kates is ready"):
                return time.monotonic() - t0
        raise SystemExit("server did not start")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def token(self) -> str:
        return (self.data_dir / "pki" / "tokens.csv").read_text().split(",")[0]

    def ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.data_dir / "pki" / "ca.crt"))
        ctx.load_cert_chain(self.data_dir / "pki" / "admin.crt", self.data_dir / "pki" / "admin.key")
        return ctx

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def wrk(url: str, token: str, seconds: int, connections: int = 32, script: str | None = None) -> tuple[float, float]:
    """(requests/s, p99 ms) from wrk --latency."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}"]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        print(f"  (warning: {non2xx.group(1)} non-2xx responses)")
    return rate, p99


N_FIELD = re.compile(rb'"data":\{"n":"(\d+)"\}')

CREATE_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"bench-"},"data":{"blob":"%s"}}'
""" % ("x" * 1000)


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i:05d}", "labels": {"app": "bench", "shard": str(i % 10)}},
            "spec": {"containers": [{"name": "c", "image": "localhost/busybox:latest",
                                     "command": ["sleep", "3600"], "ports": [{"containerPort": 8080}]}]}}


async def create_pods(server: Server, n: int, ns: str) -> float:
    t0 = time.monotonic()
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=server.ssl(), limit=32)) as s:
        async def one(i: int) -> None:
            async with sem:
                async with s.post(f"{server.url}/api/v1/namespaces/{ns}/pods", json=pod(i)) as r:
                    assert r.status == 201, await r.text()
        await asyncio.gather(*(one(i) for i in range(n)))
    return time.monotonic() - t0


async def time_list(server: Server, ns: str, accept: str, runs: int = 3) -> tuple[float, int]:
    times = []
    size = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=server.ssl())) as s:
        for _ in range(runs):
            t0 = time.monotonic()
            async with s.get(f"{server.url}/api/v1/namespaces/{ns}/pods", headers={"Accept": accept}) as r:
                body = await r.read()
            times.append(time.monotonic() - t0)   # until the last byte arrived; parsing is the client's cost
            assert len(json.loads(body)["items" if "Table" not in accept else "rows"]) > 0
            size = len(body)
    return statistics.median(times), size


async def watch_fanout(server: Server, watchers: int, writes: int) -> tuple[float, float, float, float]:
    """p50/p99 ms from a write's acknowledgement to each watcher receiving its event (negative: the event came
    first), then p50/p99 from the write being sent."""
    received: dict[str, list[float]] = {}
    acked: dict[str, float] = {}
    sent: dict[str, float] = {}
    ready = 0
    connector = aiohttp.TCPConnector(ssl=server.ssl(), limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as s:
        async with s.post(f"{server.url}/api/v1/namespaces/default/configmaps",
                          json={"metadata": {"name": "fanout"}, "data": {"n": "0"}}) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]

        async def watch() -> None:
            nonlocal ready
            url = (f"{server.url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"
                   f"&fieldSelector=metadata.name%3Dfanout&timeoutSeconds=120")
            async with s.get(url) as r:
                ready += 1
                async for line in r.content:
                    stamp = time.monotonic()   # parse cheaply: the client shares the machine with the server
                    m = N_FIELD.search(line)
                    n = m.group(1).decode() if m else None
                    received.setdefault(n, []).append(stamp)
                    if n == str(writes):
                        return
        tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
        while ready < watchers:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        for i in range(1, writes + 1):
            sent[str(i)] = time.monotonic()
            async with s.patch(f"{server.url}/api/v1/namespaces/default/configmaps/fanout",
                               json={"data": {"n": str(i)}},
                               headers={"Content-Type": "application/merge-patch+json"}) as r:
                assert r.status == 200
                acked[str(i)] = time.monotonic()
            await asyncio.sleep(0.2)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    def pct(base: dict[str, float]) -> tuple[float, float]:
        lat = sorted((t - base[n]) * 1000 for n, ts in received.items() if n in base for t in ts)
        return lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
    return (*pct(acked), *pct(sent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter runs (for a smoke check)")
    args = parser.parse_args()
    seconds = 3 if args.quick else 10
    pods = 1000 if args.quick else 10_000
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="kates-bench-"))
    server = Server(tmp, ["--disable-controllers", "--disable-scheduler"])
    ready = server.start()
    print(f"start to ready: {ready:.2f} s")
    time.sleep(2)
    print(f"idle RSS: {server.rss_mb():.1f} MB")
    token = server.token()
    try:
        asyncio.run(_put(server, "/api/v1/namespaces/default/configmaps",
                         {"metadata": {"name": "target"}, "data": {"k": "v" * 900}}))
        rate, p99 = wrk(f"{server.url}/api/v1/namespaces/default/configmaps/target", token, seconds)
        print(f"GET one object, 32 connections: {rate:.0f} req/s, p99 {p99:.1f} ms")
        script = tmp / "create.lua"
        script.write_text(CREATE_LUA)
        rate, p99 = wrk(f"{server.url}/api/v1/namespaces/default/configmaps", token, seconds, script=str(script))
        print(f"create ConfigMap (1 KB), 32 connections: {rate:.0f} objects/s, p99 {p99:.1f} ms")
        asyncio.run(_put(server, "/api/v1/namespaces", {"metadata": {"name": "bench"}}))
        took = asyncio.run(create_pods(server, pods, "bench"))
        print(f"created {pods} pods in {took:.1f} s ({pods / took:.0f}/s)")
        t_json, size = asyncio.run(time_list(server, "bench", "application/json"))
        print(f"LIST {pods} pods as JSON: {t_json * 1000:.0f} ms ({size / 1e6:.1f} MB)")
        t_table, size = asyncio.run(time_list(server, "bench", "application/json;as=Table;v=v1;g=meta.k8s.io"))
        print(f"LIST {pods} pods as Table: {t_table * 1000:.0f} ms ({size / 1e6:.1f} MB)")
        print(f"RSS with {pods} pods: {server.rss_mb():.0f} MB")
        watchers = 200 if args.quick else 1000
        a50, a99, s50, s99 = asyncio.run(watch_fanout(server, watchers, 10 if args.quick else 20))
        print(f"watch fan-out, {watchers} watchers: write-ack to event p50 {a50:.1f} ms, p99 {a99:.1f} ms "
              f"(negative: events arrive before the writer's ack); write-sent to event p50 {s50:.1f} ms, "
              f"p99 {s99:.1f} ms")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def _put(server: Server, path: str, body: dict) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=server.ssl())) as s:
        async with s.post(server.url + path, json=body) as r:
            assert r.status in (201, 409), await r.text()


if __name__ == "__main__":
    main()
