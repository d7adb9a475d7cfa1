"""The EndpointSlice controller: each selector Service's pods as EndpointSlices of at most 100 endpoints.

EndpointSlices are what kube-proxy reads: unlike one Endpoints object per Service they scale (a change rewrites
one slice of 100 endpoints, not a list of thousands) and carry per-endpoint conditions (ready, serving,
terminating), node and zone. The model is Kubernetes' `pkg/controller/endpointslice` and its reconciler
(`staging/src/k8s.io/endpointslice/reconciler.go`): endpoints are grouped by the ports they resolve to (one
group per distinct port list), existing slices are updated in place, keeping what is still wanted and dropping
what is gone; new endpoints first fill slices that are being written anyway, and a slice that would be deleted
is recycled instead of creating another. A Service with no endpoints keeps one empty placeholder slice.

Slices are created with generateName, so the informer cannot tell a slice we just created from one that does
not exist yet: like Kubernetes' EndpointSliceTracker, the controller remembers what it wrote per Service and
waits for its cache to catch up before reconciling that Service again.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from typing import Any

from ..api import errors
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory
from ..client.rest import Client, resource, split_key
from .endpoints import (HEADLESS_LABEL, KUBERNETES_SERVICE, LAST_CHANGE_TRIGGER_TIME, apiserver_endpoint,
                        endpoint_relevant, find_port, is_headless, is_pod_ready, pod_ips, selector_matches,
                        service_selector, services_for_pod, should_pod_be_in_endpoints, should_set_hostname,
                        trigger_time)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
ZONE_LABEL = "topology.kubernetes.io/zone"
RESERVED_LABELS = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, HEADLESS_LABEL)
ADDRESS_TYPE = "IPv4"
EXPECTATIONS_TIMEOUT = 10.0

PortsKey = tuple[tuple[Any, ...], ...]


def ports_key(ports: list[Obj] | None) -> PortsKey:
    return tuple(sorted((p.get("name") or "", p.get("port"), p.get("protocol") or "TCP", p.get("appProtocol") or "")
                        for p in ports or []))


def endpoint_key(ep: Obj) -> str:
    uid = (ep.get("targetRef") or {}).get("uid")
    return uid or ",".join(ep.get("addresses") or [])


def normalize_endpoint(ep: Obj) -> Obj:
    """An endpoint as stored, minus what the controller does not set, for comparison."""
    out = {k: v for k, v in ep.items() if v is not None and k not in ("hints", "deprecatedTopology")}
    if "targetRef" in out:
        out["targetRef"] = {k: v for k, v in out["targetRef"].items() if v and k != "resourceVersion"}
    return out


def is_ipv4(ip: str) -> bool:
    return ":" not in ip


def pod_to_endpoint(pod: Obj, node: Obj | None, service: Obj) -> Obj:
    meta = pod["metadata"]
    serving = is_pod_ready(pod)
    terminating = bool(meta.get("deletionTimestamp"))
    ready = bool((service.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: Obj = {"addresses": [ip for ip in pod_ips(pod) if is_ipv4(ip)],
               "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    if should_set_hostname(pod, service):
        ep["hostname"] = pod["spec"]["hostname"]
    ep["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta["name"],
                       "uid": meta.get("uid", "")}
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        ep["nodeName"] = node_name
    zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE_LABEL)
    if zone:
        ep["zone"] = zone
    return ep


def endpoint_ports(service: Obj, pod: Obj) -> list[Obj]:
    """The slice ports for this pod, in Service order: the Service ports the pod resolves."""
    spec = service.get("spec") or {}
    out = []
    for sp in spec.get("ports") or []:
        number = find_port(pod, sp)
        if number is None:
            continue
        port: Obj = {"name": sp.get("name") or "", "port": number, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


def slice_labels(service: Obj) -> dict[str, str]:
    """The Service's labels (minus the reserved ones), plus service-name, managed-by and the headless marker."""
    labels = {k: v for k, v in (service["metadata"].get("labels") or {}).items() if k not in RESERVED_LABELS}
    if is_headless(service):
        labels[HEADLESS_LABEL] = ""
    labels[LABEL_SERVICE_NAME] = service["metadata"]["name"]
    labels[LABEL_MANAGED_BY] = CONTROLLER_NAME
    return labels


