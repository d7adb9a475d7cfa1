"""The `cri` runtime: kates' runtime interface over a CRI v1 gRPC endpoint (containerd, or CRI-O).

Every method maps onto one CRI call (stubs from `container-runtime-interface-api`, `cri_api.v1`) with the interface's
dataclasses converted to and from protobuf. Notes where the mapping is not one to one:

- Logs: the interface gives an absolute `log_path`; CRI wants it relative to the sandbox's `log_directory`, and
  containerd composes the two from the sandbox config sent with CreateContainer. The runtime keeps the configs of
  the sandboxes it created (after an agent restart it reads them back from the verbose PodSandboxStatus).
- cgroups: a sandbox without a cgroup parent gets `/kates/<node key>/pod<uid>`; the parent is recorded in the
  sandbox annotation `kates.io/cgroup-parent`, and `remove_pod_sandbox` deletes that directory, which containerd
  leaves behind.
- Statuses: ListContainers carries no exit codes or times, so `list_containers` fetches ContainerStatus for the
  containers whose state changed since it last looked (steady state: one call), and sandbox IPs are cached.
- Events: GetContainerEvents when the endpoint has it (containerd >= 1.7); otherwise a relist every second that
  diffs container states (the generic PLEG) and calls subscribers.
- Streaming: CRI Exec/Attach/PortForward return a URL on the runtime's streaming server; exec/attach/port_forward
  connect to it with the SPDY client (kates/streaming/spdy.py), speaking remotecommand v4 and portforward.k8s.io.
- Errors: gRPC NOT_FOUND raises NotFoundError, PullImage failures ImagePullError with the registry's message,
  anything else RuntimeServiceError with the runtime's message.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

# before grpc loads: the agent forks (ip, ctr, containerd) while grpc threads run; grpc's fork handlers only log
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402
from cri_api.v1 import api_pb2, api_pb2_grpc  # noqa: E402

from .interface import (AuthConfig, ByteStream, ContainerConfig, ContainerEvent, ContainerEventType,
                        ContainerMetadata, ContainerState, ContainerStats, ContainerStatus, Image, ImagePullError,
                        NotFoundError, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatus, RuntimeServiceError,
                        SandboxState, StreamSession, VersionInfo)

log = logging.getLogger(__name__)

CGROUP_PARENT_ANNOTATION = "kates.io/cgroup-parent"
RELIST_PERIOD = 1.0
CALL_TIMEOUT = 60.0
UNAVAILABLE_GRACE = 10.0    # how long calls wait for a restarting runtime before failing
_GRPC_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024),
                 ("grpc.max_send_message_length", 16 * 1024 * 1024),
                 # the default reconnect back-off grows to 2 minutes: a restarted containerd must be found at once
                 ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                 ("grpc.max_reconnect_backoff_ms", 1000)]
_PROTOCOLS = {"TCP": api_pb2.TCP, "UDP": api_pb2.UDP, "SCTP": api_pb2.SCTP}
_PROPAGATION = {"PROPAGATION_PRIVATE": api_pb2.PROPAGATION_PRIVATE,
                "PROPAGATION_HOST_TO_CONTAINER": api_pb2.PROPAGATION_HOST_TO_CONTAINER,
                "PROPAGATION_BIDIRECTIONAL": api_pb2.PROPAGATION_BIDIRECTIONAL}
_EVENT_TYPES = {api_pb2.CONTAINER_CREATED_EVENT: ContainerEventType.CREATED,
                api_pb2.CONTAINER_STARTED_EVENT: ContainerEventType.STARTED,
                api_pb2.CONTAINER_STOPPED_EVENT: ContainerEventType.STOPPED,
                api_pb2.CONTAINER_DELETED_EVENT: ContainerEventType.DELETED}


def _secs(ns: int) -> float:
    return ns / 1e9 if ns else 0.0


def _error(e: grpc.aio.AioRpcError, what: str, reason: str = "RuntimeError") -> RuntimeServiceError:
    """A gRPC error as the interface's error types."""
    if e.code() == grpc.StatusCode.NOT_FOUND:
        err = NotFoundError(what)
        err.args = (f"{what} not found: {e.details()}",)
        return err
    return RuntimeServiceError(e.details() or str(e.code()), reason)


# -- conversions ---------------------------------------------------------------------------------------------------

