"""Cluster DNS benchmark: queries/s and latency percentiles of `kates dns` for cluster names.

Runs a real `kates server` (API server only), creates Services (ClusterIP and headless with EndpointSlices) through
the API, starts `kates dns` as its own process on a free loopback port, and drives it with an async UDP client
(dnsperf-like: one socket, answers matched by ID, every latency recorded), either closed loop (a fixed number of
queries outstanding: the most it answers) or paced at the target rate (open loop: latency at 5,000 queries/s).
Mixes: cluster names asked again and again (A, SRV, headless; the answer cache hot), names that are all new (every
answer built from the records: NXDOMAIN of unique names), and the time from a Service's creation to its first
answer. Usage: python bench/bench_dns.py [--services N] [--seconds S] [--concurrency C]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.rcode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_apiserver import Server  # noqa: E402


class Load(asyncio.DatagramProtocol):
    """Keeps `concurrency` queries in flight from one socket; records each answer's latency."""

    def __init__(self, queries: list[bytes], concurrency: int, seconds: float, rate: int = 0) -> None:
        self.queries = queries
        self.concurrency = concurrency
        self.rate = rate            # > 0: paced at this many queries/s (open loop), concurrency ignored
        self.t0 = self.last = time.perf_counter()
        self.deadline = self.t0 + seconds
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.rcodes: dict[int, int] = {}
        self.done = asyncio.get_running_loop().create_future()
        self.next_id = 0
        self.i = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.rate:
            self.started = time.perf_counter()
            self.count = 0
            self._tick()
            return
        for _ in range(self.concurrency):
            self._send()

    def _tick(self) -> None:
        """Send what the rate owes since the start, then come back in a millisecond (dnsperf -Q)."""
        now = time.perf_counter()
        if now >= self.deadline:
            if not self.sent and not self.done.done():
                self.done.set_result(None)
            return
        owed = int((now - self.started) * self.rate) - self.count
        for _ in range(owed):
            self._send()
        self.count += max(owed, 0)
        asyncio.get_running_loop().call_later(0.001, self._tick)

    def _send(self) -> None:
        qid = self.next_id = (self.next_id + 1) & 0xFFFF
        q = self.queries[self.i % len(self.queries)]
        self.i += 1
        self.sent[qid] = time.perf_counter()
        assert self.transport is not None
        self.transport.sendto(qid.to_bytes(2, "big") + q[2:])

    def datagram_received(self, data: bytes, addr: object) -> None:
        now = time.perf_counter()
        started = self.sent.pop(int.from_bytes(data[:2], "big"), None)
        if started is None:
            return
        self.latencies.append(now - started)
        self.last = now
        rcode = data[3] & 0x0F
        self.rcodes[rcode] = self.rcodes.get(rcode, 0) + 1
        if now < self.deadline:
            if not self.rate:
                self._send()
        elif not self.sent and not self.done.done():
            self.done.set_result(None)


async def drive(port: int, queries: list[bytes], concurrency: int, seconds: float, rate: int = 0) -> Load:
    loop = asyncio.get_running_loop()
    transport, load = await loop.create_datagram_endpoint(lambda: Load(queries, concurrency, seconds, rate),
                                                          remote_addr=("127.0.0.1", port))
    from kates.dns.server import _grow_receive_buffer
    _grow_receive_buffer(transport.get_extra_info("socket"))
    try:
        await asyncio.wait_for(load.done, seconds + 1)
    except asyncio.TimeoutError:
        pass    # a lost datagram: what was answered counts
    load.elapsed = load.last - load.t0  # type: ignore[attr-defined]   # to the last answer, not a lost one's wait
    transport.close()
    return load


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: what an answer costs, however busy the machine is."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, port: int, queries: list[bytes], concurrency: int, seconds: float,
             rate: int = 0) -> Load:
    before = cpu_seconds(pid)
    load = asyncio.run(drive(port, queries, concurrency, seconds, rate))
    load.cpu = cpu_seconds(pid) - before  # type: ignore[attr-defined]
    return load


def report(label: str, load: Load) -> None:
    lat = sorted(load.latencies)
    if not lat:
        print(f"{label}: no answers")
        return
    qps = len(lat) / load.elapsed  # type: ignore[attr-defined]
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    codes = ", ".join(f"{dns.rcode.to_text(c)} {n}" for c, n in sorted(load.rcodes.items()))
    cpu = getattr(load, "cpu", 0.0)
    per = f"; server CPU {cpu / len(lat) * 1e6:.0f} µs per answer = {len(lat) / cpu:,.0f}/s per core" if cpu else ""
    print(f"{label}: {qps:,.0f} queries/s, p50 {pct(0.50):.2f} ms, p99 {pct(0.99):.2f} ms, "
          f"max {lat[-1] * 1000:.2f} ms ({len(lat):,} answers: {codes}; {len(load.sent)} unanswered{per})")


def wire(name: str, rdtype: str = "A") -> bytes:
    return dns.message.make_query(name, rdtype).to_wire()


