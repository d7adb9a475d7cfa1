"""What tests share: a real `kates server` in a subprocess (`Server`) and the real kubectl with its own HOME (`Kubectl`).

A module, not conftest.py, so tests import it by a name no other directory's conftest shadows."""
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `kates server` process; restartable on the same data dir. Without a real node agent unless `agent` is
    set (tests/kubelet's Node): servers of control-plane tests must not register this machine as a node."""

    agent = False

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
                "--port", str(self.port), *self.extra, *([] if self.agent else ["--disable-agent"])]
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
