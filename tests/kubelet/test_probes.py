"""Probes and lifecycle hooks against real servers started here (HTTP, TCP, gRPC on 127.0.0.1) and real exec in
containers of the process runtime."""
from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import grpc.aio
import pytest
from aiohttp import web

from kates.kubelet.hooks import run_handler
from kates.kubelet.probes import ProbeWorker, run_probe
from kates.runtime.interface import ContainerConfig, ContainerMetadata, PodSandboxConfig, PodSandboxMetadata
from kates.runtime.process import BUSYBOX_IMAGE, ProcessRuntime
from nodeutil import BUSYBOX, wait_for
from test_envvars import cri_exec

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Web:
    """A real HTTP server whose health the test switches."""

    def __init__(self) -> None:
        self.healthy = True
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.path_qs, dict(request.headers)))
            path = request.path
            if path == "/health":
                return web.Response(status=200 if self.healthy else 503, text="ok" if self.healthy else "sick")
            if path == "/moved":
                raise web.HTTPFound("/health")
            if path == "/offsite":
                raise web.HTTPFound("http://192.0.2.1:9/elsewhere")   # never followed: nothing is sent there
            if path == "/loop":
                raise web.HTTPFound("/loop")
            if path == "/slow":
                await asyncio.sleep(1)
                return web.Response(text="late")
            if path == "/fail":
                return web.Response(status=500, text="boom")
            return web.Response(status=204)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, HOST, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[Web]:
    w = Web()
    await w.start()
    yield w
    await w.stop()


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = ProcessRuntime(tmp_path / "process", isolate=False)    # files under tmp_path seen from the host
    yield rt
    await rt.close()


async def running_container(rt: ProcessRuntime, tmp_path: Path) -> str:
    sb = await rt.run_pod_sandbox(PodSandboxConfig(PodSandboxMetadata("probed", "default", "uid-probed"),
                                                   hostname="probed"))
    cid = await rt.create_container(sb, ContainerConfig(ContainerMetadata("main"), BUSYBOX_IMAGE,
                                                        command=("sleep", "60"), log_path=str(tmp_path / "c.log")))
    await rt.start_container(cid)
    return cid


async def probe(spec: dict[str, Any], timeout: float = 1.0, **kw: Any) -> tuple[bool, str]:
    return await run_probe(spec, runtime=kw.pop("runtime", None), container_id=kw.pop("container_id", ""),
                           pod_ip=HOST, timeout=timeout, **kw)


async def test_http_get(http: Web) -> None:
    port = http.port
    assert await probe({"httpGet": {"path": "/health", "port": port}}) == (True, "ok")
    assert (await probe({"httpGet": {"path": "/other", "port": port}}))[0]          # 204
    http.healthy = False
    assert await probe({"httpGet": {"path": "/health", "port": port}}) == (
        False, "HTTP probe failed with statuscode: 503")
    assert await probe({"httpGet": {"path": "/fail", "port": port}}) == (
        False, "HTTP probe failed with statuscode: 500")
    http.healthy = True
    # same-host redirects are followed; off-host ones end the probe as a success with a warning
    assert await probe({"httpGet": {"path": "/moved", "port": port}}) == (True, "ok")
    ok, msg = await probe({"httpGet": {"path": "/offsite", "port": port}})
    assert ok and msg.startswith("Probe terminated redirects")
    ok, msg = await probe({"httpGet": {"path": "/loop", "port": port}})
    assert not ok and "redirects" in msg
    # named port, headers, user agent, query strings
    container = {"name": "c", "ports": [{"name": "http", "containerPort": port}]}
    assert (await probe({"httpGet": {"path": "/health?x=1", "port": "http", "httpHeaders": [
        {"name": "X-Probe", "value": "yes"}]}}, container=container))[0]
    path, headers = http.requests[-1]
    assert path == "/health?x=1" and headers["X-Probe"] == "yes" and headers["User-Agent"] == "kube-probe/1.32"
    assert await probe({"httpGet": {"port": "nope"}}, container=container) == (
        False, "couldn't find port: nope in container")
    # timeouts and refused connections
    started = time.monotonic()
    ok, msg = await probe({"httpGet": {"path": "/slow", "port": port}}, timeout=0.3)
    assert not ok and "context deadline exceeded" in msg and time.monotonic() - started < 2
    closed = free_port()
    assert await probe({"httpGet": {"path": "/", "port": closed}}) == (
        False, f'Get "http://{HOST}:{closed}/": dial tcp {HOST}:{closed}: connect: connection refused')


