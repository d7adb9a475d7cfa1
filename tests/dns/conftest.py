"""Fixtures of the cluster DNS tests: an API server of their own, a `kates dns` process on a free loopback port, a
stand-in upstream resolver on loopback (test traffic stays on this machine), and the real node for end-to-end tests."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness import ROOT, Kubectl, Server

OUTSIDE = {"outside.example.": "203.0.113.7", "target.example.": "203.0.113.8"}


class Upstream:
    """A tiny authoritative server for a few outside names on 127.0.0.1, counting the queries it gets."""

    def __init__(self) -> None:
        import dns.message
        import dns.rcode
        import dns.rrset
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries: list[str] = []
        self._msg, self._rcode, self._rrset = dns.message, dns.rcode, dns.rrset
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            query = self._msg.from_wire(data)
            q = query.question[0]
            name = q.name.to_text().lower()
            self.queries.append(name)
            r = self._msg.make_response(query)
            if name in OUTSIDE:
                if q.rdtype == 1:
                    r.answer.append(self._rrset.from_text(q.name, 60, "IN", "A", OUTSIDE[name]))
            else:
                r.set_rcode(self._rcode.NXDOMAIN)
            self.sock.sendto(r.to_wire(), addr)

    def close(self) -> None:
        self.sock.close()


class DNSProcess:
    """`kates dns` against a server, on 127.0.0.1 and a free port, publishing itself as kube-dns (10.96.0.10)."""

    def __init__(self, kubeconfig: Path, upstream: Upstream, log: Path, node_name: str = "dns-test") -> None:
        self.log = log
        with open(log, "a") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kates.cli.main", "dns", "--kubeconfig", str(kubeconfig), "--listen",
                 "127.0.0.1:0", "--upstream", f"127.0.0.1:{upstream.port}", "--service-ip", "10.96.0.10",
                 "--node-name", node_name], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "serving" not in line:
            self.stop()
            raise AssertionError(f"kates dns did not start: {line!r}\n{log.read_text()}")
        self.port = int(line.split(" on ")[1].split()[0].rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def dns_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("dns"), extra=["--disable-controllers", "--disable-scheduler"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def dns_kubectl(dns_api: Server) -> Kubectl:
    return Kubectl(dns_api.kubeconfig)


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    u = Upstream()
    yield u
    u.close()


@pytest.fixture(scope="session")
def kates_dns(dns_api: Server, upstream: Upstream) -> Iterator[DNSProcess]:
    p = DNSProcess(dns_api.kubeconfig, upstream, dns_api.data_dir / "dns.log")
    yield p
    p.stop()


@pytest.fixture
def start_dns(dns_api: Server, upstream: Upstream) -> Iterator[Callable[[str], DNSProcess]]:
    """Start more `kates dns` processes (by node name) against the same API server; stopped at the test's end."""
    started: list[DNSProcess] = []

    def start(node_name: str) -> DNSProcess:
        p = DNSProcess(dns_api.kubeconfig, upstream, dns_api.data_dir / f"dns-{node_name}.log", node_name)
        started.append(p)
        return p
    yield start
    for p in started:
        p.stop()


@pytest.fixture
def dns_ns(dns_kubectl: Kubectl) -> Iterator[str]:
    import uuid
    name = "d-" + uuid.uuid4().hex[:8]
    dns_kubectl.run("create", "namespace", name)
    yield name
    dns_kubectl.run("delete", "namespace", name, "--wait=false", check=False)
