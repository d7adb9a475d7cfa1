"""Port-forward (kubectl over WebSocket-tunnelled SPDY and plain SPDY; the Python client's WebSocket channels),
logs through the API server, and the kubelet API's own authentication."""
from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time

import aiohttp
import pytest

from streamenv import Env, free_port, needs_tools, unique, wait_for

pytestmark = [needs_tools, pytest.mark.asyncio(loop_scope="module")]


async def _http_get(port: int, path: str = "/index.html") -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def _web_pod(env: Env, text: str) -> tuple[str, int]:
    """A pod serving `text` over HTTP, ready. The process runtime shares the host's network, so there its httpd
    listens on a free loopback port; in a CRI sandbox it has the pod's own network namespace."""
    name = unique("web")
    port = free_port() if env.kind == "process" else 8080
    await env.pod(name, {"web": ["sh", "-c", f"mkdir -p /tmp/{name}; echo {text} > /tmp/{name}/index.html; "
                                             f"exec httpd -f -p {port} -h /tmp/{name}"]})
    cid = next(c.id for c in await env.runtime.list_containers() if c.labels.get("io.kubernetes.pod.name") == name)

    async def serving() -> bool:
        code, out, _ = await env.runtime.exec_sync(cid, ["wget", "-q", "-O-", f"http://127.0.0.1:{port}/index.html"],
                                                   5)
        return code == 0 and text.encode() in out
    await wait_for("httpd in the pod", serving, timeout=10, interval=0.1)
    return name, port


@pytest.mark.parametrize("websockets", ["true", "false"])
async def test_kubectl_port_forward(env: Env, websockets: str) -> None:
    name, pod_port = await _web_pod(env, f"forwarded-{websockets}")
    local = free_port()
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "port-forward", f"pod/{name}", f"{local}:{pod_port}", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env.kubectl_env(KUBECTL_PORT_FORWARD_WEBSOCKETS=websockets))
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert b"Forwarding from 127.0.0.1" in line, line

        async def fetch() -> bytes:
            try:
                return await _http_get(local)
            except OSError:
                return b""
        body = await wait_for("the forwarded port to answer", fetch)
        assert f"forwarded-{websockets}".encode() in body
        # several connections, one after another and at once, over the same kubectl connection
        bodies = await asyncio.gather(*(_http_get(local) for _ in range(5)))
        assert all(f"forwarded-{websockets}".encode() in b for b in bodies)
        assert proc.returncode is None
    finally:
        proc.kill()
        await proc.wait()