async def test_tcp_socket(http: Web) -> None:
    assert await probe({"tcpSocket": {"port": http.port}}) == (True, "")
    closed = free_port()
    assert await probe({"tcpSocket": {"port": closed}}) == (
        False, f"dial tcp {HOST}:{closed}: connect: connection refused")


async def test_grpc_health() -> None:
    statuses = {b"": b"\x08\x01", b"\x0a\x04down": b"\x08\x02"}

    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if request not in statuses:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return statuses[request]

    handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(check)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{HOST}:0")
    bare = grpc.aio.server()            # a gRPC server without the health service
    bare_port = bare.add_insecure_port(f"{HOST}:0")
    await server.start()
    await bare.start()
    try:
        assert await probe({"grpc": {"port": port}}) == (True, "")
        assert await probe({"grpc": {"port": port, "service": "down"}}) == (
            False, 'service unhealthy (responded with "NOT_SERVING")')
        ok, msg = await probe({"grpc": {"port": port, "service": "other"}})
        assert not ok and "unknown service" in msg
        ok, msg = await probe({"grpc": {"port": bare_port}})
        assert not ok and msg.startswith("this server does not implement the grpc health protocol")
    finally:
        await server.stop(None)
        await bare.stop(None)
    ok, msg = await probe({"grpc": {"port": free_port()}}, timeout=0.3)
    assert not ok and msg.startswith("timeout: failed to connect service")


async def test_exec_in_a_real_container(runtime: ProcessRuntime, tmp_path: Path) -> None:
    cid = await running_container(runtime, tmp_path)
    flag = tmp_path / "alive"
    spec = {"exec": {"command": ["sh", "-c", f"cat {flag} && echo fine"]}}
    ok, msg = await probe(spec, runtime=runtime, container_id=cid)
    assert not ok and "No such file" in msg
    flag.write_text("yes\n")
    assert await probe(spec, runtime=runtime, container_id=cid) == (True, "yes\nfine\n")
    started = time.monotonic()
    ok, msg = await probe({"exec": {"command": ["sleep", "5"]}}, timeout=0.3, runtime=runtime, container_id=cid)
    assert (ok, msg) == (False, 'command "sleep 5" timed out') and time.monotonic() - started < 3


class Recorder:
    def __init__(self) -> None:
        self.results: list[tuple[str, bool]] = []
        self.failures: list[str] = []

    def on_result(self, kind: str, ok: bool, message: str) -> None:
        self.results.append((kind, ok))

    def on_failure(self, kind: str, message: str) -> None:
        self.failures.append(message)


async def wait_until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_readiness_worker_thresholds_and_transitions(http: Web) -> None:
    rec = Recorder()
    http.healthy = False
    w = ProbeWorker("readiness", {"httpGet": {"path": "/health", "port": http.port}, "periodSeconds": 0.1,
                                  "successThreshold": 2, "failureThreshold": 2},
                    runtime=None, container_id="c1", pod_ip_fn=lambda: HOST, on_result=rec.on_result,
                    on_failure=rec.on_failure)
    assert w.result is False                           # readiness starts not ready
    w.start()
    try:
        await wait_until(lambda: w.probes_run >= 3)
        assert rec.results == []                       # failing while already not ready: no transition
        assert rec.failures[0] == "Readiness probe failed: HTTP probe failed with statuscode: 503"
        http.healthy = True
        await wait_until(lambda: rec.results == [("readiness", True)])
        runs = w.probes_run
        http.healthy = False
        await wait_until(lambda: rec.results == [("readiness", True), ("readiness", False)])
        assert w.probes_run - runs >= 2                # two failures in a row before not ready
        http.healthy = True
        await wait_until(lambda: len(rec.results) == 3)    # readiness keeps probing
    finally:
        await w.stop()