async def populate(server: Server, services: int) -> list[tuple[str, str, str]]:
    """Services in 10 namespaces; every 5th is headless with a 3-endpoint slice. Returns (ns, name, kind)."""
    from kates.client.rest import Client, resource
    client = Client.from_kubeconfig(server.data_dir / "kubeconfig.yaml")
    svc_rt, ns_rt = resource("services"), resource("namespaces")
    slice_rt = resource("endpointslices.discovery.k8s.io")
    made = []
    namespaces = [f"bench-{i}" for i in range(10)]
    for ns in namespaces:
        await client.create(ns_rt, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        ns, name = namespaces[i % 10], f"svc-{i}"
        headless = i % 5 == 0
        spec = {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        if headless:
            spec["clusterIP"] = "None"
        async with sem:
            await client.create(svc_rt, {"apiVersion": "v1", "kind": "Service",
                                         "metadata": {"name": name, "namespace": ns}, "spec": spec}, ns)
            if headless:
                eps = [{"addresses": [f"10.244.{i % 250}.{j}"], "hostname": f"{name}-{j}"} for j in (1, 2, 3)]
                await client.create(slice_rt, {
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": f"{name}-x", "namespace": ns,
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4", "endpoints": eps,
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}, ns)
        made.append((ns, name, "headless" if headless else "clusterip"))

    await asyncio.gather(*(one(i) for i in range(services)))
    await client.close()
    return made


async def time_to_answer(server: Server, port: int, rounds: int = 20) -> list[float]:
    """Create a Service, ask for it every millisecond until it answers: watch delivery + cache invalidation."""
    import dns.asyncquery
    from kates.client.rest import Client, resource
    client = Client.from_kubeconfig(server.data_dir / "kubeconfig.yaml")
    out = []
    for i in range(rounds):
        name = f"fresh-{i}"
        await client.create(resource("services"), {"apiVersion": "v1", "kind": "Service",
                                                   "metadata": {"name": name, "namespace": "bench-0"},
                                                   "spec": {"ports": [{"port": 80}]}}, "bench-0")
        created = time.perf_counter()
        q = dns.message.make_query(f"{name}.bench-0.svc.cluster.local", "A")
        while True:
            r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=1)
            if r.answer:
                out.append(time.perf_counter() - created)
                break
            await asyncio.sleep(0.001)
    await client.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    data = Path(tempfile.mkdtemp(prefix="kates-bench-dns-"))
    server = Server(data, extra=["--disable-controllers", "--disable-scheduler", "--disable-agent", "--store",
                                 "memory://"])
    server.start()
    dns_proc = None
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (client and server share them)")
    try:
        t0 = time.perf_counter()
        made = asyncio.run(populate(server, args.services))
        print(f"created {len(made)} Services ({sum(k == 'headless' for *_, k in made)} headless, 3 endpoints each) "
              f"in {time.perf_counter() - t0:.1f}s")
        dns_proc = subprocess.Popen([sys.executable, "-m", "kates.cli.main", "dns", "--kubeconfig",
                                     str(data / "kubeconfig.yaml"), "--listen", "127.0.0.1:0", "--upstream", ""],
                                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert dns_proc.stdout is not None
        line = dns_proc.stdout.readline()
        port = int(line.split(" on ")[1].split()[0].rsplit(":", 1)[1])
        print(f"kates dns (pid {dns_proc.pid}) on 127.0.0.1:{port}")
        hot = []
        for ns, name, kind in made:
            fqdn = f"{name}.{ns}.svc.cluster.local"
            hot.append(wire(fqdn))
            hot.append(wire(f"_http._tcp.{fqdn}", "SRV"))
            if kind == "headless":
                hot.append(wire(f"{name}-1.{fqdn}"))
        random.shuffle(hot)
        asyncio.run(drive(port, hot, args.concurrency, 1.0))                                     # warm-up
        report(f"cluster names ({len(hot)} distinct questions, {args.concurrency} in flight)",
               measured(dns_proc.pid, port, hot, args.concurrency, args.seconds))
        report("cluster names paced at 5,000 queries/s (the target rate; dnsperf -Q)",
               measured(dns_proc.pid, port, hot, 0, args.seconds, rate=5000))
        cold = [wire(f"n{i}-{random.getrandbits(32):x}.bench-{i % 10}.svc.cluster.local") for i in range(40_000)]
        report("unique names (no cache: every answer built; NXDOMAIN + SOA)",
               measured(dns_proc.pid, port, cold, args.concurrency, args.seconds))
        fresh = asyncio.run(time_to_answer(server, port))
        print(f"Service created -> first answer: median {statistics.median(fresh) * 1000:.1f} ms, "
              f"max {max(fresh) * 1000:.1f} ms ({len(fresh)} Services)")
        rss = int(next(l for l in Path(f"/proc/{dns_proc.pid}/status").read_text().splitlines()
                       if l.startswith("VmRSS:")).split()[1]) / 1024
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        print(f"kates dns RSS: {rss:.0f} MB with {len(made)} Services")
    finally:
        if dns_proc is not None:
            dns_proc.terminate()
            dns_proc.wait(10)
        server.proc.terminate()
        server.proc.wait(15)
        import shutil
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
