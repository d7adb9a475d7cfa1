"""Each backend on its own, in this process, against real pods: a virtual IP no Service owns (so only the backend
under test serves it), endpoint changes applied incrementally, rejection without endpoints, and cleanup."""
from __future__ import annotations

import asyncio
import random
import subprocess

import pytest

from kates.proxy.iptables import IptablesBackend
from kates.proxy.model import Endpoint, ServicePort
from kates.proxy.nftables import NftablesBackend
from test_services import deploy

pytestmark = pytest.mark.node


def make_backend(kind: str, label: str):
    if kind == "nftables":
        return NftablesBackend(table=label, cluster_cidr="10.244.0.0/16")
    return IptablesBackend(chain_prefix=label, cluster_cidr="10.244.0.0/16")


def listing(kind: str, label: str) -> str:
    if kind == "nftables":
        return subprocess.run(["nft", "list", "table", "ip", label], capture_output=True, text=True).stdout
    return "".join(subprocess.run(["iptables-save", "-t", t], capture_output=True, text=True).stdout
                   for t in ("nat", "filter"))


async def fetch(url: str, timeout: float = 2) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("curl", "-s", "--max-time", str(timeout), url,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode().strip()


def pods_by_ip(kubectl, ns: str) -> dict[str, str]:
    return {p["status"]["podIP"]: p["metadata"]["name"]
            for p in kubectl.json("get", "pods", "-n", ns, "-l", "app=web")["items"]}


@pytest.mark.parametrize("kind", ["nftables", "iptables"])
async def test_backend_serves_a_virtual_ip_follows_endpoints_and_cleans_up(node, node_kubectl, node_ns, kind):
    await asyncio.to_thread(deploy, node_kubectl, node_ns, "web", 2, "ClusterIP", 80, "", None)
    by_ip = pods_by_ip(node_kubectl, node_ns)
    vip = f"10.111.254.{random.randint(2, 250)}"
    label = f"kbt{random.randint(1000, 9999)}"
    eps = tuple(Endpoint(ip, 8080, node_name=node.node_name) for ip in sorted(by_ip))

    def port(endpoints, affinity=0):
        return ServicePort("t", "virtual", "http", "TCP", vip, 80, affinity_timeout=affinity,
                           cluster_endpoints=endpoints, local_endpoints=endpoints)
    backend = make_backend(kind, label)
    try:
        await backend.sync([port(eps)])
        seen = {(await fetch(f"http://{vip}/"))[1] for _ in range(20)}
        assert seen == set(by_ip.values()), "balanced over both endpoints"

        await backend.sync([port(eps[:1])])   # one endpoint gone: an incremental change
        assert {(await fetch(f"http://{vip}/"))[1] for _ in range(8)} == {by_ip[eps[0].ip]}

        await backend.sync([port(eps, affinity=30)])
        sticky = {(await fetch(f"http://{vip}/"))[1] for _ in range(10)}
        assert len(sticky) == 1, f"ClientIP affinity sticks: {sticky}"

        await backend.sync([port(())])
        code, _ = await fetch(f"http://{vip}/", timeout=3)
        assert code == 7, "no endpoints: connection refused"
        assert vip in listing(kind, label)
    finally:
        await backend.cleanup()
    assert vip not in listing(kind, label) and label not in listing(kind, label)
    code, _ = await fetch(f"http://{vip}/", timeout=1)
    assert code != 0