@dataclasses.dataclass
class Desired:
    """Endpoints wanted for one port list."""
    ports: list[Obj]
    endpoints: dict[str, Obj]


@dataclasses.dataclass
class Plan:
    creates: list[Obj] = dataclasses.field(default_factory=list)
    updates: list[Obj] = dataclasses.field(default_factory=list)
    deletes: list[Obj] = dataclasses.field(default_factory=list)


def new_slice(service: Obj, ports: list[Obj] | None, endpoints: list[Obj]) -> Obj:
    meta = service["metadata"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": f"{meta['name']}-", "namespace": meta["namespace"],
                         "labels": slice_labels(service),
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "addressType": ADDRESS_TYPE, "endpoints": endpoints, "ports": ports}


def reconcile(service: Obj, desired: dict[PortsKey, Desired], existing: list[Obj], max_per_slice: int) -> Plan:
    """Which slices to create, update and delete so that `existing` holds exactly `desired`, writing little."""
    plan = Plan()
    labels = slice_labels(service)
    by_ports: dict[PortsKey, list[Obj]] = {}
    for s in existing:
        if s.get("addressType") != ADDRESS_TYPE:
            plan.deletes.append(s)
        else:
            by_ports.setdefault(ports_key(s.get("ports")), []).append(s)
    unchanged: list[Obj] = []
    for pk, want in desired.items():
        remaining = dict(want.endpoints)
        to_update: list[Obj] = []
        kept: list[Obj] = []
        # 1. existing slices with these ports keep the endpoints still wanted, refreshed, and drop the rest
        for s in by_ports.pop(pk, []):
            new_eps, changed = [], False
            for ep in s.get("endpoints") or []:
                wanted = remaining.pop(endpoint_key(ep), None)
                if wanted is None:
                    changed = True
                    continue
                if normalize_endpoint(ep) != wanted:
                    changed = True
                new_eps.append(wanted)
            if (s["metadata"].get("labels") or {}) != labels:
                changed = True
            if not new_eps:
                plan.deletes.append(s)
            elif changed:
                u = copy.deepcopy(s)
                u["endpoints"] = new_eps
                u["metadata"]["labels"] = dict(labels)
                to_update.append(u)
            else:
                kept.append(s)
        # 2. new endpoints fill slices that are being written anyway
        new_eps = list(remaining.values())
        for u in to_update:
            room = max_per_slice - len(u["endpoints"])
            if room > 0 and new_eps:
                u["endpoints"].extend(new_eps[:room])
                new_eps = new_eps[room:]
        # 3. then new slices; a last small batch goes into an unchanged slice with room, if one fits it
        while new_eps:
            batch, new_eps = new_eps[:max_per_slice], new_eps[max_per_slice:]
            fill = _slice_to_fill(kept, len(batch), max_per_slice) if len(batch) < max_per_slice else None
            if fill is not None:
                kept.remove(fill)
                u = copy.deepcopy(fill)
                u["endpoints"] = list(u.get("endpoints") or []) + batch
                to_update.append(u)
            else:
                plan.creates.append(new_slice(service, want.ports, batch))
        plan.updates.extend(to_update)
        unchanged.extend(kept)
    for slices in by_ports.values():   # port lists no longer wanted
        plan.deletes.extend(slices)
    # a Service without endpoints keeps one placeholder slice
    if not plan.creates and not plan.updates and not unchanged:
        placeholder = next((s for s in plan.deletes if _is_placeholder(s, labels)), None)
        if placeholder is not None:
            plan.deletes.remove(placeholder)
        else:
            plan.creates.append(new_slice(service, None, []))
    # recycle slices about to be deleted instead of creating new ones
    recyclable = [s for s in plan.deletes if s.get("addressType") == ADDRESS_TYPE]
    while plan.creates and recyclable:
        created, old = plan.creates.pop(), recyclable.pop()
        plan.deletes.remove(old)
        recycled = copy.deepcopy(old)
        recycled["endpoints"] = created["endpoints"]
        recycled["ports"] = created["ports"]
        recycled["metadata"]["labels"] = dict(labels)
        plan.updates.append(recycled)
    return plan


