"""Leader election on coordination/v1 Leases against a real API server, and the controller manager's use of it:
one holder at a time, a released Lease is taken at once (client-go's ReleaseOnCancel), a leader's work stops before
its Lease is released, and a restarted `kates server` runs its controllers at once instead of after 15 s."""
from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness import Kubectl, Server, free_port
from kates.api import errors
from kates.client.leaderelection import LEASES, LeaderElector
from kates.client.rest import Client, Connection



@pytest.fixture
async def client(server: Server) -> Any:
    c = Client.from_kubeconfig(server.kubeconfig, user_agent="kates-test-leaderelection")
    yield c
    await c.close()


def lease_name() -> str:
    return "le-" + uuid.uuid4().hex[:8]


async def spec_of(client: Client, name: str) -> dict[str, Any]:
    return (await client.get(LEASES, name, "kube-system")).get("spec") or {}


async def test_one_holder_and_a_released_lease_is_taken_at_once(client: Client) -> None:
    name = lease_name()
    a = LeaderElector(client, name, identity="a", lease_duration=30)
    b = LeaderElector(client, name, identity="b", lease_duration=30)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()          # a holds it for 30 s
    assert await a.try_acquire_or_renew()               # renewing keeps it
    spec = await spec_of(client, name)
    assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0

    assert await a.release()
    spec = await spec_of(client, name)
    assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1 and spec["leaseTransitions"] == 0
    assert await b.try_acquire_or_renew()               # at once, not after 30 s
    spec = await spec_of(client, name)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1 and spec["leaseDurationSeconds"] == 30

    # releasing a Lease one no longer holds changes nothing
    assert not await a.release()
    assert (await spec_of(client, name))["holderIdentity"] == "b"


async def test_release_of_a_missing_lease_or_unreachable_server_is_bounded(client: Client) -> None:
    assert not await LeaderElector(client, lease_name(), identity="x").release()
    # the API server is gone (a stopping child of a killed server): release gives up instead of hanging
    gone = Client(Connection(f"https://127.0.0.1:{free_port()}", ssl.create_default_context()), timeout=1)
    try:
        started = time.monotonic()
        assert not await LeaderElector(gone, lease_name(), identity="y").release(timeout=2.0)
        assert time.monotonic() - started < 3
    finally:
        await gone.close()


async def test_run_stops_the_work_then_releases_on_cancel(client: Client) -> None:
    name = lease_name()
    elector = LeaderElector(client, name, identity="leader", lease_duration=30, retry_period=0.2,
                            release_on_cancel=True)
    started = asyncio.Event()
    holder_when_work_stopped: list[str] = []

    async def lead() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            # the Lease must still be ours while the work winds down: no successor may act before it has stopped
            holder_when_work_stopped.append((await spec_of(client, name))["holderIdentity"])

    task = asyncio.create_task(elector.run(lead))
    await asyncio.wait_for(started.wait(), 5)
    assert elector.is_leader
    await asyncio.sleep(0.5)                           # a few renewals
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert holder_when_work_stopped == ["leader"]
    spec = await spec_of(client, name)
    assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1
    assert await LeaderElector(client, name, identity="next", lease_duration=30).try_acquire_or_renew()


async def test_run_without_release_on_cancel_keeps_the_lease(client: Client) -> None:
    name = lease_name()
    elector = LeaderElector(client, name, identity="keeper", lease_duration=30, retry_period=0.2)
    started = asyncio.Event()

    async def lead() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(elector.run(lead))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert (await spec_of(client, name))["holderIdentity"] == "keeper"
    assert not await LeaderElector(client, name, identity="next").try_acquire_or_renew()


async def test_a_failing_leader_work_is_raised_after_release(client: Client) -> None:
    name = lease_name()
    elector = LeaderElector(client, name, identity="failing", retry_period=0.2, release_on_cancel=True)

    async def lead() -> None:
        raise RuntimeError("controller crashed")

    with pytest.raises(RuntimeError, match="controller crashed"):
        await asyncio.wait_for(elector.run(lead), 10)
    assert (await spec_of(client, name))["holderIdentity"] == ""


# -- the controller manager in a real `kates server`, stopped and started again on the same data dir --------------

@pytest.fixture
def cm_server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "cm", extra=["--disable-scheduler", "--controllers", "serviceaccount"])
    yield s
    s.stop()


def lease_spec(kctl: Kubectl) -> dict[str, Any]:
    proc = kctl.run("get", "lease", "kube-controller-manager", "-n", "kube-system", "-o", "json", check=False)
    return (json.loads(proc.stdout).get("spec") or {}) if proc.returncode == 0 else {}


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}: last {last!r}")


def has_default_sa(kctl: Kubectl, ns: str) -> bool:
    return kctl.run("get", "serviceaccount", "default", "-n", ns, check=False).returncode == 0


def test_restarted_server_runs_its_controllers_at_once(cm_server: Server) -> None:
    cm_server.start()
    kctl = Kubectl(cm_server.kubeconfig)
    first = wait_for(lambda: lease_spec(kctl).get("holderIdentity"), 10, "the controller manager to lead")
    kctl.run("create", "namespace", "before")
    wait_for(lambda: has_default_sa(kctl, "before"), 10, "the serviceaccount controller")

    cm_server.stop()   # SIGINT: kates server stops its children with SIGTERM; the controller manager releases
    log = cm_server.log.read_text()
    assert "released the lease kube-system/kube-controller-manager" in log
    restarted = time.monotonic()
    cm_server.start()
    second = wait_for(lambda: (h := lease_spec(kctl).get("holderIdentity")) not in (None, "", first) and h, 10,
                      "the restarted controller manager to lead")
    kctl.run("create", "namespace", "after")
    wait_for(lambda: has_default_sa(kctl, "after"), 10, "the serviceaccount controller after the restart")
    took = time.monotonic() - restarted
    # without the release the new controller manager waits out the old holder's 15 s lease
    assert took < 10, f"controllers acted {took:.1f} s after the restart"
    spec = lease_spec(kctl)
    assert spec["holderIdentity"] == second and spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] >= 1


async def test_controller_manager_that_loses_its_lease_stops(server: Server, client: Client) -> None:
    """Someone else takes the Lease (as a standby would after a partition): the controller manager stops its
    controllers and serve() raises LeaderElectionLost (the process exits 1; kates server restarts it)."""
    from kates.controllers import manager
    task = asyncio.create_task(manager.serve(str(server.kubeconfig), ["serviceaccount"], lease_duration=2,
                                             renew_deadline=1, retry_period=0.2))
    try:
        deadline = time.monotonic() + 10
        while not (spec := await spec_of_or_empty(client, "kube-controller-manager")).get("holderIdentity"):
            assert time.monotonic() < deadline, "the controller manager never took the Lease"
            await asyncio.sleep(0.1)
        ours = spec["holderIdentity"]
        lease = await client.get(LEASES, "kube-controller-manager", "kube-system")
        lease["spec"] = {**lease["spec"], "holderIdentity": "usurper", "leaseDurationSeconds": 3600,
                         "renewTime": lease["spec"]["renewTime"]}
        await client.update(LEASES, lease)
        with pytest.raises(manager.LeaderElectionLost):
            await asyncio.wait_for(task, 10)
        assert ours and ours != "usurper"
        assert (await spec_of(client, "kube-controller-manager"))["holderIdentity"] == "usurper"   # not released
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.delete(LEASES, "kube-controller-manager", "kube-system")


async def spec_of_or_empty(client: Client, name: str) -> dict[str, Any]:
    try:
        return await spec_of(client, name)
    except errors.NotFound:
        return {}
