"""Shared by tests/streaming (the `env` fixture is registered by conftest.py). An API server and a kubelet API in the test's event loop, over a real runtime, and the real kubectl against them.

The kubelet core is not involved: pods are made directly through the runtime interface and a Pod object bound to a
Node that points at this KubeletServer, so logs/exec/attach/port-forward are tested from kubectl and the official
Python client down to real processes, through the API server's proxy, TLS and client certificates included.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio

from kates.apiserver.certs import PKI
from kates.apiserver.server import APIServer, ServerConfig
from kates.kubelet.server import KubeletServer
from kates.runtime.interface import ContainerConfig, ContainerMetadata, PodSandboxConfig, PodSandboxMetadata
from kates.store import open_store

BUSYBOX = "localhost/busybox:latest"
NODE = "stream-node"

needs_tools = pytest.mark.skipif(not (os.path.exists("/bin/busybox") and shutil.which("kubectl")),
                                 reason="needs busybox-static and kubectl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclasses.dataclass
class Env:
    dir: Path
    pki: PKI
    api: APIServer
    runtime: Any
    kubelet: KubeletServer
    kubeconfig: Path
    home: str
    kind: str           # the runtime: process or cri

    def kubectl_env(self, **extra: str) -> dict[str, str]:
        return dict(os.environ, HOME=self.home, KUBECONFIG=str(self.kubeconfig), **extra)

    async def kubectl(self, *args: str, input: str | None = None, timeout: float = 30,
                      env: dict[str, str] | None = None) -> Result:
        proc = await asyncio.create_subprocess_exec(
            "kubectl", "--request-timeout=20s", *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env or self.kubectl_env())
        try:
            out, err = await asyncio.wait_for(proc.communicate(input.encode() if input is not None else None), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"kubectl {' '.join(args)} did not finish in {timeout}s")
        return Result(proc.returncode or 0, out.decode(), err.decode())

    def rt(self, resource: str) -> Any:
        rt = self.api.catalog.lookup("", "v1", resource)
        assert rt is not None
        return rt

    async def pod(self, name: str, containers: dict[str, list[str]], *, stdin: bool = False, tty: bool = False,
                  namespace: str = "default", start: bool = True) -> dict[str, Any]:
        """A Pod bound to our node and Running, whose containers run (through the runtime) the given commands."""
        spec_containers = [{"name": c, "image": BUSYBOX, "command": cmd, "stdin": stdin, "stdinOnce": stdin, "tty": tty}
                           for c, cmd in containers.items()]
        pod = await self.api.registry.create(self.rt("pods"), namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": NODE, "containers": spec_containers}}, manager="test")
        uid = pod["metadata"]["uid"]
        labels = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                  "io.kubernetes.pod.uid": uid}
        log_dir = self.dir / "logs" / "pods" / f"{namespace}_{name}_{uid}"
        config = PodSandboxConfig(PodSandboxMetadata(name, namespace, uid), hostname=name, log_directory=str(log_dir),
                                  labels=labels)
        sandbox = await self.runtime.run_pod_sandbox(config)
        for c, cmd in containers.items():
            cid = await self.runtime.create_container(sandbox, ContainerConfig(
                ContainerMetadata(c), BUSYBOX, command=tuple(cmd), log_path=str(log_dir / c / "0.log"),
                stdin=stdin, stdin_once=stdin, tty=tty, labels={**labels, "io.kubernetes.container.name": c}), config)
            if start:
                await self.runtime.start_container(cid)

        def running(o: dict[str, Any]) -> dict[str, Any]:
            o["status"] = {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                           "conditions": [{"type": "Ready", "status": "True"}],
                           "containerStatuses": [{"name": c, "ready": True, "restartCount": 0, "image": BUSYBOX,
                                                  "imageID": "", "state": {"running": {}}} for c in containers]}
            return o
        return await self.api.registry.update(self.rt("pods"), namespace, name, running, subresource="status",
                                              manager="test")


async def _node(api: APIServer, port: int) -> None:
    nodes = api.catalog.lookup("", "v1", "nodes")
    await api.registry.create(nodes, None, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}},
                              manager="test")

    def ready(o: dict[str, Any]) -> dict[str, Any]:
        o["status"] = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                     {"type": "Hostname", "address": NODE}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        return o
    await api.registry.update(nodes, None, NODE, ready, subresource="status", manager="test")


async def _open_runtime(kind: str, d: Path) -> Any:
    if kind == "process":
        from kates.runtime.process import ProcessRuntime
        return ProcessRuntime(d / "process")
    from kates.runtime import cri_available, open_runtime
    if not cri_available():
        pytest.skip("needs root and containerd")
    runtime = await open_runtime("cri", data_dir=d)
    await runtime.update_runtime_config(f"10.244.{random.randint(100, 250)}.0/24")
    return runtime


async def _close_runtime(kind: str, runtime: Any, d: Path) -> None:
    if kind == "process":
        await runtime.close()
        return
    from kates.runtime import cni
    from kates.runtime.containerd import remove_pod_cgroups
    clean = False
    try:
        for s in await runtime.list_pod_sandbox():
            await runtime.stop_pod_sandbox(s.id)
            await runtime.remove_pod_sandbox(s.id)
        clean = True
    finally:
        await runtime.close()
        if clean:     # never delete containerd's state while it still has containers
            await cni.delete_bridge(d)
            await asyncio.to_thread(remove_pod_cgroups, f"/kates/{cni.bridge_name(d)}")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["process", "cri"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    kind = request.param
    d = Path(tempfile.mkdtemp(prefix="ks", dir="/tmp"))     # short: the CRI runtime names its bridge after it
    pki = PKI(d)
    await asyncio.to_thread(pki.ensure, ["127.0.0.1", "localhost"])
    store = open_store(f"sqlite://{d / 'state.db'}")
    await store.start()
    config = ServerConfig(port=free_port())
    config.admission_plugins = ("Priority",)    # no serviceaccount controller here
    api = APIServer(store, config)
    api.tokens = pki.load_tokens()
    api.podproxy.tls = pki.kubelet_client_context()
    await api.start(pki.server_context())
    kubeconfig = d / "kubeconfig.yaml"
    pki.write_kubeconfig(kubeconfig, f"https://127.0.0.1:{config.port}")
    try:
        runtime = await _open_runtime(kind, d)
    except BaseException:
        await api.stop()
        await store.close()
        shutil.rmtree(d, ignore_errors=True)
        raise
    cert, key = pki.ensure_kubelet_serving(NODE, ["127.0.0.1"])
    kubelet = KubeletServer(runtime, node_name=NODE, tls_cert=cert, tls_key=key, client_ca=pki.ca_cert)
    port = await kubelet.start("127.0.0.1", 0)
    await _node(api, port)
    env = Env(d, pki, api, runtime, kubelet, kubeconfig, tempfile.mkdtemp(prefix="kates-kubectl-home-"), kind)
    try:
        yield env
    finally:
        await kubelet.stop()
        await _close_runtime(kind, runtime, d)
        await api.stop()
        await store.close()
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(env.home, ignore_errors=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def wait_for(what: str, check: Any, timeout: float = 10, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
