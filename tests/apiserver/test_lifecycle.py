"""`kates server` as a process: ready line and kubeconfig, clean Ctrl-C, state kept across restarts and kill -9."""
from __future__ import annotations

import signal
import subprocess
import sys

import yaml

from harness import ROOT, Kubectl, Server


def test_restart_keeps_every_object_and_identity(tmp_path):
    server = Server(tmp_path / "data")
    server.start()
    kubectl = Kubectl(server.kubeconfig)
    kubectl.run("create", "namespace", "keep")
    kubectl.run("create", "configmap", "c1", "--from-literal=a=1", "-n", "keep")
    kubectl.run("create", "service", "clusterip", "s1", "--tcp=80:80", "-n", "keep")
    ip = kubectl.json("get", "svc", "s1", "-n", "keep")["spec"]["clusterIP"]
    config = yaml.safe_load(server.kubeconfig.read_text())
    assert config["users"][0]["user"]["client-certificate-data"]
    assert server.stop(signal.SIGINT) == 0, "Ctrl-C stops the server cleanly"

    server.start()
    try:
        assert kubectl.json("get", "cm", "c1", "-n", "keep")["data"] == {"a": "1"}
        assert kubectl.json("get", "svc", "s1", "-n", "keep")["spec"]["clusterIP"] == ip
        # the same CA: the old kubeconfig still works (the kubectl above used it), and new IPs never collide
        kubectl.run("create", "service", "clusterip", "s2", "--tcp=80:80", "-n", "keep")
        assert kubectl.json("get", "svc", "s2", "-n", "keep")["spec"]["clusterIP"] != ip
        assert yaml.safe_load(server.kubeconfig.read_text()) == config
    finally:
        server.stop()


def test_acknowledged_writes_survive_kill_9(tmp_path):
    server = Server(tmp_path / "data")
    server.start()
    kubectl = Kubectl(server.kubeconfig)
    made = []
    for i in range(15):
        kubectl.run("create", "configmap", f"k{i}", "-n", "default")
        made.append(f"configmap/k{i}")
    children = _children_of(server.proc.pid)
    server.stop(signal.SIGKILL)
    _wait_gone(children)     # the controller manager and scheduler die with the server, even on kill -9
    server.start()
    try:
        names = kubectl.run("get", "cm", "-n", "default", "-o", "name").stdout.split()
        assert set(made) <= set(names)
    finally:
        server.stop()


def test_bad_store_url_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kates.cli.main", "server", "--data-dir", str(tmp_path),
                           "--store", "bogus://x"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "bogus" in proc.stderr and "sqlite://" in proc.stderr


def test_kates_kubectl_uses_the_admin_kubeconfig(server, tmp_path):
    import os
    env = dict(os.environ, HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "kates.cli.main", "kubectl", "--data-dir", str(server.data_dir),
                          "get", "ns", "default", "-o", "name"], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "namespace/default"


def test_port_in_use_is_a_clear_error_and_exits(server, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kates.cli.main", "server", "--data-dir", str(tmp_path),
                           "--port", str(server.port), "--disable-controllers", "--disable-scheduler"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and f"cannot listen on 127.0.0.1:{server.port}" in proc.stderr


def _children_of(pid: int) -> list[int]:
    from pathlib import Path
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _wait_gone(pids: list[int], timeout: float = 15) -> None:
    import os
    import time
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if os.path.exists(f"/proc/{p}") and
                 open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
        time.sleep(0.1)
    assert not alive, f"child processes outlived the server: {alive}"
