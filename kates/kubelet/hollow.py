"""Hollow nodes: thousands of fake kubelets in one process, so the control plane can be exercised at scale (kwok).

`kates hollow-nodes --kubeconfig FILE --count N --prefix P` registers Nodes P0..P(N-1) and keeps each alive the way a
kubelet does: a Lease in kube-node-lease renewed every 10 s (renewals spread over the period), a Ready node status
re-posted whenever someone else changed it. Pods bound to these nodes run on a `FakeRuntime` per node: no process is
started, but sandboxes and containers go through the CRI states, and the pod status the kubelet would write
(phase, podIP from the node's podCIDR, conditions, container statuses) goes to pods/status as a JSON merge patch,
only when it changed. A merge patch replaces the conditions list, so it carries the conditions of other writers
(PodScheduled, DisruptionTarget, readiness gates) as last seen; it is half the API server's work of a strategic
merge patch. Graceful deletion ends with the kubelet's DELETE, grace period 0.

One watch serves all nodes: pods with any spec.nodeName, filtered in the handler (5,000 nodes must not mean 5,000
watches). Pod keys and node keys go through two work queues, each drained with bounded concurrency, which bounds the
requests in flight. Lease renewals have connections of their own and come first: while they run late (an overloaded
API server), pod work waits.

Hollow-only test hooks (nothing else in kates reads them):
- pod annotation `kates.io/hollow-run-seconds: "S"`: containers exit after S seconds (default: 1 s for pods with
  restartPolicy Never/OnFailure, never for Always); `kates.io/hollow-exit-code: "N"`: with exit code N (default 0).
  The restart policy then decides: Never → Succeeded/Failed; OnFailure restarts failed containers; Always restarts.
- pod annotation `kates.io/hollow-ignore-sigterm: "true"`: on graceful deletion the containers keep running until
  the grace period is over, then are killed (exit 137); otherwise they stop at once.
- node annotation `kates.io/hollow-stopped: "true"`: this node's agent is dead: its Lease and status are no longer
  renewed and its pods no longer touched, until the annotation is removed.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import logging
import platform
import time
import uuid
from typing import Any, Awaitable, Callable

from ..api import errors
from ..cli.lifecycle import run_until_stopped, stop_event
from ..client.events import EventRecorder
from ..client.informer import Informer
from ..client.rest import Client, object_key, resource
from ..client.workqueue import RateLimiter, WorkQueue
from ..runtime import fake
from ..runtime.fake import ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, FakeRuntime
from .status import (KUBELET_VERSION, LEASE_NAMESPACE, TERMINAL_PHASES, _volume_mounts,  # noqa: F401 (re-exported)
                     _with_transition_times, init_incomplete, micro_time, node_conditions, node_healthy,
                     others_conditions, parse_time, pod_conditions, pod_phase, restarts, rfc3339, status_changed)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

HOLLOW_LABEL = "kates.io/hollow-node"
STOPPED_ANNOTATION = "kates.io/hollow-stopped"
IGNORE_SIGTERM_ANNOTATION = "kates.io/hollow-ignore-sigterm"
RUN_SECONDS_ANNOTATION = fake.RUN_SECONDS_ANNOTATION
EXIT_CODE_ANNOTATION = fake.EXIT_CODE_ANNOTATION
MAX_NODES = (255 - 200) * 256     # podCIDRs 10.200.0.0/24 .. 10.254.255.0/24; 10.255/16 holds the node addresses

NODES = resource("nodes")
PODS = resource("pods")
LEASES = resource("leases.coordination.k8s.io")


@dataclasses.dataclass
class HollowConfig:
    count: int = 1
    prefix: str = "hollow-"
    cpu: str = "32"
    memory: str = "256Gi"
    pods: str = "110"
    ephemeral_storage: str = "100Gi"
    arch: str = "amd64"
    role: str = ""                       # adds node-role.kubernetes.io/<role> when set
    lease_period: float = 10.0           # the kubelet renews its Lease every 10 s...
    lease_duration_seconds: int = 40     # ...and claims it for 40 s
    job_run_seconds: float = 1.0         # how long containers of Never/OnFailure pods run without the annotation
    workers: int = 48                    # pod/node syncs, so requests, in flight
    lease_concurrency: int = 64          # lease renewals in flight, on their own connections: 500/s for 5,000 nodes
    restart_backoff: float = 1.0         # container restart back-off (the kubelet's is 10 s doubling to 5 min)
    restart_backoff_cap: float = 10.0


# -- small helpers -----------------------------------------------------------------------------------------------


def node_internal_ip(index: int) -> str:
    """A label-only address in 10.255.0.0/16: hollow nodes never receive traffic."""
    return f"10.255.{index // 254}.{index % 254 + 1}"


def node_pod_cidr(index: int) -> str:
    """A per-node /24 in 10.200.0.0–10.255.255.0; these pod IPs route nowhere."""
    return f"10.{200 + index // 256}.{index % 256}.0/24"


def _annotation(obj: Obj, name: str) -> str:
    return (obj["metadata"].get("annotations") or {}).get(name, "")


class Retry(Exception):
    """A sync that must run again later (a runtime call failed); the worker requeues with back-off."""


# -- nodes ---------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class HollowNode:
    name: str
    index: int
    runtime: FakeRuntime
    uid: str = ""            # the Node's uid once registered
    stopped: bool = False    # kates.io/hollow-stopped: the agent is "dead"
    gone: bool = False       # the Node was deleted: a kubelet does not re-register by itself
    renewing: float | None = None    # the slot of the renewal in flight

    @property
    def internal_ip(self) -> str:
        return node_internal_ip(self.index)

    @property
    def pod_cidr(self) -> str:
        return node_pod_cidr(self.index)

    @property
    def active(self) -> bool:
        return bool(self.uid) and not self.stopped and not self.gone


def node_status(hn: HollowNode, cfg: HollowConfig, now: float, boot_id: str) -> Obj:
    resources = {"cpu": cfg.cpu, "memory": cfg.memory, "pods": cfg.pods, "ephemeral-storage": cfg.ephemeral_storage,
                 "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    machine = hashlib.md5(hn.name.encode()).hexdigest()
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": node_conditions(now),
        "addresses": [{"type": "InternalIP", "address": hn.internal_ip}, {"type": "Hostname", "address": hn.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"machineID": machine, "systemUUID": str(uuid.UUID(machine)), "bootID": boot_id,
                     "kernelVersion": platform.release(), "osImage": "kates hollow node",
                     "containerRuntimeVersion": f"{fake.RUNTIME_NAME}://{fake.RUNTIME_VERSION}",
                     "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux",
                     "architecture": cfg.arch},
    }


def node_object(hn: HollowNode, cfg: HollowConfig, now: float, boot_id: str) -> Obj:
    labels = {"kubernetes.io/hostname": hn.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": cfg.arch,
              "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": cfg.arch, HOLLOW_LABEL: "true"}
    if cfg.role:
        labels[f"node-role.kubernetes.io/{cfg.role}"] = ""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": hn.name, "labels": labels,
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                         "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
            "spec": {"podCIDR": hn.pod_cidr, "podCIDRs": [hn.pod_cidr]},
            "status": node_status(hn, cfg, now, boot_id)}


def lease_object(hn: HollowNode, cfg: HollowConfig, now: float) -> Obj:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": hn.name, "namespace": LEASE_NAMESPACE,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": hn.name, "uid": hn.uid}]},
            "spec": {"holderIdentity": hn.name, "leaseDurationSeconds": cfg.lease_duration_seconds,
                     "renewTime": micro_time(now)}}


# -- pods: what runs, and the status it shows -----------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class PodRecord:
    """What this kubelet started for one pod (uid): its sandbox and the current container of each name."""

    key: str
    uid: str
    node: HollowNode
    sandbox_id: str = ""
    containers: dict[str, str] = dataclasses.field(default_factory=dict)   # name → current container id
    previous: dict[str, str] = dataclasses.field(default_factory=dict)     # name → the exited one before it
    waiting: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)   # name → (reason, message)
    finished: bool = False     # terminal status written, sandbox stopped


def backoff_delay(cfg: HollowConfig, attempt: int) -> float:
    return min(cfg.restart_backoff * (2 ** attempt), cfg.restart_backoff_cap)


def _probe_delay(ctr: Obj, probe: str) -> float:
    return float(((ctr.get(probe) or {}).get("initialDelaySeconds")) or 0)


def _terminated(cs: ContainerStatus) -> Obj:
    out: Obj = {"exitCode": cs.exit_code, "reason": cs.reason or ("Completed" if cs.exit_code == 0 else "Error")}
    if cs.started_at:
        out["startedAt"] = rfc3339(cs.started_at)
    out["finishedAt"] = rfc3339(cs.finished_at)
    out["containerID"] = f"fake://{cs.id}"
    return out


class PodView:
    """The runtime's containers of one pod, by name, newest attempt last."""

    def __init__(self, rec: PodRecord, statuses: list[ContainerStatus]) -> None:
        by_id = {cs.id: cs for cs in statuses}
        self.current = {name: by_id[cid] for name, cid in rec.containers.items() if cid in by_id}
        self.previous = {name: by_id[cid] for name, cid in rec.previous.items() if cid in by_id}
        self.waiting = rec.waiting


