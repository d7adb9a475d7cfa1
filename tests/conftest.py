"""Shared fixtures: a real `kates server` in a subprocess, the real kubectl and the official Python client."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `kates server` process; restartable on the same data dir."""

    def __init__(self, data_dir: Path, store: str | None = None, extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.store = store
        self.extra = extra or []
        self.proc: subprocess.Popen[str] | None = None
        self.kubeconfig = data_dir / "kubeconfig.yaml"
        self.log = data_dir / "server.log"

    def start(self, timeout: float = 20) -> float:
        args = [sys.executable, "-m", "kates.cli.main", "server", "--data-dir", str(self.data_dir),
                "--port", str(self.port), *self.extra]
        if self.store:
            args += ["--store", self.store]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("kates is ready: KUBECONFIG="):
                assert line.strip().endswith(str(self.kubeconfig))
                return time.monotonic() - started
        self.stop()
        raise AssertionError(f"kates server did not become ready; log:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGINT) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        return code


class Kubectl:
    """The real kubectl with its own HOME, so no discovery cache leaks between runs."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.home = tempfile.mkdtemp(prefix="kates-kubectl-home-")

    def env(self, **extra: str) -> dict[str, str]:
        return dict(os.environ, HOME=self.home, KUBECONFIG=str(self.kubeconfig), **extra)

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["kubectl", "--request-timeout=30s", *args], input=input, env=env or self.env(),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", *args, input=manifest)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API server alone: no controller writes behind the tests' backs."""
    s = Server(tmp_path_factory.mktemp("kates"), extra=["--disable-controllers", "--disable-scheduler"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A whole control plane (controllers, scheduler) with three hollow nodes."""
    s = Server(tmp_path_factory.mktemp("cluster"), extra=["--hollow-nodes", "3"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def cluster_kubectl(cluster: Server) -> Kubectl:
    return Kubectl(cluster.kubeconfig)


@pytest.fixture
def cluster_ns(cluster_kubectl: Kubectl) -> Iterator[str]:
    import uuid
    name = "c-" + uuid.uuid4().hex[:8]
    cluster_kubectl.run("create", "namespace", name)
    yield name
    cluster_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def kubectl(server: Server) -> Kubectl:
    return Kubectl(server.kubeconfig)


@pytest.fixture
def ns(kubectl: Kubectl) -> Iterator[str]:
    import uuid
    name = "t-" + uuid.uuid4().hex[:8]
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def api_client(server: Server) -> Any:
    from kubernetes import client, config
    return config.new_client_from_config(str(server.kubeconfig))
