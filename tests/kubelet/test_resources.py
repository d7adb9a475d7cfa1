"""Requests and limits → cgroup settings, QoS and cgroup parent; dnsPolicy → resolv.conf (both pure translations,
checked against the values Kubernetes computes for the same specs)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kates.kubelet.dns import dns_config, parse_resolv_conf
from kates.kubelet.resources import linux_resources, pod_cgroup_parent, qos_class, remove_pod_cgroup
from kates.runtime.interface import DNSConfig, LinuxResources
from nodeutil import BUSYBOX
from test_envvars import cri_exec

GI = 1 << 30


def pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = (), **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns1", "uid": "u-1"},
            "spec": {"containers": list(containers), "initContainers": list(init), **spec}}


def c(requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests:
        res["requests"] = requests
    if limits:
        res["limits"] = limits
    return {"name": "c", "image": "x", "resources": res}


@pytest.mark.parametrize("p, want", [
    (pod(c()), "BestEffort"),
    (pod(c(), c()), "BestEffort"),
    (pod(c(limits={"cpu": "1", "memory": "1Gi"})), "Guaranteed"),            # requests default to limits
    (pod(c({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}),
         c({"cpu": "500m", "memory": "10Mi"}, {"cpu": "0.5", "memory": "10Mi"})), "Guaranteed"),
    (pod(c({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}), c()), "Burstable"),
    (pod(c({"cpu": "500m", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})), "Burstable"),
    (pod(c(limits={"cpu": "1"})), "Burstable"),
    (pod(c({"memory": "10Mi"})), "Burstable"),
    (pod(c(limits={"cpu": "1", "memory": "1Gi"}), init=(c({"cpu": "100m"}),)), "Burstable"),
    (pod(c({"ephemeral-storage": "1Gi"})), "BestEffort"),                    # only cpu and memory count
    (pod(c({"cpu": "0"})), "BestEffort"),
])
def test_qos_class(p: dict[str, Any], want: str) -> None:
    assert qos_class(p) == want


def test_status_qos_class_wins() -> None:
    p = pod(c())
    p["status"] = {"qosClass": "Burstable"}
    assert qos_class(p) == "Burstable"


def test_linux_resources() -> None:
    # Guaranteed: shares from the request, quota from the limit, memory limit, -997
    p = pod(c(limits={"cpu": "250m", "memory": "128Mi"}))
    assert linux_resources(p, p["spec"]["containers"][0], memory_capacity=4 * GI) == LinuxResources(
        cpu_period=100000, cpu_quota=25000, cpu_shares=256, memory_limit_in_bytes=128 << 20, oom_score_adj=-997)
    # BestEffort: 2 shares, nothing limited, 1000
    p = pod(c())
    assert linux_resources(p, p["spec"]["containers"][0], memory_capacity=4 * GI) == LinuxResources(
        cpu_shares=2, oom_score_adj=1000)
    # Burstable: 1000 - 1000 * request / capacity
    p = pod(c({"cpu": "1.5", "memory": "64Mi"}))
    r = linux_resources(p, p["spec"]["containers"][0], memory_capacity=4 * GI)
    assert (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes, r.oom_score_adj) == (1536, 0, 0, 985)
    # a request of nearly all memory stays above Guaranteed; none stays below BestEffort
    p = pod(c({"memory": "4Gi"}, {"memory": "8Gi"}))
    assert linux_resources(p, p["spec"]["containers"][0], memory_capacity=4 * GI).oom_score_adj == 3
    p = pod(c({"cpu": "1m"}, {"cpu": "1"}))
    r = linux_resources(p, p["spec"]["containers"][0], memory_capacity=4 * GI)
    assert (r.cpu_shares, r.cpu_quota, r.oom_score_adj) == (2, 100000, 999)
    # tiny limits: quota floor 1 ms; a limit alone sets the shares
    p = pod(c(limits={"cpu": "1m"}), c({"memory": "1Mi"}))
    r = linux_resources(p, p["spec"]["containers"][0], memory_capacity=4 * GI)
    assert (r.cpu_quota, r.cpu_shares) == (1000, 2)
    p = pod({"name": "c", "image": "x", "resources": {"requests": {"cpu": "0"}, "limits": {"cpu": "2"}}})
    assert linux_resources(p, p["spec"]["containers"][0]).cpu_shares == 2048
    # node-critical pods are protected like Guaranteed ones
    p = pod(c(), priorityClassName="system-node-critical")
    assert linux_resources(p, p["spec"]["containers"][0]).oom_score_adj == -997


def test_pod_cgroup_parent() -> None:
    assert pod_cgroup_parent(pod(c(limits={"cpu": "1", "memory": "1Gi"})), "/") == "/kubepods/podu-1"
    assert pod_cgroup_parent(pod(c({"cpu": "1"})), "/") == "/kubepods/burstable/podu-1"
    assert pod_cgroup_parent(pod(c()), "/kates-node1") == "/kates-node1/kubepods/besteffort/podu-1"


# -- DNS -----------------------------------------------------------------------------------------------------------


@pytest.fixture
def host_resolv(tmp_path: Path) -> str:
    f = tmp_path / "resolv.conf"
    f.write_text("# generated\nnameserver 198.51.100.1\nnameserver 198.51.100.2\nsearch corp.example lab.example\n"
                 "options timeout:2 ndots:1\n")
    return str(f)


def test_parse_resolv_conf() -> None:
    assert parse_resolv_conf("domain a.example\nsearch b.example c.example.\nnameserver ::1 ; x\noptions rotate\n"
                             "options ndots:3\n") == (["::1"], ["b.example", "c.example"], ["rotate", "ndots:3"])


def test_cluster_first(host_resolv: str) -> None:
    assert dns_config(pod(c()), cluster_dns=["10.96.0.10"], cluster_domain="cluster.local",
                      host_resolv=host_resolv) == DNSConfig(
        servers=("10.96.0.10",),
        searches=("ns1.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "lab.example"),
        options=("ndots:5",))


def test_cluster_first_without_cluster_dns_falls_back_to_the_host(host_resolv: str) -> None:
    warned: list[tuple[str, str]] = []
    got = dns_config(pod(c()), cluster_dns=[], cluster_domain="cluster.local", host_resolv=host_resolv,
                     warn=lambda r, m: warned.append((r, m)))
    assert got == DNSConfig(servers=("198.51.100.1", "198.51.100.2"), searches=("corp.example", "lab.example"),
                            options=("timeout:2", "ndots:1"))
    assert warned and warned[0][0] == "MissingClusterDNS"


def test_host_network_and_default_policies(host_resolv: str) -> None:
    host = DNSConfig(servers=("198.51.100.1", "198.51.100.2"), searches=("corp.example", "lab.example"),
                     options=("timeout:2", "ndots:1"))
    kw = dict(cluster_dns=["10.96.0.10"], cluster_domain="cluster.local", host_resolv=host_resolv)
    assert dns_config(pod(c(), hostNetwork=True), **kw) == host                       # ClusterFirst + hostNetwork
    assert dns_config(pod(c(), dnsPolicy="Default"), **kw) == host
    with_net = dns_config(pod(c(), hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), **kw)
    assert with_net is not None and with_net.servers == ("10.96.0.10",)


def test_none_policy_and_dns_config_merge(host_resolv: str) -> None:
    kw = dict(cluster_dns=["10.96.0.10"], cluster_domain="cluster.local", host_resolv=host_resolv)
    p = pod(c(), dnsPolicy="None", dnsConfig={"nameservers": ["192.0.2.53"], "searches": ["my.example"],
                                              "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    assert dns_config(p, **kw) == DNSConfig(servers=("192.0.2.53",), searches=("my.example",),
                                            options=("ndots:2", "edns0"))
    p = pod(c(), dnsConfig={"nameservers": ["10.96.0.10", "192.0.2.53"], "searches": ["svc.cluster.local", "x.example"],
                            "options": [{"name": "ndots", "value": "1"}]})
    got = dns_config(p, **kw)
    assert got is not None
    assert got.servers == ("10.96.0.10", "192.0.2.53")
    assert got.searches == ("ns1.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example",
                            "lab.example", "x.example")
    assert got.options == ("ndots:1",)


def test_a_local_stub_resolver_is_replaced_by_its_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kates.kubelet.dns as dns
    stub = tmp_path / "stub.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch home.example\n")
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("nameserver 198.51.100.7\nsearch home.example\n")
    monkeypatch.setattr(dns, "SYSTEMD_RESOLVED_UPSTREAM", str(upstream))
    got = dns_config(pod(c(), dnsPolicy="Default"), cluster_dns=[], cluster_domain="", host_resolv=str(stub))
    assert got == DNSConfig(servers=("198.51.100.7",), searches=("home.example",))
    upstream.unlink()       # no upstream file: the stub stays (a hostNetwork pod can still use it)
    got = dns_config(pod(c(), dnsPolicy="Default"), cluster_dns=[], cluster_domain="", host_resolv=str(stub))
    assert got is not None and got.servers == ("127.0.0.53",)


def test_limits(host_resolv: str) -> None:
    warned: list[str] = []
    p = pod(c(), dnsPolicy="None", dnsConfig={"nameservers": [f"192.0.2.{i}" for i in range(1, 6)],
                                              "searches": [f"d{i}.example" for i in range(40)]})
    got = dns_config(p, cluster_dns=[], cluster_domain="cluster.local", host_resolv=host_resolv,
                     warn=lambda r, m: warned.append(r))
    assert got is not None and len(got.servers) == 3 and len(got.searches) == 32
    assert warned == ["DNSConfigForming", "DNSConfigForming"]
    p = pod(c(), dnsPolicy="None", dnsConfig={"nameservers": ["192.0.2.1"], "searches": ["a" * 250 + f".x{i}"
                                                                                          for i in range(10)]})
    got = dns_config(p, cluster_dns=[], cluster_domain="", host_resolv=host_resolv)
    assert got is not None and len(" ".join(got.searches)) <= 2048 and len(got.searches) == 8


# -- on a real node ------------------------------------------------------------------------------------------------


@pytest.mark.node
async def test_limits_qos_and_dns_in_real_containers(node_kubectl: Any, node_ns: str, node_cri: Any) -> None:
    k, ns = node_kubectl, node_ns

    def manifest(name: str, resources: dict[str, Any], **spec: Any) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": {
            "terminationGracePeriodSeconds": 1, **spec, "containers": [
                {"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"], "resources": resources}]}})
    k.apply(manifest("fixed", {"limits": {"cpu": "250m", "memory": "64Mi"}}))
    k.apply(manifest("elastic", {"requests": {"cpu": "100m", "memory": "32Mi"}}, dnsPolicy="None", dnsConfig={
        "nameservers": ["192.0.2.53"], "searches": ["my.example"], "options": [{"name": "ndots", "value": "2"}]}))
    for name in ("fixed", "elastic"):
        k.run("wait", "--for=condition=Ready", f"pod/{name}", "-n", ns, "--timeout=60s")
    fixed = k.json("get", "pod", "fixed", "-n", ns)
    assert fixed["status"]["qosClass"] == "Guaranteed"
    assert k.json("get", "pod", "elastic", "-n", ns)["status"]["qosClass"] == "Burstable"

    async def cat(pod: str, path: str) -> str:
        return (await cri_exec(node_cri, ns, pod, "cat", path)).strip()
    assert await cat("fixed", "/sys/fs/cgroup/memory/memory.limit_in_bytes") == str(64 << 20)
    assert await cat("fixed", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us") == "25000"
    assert await cat("fixed", "/sys/fs/cgroup/cpu/cpu.cfs_period_us") == "100000"
    assert await cat("fixed", "/sys/fs/cgroup/cpu/cpu.shares") == "256"
    assert await cat("elastic", "/sys/fs/cgroup/cpu/cpu.shares") == "102"
    assert await cat("elastic", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us") == "-1"
    # the pod's cgroup is under kubepods by QoS class
    uid = fixed["metadata"]["uid"]
    cgroups = await cat("fixed", "/proc/self/cgroup")
    assert f":/kubepods/pod{uid}/" in cgroups, cgroups
    # DNS: dnsConfig exactly; ClusterFirst points at the cluster DNS (`kates server` passes the 10th service address)
    resolv = await cat("elastic", "/etc/resolv.conf")
    assert "nameserver 192.0.2.53" in resolv and "search my.example" in resolv and "ndots:2" in resolv
    fixed_resolv = await cat("fixed", "/etc/resolv.conf")
    assert [line.split()[1] for line in fixed_resolv.splitlines() if line.startswith("nameserver")] == ["10.96.0.10"]
    assert f"search {node_ns}.svc.cluster.local svc.cluster.local cluster.local" in fixed_resolv
    assert not any(e["reason"] == "MissingClusterDNS" for e in k.json(
        "get", "events", "-n", ns, "--field-selector", "involvedObject.name=fixed")["items"])


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.isdir("/sys/fs/cgroup/memory"), reason="needs root and cgroup v1")
async def test_remove_pod_cgroup_leaves_busy_ones() -> None:
    """Real cgroups: an empty pod cgroup (and its container cgroups) goes from every hierarchy; one with a process
    inside stays and is reported."""
    import asyncio
    import uuid
    parent = f"/kates-test-{uuid.uuid4().hex[:8]}/kubepods/besteffort/pod{uuid.uuid4()}"
    dirs = [f"/sys/fs/cgroup/{h}{parent}/ctr1" for h in ("memory", "pids", "cpu")]
    for d in dirs:
        os.makedirs(d)
    busy = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        Path(f"/sys/fs/cgroup/pids{parent}/ctr1/cgroup.procs").write_text(str(busy.pid))
        left = await remove_pod_cgroup(parent)
        assert len(left) == 2 and all("/pids/" in x for x in left), left
        assert not os.path.exists(f"/sys/fs/cgroup/memory{parent}") and os.path.exists(dirs[1])
    finally:
        busy.kill()
        await busy.wait()
    await asyncio.sleep(0.05)
    assert await remove_pod_cgroup(parent) == []
    assert not any(os.path.exists(d.rsplit("/ctr1", 1)[0]) for d in dirs)
    assert await remove_pod_cgroup(parent.split("/kubepods")[0]) == []      # the test's own root
