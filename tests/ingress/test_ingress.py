"""The Ingress controller on a real node: busybox httpd pods behind Services, a `kates ingress` process of the
test's own on free ports, requests through curl (and aiohttp for websockets), objects through the real kubectl."""
from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import aiohttp
import pytest
from aiohttp import web

from harness import ROOT, free_port
from nodeutil import BUSYBOX, wait_for

pytestmark = [pytest.mark.node]

NODE_IP = "192.0.2.2"

POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {image}
    command: ["sh", "-c", "mkdir -p /www/api /www/cgi-bin && for f in index.html api/v1 apix exact; do echo {name} > /www/$f; done && printf '#!/bin/sh\\\\necho Content-Type: text/plain\\\\necho\\\\nsleep 4\\\\necho slow-{name}\\\\n' > /www/cgi-bin/slow && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $HTTP_X_FORWARDED_PROTO $HTTP_X_FORWARDED_FOR $HTTP_X_FORWARDED_HOST\\n' > /www/cgi-bin/env && chmod +x /www/cgi-bin/slow /www/cgi-bin/env && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def ingress_yaml(name: str, ns: str, rules: list[tuple[str, str, str, str]], extra: str = "") -> str:
    """rules: (host, path, pathType, service)."""
    by_host: dict[str, list[str]] = {}
    for host, path, path_type, svc in rules:
        by_host.setdefault(host, []).append(
            f"      - {{path: {path}, pathType: {path_type}, "
            f"backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}")
    body = "".join(f"  - host: {json.dumps(h)}\n    http:\n      paths:\n" + "\n".join(p) + "\n"
                   for h, p in by_host.items())
    return (f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {ns}}}\n"
            f"spec:\n{extra}  rules:\n{body}")


class Ingress:
    """A `kates ingress` process on free ports, against the node's API server."""

    def __init__(self, kubeconfig: Path, log: Path, *extra: str) -> None:
        self.http_port, self.https_port = free_port(), free_port()
        self.log = log
        with open(log, "w") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kates.cli.main", "ingress", "--kubeconfig", str(kubeconfig),
                 "--http-port", str(self.http_port), "--https-port", str(self.https_port), "--node-ip", NODE_IP,
                 *extra],
                cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def curl(self, host: str, path: str = "/", *args: str) -> tuple[int, str]:
        out = subprocess.run(["curl", "-s", "--max-time", "10", "-w", "\n%{http_code}", "-H", f"Host: {host}",
                              *args, f"http://{NODE_IP}:{self.http_port}{path}"],
                             capture_output=True, text=True, timeout=15).stdout
        body, _, code = out.rpartition("\n")
        return int(code or 0), body.strip()


