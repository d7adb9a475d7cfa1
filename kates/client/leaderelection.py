"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection package does.

Several controller managers (or schedulers) may run against one cluster for availability; only the holder of the
Lease acts. The holder renews it every `retry_period`; the others take it over once it has not been renewed for
`lease_duration`. Every write is a compare-and-swap on the Lease's resourceVersion, so two candidates can never
both believe they won: the API server's optimistic concurrency is the lock.

With `release_on_cancel` (client-go's ReleaseOnCancel, which kube-controller-manager and kube-scheduler set), a
leader that is stopped gives the Lease up on its way out: holder cleared, duration 1 s. Its successor (a standby, or
the same component restarted) takes it at its next try instead of waiting out a whole lease duration.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from typing import Any, Awaitable, Callable

from ..api import errors
from ..api.timestamps import micro_rfc3339, parse_rfc3339
from .rest import Client, resource

log = logging.getLogger(__name__)

LEASES = resource("leases.coordination.k8s.io")


class LeaderElector:
    def __init__(self, client: Client, name: str, namespace: str = "kube-system", identity: str | None = None,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 clock: Callable[[], float] = time.time, release_on_cancel: bool = False) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.release_on_cancel = release_on_cancel
        self.is_leader = False

    async def try_acquire_or_renew(self) -> bool:
        now = self.clock()
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                "renewTime": micro_rfc3339(now)}
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except errors.NotFound:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {**spec, "acquireTime": micro_rfc3339(now), "leaseTransitions": 0}}
            try:
                await self.client.create(LEASES, body, self.namespace)
                return True
            except errors.AlreadyExists:
                return False
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        expired = (parse_rfc3339(current.get("renewTime")) or 0.0) + float(current.get("leaseDurationSeconds") or
                                                           self.lease_duration) < now
        if holder and holder != self.identity and not expired:
            return False
        new_spec = dict(current, **spec)
        if holder != self.identity:
            new_spec["acquireTime"] = micro_rfc3339(now)
            new_spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
        lease["spec"] = new_spec
        try:
            await self.client.update(LEASES, lease)   # carries the resourceVersion read: CAS
            return True
        except errors.Conflict:
            return False

    async def release(self, timeout: float = 5.0) -> bool:
        """Give the Lease up if this candidate still holds it, as client-go's release(): holderIdentity "", duration
        1 s, renewTime and acquireTime now, transitions kept. A CAS write on the resourceVersion read, so it never
        clears a Lease someone else took meanwhile. Bounded: a stopping process must not hang on a gone server."""
        try:
            return await asyncio.wait_for(self._release(), timeout)
        except (errors.APIError, OSError, asyncio.TimeoutError) as e:
            log.warning("could not release the lease %s/%s: %s", self.namespace, self.name, e)
            return False

    async def _release(self) -> bool:
        lease = await self.client.get(LEASES, self.name, self.namespace)
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return False
        now = micro_rfc3339(self.clock())
        lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now,
                         "acquireTime": now}
        try:
            await self.client.update(LEASES, lease)
        except errors.Conflict:
            return False   # written since we read it: no longer ours to release
        log.info("released the lease %s/%s", self.namespace, self.name)
        return True

    async def run(self, lead: Callable[[], Awaitable[Any]]) -> None:
        """Wait to become leader, run `lead()` while renewing; if renewal fails for renew_deadline, stop leading.
        Cancelled (the process stopping) while leading: stop `lead()` first, then release the Lease if
        `release_on_cancel`, so no successor acts while this leader's work still runs."""
        while True:
            try:
                if await self.try_acquire_or_renew():
                    break
            except errors.APIError as e:
                log.debug("leader election %s: %s", self.name, e)
            await asyncio.sleep(self.retry_period)
        self.is_leader = True
        log.info("%s is the leader of %s", self.identity, self.name)
        work = asyncio.create_task(lead(), name=f"leader-{self.name}")
        try:
            last_renew = self.clock()
            while not work.done():
                done, _ = await asyncio.wait({work}, timeout=self.retry_period)
                if done:
                    break
                try:
                    if await self.try_acquire_or_renew():
                        last_renew = self.clock()
                except errors.APIError as e:
                    log.debug("renewing %s failed: %s", self.name, e)
                if self.clock() - last_renew > self.renew_deadline:
                    log.error("lost the lease %s; stopping", self.name)
                    break
        finally:
            self.is_leader = False
            if not work.done():
                work.cancel()
            failure: BaseException | None = None
            try:
                await asyncio.wait_for(asyncio.shield(work), self.renew_deadline)
            except asyncio.CancelledError:
                if not work.done():   # cancelled again while waiting for lead() to stop
                    raise
            except asyncio.TimeoutError:
                log.warning("%s: the leader's work still stopping after %.0f s", self.name, self.renew_deadline)
            except Exception as e:
                failure = e
            if self.release_on_cancel:
                await self.release()
            if failure is not None:
                raise failure
