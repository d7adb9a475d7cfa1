"""The node agent (`kates agent`): a kubelet that runs the pods bound to its Node as real containers.

What it does, as the kubelet does (pkg/kubelet/kubelet.go, nodestatus/setters.go, nodelease):
- registers its Node with the machine's capacity (CPUs, /proc/meminfo, statvfs of the data dir, 110 pods), node
  info, addresses and conditions; re-posts the status every 10 s only when something changed (the Lease alone says
  the node is alive) and renews its Lease in kube-node-lease every 10 s;
- watches the pods bound to it (fieldSelector spec.nodeName=<node>) and gives each pod uid its own worker
  (`podworker.py`), which reconciles the runtime with the spec and writes the pod's status;
- serves the kubelet API (logs, exec, attach, port-forward) over HTTPS to callers with a cluster-CA client
  certificate (`server.py`), rotates container logs (`logs.py`) and runs probes (`probes.py`);
- on restart adopts what runs (the runtime's labels and CRI metadata rebuild the state) and removes the sandboxes of
  pods deleted while it was away. Stopping the agent leaves containers running, as stopping a kubelet does.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import hashlib
import ipaddress
import logging
import os
import platform
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from ..api import errors
from ..cli.lifecycle import run_until_stopped, stop_event
from ..client.events import EventRecorder
from ..client.informer import Informer
from ..client.rest import Client, resource
from ..runtime.interface import (ContainerEvent, ContainerStatus, DNSConfig, LinuxResources, Mount, Runtime,
                                 RuntimeServiceError)
from . import dns
from .backoff import Backoff
from .images import ImageManager
from .logs import ContainerLogManager
from .podworker import CreateContainerConfigError, PodWorker, _Probed
from .server import KubeletServer
from .status import (KUBELET_VERSION, LEASE_NAMESPACE, micro_time, node_capacity_quantities,
                     node_conditions)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NODES = resource("nodes")
PODS = resource("pods")
LEASES = resource("leases.coordination.k8s.io")
SERVICES = resource("services")

FALLBACK_POD_CIDR = "10.244.0.0/24"


@dataclasses.dataclass
class AgentConfig:
    node_name: str
    node_ip: str
    data_dir: Path
    pod_cidr: str = ""
    kubelet_port: int = 10250
    tls_cert: str = ""
    tls_key: str = ""
    client_ca: str = ""
    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    lease_period: float = 10.0
    lease_duration_seconds: int = 40
    status_period: float = 10.0
    status_report_period: float = 300.0       # an unchanged status is re-posted this often
    pod_cidr_wait: float = 5.0                 # seconds to wait for the nodeipam controller before choosing one
    max_pods: int = 110
    crash_backoff: float = 10.0
    crash_backoff_cap: float = 300.0
    stop_grace: float = 5.0                    # on stop, seconds to let pods being removed finish


# -- the machine ---------------------------------------------------------------------------------------------------

def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def machine_memory() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def default_node_ip() -> str:
    """The IPv4 address of the interface that holds the default route (/proc/net/route), else 127.0.0.1."""
    iface = ""
    for line in _read("/proc/net/route").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            iface = fields[0]
            break
    if iface:
        try:
            import fcntl
            import struct
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", iface.encode()[:15]))  # SIOCGIFADDR
                return socket.inet_ntoa(packed[20:24])
        except OSError:
            pass
    return "127.0.0.1"


def machine_ids() -> tuple[str, str, str]:
    """(machineID, systemUUID, bootID)."""
    machine = _read("/etc/machine-id") or hashlib.md5(socket.gethostname().encode()).hexdigest()
    system = _read("/sys/class/dmi/id/product_uuid").lower()
    if not system:
        try:
            system = str(uuid.UUID(machine[:32]))
        except ValueError:
            system = str(uuid.uuid5(uuid.NAMESPACE_DNS, machine))
    boot = _read("/proc/sys/kernel/random/boot_id") or str(uuid.uuid4())
    return machine, system, boot


def self_signed_cert(directory: Path, node_name: str, hosts: list[str]) -> tuple[Path, Path]:
    """A self-signed serving certificate for the kubelet API, when none was given (the kubelet does the same)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@{int(time.time())}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def ca_from_kubeconfig(kubeconfig: Path, out: Path) -> Path | None:
    """The cluster CA of a kubeconfig, written to `out`: the default client CA of the kubelet API."""
    try:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return None
    if cluster.get("certificate-authority-data"):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        return out
    if cluster.get("certificate-authority"):
        return Path(cluster["certificate-authority"])
    return None


