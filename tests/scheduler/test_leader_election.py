"""Scheduler leader election: two `kates scheduler` processes against one API server, only the holder of the
kube-system/kube-scheduler Lease binds; when it is killed (no release), the standby takes the Lease over once it
expires and binds; a leader stopped cleanly releases the Lease so its successor takes over at once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from harness import ROOT, Kubectl, Server

LEASE_DURATION = 3.0


@pytest.fixture(scope="module")
def le_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("leader"), store="memory://",
               extra=["--disable-controllers", "--disable-scheduler", "--disable-agent"])
    s.start()
    yield s
    s.stop()


def start_scheduler(server: Server, name: str) -> subprocess.Popen[bytes]:
    log = open(server.data_dir / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "kates.cli.main", "scheduler", "--kubeconfig",
                             str(server.kubeconfig), "--leader-elect-lease-duration", str(LEASE_DURATION),
                             "--leader-elect-renew-deadline", "2", "--leader-elect-retry-period", "0.5"],
                            stdout=log, stderr=log, cwd=ROOT)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


def holder(kctl: Kubectl) -> str | None:
    proc = kctl.run("get", "lease", "kube-scheduler", "-n", "kube-system", "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    return (json.loads(proc.stdout).get("spec") or {}).get("holderIdentity")


def node(name: str) -> dict[str, Any]:
    res = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"capacity": res, "allocatable": res,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}


def node_of(kctl: Kubectl, ns: str, name: str) -> str:
    return kctl.json("get", "pod", name, "-n", ns).get("spec", {}).get("nodeName", "")


def test_one_leader_binds_and_standby_takes_over_when_killed(le_server: Server) -> None:
    kctl = Kubectl(le_server.kubeconfig)
    ns = "le-" + uuid.uuid4().hex[:6]
    kctl.run("create", "namespace", ns)
    kctl.run("create", "-f", "-", input=json.dumps(node("le-node-" + ns)))
    a = start_scheduler(le_server, "sched-a")
    b = None
    try:
        first = wait_for(lambda: holder(kctl), what="a lease holder")
        b = start_scheduler(le_server, "sched-b")
        kctl.run("create", "-f", "-", "-n", ns, input=json.dumps(pod("p1")))
        wait_for(lambda: node_of(kctl, ns, "p1"), what="p1 bound by the leader")
        # the standby runs for a while without ever taking the lease
        time.sleep(LEASE_DURATION + 1)
        assert holder(kctl) == first
        assert a.poll() is None and b.poll() is None
        # the leader dies without releasing: the standby takes over after the lease expires, and binds
        killed_at = time.monotonic()
        stop(a, signal.SIGKILL)
        kctl.run("create", "-f", "-", "-n", ns, input=json.dumps(pod("p2")))
        second = wait_for(lambda: (h := holder(kctl)) not in (None, first) and h, what="a new holder")
        wait_for(lambda: node_of(kctl, ns, "p2"), what="p2 bound by the new leader")
        assert time.monotonic() - killed_at >= LEASE_DURATION - 1, "took over before the lease expired"
        lease = kctl.json("get", "lease", "kube-scheduler", "-n", "kube-system")
        assert lease["spec"]["leaseTransitions"] >= 1 and second != first
        # a clean stop releases the lease: a new standby takes over well before a lease duration has passed
        a = start_scheduler(le_server, "sched-c")
        time.sleep(1.5)
        assert holder(kctl) == second   # the newcomer waits
        stopped_at = time.monotonic()
        stop(b, signal.SIGTERM)
        third = wait_for(lambda: (h := holder(kctl)) not in (None, "", first, second) and h, what="a third holder")
        assert third and time.monotonic() - stopped_at < LEASE_DURATION + 2
        kctl.run("create", "-f", "-", "-n", ns, input=json.dumps(pod("p3")))
        wait_for(lambda: node_of(kctl, ns, "p3"), what="p3 bound by the third leader")
    finally:
        stop(a)
        if b is not None:
            stop(b)
        kctl.run("delete", "namespace", ns, "--wait=false", check=False)


def test_leader_elect_false_schedules_without_a_lease(le_server: Server, tmp_path: Path) -> None:
    kctl = Kubectl(le_server.kubeconfig)
    ns = "le-" + uuid.uuid4().hex[:6]
    kctl.run("create", "namespace", ns)
    kctl.run("create", "-f", "-", input=json.dumps(node("le-node-" + ns)))
    # someone else holds the lease for a long time: a scheduler with --leader-elect=false ignores it
    log = open(tmp_path / "nole.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "kates.cli.main", "scheduler", "--kubeconfig",
                             str(le_server.kubeconfig), "--leader-elect", "false"], stdout=log, stderr=log, cwd=ROOT)
    try:
        kctl.run("create", "-f", "-", "-n", ns, input=json.dumps(pod("q1")))
        wait_for(lambda: node_of(kctl, ns, "q1"), what="q1 bound")
    finally:
        stop(proc)
        kctl.run("delete", "namespace", ns, "--wait=false", check=False)