def _slice_to_fill(slices: list[Obj], count: int, max_per_slice: int) -> Obj | None:
    best, best_diff = None, max_per_slice
    for s in slices:
        diff = max_per_slice - (count + len(s.get("endpoints") or []))
        if 0 <= diff < best_diff:
            best, best_diff = s, diff
    return best


def _is_placeholder(s: Obj, labels: dict[str, str]) -> bool:
    return not s.get("endpoints") and not s.get("ports") and s.get("addressType") == ADDRESS_TYPE \
        and (s["metadata"].get("labels") or {}) == labels


class EndpointSliceController(Controller):
    name = "endpointslice-controller"
    workers = 4
    max_endpoints_per_slice = 100

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.slice_rt = resource("endpointslices.discovery.k8s.io")
        self.services = informers.informer(resource("services"))
        self.pods = informers.informer(resource("pods"))
        self.nodes = informers.informer(resource("nodes"))
        self.slices = informers.informer(self.slice_rt)
        self.slices.store.add_index("service", _slice_service_index)
        self.services.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_handler(self.on_pod, self.on_pod_update, self.on_pod)
        self.slices.add_handler(self.on_slice, lambda old, new: self.on_slice(new), self.on_slice)
        self.nodes.add_handler(on_update=self.on_node_update)
        # what this controller wrote and its cache has not shown yet: service key → slice name → rv (0: deleted)
        self.expectations: dict[str, tuple[float, dict[str, int]]] = {}

    # -- handlers ----------------------------------------------------------------------------------------
    def on_pod(self, pod: Obj) -> None:
        for key in services_for_pod(self.services.store.in_namespace(pod["metadata"].get("namespace", "")), pod):
            self.queue.add(key)

    def on_pod_update(self, old: Obj, new: Obj) -> None:
        if endpoint_relevant(old) == endpoint_relevant(new):
            return
        self.on_pod(new)
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            self.on_pod(old)

    def on_slice(self, s: Obj) -> None:
        for key in _slice_service_index(s):
            self.queue.add(key)

    def on_node_update(self, old: Obj, new: Obj) -> None:
        zone = lambda n: (n["metadata"].get("labels") or {}).get(ZONE_LABEL)  # noqa: E731
        if zone(old) == zone(new):
            return
        name = new["metadata"]["name"]
        for pod in self.pods.store.list():
            if (pod.get("spec") or {}).get("nodeName") == name:
                self.on_pod(pod)

    # -- expectations ------------------------------------------------------------------------------------
    def _expect(self, key: str, name: str, rv: int) -> None:
        _, names = self.expectations.get(key, (0.0, {}))
        names[name] = rv
        self.expectations[key] = (time.monotonic(), names)

    def _cache_caught_up(self, key: str) -> bool:
        entry = self.expectations.get(key)
        if entry is None:
            return True
        since, names = entry
        namespace, _ = split_key(key)
        for name, rv in list(names.items()):
            cached = self.slices.store.get(f"{namespace}/{name}")
            seen = int(cached["metadata"].get("resourceVersion") or 0) if cached is not None else 0
            if (rv == 0 and cached is None) or (rv and seen >= rv):
                del names[name]
        if not names or time.monotonic() - since > EXPECTATIONS_TIMEOUT:
            self.expectations.pop(key, None)
            return True
        return False

    # -- sync --------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        if not self._cache_caught_up(key):
            self.queue.add_after(key, 0.05)
            return
        service = self.services.store.get(key)
        existing = self.slices.store.by_index("service", key)
        if service is None:
            # the garbage collector would remove them through their ownerReference; do not leave them to it
            await self.apply(key, Plan(deletes=[s for s in existing if _managed(s)]))
            return
        if key == KUBERNETES_SERVICE and service_selector(service) is None:
            await self.sync_kubernetes_slice(service)
            return
        selector = service_selector(service)
        if selector is None:
            return
        namespace, _ = split_key(key)
        pods = [p for p in self.pods.store.in_namespace(namespace or "")
                if selector_matches(selector, p["metadata"].get("labels"))]
        desired = self.desired_endpoints(service, pods)
        plan = reconcile(service, desired, [s for s in existing if _managed(s)], self.max_endpoints_per_slice)
        trigger = trigger_time(service, pods)
        for s in plan.creates + plan.updates:
            annotations = s["metadata"].setdefault("annotations", {}) or {}
            if trigger:
                annotations[LAST_CHANGE_TRIGGER_TIME] = trigger
            s["metadata"]["annotations"] = annotations
        await self.apply(key, plan)

    def desired_endpoints(self, service: Obj, pods: list[Obj]) -> dict[PortsKey, Desired]:
        desired: dict[PortsKey, Desired] = {}
        for pod in pods:
            if not should_pod_be_in_endpoints(pod, include_terminating=True):
                continue
            ports = endpoint_ports(service, pod)   # a pod offering none of the ports is listed without ports
            node = self.nodes.store.get((pod.get("spec") or {}).get("nodeName") or "")
            ep = pod_to_endpoint(pod, node, service)
            if not ep["addresses"]:
                continue
            group = desired.setdefault(ports_key(ports), Desired(ports, {}))
            group.endpoints[endpoint_key(ep)] = ep
        return desired

    async def apply(self, key: str, plan: Plan) -> None:
        """Deletes last, so that endpoints moving between slices are never missing from all of them."""
        namespace, _ = split_key(key)
        for body in plan.creates:
            try:
                created = await self.client.create(self.slice_rt, body, namespace)
            except errors.Forbidden as e:
                if any(c.get("reason") == "NamespaceTerminating" for c in (e.details or {}).get("causes") or []):
                    return
                raise
            self._expect(key, created["metadata"]["name"], int(created["metadata"]["resourceVersion"]))
        for body in plan.updates:
            updated = await self.client.update(self.slice_rt, body)
            self._expect(key, updated["metadata"]["name"], int(updated["metadata"]["resourceVersion"]))
        for s in plan.deletes:
            try:
                await self.client.delete(self.slice_rt, s["metadata"]["name"], namespace,
                                         preconditions={"uid": s["metadata"]["uid"]})
            except (errors.NotFound, errors.Conflict):
                pass
            self._expect(key, s["metadata"]["name"], 0)

    async def sync_kubernetes_slice(self, service: Obj) -> None:
        """The `kubernetes` slice lists the API server, as the API server's own reconciler writes it."""
        ip, port = await apiserver_endpoint(self.client)
        endpoints = [{"addresses": [ip], "conditions": {"ready": True}}]
        ports = [{"name": "https", "port": port, "protocol": "TCP"}]
        labels = {LABEL_SERVICE_NAME: "kubernetes"}
        current = self.slices.store.get(KUBERNETES_SERVICE)
        if current is None:
            body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
                    "addressType": ADDRESS_TYPE, "endpoints": endpoints, "ports": ports}
            try:
                await self.client.create(self.slice_rt, body, "default")
            except errors.AlreadyExists:
                pass
            return
        if [normalize_endpoint(e) for e in current.get("endpoints") or []] == endpoints \
                and ports_key(current.get("ports")) == ports_key(ports) \
                and (current["metadata"].get("labels") or {}) == labels:
            return
        updated = copy.deepcopy(current)
        updated["metadata"]["labels"] = labels
        updated["endpoints"], updated["ports"] = endpoints, ports
        await self.client.update(self.slice_rt, updated)


def _managed(s: Obj) -> bool:
    return (s["metadata"].get("labels") or {}).get(LABEL_MANAGED_BY) == CONTROLLER_NAME


def _slice_service_index(s: Obj) -> list[str]:
    """The Service a slice belongs to: ours by the service-name label, plus the kubernetes slice by name."""
    meta = s["metadata"]
    labels = meta.get("labels") or {}
    name = labels.get(LABEL_SERVICE_NAME)
    if not name:
        return []
    is_kubernetes = f"{meta.get('namespace')}/{meta['name']}" == KUBERNETES_SERVICE
    if labels.get(LABEL_MANAGED_BY) == CONTROLLER_NAME or is_kubernetes:
        return [f"{meta.get('namespace', '')}/{name}"]
    return []
