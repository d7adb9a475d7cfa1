"""The controller manager: every controller in one process, sharing one set of informers.

Run as `kates controller-manager --kubeconfig FILE` (kates server starts it). Each controller is a module of
this package exposing a `Controller` subclass; `CONTROLLERS` names them, and `--controllers` picks a subset.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

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


def main(kubeconfig: str, names: list[str] | None = None, leader_elect: bool = True, **options: Any) -> int:
    async def go() -> None:
        client = Client.from_kubeconfig(kubeconfig, user_agent="kates-controller-manager")
        try:
            work = lambda: run(client, names, ControllerOptions(**options))
            if leader_elect:
                await LeaderElector(client, "kube-controller-manager").run(work)
            else:
                await work()
        finally:
            await client.close()
    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        pass
    return 0