def _sandbox_metadata(m: api_pb2.PodSandboxMetadata) -> PodSandboxMetadata:
    return PodSandboxMetadata(m.name, m.namespace, m.uid, m.attempt)


def sandbox_config_proto(config: PodSandboxConfig) -> api_pb2.PodSandboxConfig:
    """The interface's sandbox config as CRI's."""
    m = config.metadata
    dns = None
    if config.dns_config is not None:
        dns = api_pb2.DNSConfig(servers=list(config.dns_config.servers), searches=list(config.dns_config.searches),
                                options=list(config.dns_config.options))
    ns = api_pb2.NamespaceOption(network=api_pb2.NODE if config.host_network else api_pb2.POD,
                                 pid=api_pb2.CONTAINER, ipc=api_pb2.POD)
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=m.name, namespace=m.namespace, uid=m.uid, attempt=m.attempt),
        hostname="" if config.host_network else config.hostname,   # the node's own: no UTS namespace (crun)
        log_directory=config.log_directory,
        dns_config=dns,
        port_mappings=[api_pb2.PortMapping(protocol=_PROTOCOLS.get(p.protocol.upper(), api_pb2.TCP),
                                           container_port=p.container_port, host_port=p.host_port,
                                           host_ip=p.host_ip) for p in config.port_mappings],
        labels=dict(config.labels),
        annotations=dict(config.annotations),
        linux=api_pb2.LinuxPodSandboxConfig(
            cgroup_parent=config.cgroup_parent,
            sysctls=dict(config.sysctls),
            security_context=api_pb2.LinuxSandboxSecurityContext(namespace_options=ns,
                                                                 privileged=config.privileged)),
    )


def container_config_proto(config: ContainerConfig, host_network: bool, log_path: str) -> api_pb2.ContainerConfig:
    """The interface's container config as CRI's (`log_path` already relative to the sandbox log directory)."""
    linux = api_pb2.LinuxContainerConfig()
    if config.resources is not None:
        r = config.resources
        linux.resources.CopyFrom(api_pb2.LinuxContainerResources(
            cpu_period=r.cpu_period, cpu_quota=r.cpu_quota, cpu_shares=r.cpu_shares,
            memory_limit_in_bytes=r.memory_limit_in_bytes, oom_score_adj=r.oom_score_adj))
    sc = api_pb2.LinuxContainerSecurityContext(
        namespace_options=api_pb2.NamespaceOption(network=api_pb2.NODE if host_network else api_pb2.POD,
                                                  pid=api_pb2.CONTAINER, ipc=api_pb2.POD))
    if config.security is not None:
        s = config.security
        sc.privileged = s.privileged
        sc.readonly_rootfs = s.readonly_rootfs
        sc.no_new_privs = s.no_new_privs
        sc.supplemental_groups.extend(s.supplemental_groups)
        if s.run_as_user is not None:
            sc.run_as_user.value = s.run_as_user
        if s.run_as_group is not None:
            sc.run_as_group.value = s.run_as_group
        if s.add_capabilities or s.drop_capabilities:
            sc.capabilities.CopyFrom(api_pb2.Capability(add_capabilities=list(s.add_capabilities),
                                                        drop_capabilities=list(s.drop_capabilities)))
    linux.security_context.CopyFrom(sc)
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=config.metadata.name, attempt=config.metadata.attempt),
        image=api_pb2.ImageSpec(image=config.image),
        command=list(config.command), args=list(config.args), working_dir=config.working_dir,
        envs=[api_pb2.KeyValue(key=k, value=v) for k, v in config.envs],
        mounts=[api_pb2.Mount(container_path=m.container_path, host_path=m.host_path, readonly=m.readonly,
                              propagation=_PROPAGATION.get(m.propagation, api_pb2.PROPAGATION_PRIVATE))
                for m in config.mounts],
        log_path=log_path, stdin=config.stdin, stdin_once=config.stdin_once, tty=config.tty,
        labels=dict(config.labels), annotations=dict(config.annotations), linux=linux)


def _container_status(s: api_pb2.ContainerStatus, sandbox_id: str) -> ContainerStatus:
    started = _secs(s.started_at)
    finished = _secs(s.finished_at)
    if finished and started > finished:
        finished = started      # containerd stamps a start after the task may already have exited
    return ContainerStatus(
        id=s.id, sandbox_id=sandbox_id, metadata=ContainerMetadata(s.metadata.name, s.metadata.attempt),
        image=s.image.image, image_ref=s.image_ref, state=ContainerState(api_pb2.ContainerState.Name(s.state)),
        created_at=_secs(s.created_at), started_at=started, finished_at=finished,
        exit_code=s.exit_code, reason=s.reason, message=s.message, log_path=s.log_path,
        labels=dict(s.labels), annotations=dict(s.annotations))