@pytest.fixture(scope="module")
def ingress(node, tmp_path_factory) -> Iterator[Ingress]:
    proc = Ingress(node.kubeconfig, tmp_path_factory.mktemp("ingress") / "ingress.log")
    try:
        wait_for("the ingress to listen", lambda: proc.curl("nothing.invalid")[0] == 404, timeout=30)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def backends(node_kubectl) -> Iterator[str]:
    """Namespace with pods+services `a` and `b` (busybox httpd answering their own name on every file)."""
    ns = "ing-" + str(int(time.time() * 1000) % 10**8)
    node_kubectl.run("create", "namespace", ns)
    wait_for("the default service account", lambda: node_kubectl.run(
        "get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0, timeout=20)
    for name in ("a", "b"):
        node_kubectl.apply(POD.format(name=name, ns=ns, image=BUSYBOX))
    node_kubectl.run("wait", "--for=condition=Ready", "pod/a", "pod/b", "-n", ns, "--timeout=60s")
    yield ns
    node_kubectl.run("delete", "namespace", ns, "--wait=false", check=False)


def test_routes_by_host(node_kubectl, ingress, backends):
    ns = backends
    node_kubectl.apply(ingress_yaml("hosts", ns, [("a.example.com", "/", "Prefix", "a"),
                                                 ("b.example.com", "/", "Prefix", "b"),
                                                 ("*.wild.example", "/", "Prefix", "b")]))
    wait_for("host routing", lambda: ingress.curl("a.example.com") == (200, "a")
             and ingress.curl("b.example.com") == (200, "b"), timeout=30)
    assert ingress.curl("x.wild.example") == (200, "b")
    assert ingress.curl("x.y.wild.example")[0] == 404, "a wildcard covers one label only"
    assert ingress.curl("c.example.com")[0] == 404
    other = ingress_yaml("other", ns, [("other.example.com", "/", "Prefix", "a")]).replace(
        "spec:\n", "spec:\n  ingressClassName: nginx\n")
    node_kubectl.apply(other)
    node_kubectl.apply(ingress_yaml("after-other", ns, [("after.example.com", "/", "Prefix", "a")]))
    wait_for("a later Ingress to route", lambda: ingress.curl("after.example.com") == (200, "a"), timeout=30)
    assert ingress.curl("other.example.com")[0] == 404, "Ingresses of another class are not ours"
    assert "status" not in node_kubectl.json("get", "ingress", "other", "-n", ns) or not node_kubectl.json(
        "get", "ingress", "other", "-n", ns)["status"].get("loadBalancer", {}).get("ingress")


def test_path_prefix_is_element_wise_and_exact_wins(node_kubectl, ingress, backends):
    ns = backends
    node_kubectl.apply(ingress_yaml("paths", ns, [("p.example.com", "/", "Prefix", "a"),
                                                 ("p.example.com", "/api", "Prefix", "b"),
                                                 ("p.example.com", "/exact", "Exact", "b")]))
    wait_for("path routing", lambda: ingress.curl("p.example.com", "/api/v1") == (200, "b"), timeout=30)
    assert ingress.curl("p.example.com", "/apix") == (200, "a"), "Prefix /api must not match /apix"
    assert ingress.curl("p.example.com", "/exact") == (200, "b")
    assert ingress.curl("p.example.com", "/") == (200, "a")


def test_default_backend(node_kubectl, ingress, backends):
    ns = backends
    assert ingress.curl("unknown.example")[0] == 404
    node_kubectl.apply(f"""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: fallback, namespace: {ns}}}
spec:
  defaultBackend: {{service: {{name: b, port: {{number: 80}}}}}}
""")
    try:
        wait_for("the default backend", lambda: ingress.curl("unknown.example") == (200, "b"), timeout=30)
    finally:
        node_kubectl.run("delete", "ingress", "fallback", "-n", ns)
    wait_for("the default backend to go", lambda: ingress.curl("unknown.example")[0] == 404, timeout=30)


def _certificate(host: str, directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, pem = directory / f"{host}.crt", directory / f"{host}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def test_tls_with_sni(node_kubectl, ingress, backends, tmp_path):
    ns = backends
    certs = {}
    for host, svc in (("tls-a.example.com", "a"), ("tls-b.example.com", "b")):
        crt, key = _certificate(host, tmp_path)
        certs[host] = crt
        node_kubectl.run("create", "secret", "tls", f"{svc}-tls", "-n", ns, f"--cert={crt}", f"--key={key}")
    tls = ("  tls:\n  - {hosts: [tls-a.example.com], secretName: a-tls}\n"
           "  - {hosts: [tls-b.example.com], secretName: b-tls}\n")
    node_kubectl.apply(ingress_yaml("tls", ns, [("tls-a.example.com", "/", "Prefix", "a"),
                                               ("tls-b.example.com", "/", "Prefix", "b")], extra=tls))

    def https(host: str, path: str = "/") -> str:
        return subprocess.run(["curl", "-s", "--max-time", "10", "--cacert", str(certs[host]),
                               "--resolve", f"{host}:{ingress.https_port}:{NODE_IP}",
                               f"https://{host}:{ingress.https_port}{path}"],
                              capture_output=True, text=True, timeout=15).stdout.strip()
    wait_for("TLS routing", lambda: https("tls-a.example.com") == "a" and https("tls-b.example.com") == "b",
             timeout=30)
    assert https("tls-b.example.com", "/cgi-bin/env") == f"https {NODE_IP} tls-b.example.com:{ingress.https_port}"
    # each name got its own certificate: curl verified it against that host's CA only
    headers = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "--cacert", str(certs["tls-a.example.com"]),
                              "--resolve", f"tls-a.example.com:{ingress.https_port}:{NODE_IP}",
                              f"https://tls-a.example.com:{ingress.https_port}/"],
                             capture_output=True, text=True, timeout=15).stdout
    assert headers.startswith("HTTP/1.1 200")


def test_missing_service_gets_503_and_a_warning(node_kubectl, ingress, backends):
    ns = backends
    node_kubectl.apply(ingress_yaml("missing", ns, [("missing.example.com", "/", "Prefix", "nope")]))
    wait_for("503", lambda: ingress.curl("missing.example.com")[0] == 503, timeout=30)

    def warning():
        events = node_kubectl.json("get", "events", "-n", ns, "--field-selector", "involvedObject.name=missing")
        return [e for e in events["items"] if e["type"] == "Warning" and e["reason"] == "ServiceNotFound"]
    assert "nope" in wait_for("a Warning event", warning, timeout=30)[0]["message"]


def test_status_load_balancer_is_filled(node_kubectl, ingress, backends):
    ns = backends
    node_kubectl.apply(ingress_yaml("status", ns, [("status.example.com", "/", "Prefix", "a")]))
    lb = wait_for("status.loadBalancer", lambda: node_kubectl.json("get", "ingress", "status", "-n", ns)
                  ["status"]["loadBalancer"]["ingress"], timeout=30)
    assert lb == [{"ip": NODE_IP}]
    assert node_kubectl.json("get", "ingressclass", "kates")["metadata"]["annotations"][
        "ingressclass.kubernetes.io/is-default-class"] == "true"


def test_route_change_keeps_a_request_in_flight(node_kubectl, ingress, backends):
    ns = backends
    node_kubectl.apply(ingress_yaml("slow", ns, [("slow.example.com", "/", "Prefix", "a")]))
    wait_for("the slow route", lambda: ingress.curl("slow.example.com") == (200, "a"), timeout=30)
    started = time.monotonic()
    slow = subprocess.Popen(["curl", "-s", "--max-time", "15", "-H", "Host: slow.example.com",
                             f"http://{NODE_IP}:{ingress.http_port}/cgi-bin/slow"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        node_kubectl.apply(ingress_yaml("slow", ns, [("slow.example.com", "/", "Prefix", "b")]))
        wait_for("the new route", lambda: ingress.curl("slow.example.com") == (200, "b"), timeout=10)
        assert slow.poll() is None, "the route changed while the request was still in flight"
        out, _ = slow.communicate(timeout=15)
    finally:
        if slow.poll() is None:
            slow.kill()
    assert out.strip() == "slow-a" and time.monotonic() - started >= 4


async def test_websocket_passes_through(node_kubectl, ingress, backends):
    """Backend: an aiohttp echo server on the node address, behind a selector-less Service and a hand-made
    EndpointSlice (busybox has no websocket server)."""
    ns = backends

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=["echo"])
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(f"echo {msg.data} via {request.headers.get('X-Forwarded-Host')}")
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, NODE_IP, port).start()
    try:
        await asyncio.to_thread(node_kubectl.apply, f"""
apiVersion: v1
kind: Service
metadata: {{name: ws, namespace: {ns}}}
spec:
  ports: [{{port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ws-1
  namespace: {ns}
  labels: {{kubernetes.io/service-name: ws, endpointslice.kubernetes.io/managed-by: tests}}
addressType: IPv4
ports: [{{port: {port}, protocol: TCP}}]
endpoints: [{{addresses: ["{NODE_IP}"], conditions: {{ready: true}}}}]
---
""" + ingress_yaml("ws", ns, [("ws.example.com", "/ws", "Exact", "ws")]))
        url = f"http://{NODE_IP}:{ingress.http_port}/ws"
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.ws_connect(url, headers={"Host": "ws.example.com"}, protocols=["echo"],
                                                  timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                        assert ws.protocol == "echo"
                        for i in range(3):
                            await ws.send_str(f"hello {i}")
                            assert (await ws.receive(timeout=5)).data == f"echo hello {i} via ws.example.com"
                        await ws.send_bytes(b"\x01\x02\x03")
                        assert (await ws.receive(timeout=5)).data == b"\x03\x02\x01"
                    break
                except aiohttp.WSServerHandshakeError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.3)
    finally:
        await runner.cleanup()


async def test_streaming_retries_and_forwarded_headers(node_kubectl, ingress, backends):
    """Backend: an aiohttp server on the node address. Its response streams a first chunk and then waits for the
    client to have seen it; the request body streams likewise: a buffering proxy would deadlock both. The
    Service's EndpointSlice also lists a dead endpoint, which connect retries must hide."""
    ns = backends
    got_first_request_chunk = asyncio.Event()
    client_saw_first = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.headers["X-Seen"] = json.dumps({h: request.headers.get(h) for h in (
            "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Host")})
        await response.prepare(request)
        await response.write(b"first\n")
        await asyncio.wait_for(client_saw_first.wait(), 10)
        await response.write(b"second\n")
        return response

    async def upload(request: web.Request) -> web.Response:
        first = await request.content.readany()
        got_first_request_chunk.set()
        rest = await request.content.read()
        return web.Response(text=f"{len(first) + len(rest)}")

    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_post("/upload", upload)
    big = bytes(range(256)) * 4096      # 1 MiB with a Content-Length: streamed, not read whole
    app.router.add_get("/big", lambda _r: web.Response(body=big))
    runner = web.AppRunner(app)
    await runner.setup()
    port, dead = free_port(), free_port()
    await web.TCPSite(runner, NODE_IP, port).start()
    try:
        await asyncio.to_thread(node_kubectl.apply, f"""
apiVersion: v1
kind: Service
metadata: {{name: host, namespace: {ns}}}
spec:
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: host-1
  namespace: {ns}
  labels: {{kubernetes.io/service-name: host, endpointslice.kubernetes.io/managed-by: tests}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints: [{{addresses: ["{NODE_IP}"], conditions: {{ready: true}}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: host-dead
  namespace: {ns}
  labels: {{kubernetes.io/service-name: host, endpointslice.kubernetes.io/managed-by: tests}}
addressType: IPv4
ports: [{{name: http, port: {dead}, protocol: TCP}}]
endpoints: [{{addresses: ["{NODE_IP}"], conditions: {{ready: true}}}}]
---
""" + ingress_yaml("host", ns, [("host.example.com", "/", "Prefix", "host")]))
        base = f"http://{NODE_IP}:{ingress.http_port}"
        headers = {"Host": "host.example.com"}
        async with aiohttp.ClientSession() as session:
            async def status() -> int:
                async with session.post(f"{base}/upload", headers=headers, data=b"x") as r:
                    return r.status
            deadline = time.monotonic() + 30
            while await status() != 200:
                assert time.monotonic() < deadline, "the route never appeared"
                await asyncio.sleep(0.3)
            for _ in range(6):   # round-robin hits the dead endpoint every other time: retried, never seen
                async with session.post(f"{base}/upload", headers=headers, data=b"12345") as r:
                    assert (r.status, await r.text()) == (200, "5")

            async with session.get(f"{base}/big", headers=headers) as r:
                assert r.content_length == len(big) and await r.read() == big

            async with session.get(f"{base}/stream", headers=headers) as r:
                seen = json.loads(r.headers["X-Seen"])
                assert await asyncio.wait_for(r.content.readline(), 5) == b"first\n"
                client_saw_first.set()
                assert await asyncio.wait_for(r.content.readline(), 5) == b"second\n"
            assert seen == {"X-Forwarded-For": NODE_IP, "X-Forwarded-Proto": "http",
                            "X-Forwarded-Host": "host.example.com", "Host": "host.example.com"}

            got_first_request_chunk.clear()   # set again only by this upload's first chunk

            async def body():
                yield b"a" * 1000
                await asyncio.wait_for(got_first_request_chunk.wait(), 10)
                yield b"b" * 1000
            async with session.post(f"{base}/upload", headers=headers, data=body()) as r:
                assert (r.status, await r.text()) == (200, "2000")
    finally:
        await runner.cleanup()


def test_worker_processes_share_the_ports(node, node_kubectl, backends, tmp_path):
    """`--workers 2`: the parent binds once, both workers accept from the same sockets and route alike."""
    ns = backends
    node_kubectl.apply(ingress_yaml("workers", ns, [("workers.example.com", "/", "Prefix", "b")]))
    proc = Ingress(node.kubeconfig, tmp_path / "workers.log", "--workers", "2")
    try:
        wait_for("the workers to route", lambda: proc.curl("workers.example.com") == (200, "b"), timeout=30)
        assert [proc.curl("workers.example.com") for _ in range(10)] == [(200, "b")] * 10
        children = Path(f"/proc/{proc.proc.pid}/task/{proc.proc.pid}/children").read_text().split()
        assert len(children) == 2
    finally:
        proc.stop()