# -- the kubelet ---------------------------------------------------------------------------------------------------

class Kubelet:
    def __init__(self, client: Client, runtime: Runtime, config: AgentConfig,
                 lease_client: Client | None = None) -> None:
        self.client = client
        self.lease_client = lease_client or client
        self.runtime = runtime
        self.cfg = config
        self.node_name = config.node_name
        self.node_ip = config.node_ip
        self.data_dir = config.data_dir
        self.recorder = EventRecorder(client, "kubelet", host=config.node_name)
        self.backoff = Backoff(config.crash_backoff, config.crash_backoff_cap)
        self.images = ImageManager(runtime, client, self.recorder, Backoff(config.crash_backoff,
                                                                             config.crash_backoff_cap))
        self._volumes: Any = None
        self._volumes_enabled = False     # set when the plugins start; the manager itself is made for the first pod
        self.log_manager: Any = None
        self.server: Any = None
        self.kubelet_port = config.kubelet_port
        self.id_prefix = "containerd"
        self.workers: dict[str, PodWorker] = {}
        self.sandbox_index: dict[str, list[str]] = {}   # pod uid → sandbox ids found at start (adoption)
        self.terminated: set[str] = set()          # uids whose worker finished (deleted, waiting for the watch)
        self.node_uid = ""
        self.pod_cidr = config.pod_cidr
        self.pod_informer = Informer(client, PODS, field_selector=f"spec.nodeName={config.node_name}")
        self.service_informer = Informer(client, SERVICES)
        self.memory = machine_memory()
        self._ids = machine_ids()
        self._runtime_version = ""
        self._last_status: Obj | None = None
        self._last_status_post = 0.0
        self._probe_workers: dict[str, dict[str, Any]] = {}     # container id → kind → ProbeWorker
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ready = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Register, then serve until cancelled."""
        v = await self.runtime.version()
        self.id_prefix = v.runtime_name or "containerd"
        self._runtime_version = f"{v.runtime_name}://{v.runtime_version}"
        await self._start_plugins()
        await self.register()
        await self.runtime.update_runtime_config(self.pod_cidr)
        self.runtime.subscribe(self._on_container_event)
        for s in await self.runtime.list_pod_sandbox():    # what runs already: the pod workers adopt it
            self.sandbox_index.setdefault(s.metadata.uid, []).append(s.id)
        self.service_informer.start()
        self.pod_informer.add_handler(self._on_pod, lambda _, new: self._on_pod(new), self._on_pod_delete)
        self.pod_informer.start()
        loops = [self._spawn(self._lease_loop(), "lease"), self._spawn(self._status_loop(), "node-status")]
        await self.pod_informer.wait_synced()
        await self.remove_orphans()
        self._spawn(self._housekeeping(), "housekeeping")
        self.ready.set()
        log.info("node %s ready: ip %s, pod CIDR %s, runtime %s, kubelet port %d", self.node_name, self.node_ip,
                 self.pod_cidr, self._runtime_version, self.kubelet_port)
        await asyncio.gather(*loops)

    async def stop(self) -> None:
        """Stop the agent; containers keep running (a restarted agent adopts them)."""
        ending = [w.done.wait() for w in self.workers.values() if w.terminating]
        if ending:   # pods being removed: let that finish (bounded), so no half-removed pod is left behind
            await asyncio.wait([asyncio.ensure_future(e) for e in ending], timeout=self.cfg.stop_grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self.workers.values()), return_exceptions=True)
        for kinds in list(self._probe_workers.values()):
            for pw in kinds.values():
                await pw.stop()
        await self.pod_informer.stop()
        await self.service_informer.stop()
        for part in (self.log_manager, self.server):
            if part is not None:
                try:
                    await part.stop()
                except Exception as e:  # noqa: BLE001 (shutting down: report and go on)
                    log.debug("stopping %s: %s", type(part).__name__, e)
        await self.recorder.close()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def volumes(self) -> Any:
        """The volume manager, made (and its module imported) when the first pod needs it: an idle node does
        without the volume, env and quantity code (a few MB resident)."""
        if self._volumes is None and self._volumes_enabled:
            from .volumes import VolumeManager
            self._volumes = VolumeManager(self.client, pods_dir=self.data_dir / "pods", node_name=self.node_name,
                                          node_ip=self.node_ip)
        return self._volumes

    @volumes.setter
    def volumes(self, manager: Any) -> None:
        self._volumes = manager
        self._volumes_enabled = manager is not None

    async def _start_plugins(self) -> None:
        """Volumes, log rotation and the kubelet API server."""
        self._volumes_enabled = True
        self.log_manager = ContainerLogManager(self.runtime)
        await self.log_manager.start()
        await self._start_server()

    async def _start_server(self) -> None:
        cert, key = self.cfg.tls_cert, self.cfg.tls_key
        if not cert or not key:
            c, k = await asyncio.to_thread(self_signed_cert, self.data_dir / "pki", self.node_name,
                                           [self.node_ip, "127.0.0.1", self.node_name])
            cert, key = str(c), str(k)
        client_ca = self.cfg.client_ca
        if not client_ca:
            log.warning("no --client-ca-file: the kubelet API is not served")
            return
        self.server = KubeletServer(self.runtime, node_name=self.node_name, tls_cert=cert, tls_key=key,
                                    client_ca=client_ca)
        self.kubelet_port = await self.server.start(self.node_ip, self.cfg.kubelet_port)

    # -- the node ------------------------------------------------------------------------------------------------
    def _capacity(self) -> Obj:
        try:
            st = os.statvfs(self.data_dir)
            storage = st.f_blocks * st.f_frsize
        except OSError:
            storage = 0
        return node_capacity_quantities(os.cpu_count() or 1, self.memory, storage, self.cfg.max_pods)

    def node_status(self, previous: Obj | None = None) -> Obj:
        capacity = self._capacity()
        machine, system, boot = self._ids
        return {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": node_conditions(time.time(), ((previous or {}).get("status") or {}).get("conditions")),
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {"machineID": machine, "systemUUID": system, "bootID": boot,
                         "kernelVersion": platform.release(), "osImage": os_image(),
                         "containerRuntimeVersion": self._runtime_version, "kubeletVersion": KUBELET_VERSION,
                         "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux",
                         "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                                      platform.machine())},
        }

    def node_object(self) -> Obj:
        labels = {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": "amd64"}
        spec: Obj = {}
        if self.pod_cidr:
            spec = {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]}
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name, "labels": labels,
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                             "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
                "spec": spec, "status": self.node_status()}

    async def register(self) -> None:
        """Create the Node (or take over the one of that name), its Lease, and settle the pod CIDR."""
        body = self.node_object()
        for attempt in range(60):
            try:
                try:
                    node = await self.client.create(NODES, body)
                except errors.AlreadyExists:
                    node = await self.client.get(NODES, self.node_name)
                    patch: Obj = {"metadata": {"labels": body["metadata"]["labels"]}}
                    if self.pod_cidr and not node["spec"].get("podCIDR"):
                        patch["spec"] = body["spec"]
                    node = await self.client.patch(NODES, self.node_name, patch)
                break
            except errors.APIError as e:
                log.info("registering node %s: %s", self.node_name, e)
                await asyncio.sleep(min(0.2 * 2 ** attempt, 5))
        else:
            raise RuntimeError(f"could not register node {self.node_name}")
        self.node_uid = node["metadata"]["uid"]
        await self.post_status(node, force=True)
        await self.renew_lease()
        await self._settle_pod_cidr(node)

    async def _settle_pod_cidr(self, node: Obj) -> None:
        have = node["spec"].get("podCIDR", "")
        if have:
            if self.pod_cidr and have != self.pod_cidr:
                log.warning("node %s already has pod CIDR %s; --pod-cidr %s ignored", self.node_name, have,
                            self.pod_cidr)
            self.pod_cidr = have
            return
        deadline = time.monotonic() + self.cfg.pod_cidr_wait
        while time.monotonic() < deadline:   # the nodeipam controller assigns one from the cluster CIDR
            await asyncio.sleep(0.25)
            node = await self.client.get(NODES, self.node_name)
            if node["spec"].get("podCIDR"):
                self.pod_cidr = node["spec"]["podCIDR"]
                return
        self.pod_cidr = self.pod_cidr or FALLBACK_POD_CIDR
        log.warning("no pod CIDR assigned to node %s; using %s", self.node_name, self.pod_cidr)
        await self.client.patch(NODES, self.node_name, {"spec": {"podCIDR": self.pod_cidr,
                                                                 "podCIDRs": [self.pod_cidr]}})

    @staticmethod
    def _comparable(status: Obj) -> Obj:
        out = dict(status)
        out["conditions"] = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                             for c in status.get("conditions") or []]
        return out

    async def post_status(self, node: Obj | None = None, force: bool = False) -> None:
        """Patch the node status when it changed (or was last posted long ago); heartbeats ride on the Lease."""
        if node is None:
            node = await self.client.get(NODES, self.node_name)
        status = self.node_status(node)
        now = time.monotonic()
        current = self._comparable(node.get("status") or {})
        wanted = self._comparable(status)
        changed = any(current.get(k) != v for k, v in wanted.items())
        if not (force or changed or now - self._last_status_post > self.cfg.status_report_period):
            return
        await self.client.patch(NODES, self.node_name, {"status": status}, patch_type="strategic",
                                subresource="status")
        self._last_status_post = now

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.status_period)
            try:
                await self.post_status()
            except errors.NotFound:
                log.warning("node %s was deleted; registering again", self.node_name)
                await self.register()
            except (errors.APIError, OSError) as e:
                log.debug("node status: %s", e)

    def lease_object(self) -> Obj:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                                                  "uid": self.node_uid}]},
                "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": self.cfg.lease_duration_seconds,
                         "renewTime": micro_time(time.time())}}

    async def renew_lease(self) -> None:
        try:
            await self.lease_client.patch(LEASES, self.node_name,
                                          {"spec": {"holderIdentity": self.node_name,
                                                    "leaseDurationSeconds": self.cfg.lease_duration_seconds,
                                                    "renewTime": micro_time(time.time())}}, LEASE_NAMESPACE)
        except errors.NotFound:
            try:
                await self.lease_client.create(LEASES, self.lease_object(), LEASE_NAMESPACE)
            except errors.AlreadyExists:
                pass

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.lease_period)
            try:
                await self.renew_lease()
            except (errors.APIError, OSError) as e:
                log.info("lease renewal: %s", e)

    # -- pods ----------------------------------------------------------------------------------------------------
    def _on_pod(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self.terminated:
            return
        worker = self.workers.get(uid)
        if worker is None:
            worker = self.workers[uid] = PodWorker(self, pod)
            worker.start()
            self._spawn(self._reap(worker), f"reap-{uid[:8]}")
        else:
            worker.update(pod)

    def _on_pod_delete(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        self.terminated.discard(uid)
        worker = self.workers.get(uid)
        if worker is not None and not worker.done.is_set():
            worker.deleted()

    async def _reap(self, worker: PodWorker) -> None:
        await worker.done.wait()
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]
        self.backoff.forget_prefix(worker.uid + "/")
        self.images.backoff.forget_prefix(worker.uid + "/")
        if self.pod_informer.store.get(worker.key) is not None and \
                self.pod_informer.store.get(worker.key)["metadata"]["uid"] == worker.uid:
            self.terminated.add(worker.uid)

    def _on_container_event(self, event: ContainerEvent) -> None:
        worker = self.workers.get(event.sandbox.uid)
        if worker is not None:
            worker.wake()

    async def remove_orphans(self) -> None:
        """Sandboxes of pods no longer bound here (deleted while the agent was away): stop and remove them."""
        known = {p["metadata"]["uid"] for p in self.pod_informer.store.list()}
        try:
            sandboxes = await self.runtime.list_pod_sandbox()
        except RuntimeServiceError as e:
            log.info("listing sandboxes: %s", e)
            return
        orphans: dict[str, list[Any]] = {}
        for s in sandboxes:
            if s.metadata.uid not in known and s.metadata.uid not in self.workers:
                orphans.setdefault(s.metadata.uid, []).append(s)
        for uid, found in orphans.items():
            self.sandbox_index[uid] = [s.id for s in found]
            meta = found[0].metadata
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": uid}, "spec": {}}
            log.info("removing the sandbox of pod %s/%s (%s): the pod is gone", meta.namespace, meta.name, uid)
            worker = self.workers[uid] = PodWorker(self, pod)
            worker.deleted()
            worker.start()
            self._spawn(self._reap(worker), f"reap-{uid[:8]}")

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(30)
            try:
                await self.remove_orphans()
                self.backoff.gc()
                self.images.backoff.gc()
            except Exception as e:  # noqa: BLE001 (housekeeping must go on)
                log.debug("housekeeping: %s", e)

    # -- what pod workers ask of the node ---------------------------------------------------------------------
    def hostname_for(self, pod: Obj) -> str:
        if pod["spec"].get("hostNetwork"):
            return socket.gethostname()
        return pod["spec"].get("hostname") or pod["metadata"]["name"]

    def pod_log_dir(self, pod: Obj) -> Path:
        meta = pod["metadata"]
        return self.data_dir / "logs" / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"

    def termination_log_path(self, pod: Obj, container: str, attempt: int) -> Path:
        return self.data_dir / "pods" / pod["metadata"]["uid"] / "containers" / container / f"{attempt}.termlog"

    def dns_config(self, pod: Obj) -> DNSConfig | None:
        return dns.dns_config(pod, cluster_dns=list(self.cfg.cluster_dns), cluster_domain=self.cfg.cluster_domain,
                          warn=lambda reason, message: self.recorder.event(pod, "Warning", reason, message))

    def cgroup_parent(self, pod: Obj) -> str:
        from . import resources
        return resources.pod_cgroup_parent(pod)

    def runtime_handler(self, pod: Obj) -> str:
        return ""

    def linux_resources(self, pod: Obj, ctr: Obj) -> LinuxResources | None:
        from . import resources
        return resources.linux_resources(pod, ctr, memory_capacity=self.memory)

    async def container_env(self, pod: Obj, ctr: Obj) -> list[tuple[str, str]]:
        """The container's environment (envvars.py) with the Services of its namespace and `default`."""
        from . import envvars
        ns = pod["metadata"]["namespace"]
        services = [s for s in self.service_informer.store.list()
                    if s["metadata"].get("namespace") in (ns, "default")]
        worker = self.workers.get(pod["metadata"]["uid"])
        pod_ip = worker.pod_ip if worker is not None and getattr(worker, "pod_ip", "") else ""
        if pod["spec"].get("hostNetwork"):
            pod_ip = self.node_ip
        try:
            return await envvars.container_env(
                self.client, pod, ctr, services=services, node_name=self.node_name, node_ip=self.node_ip,
                pod_ip=pod_ip, pod_ips=[pod_ip] if pod_ip else [],
                warn=lambda reason, message: self.recorder.event(pod, "Warning", reason, message))
        except envvars.CreateContainerConfigError as e:
            raise CreateContainerConfigError(str(e)) from e

    async def container_mounts(self, pod: Obj, ctr: Obj, paths: dict[str, str] | None,
                               env: list[tuple[str, str]]) -> list[Mount]:
        if self.volumes is None or not ctr.get("volumeMounts"):
            return []
        from .volumes import MountError
        try:
            return list(await asyncio.to_thread(self.volumes.mounts_for, pod, ctr, paths or {}, env=env))
        except MountError as e:   # a subPath that escapes its volume, a missing volume: the container cannot start
            raise CreateContainerConfigError(str(e)) from e

    async def setup_volumes(self, pod: Obj) -> dict[str, str]:
        """Volume name → host path; raises the volume manager's MountError (FailedMount)."""
        if self.volumes is None:
            return {}
        return dict(await self.volumes.setup(pod))

    async def refresh_volumes(self, pod: Obj) -> None:
        if self.volumes is not None:
            await self.volumes.refresh(pod)

    async def teardown_volumes(self, pod: Obj) -> None:
        if self.volumes is None:
            return
        try:
            await self.volumes.teardown(pod["metadata"]["uid"])
        except Exception as e:  # noqa: BLE001 (the pod goes anyway; leftovers are logged)
            log.info("tearing down volumes of %s: %s", pod["metadata"].get("name"), e)

    async def remove_pod_files(self, pod: Obj) -> None:
        """A removed pod's container logs and termination-message files (its volumes are the volume manager's)."""
        import shutil
        await asyncio.to_thread(shutil.rmtree, self.pod_log_dir(pod), True)
        pod_dir = self.data_dir / "pods" / pod["metadata"]["uid"]
        await asyncio.to_thread(shutil.rmtree, pod_dir / "containers", True)
        try:
            pod_dir.rmdir()        # only when empty: volumes that could not be unmounted stay visible
        except OSError:
            pass

    # -- probes ----------------------------------------------------------------------------------------------
    def probes_track(self, worker: PodWorker, pod: Obj, ctr: Obj, cs: ContainerStatus) -> None:
        """Start the probe workers of a running container (once per container id)."""
        kinds = {k: ctr.get(f"{k}Probe") for k in ("startup", "liveness", "readiness") if ctr.get(f"{k}Probe")}
        if not kinds or cs.id in self._probe_workers:
            return
        probed = worker.probed.setdefault(cs.id, _Probed())
        if "readiness" in kinds:
            probed.ready = False
        if "startup" in kinds:
            probed.started = False
        workers: dict[str, Any] = {}
        cid, name = cs.id, ctr["name"]

        def on_result(kind: str, ok: bool, message: str) -> None:
            if kind == "readiness":
                probed.ready = ok
            elif kind == "startup":
                probed.started = ok
                if not ok:
                    worker.killed_for[cid] = f"Container {name} failed startup probe, will be restarted"
            elif kind == "liveness" and not ok:
                worker.killed_for[cid] = f"Container {name} failed liveness probe, will be restarted"
            worker.wake()

        def on_failure(kind: str, message: str) -> None:
            self.recorder.event(pod, "Warning", "Unhealthy", message)

        for kind, probe in kinds.items():
            from .probes import ProbeWorker
            pw = ProbeWorker(kind, probe, runtime=self.runtime, container_id=cid,
                             pod_ip_fn=lambda: worker.pod_ip or self.node_ip, on_result=on_result,
                             on_failure=on_failure,
                             started_fn=(lambda: probed.started is not False),
                             started_at=cs.started_at or None, container=ctr)
            workers[kind] = pw
            pw.start()
        self._probe_workers[cid] = workers
        worker.probe_ids.add(cid)

    def probes_forget(self, worker: PodWorker, only: str | None = None) -> None:
        """Stop the probe workers of a pod's containers (or of one container)."""
        for cid in list(worker.probe_ids):
            if only is not None and cid != only:
                continue
            worker.probe_ids.discard(cid)
            for pw in (self._probe_workers.pop(cid, None) or {}).values():
                self._spawn(pw.stop(), "probe-stop")