def _image(i: api_pb2.Image) -> Image:
    return Image(i.id, tuple(i.repo_tags), tuple(i.repo_digests), i.size)


# -- the runtime ---------------------------------------------------------------------------------------------------

class CRIRuntime:
    """kates' Runtime over a CRI v1 endpoint. `data_dir` (a node's) enables CNI config writing and the default
    cgroup parent; `containerd` (a supervised Containerd) is stopped by `close`."""

    name = "cri"

    def __init__(self, endpoint: str, *, data_dir: Path | None = None, containerd: Any = None,
                 node_key: str = "", relist_period: float = RELIST_PERIOD) -> None:
        self.endpoint = endpoint if "://" in endpoint else "unix://" + endpoint
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.containerd = containerd
        if not node_key and self.data_dir is not None:
            from .cni import bridge_name
            node_key = bridge_name(self.data_dir)
        self.node_key = node_key or "cri"
        self.relist_period = relist_period
        self.channel = grpc.aio.insecure_channel(self.endpoint, options=_GRPC_OPTIONS)
        self.rt = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.img = api_pb2_grpc.ImageServiceStub(self.channel)
        self._sandbox_configs: dict[str, api_pb2.PodSandboxConfig] = {}
        self._sandbox_ips: dict[str, str] = {}
        self._status_cache: dict[str, ContainerStatus] = {}
        self._subscribers: list[Callable[[ContainerEvent], None]] = []
        self._events_task: asyncio.Task[None] | None = None

    async def _call(self, method: Any, request: Any, what: str, reason: str = "RuntimeError",
                    timeout: float | None = CALL_TIMEOUT) -> Any:
        try:
            return await self._raw(method, request, timeout)
        except grpc.aio.AioRpcError as e:
            raise _error(e, what, reason) from None

    @staticmethod
    async def _raw(method: Any, request: Any, timeout: float | None = CALL_TIMEOUT) -> Any:
        """One call; UNAVAILABLE (the runtime is restarting, the socket refuses) is retried for a while."""
        deadline = time.monotonic() + UNAVAILABLE_GRACE
        delay = 0.05
        while True:
            try:
                return await method(request, timeout=timeout)
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- runtime service -----------------------------------------------------------------------------------------
    async def version(self) -> VersionInfo:
        r = await self._call(self.rt.Version, api_pb2.VersionRequest(version="v1"), "runtime")
        return VersionInfo(r.runtime_name, r.runtime_version, r.runtime_api_version)

    async def update_runtime_config(self, pod_cidr: str) -> None:
        """Write this node's CNI conflist for `pod_cidr` (when kates owns the node's data dir), tell the runtime,
        and wait until it reports its network ready, so the next RunPodSandbox finds the network."""
        if not pod_cidr:
            return
        if self.data_dir is not None:
            from . import cni
            await asyncio.to_thread(cni.write_conflist, self.data_dir, pod_cidr)
            errors = await cni.install_cluster_routes()
            for e in errors:
                log.warning("cluster route: %s", e)
        await self._call(self.rt.UpdateRuntimeConfig, api_pb2.UpdateRuntimeConfigRequest(
            runtime_config=api_pb2.RuntimeConfig(network_config=api_pb2.NetworkConfig(pod_cidr=pod_cidr))),
            "runtime")
        deadline = time.monotonic() + 10
        while True:
            status = await self._call(self.rt.Status, api_pb2.StatusRequest(), "runtime")
            ready = {c.type: c.status for c in status.status.conditions}
            if ready.get("NetworkReady", False) or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)

    async def network_ready(self) -> tuple[bool, str]:
        """(NetworkReady, message) from the runtime's Status."""
        status = await self._call(self.rt.Status, api_pb2.StatusRequest(), "runtime")
        for c in status.status.conditions:
            if c.type == "NetworkReady":
                return c.status, c.message
        return False, "no NetworkReady condition"

    def _sandbox_proto(self, config: PodSandboxConfig) -> api_pb2.PodSandboxConfig:
        """The CRI config of a sandbox as this runtime sends it (default cgroup parent, recorded in an annotation)."""
        proto = sandbox_config_proto(config)
        if not proto.linux.cgroup_parent:
            proto.linux.cgroup_parent = f"/kates/{self.node_key}/pod{config.metadata.uid}"
        proto.annotations[CGROUP_PARENT_ANNOTATION] = proto.linux.cgroup_parent
        return proto

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        proto = self._sandbox_proto(config)
        if config.log_directory:
            await asyncio.to_thread(os.makedirs, config.log_directory, 0o755, True)
        r = await self._call(self.rt.RunPodSandbox,
                             api_pb2.RunPodSandboxRequest(config=proto, runtime_handler=config.runtime_handler),
                             f"pod {config.metadata.namespace}/{config.metadata.name}", "FailedCreatePodSandBox",
                             timeout=240)
        self._sandbox_configs[r.pod_sandbox_id] = proto
        return r.pod_sandbox_id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        try:
            await self._raw(self.rt.StopPodSandbox, api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id),
                            timeout=240)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:    # CRI: stopping a missing sandbox is not an error
                raise _error(e, f"sandbox {sandbox_id[:12]}") from None

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove the sandbox and its containers, then the pod cgroup directory containerd leaves behind."""
        parent = ""
        cached = self._sandbox_configs.get(sandbox_id)
        if cached is not None:
            parent = cached.annotations.get(CGROUP_PARENT_ANNOTATION, "")
        else:
            try:
                status = await self._raw(self.rt.PodSandboxStatus,
                                         api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id))
                parent = status.status.annotations.get(CGROUP_PARENT_ANNOTATION, "")
            except grpc.aio.AioRpcError:
                pass
        try:
            await self._raw(self.rt.RemovePodSandbox, api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id),
                            timeout=240)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise _error(e, f"sandbox {sandbox_id[:12]}") from None
        self._sandbox_configs.pop(sandbox_id, None)
        self._sandbox_ips.pop(sandbox_id, None)
        for cid in [c for c, s in self._status_cache.items() if s.sandbox_id == sandbox_id]:
            self._status_cache.pop(cid, None)
        if parent:
            from .containerd import remove_pod_cgroups
            await asyncio.to_thread(remove_pod_cgroups, parent)

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        r = await self._call(self.rt.PodSandboxStatus, api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id),
                             f"sandbox {sandbox_id[:12]}")
        s = r.status
        ip = s.network.ip if s.HasField("network") else ""
        self._sandbox_ips[s.id] = ip
        return PodSandboxStatus(s.id, _sandbox_metadata(s.metadata),
                                SandboxState(api_pb2.PodSandboxState.Name(s.state)), _secs(s.created_at), ip,
                                dict(s.labels), dict(s.annotations))

    async def list_pod_sandbox(self) -> list[PodSandboxStatus]:
        r = await self._call(self.rt.ListPodSandbox, api_pb2.ListPodSandboxRequest(), "sandboxes")
        missing = [s.id for s in r.items if s.id not in self._sandbox_ips]
        if missing:
            await asyncio.gather(*(self._fetch_ip(i) for i in missing))
        live = {s.id for s in r.items}
        for gone in [i for i in self._sandbox_ips if i not in live]:
            self._sandbox_ips.pop(gone, None)
        return [PodSandboxStatus(s.id, _sandbox_metadata(s.metadata),
                                 SandboxState(api_pb2.PodSandboxState.Name(s.state)), _secs(s.created_at),
                                 self._sandbox_ips.get(s.id, ""), dict(s.labels), dict(s.annotations))
                for s in r.items]

    async def _fetch_ip(self, sandbox_id: str) -> None:
        try:
            await self.pod_sandbox_status(sandbox_id)
        except RuntimeServiceError:
            pass

    async def _sandbox_config(self, sandbox_id: str) -> api_pb2.PodSandboxConfig:
        """The config a sandbox was created with (containerd composes log paths and cgroups from it)."""
        cached = self._sandbox_configs.get(sandbox_id)
        if cached is not None:
            return cached
        r = await self._call(self.rt.PodSandboxStatus,
                             api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True),
                             f"sandbox {sandbox_id[:12]}")
        from google.protobuf import json_format
        proto = api_pb2.PodSandboxConfig()
        try:
            info = json.loads(r.info.get("info", "{}"))
            json_format.ParseDict(info.get("config", {}), proto, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError) as e:
            log.warning("sandbox %s: cannot read its config back: %s", sandbox_id[:12], e)
            proto.metadata.CopyFrom(r.status.metadata)
            proto.labels.update(r.status.labels)
            proto.annotations.update(r.status.annotations)
        self._sandbox_configs[sandbox_id] = proto
        return proto

    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               sandbox_config: PodSandboxConfig | None = None) -> str:
        if sandbox_config is not None and sandbox_id not in self._sandbox_configs:
            sandbox_proto = self._sandbox_proto(sandbox_config)
            self._sandbox_configs[sandbox_id] = sandbox_proto
        else:
            sandbox_proto = await self._sandbox_config(sandbox_id)
        host_network = sandbox_proto.linux.security_context.namespace_options.network == api_pb2.NODE
        log_path = ""
        if config.log_path:
            log_dir = sandbox_proto.log_directory
            if log_dir and config.log_path.startswith(log_dir.rstrip("/") + "/"):
                log_path = os.path.relpath(config.log_path, log_dir)
            else:     # not under the sandbox's log directory: send the absolute path against "/"
                sandbox_proto = api_pb2.PodSandboxConfig.FromString(sandbox_proto.SerializeToString())
                sandbox_proto.log_directory = "/"
                log_path = config.log_path.lstrip("/")
            await asyncio.to_thread(os.makedirs, os.path.dirname(config.log_path), 0o755, True)
        proto = container_config_proto(config, host_network, log_path)
        r = await self._call(self.rt.CreateContainer,
                             api_pb2.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=proto,
                                                            sandbox_config=sandbox_proto),
                             f"sandbox {sandbox_id[:12]}", "CreateContainerError")
        return r.container_id

    async def start_container(self, container_id: str) -> None:
        await self._call(self.rt.StartContainer, api_pb2.StartContainerRequest(container_id=container_id),
                         f"container {container_id[:12]}", "RunContainerError")

    async def stop_container(self, container_id: str, timeout: float) -> None:
        secs = max(0, math.ceil(timeout))
        try:
            await self._raw(self.rt.StopContainer, api_pb2.StopContainerRequest(container_id=container_id,
                                                                                timeout=secs),
                            timeout=secs + CALL_TIMEOUT)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise _error(e, f"container {container_id[:12]}") from None

    async def remove_container(self, container_id: str) -> None:
        try:
            await self._raw(self.rt.RemoveContainer, api_pb2.RemoveContainerRequest(container_id=container_id))
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise _error(e, f"container {container_id[:12]}") from None
        self._status_cache.pop(container_id, None)

    async def container_status(self, container_id: str) -> ContainerStatus:
        r = await self._call(self.rt.ContainerStatus, api_pb2.ContainerStatusRequest(container_id=container_id),
                             f"container {container_id[:12]}")
        cached = self._status_cache.get(container_id)
        sandbox_id = cached.sandbox_id if cached is not None else ""
        if not sandbox_id:
            lst = await self._call(self.rt.ListContainers, api_pb2.ListContainersRequest(
                filter=api_pb2.ContainerFilter(id=container_id)), "containers")
            sandbox_id = lst.containers[0].pod_sandbox_id if lst.containers else ""
        status = _container_status(r.status, sandbox_id)
        self._status_cache[container_id] = status
        return status

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        f = api_pb2.ContainerFilter(pod_sandbox_id=sandbox_id) if sandbox_id else None
        r = await self._call(self.rt.ListContainers, api_pb2.ListContainersRequest(filter=f), "containers")
        stale = [c for c in r.containers if (cached := self._status_cache.get(c.id)) is None
                 or cached.state.value != api_pb2.ContainerState.Name(c.state)]
        if stale:
            await asyncio.gather(*(self._refresh(c.id, c.pod_sandbox_id) for c in stale))
        if sandbox_id is None:
            live = {c.id for c in r.containers}
            for gone in [i for i in self._status_cache if i not in live]:
                self._status_cache.pop(gone, None)
        return [self._status_cache[c.id] for c in r.containers if c.id in self._status_cache]

    async def _refresh(self, container_id: str, sandbox_id: str) -> None:
        try:
            r = await self._raw(self.rt.ContainerStatus, api_pb2.ContainerStatusRequest(container_id=container_id))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                self._status_cache.pop(container_id, None)
                return
            raise _error(e, f"container {container_id[:12]}") from None
        self._status_cache[container_id] = _container_status(r.status, sandbox_id)

    # -- events ----------------------------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[ContainerEvent], None]) -> None:
        self._subscribers.append(callback)
        if self._events_task is None:
            self._events_task = asyncio.get_running_loop().create_task(self._events(), name="cri-events")

    def _emit(self, event: ContainerEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # noqa: BLE001  (one subscriber's bug must not stop the others)
                log.exception("container event subscriber failed")

    async def _events(self) -> None:
        """GetContainerEvents when supported, else a relist loop (containerd 1.6 has no container events)."""
        try:
            call = self.rt.GetContainerEvents(api_pb2.GetEventsRequest())
            async for ev in call:
                meta = _sandbox_metadata(ev.pod_sandbox_status.metadata)
                type_ = _EVENT_TYPES.get(ev.container_event_type)
                if type_ is not None:
                    self._emit(ContainerEvent(ev.container_id, type_, meta, _secs(ev.created_at) or time.time()))
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                log.info("container events stream ended (%s); relisting instead", e.code())
        except asyncio.CancelledError:
            raise
        await self._relist_loop()

    async def _relist_loop(self) -> None:
        known: dict[str, tuple[str, PodSandboxMetadata]] = {}
        first = True
        while True:
            try:
                sandboxes, containers = await asyncio.gather(
                    self.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10),
                    self.rt.ListContainers(api_pb2.ListContainersRequest(), timeout=10))
            except grpc.aio.AioRpcError as e:
                log.debug("relist failed: %s", e.details())
                await asyncio.sleep(self.relist_period)
                continue
            metas = {s.id: _sandbox_metadata(s.metadata) for s in sandboxes.items}
            now = time.time()
            seen: dict[str, tuple[str, PodSandboxMetadata]] = {}
            for c in containers.containers:
                meta = metas.get(c.pod_sandbox_id) or (known.get(c.id) or ("", PodSandboxMetadata("", "", "")))[1]
                state = api_pb2.ContainerState.Name(c.state)
                seen[c.id] = (state, meta)
                old = known.get(c.id)
                if first or (old is not None and old[0] == state):
                    continue
                if state == "CONTAINER_CREATED" and old is None:
                    self._emit(ContainerEvent(c.id, ContainerEventType.CREATED, meta, now))
                elif state == "CONTAINER_RUNNING":
                    self._emit(ContainerEvent(c.id, ContainerEventType.STARTED, meta, now))
                elif state in ("CONTAINER_EXITED", "CONTAINER_UNKNOWN"):
                    self._emit(ContainerEvent(c.id, ContainerEventType.STOPPED, meta, now))
            if not first:
                for cid, (_state, meta) in known.items():
                    if cid not in seen:
                        self._emit(ContainerEvent(cid, ContainerEventType.DELETED, meta, now))
            known = seen
            first = False
            await asyncio.sleep(self.relist_period)

    # -- images ------------------------------------------------------------------------------------------------------
    async def pull_image(self, image: str, auth: AuthConfig | None = None) -> str:
        req = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image))
        if auth is not None:
            server = auth.server_address
            if server and "://" not in server:       # containerd compares its URL host with the image's registry
                server = "https://" + server
            req.auth.CopyFrom(api_pb2.AuthConfig(username=auth.username, password=auth.password, auth=auth.auth,
                                                 server_address=server))
        try:
            r = await self._raw(self.img.PullImage, req, timeout=600)
        except grpc.aio.AioRpcError as e:
            raise ImagePullError(e.details() or str(e.code())) from None
        return r.image_ref

    async def image_status(self, image: str) -> Image | None:
        r = await self._call(self.img.ImageStatus, api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image)),
                             f"image {image}")
        return _image(r.image) if r.HasField("image") and r.image.id else None

    async def list_images(self) -> list[Image]:
        r = await self._call(self.img.ListImages, api_pb2.ListImagesRequest(), "images")
        return [_image(i) for i in r.images]

    async def remove_image(self, image: str) -> None:
        try:
            await self._raw(self.img.RemoveImage, api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image)))
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise _error(e, f"image {image}") from None

    async def image_fs_usage(self) -> tuple[int, int]:
        """(bytes used, filesystem size). containerd measures usage every 10 s (0 until then): the images' own
        sizes stand in for it meanwhile."""
        r = await self._call(self.img.ImageFsInfo, api_pb2.ImageFsInfoRequest(), "image filesystem")
        used, mountpoint = 0, ""
        if r.image_filesystems:
            fs = r.image_filesystems[0]
            used, mountpoint = fs.used_bytes.value, fs.fs_id.mountpoint
        if not used:
            used = sum(i.size for i in await self.list_images())
        if not mountpoint and self.data_dir is not None:
            mountpoint = str(self.data_dir)
        total = 0
        if mountpoint:
            try:
                st = await asyncio.to_thread(os.statvfs, mountpoint)
                total = st.f_blocks * st.f_frsize
            except OSError:
                pass
        return used, total

    # -- streaming and friends ---------------------------------------------------------------------------------------
    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes, bytes]:
        secs = max(0, math.ceil(timeout)) if timeout else 0
        r = await self._call(self.rt.ExecSync, api_pb2.ExecSyncRequest(container_id=container_id, cmd=list(cmd),
                                                                     timeout=secs),
                             f"container {container_id[:12]}", timeout=(secs + 10) if secs else None)
        return r.exit_code, r.stdout, r.stderr

    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool) -> StreamSession:
        r = await self._call(self.rt.Exec, api_pb2.ExecRequest(container_id=container_id, cmd=list(cmd), tty=tty,
                                                               stdin=stdin, stdout=True, stderr=not tty),
                             f"container {container_id[:12]}")
        return await _RemoteCommand.open(r.url, stdin=stdin, tty=tty, exec_=True)

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> StreamSession:
        r = await self._call(self.rt.Attach, api_pb2.AttachRequest(container_id=container_id, tty=tty, stdin=stdin,
                                                                   stdout=True, stderr=not tty),
                             f"container {container_id[:12]}")
        return await _RemoteCommand.open(r.url, stdin=stdin, tty=tty, exec_=False)

    async def port_forward(self, sandbox_id: str, port: int) -> ByteStream:
        r = await self._call(self.rt.PortForward, api_pb2.PortForwardRequest(pod_sandbox_id=sandbox_id, port=[port]),
                             f"sandbox {sandbox_id[:12]}")
        return await _PortForward.open(r.url, port)

    async def reopen_container_log(self, container_id: str) -> None:
        await self._call(self.rt.ReopenContainerLog, api_pb2.ReopenContainerLogRequest(container_id=container_id),
                         f"container {container_id[:12]}")

    async def container_stats(self, container_id: str) -> ContainerStats:
        r = await self._call(self.rt.ContainerStats, api_pb2.ContainerStatsRequest(container_id=container_id),
                             f"container {container_id[:12]}")
        s = r.stats
        return ContainerStats(container_id, s.cpu.usage_core_nano_seconds.value, s.memory.working_set_bytes.value,
                              _secs(s.cpu.timestamp) or time.time())

    async def close(self) -> None:
        """Close the connection; a containerd kates started is stopped too (its containers keep running)."""
        if self._events_task is not None:
            self._events_task.cancel()
            try:
                await self._events_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._events_task = None
        await self.channel.close()
        if self.containerd is not None:
            await self.containerd.stop()


# -- streaming over the runtime's streaming server ---------------------------------------------------------------------

class _RemoteCommand:
    """An exec or attach session on a CRI streaming URL: remotecommand v4 over SPDY/3.1."""

    def __init__(self, conn: Any, streams: dict[str, Any], exec_: bool) -> None:
        self.conn = conn
        self.streams = streams
        self.exec_ = exec_
        self._output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._pumps = [asyncio.create_task(self._pump(1, streams["stdout"]))]
        if "stderr" in streams:
            self._pumps.append(asyncio.create_task(self._pump(2, streams["stderr"])))
        self._open_pumps = len(self._pumps)
        self._error = asyncio.create_task(self._read_error(streams["error"]))

    @classmethod
    async def open(cls, url: str, *, stdin: bool, tty: bool, exec_: bool) -> "_RemoteCommand":
        from ..streaming.spdy import spdy_upgrade
        conn, _proto = await spdy_upgrade(url, ["v4.channel.k8s.io"])
        streams: dict[str, Any] = {}
        try:
            kinds = ["error"] + (["stdin"] if stdin else []) + ["stdout"] + ([] if tty else ["stderr"])
            kinds += ["resize"] if tty else []
            for kind in kinds:
                streams[kind] = await conn.open_stream({"streamtype": kind})
        except BaseException:
            await conn.close()
            raise
        # the error, stdout and stderr streams are read-only for the client; resize and stdin are write-only
        for kind in ("error", "stdout", "stderr"):
            if kind in streams:
                try:
                    await streams[kind].close_write()
                except Exception:  # noqa: BLE001
                    pass
        return cls(conn, streams, exec_)

    async def _pump(self, channel: int, stream: Any) -> None:
        try:
            while True:
                data = await stream.read()
                if not data:
                    break
                await self._output.put((channel, data))
        except Exception:  # noqa: BLE001  (connection gone: the output ends)
            pass
        finally:
            self._open_pumps -= 1
            if self._open_pumps == 0:
                await self._output.put(None)

    async def _read_error(self, stream: Any) -> int:
        chunks = []
        try:
            while True:
                data = await stream.read()
                if not data:
                    break
                chunks.append(data)
        except Exception:  # noqa: BLE001
            pass
        text = b"".join(chunks).decode(errors="replace").strip()
        if not text:
            return 0
        try:
            status = json.loads(text)
        except ValueError:
            self.message = text
            return 1
        if status.get("status") == "Success":
            return 0
        self.message = status.get("message", text)
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message", "1"))
                except ValueError:
                    return 1
        return 1

    message = ""

    async def write_stdin(self, data: bytes) -> None:
        if "stdin" in self.streams:
            await self.streams["stdin"].write(data)

    async def close_stdin(self) -> None:
        if "stdin" in self.streams:
            await self.streams["stdin"].close_write()

    async def read_output(self) -> tuple[int, bytes] | None:
        return await self._output.get()

    async def resize(self, width: int, height: int) -> None:
        if "resize" in self.streams:
            await self.streams["resize"].write(json.dumps({"Width": width, "Height": height}).encode())

    async def wait(self) -> int:
        code = await self._error
        return code if self.exec_ else 0

    async def close(self) -> None:
        for task in self._pumps + [self._error]:
            task.cancel()
        await self.conn.close()


class PortForwardError(RuntimeServiceError, ConnectionRefusedError):
    """The runtime could not connect to the port inside the sandbox (its error stream's message). Both a
    RuntimeServiceError and a ConnectionError, so relays that handle either end the connection cleanly."""


class _PortForward:
    """One port-forward connection on a CRI streaming URL: portforward.k8s.io over SPDY/3.1."""

    def __init__(self, conn: Any, data: Any, error: Any) -> None:
        self.conn = conn
        self.data = data
        self.error = error
        self._buffer = b""
        self._got_data = False
        self._error_task = asyncio.create_task(self._read_error())
        self.error_message = ""

    @classmethod
    async def open(cls, url: str, port: int) -> "_PortForward":
        from ..streaming.spdy import spdy_upgrade
        conn, _proto = await spdy_upgrade(url, ["portforward.k8s.io"])
        try:
            headers = {"port": str(port), "requestid": "0"}
            error = await conn.open_stream({"streamtype": "error", **headers})
            await error.close_write()
            data = await conn.open_stream({"streamtype": "data", **headers})
        except BaseException:
            await conn.close()
            raise
        return cls(conn, data, error)

    async def _read_error(self) -> None:
        chunks = []
        try:
            while True:
                chunk = await self.error.read()
                if not chunk:
                    break
                chunks.append(chunk)
        except Exception:  # noqa: BLE001
            pass
        self.error_message = b"".join(chunks).decode(errors="replace")

    async def read(self, n: int = 65536) -> bytes:
        """Up to n bytes; b"" at end of stream. Raises PortForwardError when the runtime reported an error (nothing
        listens on the port) instead of data."""
        if not self._buffer:
            self._buffer = await self.data.read()
            if not self._buffer:
                if not self._got_data:
                    try:
                        await asyncio.wait_for(asyncio.shield(self._error_task), 0.5)
                    except asyncio.TimeoutError:
                        pass
                    if self.error_message:
                        raise PortForwardError(self.error_message.strip(), "PortForward")
                return b""
            self._got_data = True
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    async def write(self, data: bytes) -> None:
        await self.data.write(data)

    async def close_write(self) -> None:
        await self.data.close_write()

    async def close(self) -> None:
        self._error_task.cancel()
        await self.conn.close()