async def test_liveness_waits_initial_delay_and_holds_after_failure(runtime: ProcessRuntime,
                                                                    tmp_path: Path) -> None:
    cid = await running_container(runtime, tmp_path)
    flag = tmp_path / "alive"
    flag.write_text("1")
    rec = Recorder()
    w = ProbeWorker("liveness", {"exec": {"command": ["cat", str(flag)]}, "initialDelaySeconds": 0.5,
                                 "periodSeconds": 0.1, "failureThreshold": 3},
                    runtime=runtime, container_id=cid, pod_ip_fn=lambda: HOST, on_result=rec.on_result,
                    on_failure=rec.on_failure)
    started = time.monotonic()
    w.start()
    try:
        await asyncio.sleep(0.3)
        assert w.probes_run == 0                       # initialDelaySeconds not over yet
        await wait_until(lambda: w.probes_run >= 2)
        assert time.monotonic() - started >= 0.5 and rec.results == [] and w.result is True
        flag.unlink()
        await wait_until(lambda: rec.results == [("liveness", False)])
        assert len(rec.failures) == 3 and rec.failures[0].startswith("Liveness probe failed: ")
        held = w.probes_run
        await asyncio.sleep(0.4)
        assert w.probes_run == held and w.on_hold      # no more probing until a new container
    finally:
        await w.stop()


async def test_startup_gates_liveness(http: Web) -> None:
    rec = Recorder()
    http.healthy = False
    startup = ProbeWorker("startup", {"httpGet": {"path": "/health", "port": http.port}, "periodSeconds": 0.1,
                                      "failureThreshold": 100},
                          runtime=None, container_id="c2", pod_ip_fn=lambda: HOST, on_result=rec.on_result,
                          on_failure=rec.on_failure)
    liveness = ProbeWorker("liveness", {"tcpSocket": {"port": http.port}, "periodSeconds": 0.1},
                           runtime=None, container_id="c2", pod_ip_fn=lambda: HOST, on_result=rec.on_result,
                           started_fn=lambda: startup.result is True)
    startup.start()
    liveness.start()
    try:
        await wait_until(lambda: startup.probes_run >= 3)
        assert liveness.probes_run == 0 and rec.results == []
        http.healthy = True
        await wait_until(lambda: rec.results == [("startup", True)])
        await wait_until(lambda: liveness.probes_run >= 2)
        done = startup.probes_run
        await asyncio.sleep(0.3)
        assert startup.probes_run == done              # a started container's startup probe never runs again
    finally:
        await startup.stop()
        await liveness.stop()

    # a startup probe that never succeeds reports failure once its threshold is reached
    rec2 = Recorder()
    failing = ProbeWorker("startup", {"tcpSocket": {"port": free_port()}, "periodSeconds": 0.05,
                                      "failureThreshold": 3},
                          runtime=None, container_id="c3", pod_ip_fn=lambda: HOST, on_result=rec2.on_result)
    failing.start()
    try:
        await wait_until(lambda: rec2.results == [("startup", False)])
        assert failing.probes_run == 3
    finally:
        await failing.stop()


# -- lifecycle hooks -------------------------------------------------------------------------------------------


async def test_hooks(runtime: ProcessRuntime, tmp_path: Path, http: Web) -> None:
    cid = await running_container(runtime, tmp_path)
    marker = tmp_path / "hooked"
    kw: dict[str, Any] = dict(runtime=runtime, container_id=cid, pod_ip=HOST)
    assert await run_handler({"exec": {"command": ["sh", "-c", f"echo ran > {marker}"]}}, **kw) is None
    assert marker.read_text() == "ran\n"
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}}
    err = await run_handler({"exec": {"command": ["sh", "-c", "echo bad >&2; exit 3"]}}, **kw,
                            container={"name": "main"}, pod=pod)
    assert err is not None and err.startswith('Exec lifecycle hook ([\'sh\', \'-c\', \'echo bad >&2; exit 3\']) for '
                                              'Container "main" in Pod "p_ns(u)" failed - error: command')
    assert "exited with 3" in err and "bad" in err

    # httpGet: any HTTP answer is success (the status is not checked); HTTPS to a plain HTTP server retries HTTP
    assert await run_handler({"httpGet": {"path": "/fail", "port": http.port}}, **kw) is None
    assert await run_handler({"httpGet": {"path": "/pre-stop", "port": "web", "scheme": "HTTPS"}}, **kw,
                             container={"name": "main", "ports": [{"name": "web", "containerPort": http.port}]}) is None
    assert [p for p, _ in http.requests][-2:] == ["/fail", "/pre-stop"]
    assert http.requests[-1][1]["User-Agent"] == "kube-lifecycle/1.32"
    closed = free_port()
    err = await run_handler({"httpGet": {"path": "/x", "port": closed}}, **kw)
    assert err is not None and "connection refused" in err

    started = time.monotonic()
    assert await run_handler({"sleep": {"seconds": 0.3}}, **kw) is None
    assert time.monotonic() - started >= 0.3


