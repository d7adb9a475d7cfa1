"""kates.client against a real server: REST verbs, informers (list, watch, relist after 410), work queue, events."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from kates.api import errors
from kates.client.informer import Informer
from kates.client.rest import Client, resource
from kates.client.workqueue import RateLimiter, WorkQueue

CM = resource("configmaps")
NS = resource("namespaces")


async def wait_until(pred, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


@pytest.fixture
async def client(server):
    c = Client.from_kubeconfig(server.kubeconfig, user_agent="kates-test")
    yield c
    await c.close()


@pytest.fixture
async def space(client):
    name = "cl-" + uuid.uuid4().hex[:6]
    await client.create(NS, {"metadata": {"name": name}})
    return name


async def test_rest_verbs_and_errors(client, space):
    made = await client.create(CM, {"metadata": {"name": "a"}, "data": {"x": "1"}}, space)
    assert made["metadata"]["uid"]
    assert (await client.get(CM, "a", space))["data"] == {"x": "1"}
    patched = await client.patch(CM, "a", {"data": {"y": "2"}}, space)
    assert patched["data"] == {"x": "1", "y": "2"}
    listed = await client.list(CM, space)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    with pytest.raises(errors.AlreadyExists):
        await client.create(CM, {"metadata": {"name": "a"}}, space)
    stale = dict(made)
    with pytest.raises(errors.Conflict):
        await client.update(CM, stale)
    await client.delete(CM, "a", space)
    with pytest.raises(errors.NotFound):
        await client.get(CM, "a", space)


async def test_informer_lists_watches_and_notifies(client, space):
    await client.create(CM, {"metadata": {"name": "before"}}, space)
    inf = Informer(client, CM, space)
    seen = []
    inf.add_handler(on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
                    on_update=lambda old, new: seen.append(("update", new["metadata"]["name"])),
                    on_delete=lambda o: seen.append(("delete", o["metadata"]["name"])))
    inf.start()
    try:
        await inf.wait_synced(10)
        assert inf.store.get(f"{space}/before") is not None
        await client.create(CM, {"metadata": {"name": "after"}}, space)
        await client.patch(CM, "after", {"data": {"k": "v"}}, space)
        await client.delete(CM, "before", space)
        await wait_until(lambda: ("delete", "before") in seen)
        assert seen[:2] == [("add", "before"), ("add", "after")] and ("update", "after") in seen
        assert inf.store.get(f"{space}/after")["data"] == {"k": "v"}
        assert [o["metadata"]["name"] for o in inf.store.in_namespace(space)] == ["after"]
    finally:
        await inf.stop()


async def test_informer_relist_reports_deletions_it_missed(client, space):
    inf = Informer(client, CM, space)
    deleted = []
    inf.add_handler(on_delete=lambda o: deleted.append(o["metadata"]["name"]))
    await client.create(CM, {"metadata": {"name": "gone"}}, space)
    inf.start()
    await inf.wait_synced(10)
    await inf.stop()
    await client.delete(CM, "gone", space)
    inf.resource_version = ""      # as after a 410: the next run relists
    inf.start()
    try:
        await wait_until(lambda: deleted == ["gone"])
        assert inf.store.get(f"{space}/gone") is None
    finally:
        await inf.stop()


async def test_work_queue_collapses_and_serialises():
    q = WorkQueue(rate_limiter=RateLimiter(base=0.01, qps=1000, burst=1000))
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    key = await q.get()
    assert key == "a"
    q.add("a")                      # re-added while processing: held until done
    assert await q.get() == "b"
    q.done("b")
    q.done("a")
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.done("a")
    q.add_rate_limited("c")
    q.add_rate_limited("c")         # the second failure waits longer; both collapse into one add
    assert await asyncio.wait_for(q.get(), 1) == "c"
    assert q.retries("c") == 2
    q.forget("c")
    assert q.retries("c") == 0


async def test_event_recorder_aggregates_repeats(client, space):
    from kates.client.events import EventRecorder
    obj = await client.create(CM, {"metadata": {"name": "subject"}}, space)
    obj.update(kind="ConfigMap", apiVersion="v1")
    rec = EventRecorder(client, "tester")
    for _ in range(3):
        rec.event(obj, "Normal", "Poked", "poked it")
    events = resource("events")

    async def matching():
        items = (await client.list(events, space, field_selector=f"involvedObject.name=subject"))["items"]
        return [e for e in items if e["reason"] == "Poked"]
    for _ in range(100):
        found = await matching()
        if found and found[0]["count"] == 3:
            break
        await asyncio.sleep(0.05)
    await rec.close()
    assert len(found) == 1 and found[0]["count"] == 3 and found[0]["source"]["component"] == "tester"


async def test_leader_election_has_one_leader_and_fails_over(client, server):
    from kates.client.leaderelection import LeaderElector
    name = "lock-" + uuid.uuid4().hex[:6]
    clock = [1000.0]
    a = LeaderElector(client, name, identity="a", lease_duration=10, clock=lambda: clock[0])
    b = LeaderElector(client, name, identity="b", lease_duration=10, clock=lambda: clock[0])
    assert await a.try_acquire_or_renew() is True
    assert await b.try_acquire_or_renew() is False, "the lease is held and fresh"
    clock[0] += 5
    assert await a.try_acquire_or_renew() is True, "the holder renews"
    assert await b.try_acquire_or_renew() is False
    clock[0] += 11                       # a stopped renewing: the lease expires
    assert await b.try_acquire_or_renew() is True
    lease = await client.get(resource("leases.coordination.k8s.io"), name, "kube-system")
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    assert await a.try_acquire_or_renew() is False


async def test_leader_runs_work_only_while_leading(client):
    from kates.client.leaderelection import LeaderElector
    name = "lock-" + uuid.uuid4().hex[:6]
    started = asyncio.Event()

    async def work():
        started.set()
        await asyncio.sleep(3600)
    first = LeaderElector(client, name, identity="first", retry_period=0.05)
    second = LeaderElector(client, name, identity="second", retry_period=0.05)
    t1 = asyncio.create_task(first.run(work))
    await asyncio.wait_for(started.wait(), 5)
    started.clear()
    t2 = asyncio.create_task(second.run(work))
    await asyncio.sleep(0.3)
    assert first.is_leader and not second.is_leader and not started.is_set()
    t1.cancel()
    t2.cancel()
    await asyncio.gather(t1, t2, return_exceptions=True)
