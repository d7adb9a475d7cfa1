"""The Endpoints controller: for every Service with a selector, an Endpoints object listing its pods.

kube-proxy and DNS learn where a Service's traffic goes from these objects (and from EndpointSlices, see
`endpointslice.py`). Like Kubernetes' `pkg/controller/endpoint`, the controller watches Services and Pods, and
for a Service key recomputes the whole Endpoints object: pods that match the selector, have an IP and are not
terminating; ready ones in `addresses`, the others in `notReadyAddresses`; each Service port resolved against
the pod (a named targetPort is looked up in the pod's container ports); then packed into subsets so that
addresses offering the same ports share one. Services without a selector are left to their users, except the
`kubernetes` Service in `default`, whose Endpoints point at the API server itself (in Kubernetes the API
server reconciles those; kates has no in-process reconciler, so this controller does it).
"""
from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import socket
from typing import Any, Iterable
from urllib.parse import urlsplit

from ..api import errors
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory
from ..client.rest import Client, object_key, resource, split_key

log = logging.getLogger(__name__)

Obj = dict[str, Any]

LAST_CHANGE_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
HEADLESS_LABEL = "service.kubernetes.io/headless"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
MAX_CAPACITY = 1000
KUBERNETES_SERVICE = "default/kubernetes"


# -- pods and services: the rules both endpoint controllers share ------------------------------------------

