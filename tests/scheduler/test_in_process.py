"""The scheduler's in-process API (`Scheduler(client, profile).run()`, what benchmarks use) against a real API
server started without its own scheduler."""
from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest

from harness import Server
from kates.client.rest import Client, resource
from kates.scheduler.framework import bin_packing_profile, default_profile
from kates.scheduler.scheduler import Scheduler


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("sched-inproc"), store="memory://",
               extra=["--disable-controllers", "--disable-scheduler"])
    s.start()
    yield s
    s.stop()


def node(name: str, cpu: str = "4") -> dict[str, Any]:
    res = {"cpu": cpu, "memory": "8Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"capacity": res, "allocatable": res}}


def pod(name: str, cpu: str = "100m", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}], **spec}}


async def wait_bound(client: Client, ns: str, count: int, timeout: float = 15) -> dict[str, str]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        items = (await client.list(resource("pods"), ns))["items"]
        where = {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in items}
        if sum(1 for n in where.values() if n) >= count or asyncio.get_running_loop().time() > deadline:
            return where
        await asyncio.sleep(0.1)


async def test_in_process_scheduler(bare_server: Server) -> None:
    client = Client.from_kubeconfig(bare_server.kubeconfig)
    scheduler = Scheduler(Client.from_kubeconfig(bare_server.kubeconfig), [default_profile(),
                                                                          bin_packing_profile("packer")])
    task = asyncio.create_task(scheduler.run())
    try:
        await client.create(resource("namespaces"), {"metadata": {"name": "inproc"}})
        for i in range(3):
            await client.create(resource("nodes"), node(f"ip-{i}"))
        for i in range(6):
            await client.create(resource("pods"), pod(f"spread-{i}"), "inproc")
        await wait_bound(client, "inproc", 6)
        for i in range(4):
            await client.create(resource("pods"), pod(f"packed-{i}", schedulerName="packer"), "inproc")
        await client.create(resource("pods"), pod("other", schedulerName="someone-else"), "inproc")
        where = await wait_bound(client, "inproc", 10)
        spread = {where[f"spread-{i}"] for i in range(6)}
        packed = {where[f"packed-{i}"] for i in range(4)}
        assert len(spread) == 3, where              # LeastAllocated: two on each node
        assert len(packed) == 1, where              # MostAllocated: all on one node
        assert where["other"] == "", "pods of other schedulers are left alone"
        assert scheduler.scheduled == 10
        assert scheduler.cache.dump() == {"nodes": 3, "pods": 10, "assumed": 0}
        assert scheduler.queue.pending_pods() == {"active": 0, "backoff": 0, "unschedulable": 0, "in_flight": 0}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await scheduler.client.close()
        await client.close()
    assert not scheduler._tasks, "stopping cancels and awaits every task the scheduler started"
