"""A real node for tests: `kates server` with its agent running pods as containers in a containerd of its own.

`node` (one per test session) has a pod CIDR 10.244.N.0/24 (random N in 100..250), a node name, a kubelet port and
a data dir (so a CNI bridge) of its own, so parallel test clusters on one machine never collide. At the end every
pod is deleted through the API (the agent removes the containers before the pods go) and the node's bridge is
removed. Tests that need the node skip when this machine cannot run containers (no root or no containerd).

Fixtures: `node`, `node_kubectl`, `node_ns` (a fresh namespace per test) and `node_cri` (a CRI client to the node's
containerd, to look at what really runs), registered once by tests/conftest.py so every directory shares one node.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest


from harness import Kubectl, Server, free_port

BUSYBOX = "localhost/busybox:latest"


class Node(Server):  # type: ignore[misc,valid-type]
    """A `kates server` whose agent runs real containers; knows its pod CIDR, node name and agent process."""

    agent = True

    def __init__(self, data_dir: Path, runtime: str = "cri") -> None:
        n = random.randint(100, 250)
        self.pod_cidr = f"10.244.{n}.0/24"
        self.node_name = f"kn-{n}-{uuid.uuid4().hex[:6]}"
        self.kubelet_port = free_port()
        super().__init__(data_dir, extra=["--runtime", runtime, "--node-name", self.node_name,
                                          "--pod-cidr", self.pod_cidr, "--kubelet-port", str(self.kubelet_port),
                                          # ports 80/443 belong to the machine's own cluster; tests/ingress runs
                                          # its own controller on free ports
                                          "--disable-ingress"])

    @property
    def agent_dir(self) -> Path:
        return self.data_dir / "node"

    @property
    def containerd_socket(self) -> Path:
        return self.agent_dir / "containerd" / "containerd.sock"

    def agent_pid(self) -> int | None:
        """The pid of the `kates agent` child of the server, if one runs."""
        assert self.proc is not None
        for pid in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split():
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"agent" in args and b"kates.cli.main" in args:
                return int(pid)
        return None

    def in_pod_cidr(self, ip: str) -> bool:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(self.pod_cidr)


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (AssertionError, KeyError, IndexError, ValueError, TypeError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def node_ready(kubectl: Kubectl, name: str) -> bool:
    proc = kubectl.run("get", "node", name, "-o", "json", check=False)
    if proc.returncode != 0:
        return False
    conditions = json.loads(proc.stdout)["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _can_run_containers() -> str:
    if os.geteuid() != 0:
        return "needs root"
    import shutil
    if not shutil.which("containerd"):
        return "needs containerd"
    return ""


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    why = _can_run_containers()
    if why:
        pytest.skip(f"a real node {why}")
    n = Node(tmp_path_factory.mktemp("node"))
    n.start()
    kubectl = Kubectl(n.kubeconfig)
    try:
        wait_for("the node to be Ready", lambda: node_ready(kubectl, n.node_name), timeout=60)
        yield n
    finally:
        try:
            kubectl.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--timeout=60s",
                        check=False, timeout=90)
        except subprocess.TimeoutExpired:
            pass
        leftovers = asyncio.run(_drain_runtime(n.containerd_socket, timeout=30))
        n.stop()
        subprocess.run(["ip", "link", "delete", _bridge(n.agent_dir)], capture_output=True, check=False)
        _unmount_below(n.data_dir)
        assert not leftovers, f"sandboxes the agent left behind (removed by the fixture): {leftovers}"


async def _drain_runtime(socket: Path, timeout: float) -> list[str]:
    """Wait until the agent has removed every sandbox (pods deleted at the end, or by namespace deletion);
    what is still there after `timeout` is removed here, so no test run leaks containers, and reported."""
    from kates.runtime.cri import CRIRuntime
    if not socket.exists():
        return []
    runtime = CRIRuntime(str(socket))
    try:
        deadline = time.monotonic() + timeout
        while True:
            sandboxes = await runtime.list_pod_sandbox()
            if not sandboxes:
                return []
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        names = [f"{s.metadata.namespace}/{s.metadata.name}" for s in sandboxes]
        for s in sandboxes:
            try:
                await runtime.stop_pod_sandbox(s.id)
                await runtime.remove_pod_sandbox(s.id)
            except Exception:  # noqa: BLE001 (best effort: the report names them)
                pass
        return names
    finally:
        await runtime.close()


def _unmount_below(directory: Path) -> None:
    """Volume mounts (tmpfs of projected volumes) of pods still terminating when the node stopped would keep the
    test's temporary directory from being removed."""
    prefix = str(directory.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _bridge(agent_dir: Path) -> str:
    try:
        from kates.runtime.cni import bridge_name
        return bridge_name(agent_dir)
    except ImportError:
        return ""


@pytest.fixture(scope="session")
def node_kubectl(node: Node) -> Kubectl:
    return Kubectl(node.kubeconfig)


@pytest.fixture
def node_ns(node_kubectl: Kubectl) -> Iterator[str]:
    name = "k-" + uuid.uuid4().hex[:8]
    node_kubectl.run("create", "namespace", name)
    wait_for("the default service account", lambda: node_kubectl.run(
        "get", "serviceaccount", "default", "-n", name, check=False).returncode == 0, timeout=20)
    yield name
    node_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
async def node_cri(node: Node) -> Any:
    """A CRI client to the node's own containerd: what really runs, independent of the agent."""
    from kates.runtime.cri import CRIRuntime
    runtime = CRIRuntime(str(node.containerd_socket))
    yield runtime
    await runtime.close()
