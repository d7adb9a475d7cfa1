"""The Ingress controller: watches Ingresses, IngressClasses, Services, EndpointSlices and TLS Secrets and keeps
the proxy's routing table and certificates current.

Any change enqueues one key, `routes`, whose sync rebuilds the whole table from the caches and swaps it into the
`Router` in one assignment: requests already in flight keep the backend they chose, new ones see the new table,
and no listener is restarted. Ingress keys are synced separately to write `status.loadBalancer` (only when it
changed) and to record a Warning when a rule names a Service that does not exist.
"""
from __future__ import annotations

import logging
from typing import Any

from ..api import errors
from ..client.controller import Controller
from ..client.informer import InformerFactory
from ..client.rest import Client, resource
from . import routes
from .proxy import Router

log = logging.getLogger(__name__)

ROUTES_KEY = "\0routes"         # not a valid object key, so it never collides with an Ingress
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class IngressController(Controller):
    name = "ingress-controller"
    workers = 2

    def __init__(self, client: Client, informers: InformerFactory, router: Router, node_ip: str,
                 class_name: str = routes.CLASS_NAME) -> None:
        super().__init__(client, informers)
        self.router = router
        self.node_ip = node_ip
        self.class_name = class_name
        self.ingresses = informers.informer(resource("ingresses.networking.k8s.io"))
        self.classes = informers.informer(resource("ingressclasses.networking.k8s.io"))
        self.services = informers.informer(resource("services"))
        self.slices = informers.informer(resource("endpointslices.discovery.k8s.io"))
        self.secrets = informers.informer(resource("secrets"))
        self.slices.store.add_index("service", lambda o: [
            f"{o['metadata'].get('namespace')}/{o['metadata'].get('labels', {}).get(SERVICE_NAME_LABEL, '')}"])
        self.writes_status = True      # False in all but one of several worker processes
        self._warned: dict[str, frozenset[str]] = {}    # ingress key → missing services already reported
        rebuild = lambda *_: self.queue.add(ROUTES_KEY)
        self.ingresses.add_handler(self._ingress_changed, lambda _o, n: self._ingress_changed(n), rebuild)
        self.classes.add_handler(self._class_changed, lambda _o, n: self._class_changed(n), self._class_changed)
        self.services.add_handler(rebuild, rebuild, rebuild)
        self.slices.add_handler(rebuild, rebuild, rebuild)
        self.secrets.add_handler(self._secret_changed, lambda _o, n: self._secret_changed(n), self._secret_changed)

    # -- handlers: enqueue only ------------------------------------------------------------------------------
    def _ingress_changed(self, obj: dict[str, Any]) -> None:
        self.queue.add(ROUTES_KEY)
        self.enqueue(obj)

    def _class_changed(self, obj: dict[str, Any]) -> None:
        # our class becoming (or ceasing to be) the default changes which Ingresses are ours
        self.queue.add(ROUTES_KEY)
        for ing in self.ingresses.store.list():
            self.enqueue(ing)

    def _secret_changed(self, obj: dict[str, Any]) -> None:
        if obj.get("type") == "kubernetes.io/tls":
            self.queue.add(ROUTES_KEY)

    # -- start-up --------------------------------------------------------------------------------------------
    async def ensure_class(self) -> None:
        """Create IngressClass `kates` (marked the default class) unless it exists; an existing one is left as
        the administrator set it."""
        body = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                "metadata": {"name": self.class_name,
                             "annotations": {routes.DEFAULT_CLASS_ANNOTATION: "true"}},
                "spec": {"controller": routes.CONTROLLER_NAME}}
        try:
            await self.client.create(resource("ingressclasses.networking.k8s.io"), body)
        except errors.AlreadyExists:
            pass

    def our_ingresses(self) -> list[dict[str, Any]]:
        cls = self.classes.store.get(self.class_name)
        return [i for i in self.ingresses.store.list() if routes.is_ours(i, cls, self.class_name)]

    # -- sync --------------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        if key == ROUTES_KEY:
            await self.sync_routes()
        else:
            await self.sync_ingress(key)

    async def sync_routes(self) -> None:
        ours = self.our_ingresses()
        table = routes.build_table(ours)
        services = {k: v for k, v in self.services.store.items.items()}
        slices = {f"{r.namespace}/{r.name}": self.slices.store.by_index("service", f"{r.namespace}/{r.name}")
                  for r in table.services()}
        routes.resolve_backends(table, services, slices)
        secrets = {k: s for k in set(table.tls.values()) if (s := self.secrets.store.get(k)) is not None}
        await self.router.update(table, secrets)
        self._report_missing(ours, table)

    def _report_missing(self, ours: list[dict[str, Any]], table: routes.RouteTable) -> None:
        """A Warning on each Ingress whose rules name a missing Service, once per change of what is missing."""
        current: dict[str, frozenset[str]] = {}
        for ing in ours:
            meta = ing["metadata"]
            key = f"{meta.get('namespace')}/{meta['name']}"
            built = routes.build_table([ing])
            missing = frozenset(f"{r.name}" for r in built.services()
                                if table.backends.get(r) is not None and "not found" in table.backends[r].missing)
            current[key] = missing
            if missing and self._warned.get(key) != missing and self.writes_status:
                self.recorder.event(ing, "Warning", "ServiceNotFound",
                                    f"backend service{'s' if len(missing) > 1 else ''} "
                                    f"{', '.join(sorted(missing))} not found in namespace {meta.get('namespace')}")
        self._warned = current

    async def sync_ingress(self, key: str) -> None:
        ing = self.ingresses.store.get(key)
        if ing is None or not self.writes_status:
            return
        if not routes.is_ours(ing, self.classes.store.get(self.class_name), self.class_name):
            return
        want = {"ingress": [{"ip": self.node_ip}]}
        if (ing.get("status") or {}).get("loadBalancer") == want:
            return
        updated = dict(ing, status={**(ing.get("status") or {}), "loadBalancer": want})
        await self.client.update_status(resource("ingresses.networking.k8s.io"), updated)