def is_pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def is_pod_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_ips(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def should_pod_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """Terminal pods and pods without an IP never are; terminating ones only when asked for."""
    if is_pod_terminal(pod) or not pod_ips(pod):
        return False
    return include_terminating or not pod["metadata"].get("deletionTimestamp")


def should_set_hostname(pod: Obj, service: Obj) -> bool:
    spec = pod.get("spec") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == service["metadata"]["name"] \
        and pod["metadata"].get("namespace") == service["metadata"].get("namespace")


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """The pod port a Service port sends to: a numeric targetPort as is, a named one from the container ports."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or [])
    containers += [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for container in containers:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def service_selector(service: Obj) -> dict[str, str] | None:
    """The selector of a Service that gets endpoints from the controllers, or None (no selector, ExternalName)."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None
    return spec.get("selector") or None


def selector_matches(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def is_headless(service: Obj) -> bool:
    cluster_ip = (service.get("spec") or {}).get("clusterIP")
    return not cluster_ip or cluster_ip == "None"


def services_for_pod(services: Iterable[Obj], pod: Obj) -> list[str]:
    """Keys of the Services (in the pod's namespace) whose selector matches the pod."""
    labels = pod["metadata"].get("labels") or {}
    keys = []
    for svc in services:
        selector = service_selector(svc)
        if selector and selector_matches(selector, labels):
            keys.append(object_key(svc))
    return keys


def endpoint_relevant(pod: Obj) -> tuple[Any, ...]:
    """What of a pod the endpoint controllers look at: an update changing none of it wakes nobody."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    return (meta.get("labels"), meta.get("deletionTimestamp"), tuple(pod_ips(pod)), is_pod_ready(pod),
            status.get("phase"), spec.get("nodeName"), spec.get("hostname"), spec.get("subdomain"),
            [c.get("ports") for c in spec.get("containers") or []])


def trigger_time(service: Obj, pods: Iterable[Obj]) -> str | None:
    """The latest change the endpoints reflect: the Service's creation or a pod becoming (un)ready."""
    times = [service["metadata"].get("creationTimestamp") or ""]
    for pod in pods:
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready" and c.get("lastTransitionTime"):
                times.append(c["lastTransitionTime"])
    latest = max(times)
    return latest or None


async def apiserver_endpoint(client: Client) -> tuple[str, int]:
    """The API server's address as this client reaches it (the kubeconfig's server URL), as (ip, port)."""
    url = urlsplit(client.connection.server)
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        ipaddress.ip_address(host)
        return host, port
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=socket.AF_INET,
                                                             type=socket.SOCK_STREAM)
        return infos[0][4][0], port


# -- subsets -----------------------------------------------------------------------------------------------

def _address_key(addr: Obj) -> tuple[str, str]:
    return addr["ip"], (addr.get("targetRef") or {}).get("uid", "")


def _ip_sort_key(ip: str) -> tuple[int, Any]:
    try:
        parsed = ipaddress.ip_address(ip)
        return parsed.version, parsed.packed
    except ValueError:
        return 9, ip.encode()


def _port_key(port: Obj | None) -> tuple[Any, ...]:
    if port is None:
        return ()
    return (port.get("name", ""), port["port"], port.get("protocol", "TCP"), port.get("appProtocol", ""))


def repack_subsets(entries: list[tuple[Obj, bool, Obj | None]]) -> list[Obj]:
    """(address, ready, port) triples → subsets: addresses offering the same set of ports share a subset.

    An address both ready and not ready (never, for one pod) counts as ready; sorting makes the result stable,
    so comparing it with what is stored tells whether anything changed.
    """
    by_port: dict[tuple[Any, ...], tuple[Obj | None, dict[tuple[str, str], tuple[Obj, bool]]]] = {}
    for addr, ready, port in entries:
        pk = _port_key(port)
        addrs = by_port.setdefault(pk, (port, {}))[1]
        key = _address_key(addr)
        if ready or key not in addrs:
            addrs[key] = (addr, ready or (key in addrs and addrs[key][1]))
    groups: dict[frozenset[tuple[tuple[str, str], bool]], tuple[dict[tuple[str, str], tuple[Obj, bool]],
                                                                 list[Obj]]] = {}
    for pk, (port, addrs) in by_port.items():
        gk = frozenset((k, r) for k, (_, r) in addrs.items())
        group = groups.setdefault(gk, (addrs, []))
        if port is not None:
            group[1].append(port)
    subsets = []
    for addrs, ports in groups.values():
        ordered = sorted(addrs.values(), key=lambda ar: (_ip_sort_key(ar[0]["ip"]), _address_key(ar[0])[1]))
        subset: Obj = {}
        ready = [a for a, r in ordered if r]
        not_ready = [a for a, r in ordered if not r]
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if ports:
            subset["ports"] = sorted(ports, key=_port_key)
        subsets.append(subset)
    subsets.sort(key=_subset_sort_key)
    return subsets


def _subset_sort_key(subset: Obj) -> tuple[Any, ...]:
    first = (subset.get("addresses") or subset.get("notReadyAddresses") or [{"ip": ""}])[0]
    return _ip_sort_key(first["ip"]), tuple(_port_key(p) for p in subset.get("ports") or [])


def truncate_subsets(subsets: list[Obj]) -> bool:
    """Keep at most MAX_CAPACITY addresses, ready ones first, spread in proportion over the subsets."""
    total_ready = sum(len(s.get("addresses") or []) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if total_ready + total_not_ready <= MAX_CAPACITY:
        return False
    truncate_ready = total_ready > MAX_CAPACITY
    budget = MAX_CAPACITY if truncate_ready else MAX_CAPACITY - total_ready
    total = total_ready if truncate_ready else total_not_ready
    left = budget
    for subset in subsets:
        field = "addresses" if truncate_ready else "notReadyAddresses"
        items = subset.get(field) or []
        share = min(-(-len(items) * budget // total) if total else 0, left)
        subset[field] = items[:share]
        left -= len(subset[field])
        if truncate_ready:
            subset.pop("notReadyAddresses", None)
    for subset in subsets:
        for field in ("addresses", "notReadyAddresses"):
            if field in subset and not subset[field]:
                del subset[field]
    subsets[:] = [s for s in subsets if s.get("addresses") or s.get("notReadyAddresses")]
    return True


def address_for_pod(pod: Obj, service: Obj) -> Obj:
    meta = pod["metadata"]
    addr: Obj = {"ip": pod_ips(pod)[0]}
    if should_set_hostname(pod, service):
        addr["hostname"] = pod["spec"]["hostname"]
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        addr["nodeName"] = node
    addr["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta["name"],
                         "uid": meta.get("uid", "")}
    return addr


def endpoint_port(service_port: Obj, number: int) -> Obj:
    port: Obj = {}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    port["port"] = number
    port["protocol"] = service_port.get("protocol") or "TCP"
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def compute_subsets(service: Obj, pods: Iterable[Obj]) -> list[Obj]:
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    entries: list[tuple[Obj, bool, Obj | None]] = []
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, publish_not_ready):
            continue
        addr = address_for_pod(pod, service)
        ready = publish_not_ready or is_pod_ready(pod)
        if not service_ports:
            if spec.get("clusterIP") == "None":   # headless services may have no ports
                entries.append((addr, ready, None))
            continue
        for sp in service_ports:
            number = find_port(pod, sp)
            if number is None:
                continue
            entries.append((addr, ready, endpoint_port(sp, number)))
    return repack_subsets(entries)


def _normalize_subsets(subsets: list[Obj] | None) -> list[Obj]:
    """Stored subsets in the controller's own shape, so equal content compares equal."""
    out = []
    for subset in subsets or []:
        s: Obj = {}
        for field in ("addresses", "notReadyAddresses"):
            addrs = [_strip_rv(a) for a in subset.get(field) or []]
            if addrs:
                s[field] = addrs
        ports = [{k: v for k, v in p.items() if v not in ("", None)} for p in subset.get("ports") or []]
        if ports:
            s["ports"] = ports
        out.append(s)
    return out


def _strip_rv(addr: Obj) -> Obj:
    addr = {k: v for k, v in addr.items() if v not in ("", None)}
    if "targetRef" in addr:
        addr["targetRef"] = {k: v for k, v in addr["targetRef"].items() if k != "resourceVersion" and v}
    return addr


# -- the controller ----------------------------------------------------------------------------------------

class EndpointsController(Controller):
    name = "endpoint-controller"
    workers = 4

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.endpoints_rt = resource("endpoints")
        self.services = informers.informer(resource("services"))
        self.pods = informers.informer(resource("pods"))
        self.endpoints = informers.informer(self.endpoints_rt)
        self.services.add_handler(self.enqueue, lambda old, new: self.enqueue(new), self.enqueue)
        self.pods.add_handler(self.on_pod_add, self.on_pod_update, self.on_pod_delete)
        self.endpoints.add_handler(on_delete=self.enqueue)

    # -- handlers: only enqueue --------------------------------------------------------------------------
    def _enqueue_services_for(self, pod: Obj) -> None:
        for key in services_for_pod(self.services.store.in_namespace(pod["metadata"].get("namespace", "")), pod):
            self.queue.add(key)

    def on_pod_add(self, pod: Obj) -> None:
        self._enqueue_services_for(pod)

    def on_pod_update(self, old: Obj, new: Obj) -> None:
        if endpoint_relevant(old) == endpoint_relevant(new):
            return
        self._enqueue_services_for(new)
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            self._enqueue_services_for(old)

    def on_pod_delete(self, pod: Obj) -> None:
        self._enqueue_services_for(pod)

    async def run(self) -> None:
        # Endpoints left behind by Services deleted while the controller was down (checkLeftoverEndpoints)
        for ep in self.endpoints.store.list():
            if LEADER_ANNOTATION not in (ep["metadata"].get("annotations") or {}):
                self.enqueue(ep)
        await super().run()

    # -- sync --------------------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        service = self.services.store.get(key)
        if service is None:
            await self.delete_endpoints(key)
            return
        if key == KUBERNETES_SERVICE and service_selector(service) is None:
            await self.sync_kubernetes_endpoints(service)
            return
        selector = service_selector(service)
        if selector is None:
            return   # user-managed endpoints (or ExternalName): not ours
        pods = [p for p in self.pods.store.in_namespace(namespace or "")
                if selector_matches(selector, p["metadata"].get("labels"))]
        subsets = compute_subsets(service, pods)
        labels = dict(service["metadata"].get("labels") or {})
        if is_headless(service):
            labels[HEADLESS_LABEL] = ""
        else:
            labels.pop(HEADLESS_LABEL, None)
        await self.write_endpoints(service, subsets, labels, trigger_time(service, pods))

    async def delete_endpoints(self, key: str) -> None:
        current = self.endpoints.store.get(key)
        if current is None or LEADER_ANNOTATION in (current["metadata"].get("annotations") or {}):
            return
        namespace, name = split_key(key)
        try:
            await self.client.delete(self.endpoints_rt, name, namespace,
                                     preconditions={"uid": current["metadata"]["uid"]})
        except errors.NotFound:
            pass

    async def write_endpoints(self, service: Obj, subsets: list[Obj], labels: dict[str, str],
                              trigger: str | None) -> None:
        """Create or update the Endpoints of `service` when its subsets or labels differ from what is stored."""
        key = object_key(service)
        current = self.endpoints.store.get(key)
        annotations = (current or {}).get("metadata", {}).get("annotations") or {}
        truncated = truncate_subsets(subsets)
        if current is not None and _normalize_subsets(current.get("subsets")) == subsets \
                and (current["metadata"].get("labels") or {}) == labels \
                and (OVER_CAPACITY in annotations) == truncated:
            return
        annotations = dict(annotations)
        if trigger:
            annotations[LAST_CHANGE_TRIGGER_TIME] = trigger
        else:
            annotations.pop(LAST_CHANGE_TRIGGER_TIME, None)
        if truncated:
            annotations[OVER_CAPACITY] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY, None)
        await self._write(service, current, subsets, labels, annotations)

    async def _write(self, service: Obj, current: Obj | None, subsets: list[Obj], labels: dict[str, str],
                     annotations: dict[str, str]) -> None:
        meta = service["metadata"]
        if current is None:
            body: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                         "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels,
                                      "annotations": annotations},
                         "subsets": subsets}
            try:
                await self.client.create(self.endpoints_rt, body, meta["namespace"])
            except errors.Forbidden as e:
                if _namespace_terminating(e):
                    return
                self.recorder.event(body, "Warning", "FailedToCreateEndpoint",
                                    f"Failed to create endpoint for service {meta['namespace']}/{meta['name']}: {e}")
                raise
            return
        updated = copy.deepcopy(current)
        updated["metadata"]["labels"] = labels
        updated["metadata"]["annotations"] = annotations
        updated["subsets"] = subsets
        try:
            await self.client.update(self.endpoints_rt, updated)
        except errors.Conflict:
            raise
        except errors.APIError as e:
            if not isinstance(e, errors.NotFound):
                self.recorder.event(updated, "Warning", "FailedToUpdateEndpoint",
                                    f"Failed to update endpoint {meta['namespace']}/{meta['name']}: {e}")
            raise

    async def sync_kubernetes_endpoints(self, service: Obj) -> None:
        """default/kubernetes lists the API server itself, on its real port, named like the Service's port."""
        ip, port = await apiserver_endpoint(self.client)
        subsets = [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
        current = self.endpoints.store.get(KUBERNETES_SERVICE)
        labels = {SKIP_MIRROR_LABEL: "true"}
        if current is not None and _normalize_subsets(current.get("subsets")) == subsets \
                and (current["metadata"].get("labels") or {}) == labels:
            return
        annotations = dict((current or {}).get("metadata", {}).get("annotations") or {})
        await self._write(service, current, subsets, labels, annotations)


def _namespace_terminating(e: errors.APIError) -> bool:
    causes = (e.details or {}).get("causes") or []
    return any(c.get("reason") == "NamespaceTerminating" for c in causes)