def container_status(ctr: Obj, view: PodView, prev_api: Obj | None, now: float, init: bool,
                     creating: str = "ContainerCreating") -> tuple[Obj, float | None]:
    """One entry of containerStatuses/initContainerStatuses, and when it next changes by itself (readiness)."""
    name = ctr["name"]
    cur, last = view.current.get(name), view.previous.get(name)
    waiting = view.waiting.get(name)
    out: Obj = {"name": name, "image": fake.normalize_image(ctr.get("image", "")), "imageID": "",
                "restartCount": cur.metadata.attempt if cur else 0}
    wake = None
    ready = started = False
    if waiting and (cur is None or cur.state is ContainerState.EXITED):
        out["state"] = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        if cur is not None:
            last = cur
    elif cur is None or cur.state is ContainerState.CREATED:
        out["state"] = {"waiting": {"reason": creating}}
    elif cur.state is ContainerState.RUNNING:
        started_at = rfc3339(cur.started_at)
        if prev_api and prev_api.get("containerID") == f"fake://{cur.id}" and "running" in (prev_api.get("state") or {}):
            started_at = prev_api["state"]["running"].get("startedAt") or started_at   # unchanged after a restart
        out["state"] = {"running": {"startedAt": started_at}}
        started_ts = parse_time(started_at) or cur.started_at
        startup_at = started_ts + _probe_delay(ctr, "startupProbe")
        ready_at = max(startup_at, started_ts + _probe_delay(ctr, "readinessProbe"))
        started = now >= startup_at
        ready = now >= ready_at
        pending = [t for t in (startup_at, ready_at) if t > now]
        wake = min(pending) if pending else None
    else:
        out["state"] = {"terminated": _terminated(cur)}
        ready = init and cur.exit_code == 0
    out["lastState"] = {"terminated": _terminated(last)} if last is not None else {}
    out["ready"] = ready
    out["started"] = started
    if cur is not None:
        out["imageID"] = cur.image_ref
        out["containerID"] = f"fake://{cur.id}"
    mounts = _volume_mounts(ctr)
    if mounts:
        out["volumeMounts"] = mounts
    return out, wake


