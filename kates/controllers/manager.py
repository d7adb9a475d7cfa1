"""The controller manager: every controller in one process, sharing one set of informers.

Run as `kates controller-manager --kubeconfig FILE` (kates server starts it). Each controller is a module of
this package exposing a `Controller` subclass; `CONTROLLERS` names them, and `--controllers` picks a subset.

Leader election, as kube-controller-manager: only the holder of the Lease kube-system/kube-controller-manager runs
controllers. On SIGTERM/SIGINT the controllers stop and the Lease is released (ReleaseOnCancel), so a restarted
`kates server` (or a standby) runs its controllers at once instead of after a lease duration (15 s). A leader that
loses its Lease exits with status 1 ("leaderelection lost"), as kube-controller-manager does; kates server restarts it.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from typing import Any

from ..cli.lifecycle import SIGNALS, run_until_stopped, stop_event
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory
from ..client.leaderelection import LeaderElector
from ..client.rest import Client

log = logging.getLogger(__name__)

# name → "module:Class", in the order they start
CONTROLLERS: dict[str, str] = {
    "serviceaccount": "kates.controllers.serviceaccount:ServiceAccountController",
    "namespace": "kates.controllers.namespace:NamespaceController",
    "garbagecollector": "kates.controllers.garbagecollector:GarbageCollector",
    "replicaset": "kates.controllers.replicaset:ReplicaSetController",
    "replicationcontroller": "kates.controllers.replicaset:ReplicationControllerController",
    "deployment": "kates.controllers.deployment:DeploymentController",
    "statefulset": "kates.controllers.statefulset:StatefulSetController",
    "daemonset": "kates.controllers.daemonset:DaemonSetController",
    "job": "kates.controllers.job:JobController",
    "cronjob": "kates.controllers.cronjob:CronJobController",
    "endpoints": "kates.controllers.endpoints:EndpointsController",
    "endpointslice": "kates.controllers.endpointslice:EndpointSliceController",
    "nodeipam": "kates.controllers.nodeipam:NodeIPAMController",
    "nodelifecycle": "kates.controllers.nodelifecycle:NodeLifecycleController",
    "podgc": "kates.controllers.podgc:PodGCController",
    "horizontalpodautoscaler": "kates.controllers.horizontalpodautoscaler:HorizontalPodAutoscalerController",
    "resourcequota": "kates.controllers.resourcequota:ResourceQuotaController",
}


def load(name: str) -> type[Controller] | None:
    module, _, cls = CONTROLLERS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as e:
        if e.name == module:
            log.warning("controller %s is not available (%s)", name, module)
            return None
        raise


async def run(client: Client, names: list[str] | None = None, options: ControllerOptions | None = None) -> None:
    informers = InformerFactory(client)
    controllers: list[Controller] = []
    for name in names or list(CONTROLLERS):
        cls = load(name)
        if cls is not None:
            controllers.append(cls(client, informers, options or ControllerOptions()))
    informers.start()
    await informers.wait_synced()
    log.info("controllers running: %s", ", ".join(c.name for c in controllers))
    try:
        await asyncio.gather(*(c.run() for c in controllers))
    finally:
        await informers.stop()


class LeaderElectionLost(RuntimeError):
    pass


async def serve(kubeconfig: str, names: list[str] | None = None, leader_elect: bool = True,
                options: ControllerOptions | None = None, lease_duration: float = 15.0,
                renew_deadline: float = 10.0, retry_period: float = 2.0) -> None:
    """Run the controllers (behind the Lease when leader_elect) until SIGTERM/SIGINT, then stop them and release
    the Lease. Raises LeaderElectionLost when the Lease could not be renewed."""
    client = Client.from_kubeconfig(kubeconfig, user_agent="kates-controller-manager")
    work = lambda: run(client, names, options or ControllerOptions())
    elector: LeaderElector | None = None
    if leader_elect:
        elector = LeaderElector(client, "kube-controller-manager", lease_duration=lease_duration,
                                renew_deadline=renew_deadline, retry_period=retry_period, release_on_cancel=True)
        log.info("attempting to acquire the leader lease kube-system/kube-controller-manager as %s", elector.identity)
        task = asyncio.create_task(elector.run(work), name="controller-manager-leader-election")
    else:
        task = asyncio.create_task(work(), name="controller-manager")
    stop = stop_event()
    try:
        await run_until_stopped(task, stop)   # cancelled, the elector stops the controllers, then releases the Lease
    finally:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        await client.close()
    if stop.is_set():
        return
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()   # type: ignore[misc]
    if elector is not None:
        # LeaderElector.run returns on its own only when the Lease could not be renewed (or the work ended)
        raise LeaderElectionLost("leaderelection lost: kube-system/kube-controller-manager")


def main(kubeconfig: str, names: list[str] | None = None, leader_elect: bool = True, **options: Any) -> int:
    try:
        asyncio.run(serve(kubeconfig, names, leader_elect, ControllerOptions(**options)))
    except KeyboardInterrupt:
        pass
    except LeaderElectionLost as e:
        print(f"kates controller-manager: {e}", file=sys.stderr)
        return 1
    return 0