# -- `kates agent` -------------------------------------------------------------------------------------------------

async def run_agent(kubeconfig: Path, config: AgentConfig, runtime_kind: str = "auto", endpoint: str = "",
                    stop: asyncio.Event | None = None) -> int:
    """Open the runtime, run the kubelet until `stop` (SIGTERM/SIGINT), then stop it; containers keep running."""
    from ..runtime import open_runtime
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if not config.client_ca:
        ca = await asyncio.to_thread(ca_from_kubeconfig, kubeconfig, config.data_dir / "pki" / "client-ca.crt")
        config.client_ca = str(ca) if ca else ""
    runtime = await open_runtime(runtime_kind, data_dir=config.data_dir, endpoint=endpoint)
    client = Client.from_kubeconfig(kubeconfig, user_agent=f"kubelet/{KUBELET_VERSION} (kates)")
    # its own connection pool (renewals never queue behind pod traffic), the same TLS context (one less CA bundle)
    lease_client = Client(client.connection, user_agent=f"kubelet/{KUBELET_VERSION} (kates) lease")
    kubelet = Kubelet(client, runtime, config, lease_client=lease_client)
    runner = asyncio.create_task(kubelet.run(), name="kubelet")
    try:
        await run_until_stopped(runner, stop if stop is not None else stop_event())
    finally:
        await kubelet.stop()
        await client.close()
        await lease_client.close()
        await runtime.close()
    if runner.done() and not runner.cancelled() and runner.exception() is not None:
        log.error("kubelet failed: %s", runner.exception())
        return 1
    return 0


__all__ = ["AgentConfig", "Kubelet", "run_agent", "default_node_ip"]