def build_pod_status(pod: Obj, hn: HollowNode, view: PodView, sandbox_ip: str, sandbox_ready: bool,
                     now: float) -> tuple[Obj, float | None]:
    """The part of a pod's status this kubelet owns, and when it next changes by itself."""
    spec, old = pod["spec"], pod.get("status") or {}
    old_by_name = {s.get("name"): s for s in (old.get("containerStatuses") or []) + (old.get("initContainerStatuses")
                                                                                    or [])}
    wakes: list[float] = []
    init_statuses, statuses = [], []
    for ctr in spec.get("initContainers") or []:
        cs, wake = container_status(ctr, view, old_by_name.get(ctr["name"]), now, True, "PodInitializing")
        init_statuses.append(cs)
        wakes += [wake] if wake else []
    incomplete = init_incomplete(spec, init_statuses)
    creating = "PodInitializing" if incomplete else "ContainerCreating"
    for ctr in spec.get("containers") or []:
        cs, wake = container_status(ctr, view, old_by_name.get(ctr["name"]), now, False, creating)
        statuses.append(cs)
        wakes += [wake] if wake else []
    phase = pod_phase(pod, init_statuses, statuses, not incomplete)
    conditions = _with_transition_times(pod_conditions(pod, phase, sandbox_ready, incomplete, statuses), pod, now)
    conditions += others_conditions(pod, now)
    host_ip = hn.internal_ip
    pod_ip = host_ip if spec.get("hostNetwork") else sandbox_ip or old.get("podIP", "")
    status: Obj = {"phase": phase, "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                   "startTime": old.get("startTime") or rfc3339(now), "containerStatuses": statuses}
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return status, (min(wakes) if wakes else None)


def container_config(pod: Obj, ctr: Obj, attempt: int, cfg: HollowConfig, init: bool) -> ContainerConfig:
    """What the kubelet asks the runtime to create; pod annotations carry the hollow run time and exit code."""
    pod_ann = pod["metadata"].get("annotations") or {}
    ann: dict[str, str] = {}
    sidecar = init and ctr.get("restartPolicy") == "Always"
    if init and not sidecar:
        ann[RUN_SECONDS_ANNOTATION] = "0"
    elif RUN_SECONDS_ANNOTATION in pod_ann:
        ann[RUN_SECONDS_ANNOTATION] = pod_ann[RUN_SECONDS_ANNOTATION]
        ann[EXIT_CODE_ANNOTATION] = pod_ann.get(EXIT_CODE_ANNOTATION, "0")
    elif pod["spec"].get("restartPolicy") in ("Never", "OnFailure") and not sidecar:
        ann[RUN_SECONDS_ANNOTATION] = str(cfg.job_run_seconds)
        ann[EXIT_CODE_ANNOTATION] = pod_ann.get(EXIT_CODE_ANNOTATION, "0")
    return ContainerConfig(ContainerMetadata(ctr["name"], attempt), ctr.get("image", ""),
                           command=tuple(ctr.get("command") or ()), args=tuple(ctr.get("args") or ()),
                           annotations=ann)


# -- the kubelet ---------------------------------------------------------------------------------------------------

class HollowKubelet:
    """All hollow nodes of one process: registration, leases, node status and the pods bound to them."""

    def __init__(self, client: Client, config: HollowConfig, clock: Callable[[], float] = time.time,
                 lease_client: Client | None = None) -> None:
        if config.count > MAX_NODES:
            raise ValueError(f"at most {MAX_NODES} hollow nodes per process (pod CIDRs run out)")
        self.client = client
        self.lease_client = lease_client or client   # leases must not queue behind pod work
        self.cfg = config
        self.clock = clock
        self.boot_id = str(uuid.uuid4())
        self.nodes: dict[str, HollowNode] = {}
        for i in range(config.count):
            name = f"{config.prefix}{i}"
            runtime = FakeRuntime(node_pod_cidr(i), clock=clock, id_prefix=name, record_calls=False)
            runtime.subscribe(self._on_container_event)
            self.nodes[name] = HollowNode(name, i, runtime)
        self.node_informer = Informer(client, NODES)
        self.pod_informer = Informer(client, PODS, field_selector="spec.nodeName!=")
        self.pod_informer.store.add_index("node", lambda p: [p["spec"].get("nodeName", "")])
        self.queue = WorkQueue("hollow-pods", RateLimiter(base=0.05, cap=30.0, qps=1000, burst=10_000))
        self.node_queue = WorkQueue("hollow-nodes", RateLimiter(base=0.2, cap=10.0, qps=1000, burst=10_000))
        self.records: dict[str, PodRecord] = {}
        self.recorder = EventRecorder(client, "kubelet")
        self._lease_slots = asyncio.Semaphore(config.lease_concurrency)
        self._pending_renewals: collections.deque[tuple[float, HollowNode]] = collections.deque()   # (slot, node)
        self._lease_lateness = 0.0
        self.leases_on_time = asyncio.Event()      # cleared while renewals run late: pod work waits
        self.leases_on_time.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.node_informer.add_handler(self._on_node, lambda _, new: self._on_node(new), self._on_node_delete)
        self.pod_informer.add_handler(self._on_pod, lambda _, new: self._on_pod(new), self._on_pod)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Register the nodes while already renewing the Leases of those registered, and running their pods."""
        self.node_informer.start()
        await self.node_informer.wait_synced()
        self.pod_informer.start()
        loops = [self._spawn(self._dispatch(self.queue, self.sync_pod, self.cfg.workers, self.leases_on_time),
                             "hollow-pods"),
                 self._spawn(self._dispatch(self.node_queue, self.sync_node, 8), "hollow-nodes"),
                 self._spawn(self.renew_leases(), "hollow-leases")]
        started = time.monotonic()
        await self.register_nodes()
        log.info("%d hollow nodes registered in %.1fs", len(self.nodes), time.monotonic() - started)
        await asyncio.gather(*loops)

    async def stop(self) -> None:
        self.queue.shutdown()
        self.node_queue.shutdown()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pod_informer.stop()
        await self.node_informer.stop()
        await self.recorder.close()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _dispatch(self, queue: WorkQueue, sync: Callable[[str], Awaitable[None]], concurrency: int,
                        gate: asyncio.Event | None = None) -> None:
        """Take keys from `queue` and sync up to `concurrency` of them at once, while `gate` is open (one waiter
        on the queue rather than a pool of workers all woken by every add)."""
        slots = asyncio.Semaphore(concurrency)
        while True:
            key = await queue.get()
            if key is None:
                return
            if gate is not None:
                await gate.wait()
            await slots.acquire()
            self._spawn(self._process(queue, sync, key, slots), f"{queue.name}-sync")

    async def _process(self, queue: WorkQueue, sync: Callable[[str], Awaitable[None]], key: str,
                       slots: asyncio.Semaphore) -> None:
        try:
            await sync(key)
            queue.forget(key)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            level = logging.DEBUG if isinstance(e, (errors.APIError, Retry)) else logging.WARNING
            log.log(level, "%s: sync %s: %s", queue.name, key, e, exc_info=level == logging.WARNING)
            queue.add_rate_limited(key)
        finally:
            slots.release()
            queue.done(key)

    # -- registration and leases ---------------------------------------------------------------------------------
    async def register_nodes(self) -> None:
        slots = asyncio.Semaphore(self.cfg.workers)

        async def one(hn: HollowNode) -> None:
            async with slots:
                for attempt in range(20):
                    try:
                        await self.register(hn)
                        return
                    except errors.APIError as e:
                        log.debug("registering %s: %s", hn.name, e)
                        await asyncio.sleep(min(0.2 * 2 ** attempt, 5))
                log.warning("could not register hollow node %s", hn.name)
        await asyncio.gather(*(one(hn) for hn in self.nodes.values()))

    async def register(self, hn: HollowNode) -> None:
        """Create the Node (or take over one of the same name), then its Lease."""
        now = self.clock()
        body = node_object(hn, self.cfg, now, self.boot_id)
        existing = self.node_informer.store.get(hn.name)
        if existing is None:
            try:
                existing = await self.client.create(NODES, body)
            except errors.AlreadyExists:
                existing = await self.client.get(NODES, hn.name)
            else:
                hn.uid = existing["metadata"]["uid"]
        if not hn.uid:
            hn.uid = existing["metadata"]["uid"]
            hn.stopped = _annotation(existing, STOPPED_ANNOTATION) == "true"
            await self.client.patch(NODES, hn.name, {"metadata": {"labels": body["metadata"]["labels"]},
                                                     "spec": body["spec"]})
            if not hn.stopped:
                status = body["status"]
                status["conditions"] = node_conditions(now, (existing.get("status") or {}).get("conditions"))
                await self.client.patch(NODES, hn.name, {"status": status}, patch_type="strategic",
                                        subresource="status")
        if not hn.stopped:
            try:
                await self.client.create(LEASES, lease_object(hn, self.cfg, self.clock()), LEASE_NAMESPACE)
            except errors.AlreadyExists:
                await self.renew_lease(hn)
        for pod in self.pod_informer.store.by_index("node", hn.name):   # bound before the node was ours
            self.queue.add(object_key(pod))

    async def renew_lease(self, hn: HollowNode) -> None:
        if not hn.active:
            return
        try:
            await self.lease_client.patch(LEASES, hn.name, {"spec": {"holderIdentity": hn.name,
                                                                     "renewTime": micro_time(self.clock())}},
                                          LEASE_NAMESPACE)
        except errors.NotFound:
            try:
                await self.lease_client.create(LEASES, lease_object(hn, self.cfg, self.clock()), LEASE_NAMESPACE)
            except errors.AlreadyExists:
                pass

    async def renew_leases(self) -> None:
        """Every node's Lease once per period, the renewals spread evenly over it.

        Leases come first (Kubernetes gives them their own priority level): while the oldest pending renewal is
        more than 30% of the period late (a slow API server), pod work pauses; lateness is logged."""
        loop = asyncio.get_running_loop()
        names = list(self.nodes)
        step = self.cfg.lease_period / max(len(names), 1)
        start, done = loop.time(), 0
        reported = loop.time()
        while True:
            now = loop.time()
            due = int((now - start) / step) + 1
            while done < due:
                hn = self.nodes[names[done % len(names)]]
                slot = start + done * step
                done += 1
                if hn.active and hn.renewing is None:
                    hn.renewing = slot
                    self._pending_renewals.append((slot, hn))
                    self._spawn(self._renew_one(hn, slot), f"lease-{hn.name}")
            self._update_lease_pressure(now)
            if now - reported >= self.cfg.lease_period:
                if self._lease_lateness > 0.2 * self.cfg.lease_period:
                    level = logging.WARNING if self._lease_lateness > 0.5 * self.cfg.lease_period else logging.INFO
                    log.log(level, "lease renewals up to %.1fs late (%d pending): the API server is slow",
                            self._lease_lateness, len(self._pending_renewals))
                self._lease_lateness, reported = 0.0, now
            await asyncio.sleep(max(step, 0.05))

    async def _renew_one(self, hn: HollowNode, slot: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self._lease_slots:
                await self.renew_lease(hn)
        except errors.APIError as e:
            log.debug("lease %s: %s", hn.name, e)
        finally:
            hn.renewing = None
            self._lease_lateness = max(self._lease_lateness, loop.time() - slot)

    def _update_lease_pressure(self, now: float) -> None:
        pending = self._pending_renewals
        while pending and pending[0][1].renewing != pending[0][0]:
            pending.popleft()
        late = now - pending[0][0] if pending else 0.0
        if late > 0.3 * self.cfg.lease_period:
            self.leases_on_time.clear()
        elif late < 0.1 * self.cfg.lease_period:
            self.leases_on_time.set()

    # -- node status ---------------------------------------------------------------------------------------------
    def _on_node(self, node: Obj) -> None:
        hn = self.nodes.get(node["metadata"]["name"])
        if hn is None or not hn.uid:
            return
        stopped = _annotation(node, STOPPED_ANNOTATION) == "true"
        if stopped != hn.stopped or (not stopped and not node_healthy(node)):
            self.node_queue.add(hn.name)

    def _on_node_delete(self, node: Obj) -> None:
        if node["metadata"]["name"] in self.nodes:
            self.node_queue.add(node["metadata"]["name"])

    async def sync_node(self, name: str) -> None:
        hn = self.nodes[name]
        node = self.node_informer.store.get(name)
        if node is None or (hn.uid and node["metadata"].get("uid") != hn.uid):
            if hn.uid and not hn.gone:
                log.info("hollow node %s was deleted; its agent stops", name)
                hn.gone = True
            return
        stopped = _annotation(node, STOPPED_ANNOTATION) == "true"
        if stopped != hn.stopped:
            hn.stopped = stopped
            log.info("hollow node %s agent %s", name, "stopped" if stopped else "resumed")
            if not stopped:
                await self.renew_lease(hn)
                for pod in self.pod_informer.store.by_index("node", name):
                    self.queue.add(object_key(pod))
        if hn.stopped or node_healthy(node):
            return
        conditions = node_conditions(self.clock(), (node.get("status") or {}).get("conditions"))
        await self.client.patch(NODES, name, {"status": {"conditions": conditions}}, patch_type="strategic",
                                subresource="status")

    # -- pods ----------------------------------------------------------------------------------------------------
    def _on_pod(self, pod: Obj) -> None:
        if pod["spec"].get("nodeName") in self.nodes:
            self.queue.add(object_key(pod))

    def _on_container_event(self, event: fake.ContainerEvent) -> None:
        if event.type is fake.ContainerEventType.STOPPED:
            self.queue.add(f"{event.sandbox.namespace}/{event.sandbox.name}")

    async def sync_pod(self, key: str) -> None:
        pod = self.pod_informer.store.get(key)
        rec = self.records.get(key)
        if rec is not None and (pod is None or pod["metadata"]["uid"] != rec.uid):
            await self.remove_pod(rec)
            rec = None
        if pod is None:
            return
        hn = self.nodes.get(pod["spec"].get("nodeName", ""))
        if hn is None or not hn.active:
            return
        if pod["metadata"].get("deletionTimestamp"):
            await self.terminate_pod(key, pod, hn, rec)
            return
        if pod.get("status", {}).get("phase") in TERMINAL_PHASES or (rec is not None and rec.finished):
            return
        if rec is None:
            rec = self.records[key] = PodRecord(key, pod["metadata"]["uid"], hn)
        ok = await self.sync_sandbox(pod, rec) and await self.sync_containers(pod, rec)
        await self.write_status(key, pod, rec)
        if not ok:
            raise Retry(f"pod {key}: {', '.join(f'{r}: {m}' for r, m in rec.waiting.values())}")

    async def sync_sandbox(self, pod: Obj, rec: PodRecord) -> bool:
        if rec.sandbox_id:
            return True
        meta = pod["metadata"]
        annotations = {}
        old_ip = (pod.get("status") or {}).get("podIP")
        if old_ip:
            annotations[fake.POD_IP_ANNOTATION] = old_ip
        config = fake.PodSandboxConfig(fake.PodSandboxMetadata(meta["name"], meta["namespace"], meta["uid"]),
                                       hostname=pod["spec"].get("hostname") or meta["name"],
                                       host_network=bool(pod["spec"].get("hostNetwork")), annotations=annotations)
        try:
            rec.sandbox_id = await rec.node.runtime.run_pod_sandbox(config)
        except fake.RuntimeServiceError as e:
            self.recorder.event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
            return False
        return True

    async def sync_containers(self, pod: Obj, rec: PodRecord) -> bool:
        """Start init containers in order, then the app containers; restart exited ones per restartPolicy."""
        runtime = rec.node.runtime
        statuses = {cs.id: cs for cs in await runtime.list_containers(rec.sandbox_id)}
        old = {s.get("name"): s.get("restartCount", 0) for s in (pod.get("status") or {}).get("containerStatuses") or []}
        for ctr in pod["spec"].get("initContainers") or []:
            cs = statuses.get(rec.containers.get(ctr["name"], ""))
            sidecar = ctr.get("restartPolicy") == "Always"
            if cs is None:
                if not await self.start_container(pod, rec, ctr, 0, init=True):
                    return False
                cs = await runtime.container_status(rec.containers[ctr["name"]])
            if cs.state is ContainerState.EXITED and cs.exit_code != 0 and not sidecar:
                if pod["spec"].get("restartPolicy") == "Never":
                    return True
                return await self.restart(pod, rec, ctr, cs, init=True)
            if not sidecar and cs.state is not ContainerState.EXITED:
                return True   # still initializing
        policy = pod["spec"].get("restartPolicy", "Always")
        ok = True
        for ctr in pod["spec"].get("containers") or []:
            cs = statuses.get(rec.containers.get(ctr["name"], ""))
            if cs is None:
                ok = await self.start_container(pod, rec, ctr, old.get(ctr["name"], 0), init=False) and ok
            elif cs.state is ContainerState.EXITED and restarts(policy, cs.exit_code):
                ok = await self.restart(pod, rec, ctr, cs, init=False) and ok
        return ok

    async def start_container(self, pod: Obj, rec: PodRecord, ctr: Obj, attempt: int, init: bool) -> bool:
        runtime = rec.node.runtime
        name = ctr["name"]
        step = "CreateContainerError"
        try:
            cid = await runtime.create_container(rec.sandbox_id, container_config(pod, ctr, attempt, self.cfg, init))
            step = "RunContainerError"
            if name in rec.containers:
                old = rec.previous.get(name)
                if old:
                    await runtime.remove_container(old)
                rec.previous[name] = rec.containers[name]
            rec.containers[name] = cid
            await runtime.start_container(cid)
        except fake.RuntimeServiceError as e:
            rec.waiting[name] = (step, str(e))
            self.recorder.event(pod, "Warning", "Failed", f"Error: {e}")
            return False
        rec.waiting.pop(name, None)
        return True

    async def restart(self, pod: Obj, rec: PodRecord, ctr: Obj, cs: ContainerStatus, init: bool) -> bool:
        """Restart an exited container once its back-off has passed; CrashLoopBackOff until then."""
        delay = backoff_delay(self.cfg, cs.metadata.attempt)
        ready_at = cs.finished_at + delay
        now = self.clock()
        if now < ready_at:
            meta = pod["metadata"]
            rec.waiting[ctr["name"]] = ("CrashLoopBackOff", f"back-off {delay:g}s restarting failed "
                                        f"container={ctr['name']} pod={meta['name']}_{meta['namespace']}"
                                        f"({meta['uid']})")
            self.queue.add_after(rec.key, ready_at - now)
            return True
        return await self.start_container(pod, rec, ctr, cs.metadata.attempt + 1, init)

    async def write_status(self, key: str, pod: Obj, rec: PodRecord) -> None:
        runtime = rec.node.runtime
        view = PodView(rec, await runtime.list_containers(rec.sandbox_id) if rec.sandbox_id else [])
        ip, ready = "", False
        if rec.sandbox_id:
            sandbox = await runtime.pod_sandbox_status(rec.sandbox_id)
            ip, ready = sandbox.ip, sandbox.state is fake.SandboxState.READY
        now = self.clock()
        status, wake = build_pod_status(pod, rec.node, view, ip, ready, now)
        if status_changed(pod, status):
            await self.client.patch(PODS, pod["metadata"]["name"], {"status": status}, pod["metadata"]["namespace"],
                                    subresource="status")
        if status["phase"] in TERMINAL_PHASES:
            rec.finished = True
            await runtime.stop_pod_sandbox(rec.sandbox_id)
        elif wake is not None:
            self.queue.add_after(key, wake - now + 0.01)

    async def terminate_pod(self, key: str, pod: Obj, hn: HollowNode, rec: PodRecord | None) -> None:
        """Graceful deletion: stop the containers (at once, or at the end of the grace period when the pod ignores
        SIGTERM), then confirm with DELETE gracePeriodSeconds=0, as the kubelet's status manager does."""
        meta = pod["metadata"]
        if rec is not None and rec.sandbox_id and not rec.finished:
            runtime = hn.runtime
            if _annotation(pod, IGNORE_SIGTERM_ANNOTATION) == "true":
                deadline = parse_time(meta["deletionTimestamp"]) or 0
                if self.clock() < deadline:
                    self.queue.add_after(key, deadline - self.clock() + 0.05)
                    return
            else:
                grace = float(meta.get("deletionGracePeriodSeconds") or 0)
                for cid in rec.containers.values():
                    await runtime.stop_container(cid, grace)
            await runtime.stop_pod_sandbox(rec.sandbox_id)   # kills what still runs: exit 137
            rec.finished = True
            if meta.get("finalizers"):
                await self.write_final_status(pod, rec)
        try:
            await self.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0,
                                     preconditions={"uid": meta["uid"]})
        except errors.NotFound:
            pass     # (a Conflict is retried: a concurrent write, or another pod of that name, which the retry sees)
        if rec is not None:
            await self.remove_pod(rec)

    async def write_final_status(self, pod: Obj, rec: PodRecord) -> None:
        """A terminal phase before the final DELETE, for pods whose finalizers keep them visible (Job pods)."""
        runtime = rec.node.runtime
        view = PodView(rec, await runtime.list_containers(rec.sandbox_id))
        status, _ = build_pod_status(pod, rec.node, view, "", False, self.clock())
        codes = [cs["state"].get("terminated", {}).get("exitCode", 137) for cs in status["containerStatuses"]]
        status["phase"] = "Succeeded" if all(c == 0 for c in codes) else "Failed"
        now = self.clock()
        status["conditions"] = _with_transition_times(
            pod_conditions(pod, status["phase"], False, [], status["containerStatuses"]), pod, now) + \
            others_conditions(pod, now)
        try:
            await self.client.patch(PODS, pod["metadata"]["name"], {"status": status}, pod["metadata"]["namespace"],
                                    subresource="status")
        except errors.NotFound:
            pass

    async def remove_pod(self, rec: PodRecord) -> None:
        self.records.pop(rec.key, None)
        if rec.sandbox_id:
            await rec.node.runtime.remove_pod_sandbox(rec.sandbox_id)


def main(kubeconfig: str, count: int, prefix: str, config: HollowConfig | None = None) -> int:
    """Run `count` hollow nodes named `prefix`0.. until SIGTERM/SIGINT. Nodes are left registered on exit:
    a stopped agent is a dead node, which the node lifecycle controller notices."""
    cfg = dataclasses.replace(config or HollowConfig(), count=count, prefix=prefix)

    async def go() -> None:
        client = Client.from_kubeconfig(kubeconfig, user_agent="kates-hollow-nodes")
        lease_client = Client.from_kubeconfig(kubeconfig, user_agent="kates-hollow-nodes-leases")
        kubelet = HollowKubelet(client, cfg, lease_client=lease_client)
        runner = asyncio.create_task(kubelet.run(), name="hollow-kubelet")
        try:
            await run_until_stopped(runner, stop_event())
        finally:
            await kubelet.stop()
            await client.close()
            await lease_client.close()
        if runner.done() and not runner.cancelled() and runner.exception() is not None:
            raise runner.exception()  # type: ignore[misc]

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        pass
    return 0