async def test_kubectl_port_forward_nothing_listening(env: Env) -> None:
    name, _ = await _web_pod(env, "unused")
    closed, local = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "port-forward", f"pod/{name}", f"{local}:{closed}", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env.kubectl_env())
    try:
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.wait_for(proc.stdout.readline(), 15)
        with contextlib.suppress(OSError):
            await _http_get(local)
        # kubectl 1.32 prints the kubelet's error and gives up on the whole forward
        err = await asyncio.wait_for(proc.stderr.read(), 10)
        assert f"error forwarding port {closed} to pod default/{name}".encode() in err, err
        assert await asyncio.wait_for(proc.wait(), 5) != 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def test_python_client_portforward(env: Env) -> None:
    from kubernetes import client, config
    from kubernetes.stream import portforward
    name, pod_port = await _web_pod(env, "from-python")
    api = client.CoreV1Api(config.new_client_from_config(str(env.kubeconfig)))

    def fetch() -> bytes:
        pf = portforward(api.connect_get_namespaced_pod_portforward, name, "default", ports=str(pod_port))
        sock = pf.socket(pod_port)
        sock.setblocking(True)
        sock.settimeout(10)
        sock.sendall(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        assert pf.error(pod_port) is None
        return data

    assert b"from-python" in await asyncio.to_thread(fetch)


async def test_logs(env: Env) -> None:
    name = unique("logs")
    await env.pod(name, {"main": ["sh", "-c", "for i in 1 2 3; do echo line-$i; done; echo oops >&2; "
                                              "while true; do sleep 0.2; echo tick; done"]})

    async def logged() -> bool:
        r = await env.kubectl("logs", name)
        return r.code == 0 and "oops" in r.stdout and "tick" in r.stdout
    await wait_for("the log", logged)
    lines = (await env.kubectl("logs", name)).stdout.splitlines()
    # stdout keeps its order; stderr is another pipe, interleaved as it arrived
    assert [x for x in lines if x != "oops"][:4] == ["line-1", "line-2", "line-3", "tick"] and "oops" in lines
    r = await env.kubectl("logs", name, "--tail=2", "--timestamps")
    assert r.code == 0 and len(r.stdout.splitlines()) == 2 and r.stdout[:2] == "20", r
    # follow: lines keep coming while kubectl stays connected
    proc = await asyncio.create_subprocess_exec("kubectl", "logs", "-f", name, "--tail=1",
                                                stdout=asyncio.subprocess.PIPE, env=env.kubectl_env())
    try:
        assert proc.stdout is not None
        seen = [await asyncio.wait_for(proc.stdout.readline(), 10) for _ in range(3)]
        assert all(line == b"tick\n" for line in seen), seen
    finally:
        proc.kill()
        await proc.wait()


async def test_log_errors(env: Env) -> None:
    name = unique("two")
    await env.pod(name, {"a": ["sleep", "3600"], "b": ["sleep", "3600"]})
    status = await _api_get(env, f"/api/v1/namespaces/default/pods/{name}/log")
    assert status["code"] == 400 and status["reason"] == "BadRequest"
    assert status["message"] == f"a container name must be specified for pod {name}, choose one of: [a b]"
    r = await env.kubectl("logs", name, "-c", "zzz")
    assert r.code != 0 and f"container zzz is not valid for pod {name}" in r.stderr, r
    unbound = unique("pending")
    await env.api.registry.create(env.rt("pods"), "default", {
        "metadata": {"name": unbound}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, manager="t")
    status = await _api_get(env, f"/api/v1/namespaces/default/pods/{unbound}/log")
    assert status["code"] == 400 and "does not have a host assigned" in status["message"], status


async def _api_get(env: Env, path: str) -> dict:
    ctx = ssl.create_default_context(cafile=str(env.pki.ca_cert))
    ctx.load_cert_chain(env.pki.admin_cert, env.pki.admin_key)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"https://127.0.0.1:{env.api.config.port}{path}", ssl=ctx) as r:
            return json.loads(await r.read())


async def test_kubelet_api_requires_cluster_client_certificate(env: Env, tmp_path) -> None:
    url = f"https://127.0.0.1:{env.kubelet.port}/healthz"
    anonymous = ssl.create_default_context(cafile=str(env.pki.ca_cert))
    anonymous.check_hostname = False
    async with aiohttp.ClientSession() as s:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, OSError)):
            async with s.get(url, ssl=anonymous) as r:
                await r.read()
        admin = ssl.create_default_context(cafile=str(env.pki.ca_cert))
        admin.check_hostname = False
        admin.load_cert_chain(env.pki.admin_cert, env.pki.admin_key)
        async with s.get(url, ssl=admin) as r:
            assert r.status == 200 and await r.text() == "ok"
        # a certificate from the cluster CA but not an admin's or the API server's: authenticated, not authorized
        from kates.apiserver.certs import _name
        node_cert, node_key = tmp_path / "node.crt", tmp_path / "node.key"
        env.pki._issue(node_cert, node_key, _name("system:node:other", "system:nodes"))
        other = ssl.create_default_context(cafile=str(env.pki.ca_cert))
        other.check_hostname = False
        other.load_cert_chain(node_cert, node_key)
        async with s.get(f"https://127.0.0.1:{env.kubelet.port}/containerLogs/default/x/y", ssl=other) as r:
            assert r.status == 403


async def test_python_client_portforward_to_a_closed_port(env: Env) -> None:
    from kubernetes import client, config
    from kubernetes.stream import portforward
    name, _ = await _web_pod(env, "closed")
    closed = 8081 if env.kind == "cri" else free_port()
    api = client.CoreV1Api(config.new_client_from_config(str(env.kubeconfig)))

    def attempt() -> str | None:
        pf = portforward(api.connect_get_namespaced_pod_portforward, name, "default", ports=str(closed))
        sock = pf.socket(closed)
        sock.setblocking(True)
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            while sock.recv(65536):
                pass
        deadline = time.monotonic() + 5
        while pf.error(closed) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return pf.error(closed)

    error = await asyncio.to_thread(attempt)
    assert error is not None and f"error forwarding port {closed}" in error, error


async def test_unreachable_kubelet_is_a_clear_error(env: Env) -> None:
    nodes = env.rt("nodes")
    dead = unique("dead-node")
    await env.api.registry.create(nodes, None, {"metadata": {"name": dead}}, manager="t")

    def addressed(o: dict) -> dict:
        o["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": free_port()}}}
        return o
    await env.api.registry.update(nodes, None, dead, addressed, subresource="status", manager="t")
    name = unique("orphan")
    await env.api.registry.create(env.rt("pods"), "default", {
        "metadata": {"name": name},
        "spec": {"nodeName": dead, "containers": [{"name": "c", "image": "busybox"}]}}, manager="t")
    await env.api.registry.update(env.rt("pods"), "default", name, lambda o: {**o, "status": {"phase": "Running"}},
                                  subresource="status", manager="t")
    r = await env.kubectl("exec", name, "--", "true")
    assert r.code != 0 and "error dialing backend" in r.stderr, r
    r = await env.kubectl("logs", name)
    assert r.code != 0 and "connect" in r.stderr.lower(), r