# -- on a real node ------------------------------------------------------------------------------------------------


def _events(k: Any, ns: str, name: str) -> list[dict[str, Any]]:
    return k.json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]


def _ready(k: Any, ns: str, name: str) -> str:
    return k.run("get", "pod", name, "-n", ns, "-o",
                 "jsonpath={.status.conditions[?(@.type=='Ready')].status}").stdout


@pytest.mark.node
async def test_probes_and_post_start_on_a_real_node(node_kubectl: Any, node_ns: str, node_cri: Any) -> None:
    k, ns = node_kubectl, node_ns
    k.apply(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed", "namespace": ns}, "spec": {
        "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": BUSYBOX,
            "command": ["sh", "-c", "mkdir -p /tmp/www; exec httpd -f -p 8080 -h /tmp/www"],
            "ports": [{"name": "http", "containerPort": 8080}],
            "lifecycle": {"postStart": {"exec": {"command": [
                "sh", "-c", "mkdir -p /tmp/www; echo ok > /tmp/www/index.html"]}}},
            "startupProbe": {"exec": {"command": ["test", "-f", "/tmp/www/index.html"]}, "periodSeconds": 1},
            "readinessProbe": {"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1,
                               "failureThreshold": 1},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}))
    k.run("wait", "--for=condition=Ready", "pod/probed", "-n", ns, "--timeout=60s")
    await cri_exec(node_cri, ns, "probed", "rm", "/tmp/www/index.html")
    wait_for("not ready", lambda: _ready(k, ns, "probed") == "False", timeout=30)
    wait_for("the Unhealthy event", lambda: [e for e in _events(k, ns, "probed") if e["reason"] == "Unhealthy"
                                             and e["message"] == "Readiness probe failed: HTTP probe failed with "
                                                                 "statuscode: 404"], timeout=15)
    await cri_exec(node_cri, ns, "probed", "sh", "-c", "echo back > /tmp/www/index.html")
    wait_for("ready again", lambda: _ready(k, ns, "probed") == "True", timeout=30)
    cs = k.json("get", "pod", "probed", "-n", ns)["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 0 and cs["started"] is True
    # an exec probe through containerd's ExecSync: exit codes and the timeout
    cid = cs["containerID"].split("://", 1)[1]
    assert await run_probe({"exec": {"command": ["sh", "-c", "echo hi; exit 0"]}}, runtime=node_cri,
                           container_id=cid, pod_ip="", timeout=1) == (True, "hi\n")
    assert (await run_probe({"exec": {"command": ["false"]}}, runtime=node_cri, container_id=cid, pod_ip="",
                            timeout=1))[0] is False
    started = time.monotonic()
    assert await run_probe({"exec": {"command": ["sleep", "10"]}}, runtime=node_cri, container_id=cid, pod_ip="",
                           timeout=1) == (False, 'command "sleep 10" timed out')
    assert time.monotonic() - started < 5


@pytest.mark.node
def test_pre_stop_runs_before_sigterm(node_kubectl: Any, node_ns: str, tmp_path: Path) -> None:
    k, ns = node_kubectl, node_ns
    host = tmp_path / "shared"
    host.mkdir()
    k.apply(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stopper", "namespace": ns}, "spec": {
        "terminationGracePeriodSeconds": 10,
        "volumes": [{"name": "h", "hostPath": {"path": str(host), "type": "Directory"}}],
        "containers": [{
            "name": "main", "image": BUSYBOX, "volumeMounts": [{"name": "h", "mountPath": "/h"}],
            "command": ["sh", "-c", "trap 'echo term >> /h/order; exit 0' TERM; "
                        "while true; do sleep 0.2; done"],
            "lifecycle": {"preStop": {"exec": {"command": [
                "sh", "-c", "echo prestop >> /h/order; sleep 1; echo prestop-done >> /h/order"]}}}}]}}))
    k.run("wait", "--for=condition=Ready", "pod/stopper", "-n", ns, "--timeout=60s")
    started = time.monotonic()
    k.run("delete", "pod", "stopper", "-n", ns, "--timeout=60s")
    took = time.monotonic() - started
    assert (host / "order").read_text().split() == ["prestop", "prestop-done", "term"]
    assert 1 <= took < 9, f"preStop (1 s) then a prompt exit on SIGTERM should take 1-9 s, took {took:.1f}s"
