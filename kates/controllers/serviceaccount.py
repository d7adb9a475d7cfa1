"""The service account controller: every active namespace has a "default" ServiceAccount and the cluster's CA.

Pods that name no service account run as "default", so each namespace needs one (Kubernetes'
pkg/controller/serviceaccount/serviceaccounts_controller.go), recreated if deleted. Workloads that talk to the API
server need to trust its certificate: the "kube-root-ca.crt" ConfigMap in every namespace carries the cluster CA
under `ca.crt` (pkg/controller/certificates/rootcacertpublisher), put back if deleted or changed. Both are keyed
by namespace; the informers for them are narrowed by field selector to just those names.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import ssl
from typing import Any

from ..api import errors
from ..client.controller import Controller, ControllerOptions
from ..client.informer import Informer, InformerFactory
from ..client.rest import Client, Connection, resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")

NAMESPACES = resource("namespaces")
SERVICE_ACCOUNTS = resource("serviceaccounts")
CONFIGMAPS = resource("configmaps")


def cluster_ca_bundle(connection: Connection) -> str | None:
    """The PEM CA bundle clients use to trust the API server: the kubeconfig's certificate authority.

    Taken from `connection.ca_data` when the connection carries it; otherwise the certificates the connection trusts
    beyond the system's defaults (what the kubeconfig added).
    """
    data = getattr(connection, "ca_data", None)
    if data:
        return data.decode() if isinstance(data, bytes) else str(data)
    system = {bytes(c) for c in ssl.create_default_context().get_ca_certs(binary_form=True)}
    added = [c for c in connection.ssl_context.get_ca_certs(binary_form=True) if bytes(c) not in system]
    if not added:
        return None
    return "".join(ssl.DER_cert_to_PEM_cert(bytes(c)) for c in added)


def _active(ns: Obj | None) -> bool:
    return ns is not None and not ns["metadata"].get("deletionTimestamp") and \
        (ns.get("status") or {}).get("phase", "Active") == "Active"


def _namespace_terminating(err: errors.APIError) -> bool:
    causes = (err.details or {}).get("causes") or []
    return any(c.get("reason") == "NamespaceTerminating" for c in causes)


class ServiceAccountController(Controller):
    name = "serviceaccount"
    workers = 2

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.ca_bundle = cluster_ca_bundle(client.connection)
        self.namespaces = informers.informer(NAMESPACES)
        self.namespaces.add_handler(on_add=self.enqueue, on_update=lambda old, new: self.enqueue(new))
        # only the objects this controller keeps: a field selector on their names
        self.service_accounts = Informer(client, SERVICE_ACCOUNTS,
                                         field_selector=f"metadata.name={DEFAULT_SERVICE_ACCOUNT}")
        self.service_accounts.add_handler(on_delete=self._namespace_of)
        self.root_ca = Informer(client, CONFIGMAPS, field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}")
        self.root_ca.add_handler(on_update=lambda old, new: self._namespace_of(new), on_delete=self._namespace_of)
        if self.ca_bundle is None:
            log.warning("serviceaccount: the client trusts no cluster CA; %s will not be published", ROOT_CA_CONFIGMAP)

    def _namespace_of(self, obj: Obj) -> None:
        ns = obj["metadata"].get("namespace")
        if ns:
            self.queue.add(ns)

    async def run(self) -> None:
        own = (self.service_accounts, self.root_ca)
        for inf in own:
            inf.start()
        try:
            await asyncio.gather(*(inf.wait_synced() for inf in own))
            await super().run()   # the workers start once these caches are ready
        finally:
            await asyncio.gather(*(inf.stop() for inf in own))

    async def sync(self, key: str) -> None:
        ns = self.namespaces.store.get(key)
        if not _active(ns) or not (self.service_accounts.has_synced and self.root_ca.has_synced):
            return
        try:
            await self.sync_service_account(key)
            await self.sync_root_ca(key)
        except errors.Forbidden as e:
            if not _namespace_terminating(e):
                raise   # e.g. a quota: try again later
            log.debug("serviceaccount: namespace %s is going away: %s", key, e)
        except errors.NotFound:
            pass   # the namespace is gone

    async def sync_service_account(self, namespace: str) -> None:
        if self.service_accounts.store.get(f"{namespace}/{DEFAULT_SERVICE_ACCOUNT}") is not None:
            return
        try:
            await self.client.create(SERVICE_ACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                        "metadata": {"name": DEFAULT_SERVICE_ACCOUNT}}, namespace)
        except errors.AlreadyExists:
            pass

    async def sync_root_ca(self, namespace: str) -> None:
        if self.ca_bundle is None:
            return
        data = {ROOT_CA_KEY: self.ca_bundle}
        current = self.root_ca.store.get(f"{namespace}/{ROOT_CA_CONFIGMAP}")
        if current is None:
            try:
                await self.client.create(CONFIGMAPS, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIGMAP, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                    "data": data}, namespace)
            except errors.AlreadyExists:
                pass
            return
        if current.get("data") == data and not current.get("binaryData"):
            return
        updated = copy.deepcopy(current)
        updated["data"] = data
        updated.pop("binaryData", None)
        updated["metadata"].setdefault("annotations", {})[DESCRIPTION_ANNOTATION] = DESCRIPTION
        await self.client.update(CONFIGMAPS, updated)
