"""The node IPAM controller against a real API server: Nodes created with the real kubectl get pod CIDRs from the
cluster CIDR; CIDRs nodes bring are honoured (marked used, or left alone outside the range, or reported when they
overlap another node's); an exhausted range gives CIDRNotAvailable until a deleted node frees a block."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

import pytest

from harness import ROOT, Kubectl, Server

CLUSTER_CIDR = "10.123.0.0/22"   # four /24 blocks: 10.123.0-3.0/24


@pytest.fixture(scope="module")
def ipam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Kubectl]]:
    s = Server(tmp_path_factory.mktemp("nodeipam"), store="memory://",
               extra=["--disable-controllers", "--disable-scheduler", "--disable-agent"])
    s.start()
    yield s, Kubectl(s.kubeconfig)
    s.stop()


def node(name: str, cidr: str | None = None) -> str:
    spec = {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {}
    return json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec})


def wait_for(check: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


def cidr_of(k: Kubectl, name: str) -> str | None:
    spec = k.json("get", "node", name).get("spec") or {}
    if spec.get("podCIDR"):
        assert spec["podCIDRs"] == [spec["podCIDR"]]
    return spec.get("podCIDR")


def events_for(k: Kubectl, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in k.json("get", "events", "-n", "default")["items"]
            if e["involvedObject"].get("name") == name and e["reason"] == reason]


def test_allocates_honours_reports_exhausts_and_releases(ipam: tuple[Server, Kubectl]) -> None:
    server, k = ipam
    # nodes that bring their own CIDR before the controller starts: one inside the range, one outside (as hollow
    # nodes' 10.200.x), one overlapping the first
    k.run("create", "-f", "-", input=node("pre-a", "10.123.1.0/24"))
    k.run("create", "-f", "-", input=node("pre-b", "10.200.0.0/24"))
    time.sleep(1.1)   # a later creationTimestamp: pre-a is the block's first holder
    k.run("create", "-f", "-", input=node("pre-c", "10.123.1.0/24"))
    log = open(server.data_dir / "cm.log", "ab")
    cm = subprocess.Popen([sys.executable, "-m", "kates.cli.main", "controller-manager", "--kubeconfig",
                           str(server.kubeconfig), "--controllers", "nodeipam", "--cluster-cidr", CLUSTER_CIDR,
                           "--node-cidr-mask-size", "24"], stdout=log, stderr=log, cwd=ROOT)
    try:
        k.run("create", "-f", "-", input=node("n1"))
        assert wait_for(lambda: cidr_of(k, "n1"), what="n1's CIDR") == "10.123.0.0/24"
        k.run("create", "-f", "-", input=node("n2"))
        assert wait_for(lambda: cidr_of(k, "n2"), what="n2's CIDR") == "10.123.2.0/24", "10.123.1.0/24 is pre-a's"
        k.run("create", "-f", "-", input=node("n3"))
        assert wait_for(lambda: cidr_of(k, "n3"), what="n3's CIDR") == "10.123.3.0/24"
        assert (cidr_of(k, "pre-a"), cidr_of(k, "pre-b"), cidr_of(k, "pre-c")) == \
            ("10.123.1.0/24", "10.200.0.0/24", "10.123.1.0/24"), "CIDRs nodes have are never changed"
        [conflict] = wait_for(lambda: events_for(k, "pre-c", "CIDRConflict"), what="the conflict event")
        assert conflict["type"] == "Warning" and "pre-a" in conflict["message"]
        assert conflict["source"]["component"] == "cidrAllocator"
        assert not events_for(k, "pre-b", "CIDRConflict") and not events_for(k, "pre-a", "CIDRConflict")
        # the range is full: n4 waits with CIDRNotAvailable, and gets n1's block once n1 is deleted
        k.run("create", "-f", "-", input=node("n4"))
        [full] = wait_for(lambda: events_for(k, "n4", "CIDRNotAvailable"), what="CIDRNotAvailable")
        assert full["message"] == "Node n4 status is now: CIDRNotAvailable"
        assert cidr_of(k, "n4") is None
        k.run("delete", "node", "n1")
        assert wait_for(lambda: cidr_of(k, "n4"), what="n4's CIDR") == "10.123.0.0/24"
    finally:
        os.kill(cm.pid, signal.SIGTERM)
        try:
            cm.wait(10)
        except subprocess.TimeoutExpired:
            cm.kill()
            cm.wait()
        k.run("delete", "node", "pre-a", "pre-b", "pre-c", "n2", "n3", "n4", "--ignore-not-found", check=False)


def test_bad_cluster_cidr_is_a_clear_error(ipam: tuple[Server, Kubectl]) -> None:
    server, _ = ipam
    out = subprocess.run([sys.executable, "-m", "kates.cli.main", "controller-manager", "--kubeconfig",
                          str(server.kubeconfig), "--cluster-cidr", "10.0.0.0/24", "--node-cidr-mask-size", "16"],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "does not fit in cluster CIDR 10.0.0.0/24" in out.stderr
    out = subprocess.run([sys.executable, "-m", "kates.cli.main", "server", "--data-dir", str(server.data_dir / "bad"),
                          "--store", "memory://", "--cluster-cidr", "not-a-cidr"],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--cluster-cidr" in out.stderr
