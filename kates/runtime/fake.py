"""A container runtime with no processes: what hollow nodes run their pods on, and what kubelet tests script.

It has the shape of the CRI (`staging/src/k8s.io/cri-api/pkg/apis/services.go`): a runtime service of pod
sandboxes and containers, each with a state, and an image service. Nothing is executed. A container "runs" from
`start_container` until a test ends it (`exit_container`) or, when its config carries the hollow-only annotation
`kates.io/hollow-run-seconds`, until that many seconds have passed; it then exits with
`kates.io/hollow-exit-code` (default 0). Exits are pushed to subscribers as container events, as the evented PLEG
gets them from `GetContainerEvents`, so the kubelet never polls. A sandbox whose config asks for
`kates.io/hollow-pod-ip` gets that address if it is free, and ids derive from the pod uid, container name and
attempt: a restarted hollow kubelet rebuilds its runtime and reports the IPs and ids its pods already show.

Tests script failures with `inject_error("create_container", SomeError(...), times=1)` and read `calls`, the
way `fake_runtime_service.go` lets Kubernetes' kubelet tests do. The types and Protocols live in `interface.py`,
shared with the real runtimes.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import ipaddress
import time
from typing import Callable, Mapping

from .interface import (  # noqa: F401  (re-exported: hollow nodes and tests name them through this module)
    AuthConfig, ContainerConfig, ContainerEvent, ContainerEventType, ContainerMetadata, ContainerState,
    ContainerStatus, Image, ImageService, NotFoundError, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatus,
    RuntimeService, RuntimeServiceError, SandboxState, VersionInfo)

RUN_SECONDS_ANNOTATION = "kates.io/hollow-run-seconds"
EXIT_CODE_ANNOTATION = "kates.io/hollow-exit-code"
POD_IP_ANNOTATION = "kates.io/hollow-pod-ip"
RUNTIME_NAME = "fake"
RUNTIME_VERSION = "0.1.0"


def normalize_image(image: str) -> str:
    """The fully qualified reference a runtime reports: `nginx` → `docker.io/library/nginx:latest`."""
    name, digest = (image.split("@", 1) + [""])[:2] if "@" in image else (image, "")
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}" if rest else f"docker.io/library/{name}"
    if digest:
        return f"{name}@{digest}"
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def image_ref(image: str) -> str:
    """A stable fake digest reference: `docker.io/library/nginx@sha256:…`."""
    full = normalize_image(image)
    if "@" in full:
        return full
    repo = full.rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(full.encode()).hexdigest()}"


class IPPool:
    """Pod addresses of one CIDR, as host-local IPAM hands them out: .1 is the bridge's, fresh addresses first,
    then released ones oldest first (so an address rests a while before it is reused)."""

    def __init__(self, cidr: str) -> None:
        net = ipaddress.ip_network(cidr, strict=False)
        self.cidr = cidr
        self._first = int(net.network_address) + 2
        self._size = max(net.num_addresses - 3, 0)    # minus network, bridge and broadcast addresses
        self._next = 0
        self._released: collections.deque[str] = collections.deque()
        self._used: set[str] = set()
        self._version = net.version

    def _in_range(self, ip: str) -> bool:
        try:
            n = int(ipaddress.ip_address(ip))
        except ValueError:
            return False
        return self._first <= n < self._first + self._size

    def allocate(self, wanted: str = "") -> str | None:
        if wanted and wanted not in self._used and self._in_range(wanted):
            if wanted in self._released:
                self._released.remove(wanted)
            self._used.add(wanted)
            return wanted
        while self._next < self._size:
            ip = str(ipaddress.ip_address(self._first + self._next))
            self._next += 1
            if ip not in self._used:
                self._used.add(ip)
                return ip
        while self._released:
            ip = self._released.popleft()
            if ip not in self._used:
                self._used.add(ip)
                return ip
        return None

    def release(self, ip: str) -> None:
        if ip in self._used:
            self._used.discard(ip)
            self._released.append(ip)


@dataclasses.dataclass
class _Sandbox:
    id: str
    config: PodSandboxConfig
    state: SandboxState
    created_at: float
    ip: str


@dataclasses.dataclass
class _Container:
    id: str
    sandbox_id: str
    config: ContainerConfig
    state: ContainerState
    created_at: float
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    timer: asyncio.TimerHandle | None = None


class FakeRuntime:
    """One node's runtime and image service, all in memory. Not thread-safe; lives on one event loop."""

    def __init__(self, pod_cidr: str = "", clock: Callable[[], float] = time.time,
                 id_prefix: str = "", record_calls: bool = True) -> None:
        self.clock = clock
        self.id_prefix = id_prefix
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.record_calls = record_calls
        self._errors: dict[str, list[tuple[BaseException, int]]] = {}
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._images: dict[str, Image] = {}
        self._subscribers: list[Callable[[ContainerEvent], None]] = []
        self._ips = IPPool(pod_cidr) if pod_cidr else None

    # -- test hooks -------------------------------------------------------------------------------------------
    def inject_error(self, method: str, error: BaseException, times: int = 1) -> None:
        """Make the next `times` calls of `method` raise `error` (times < 0: every call until cleared)."""
        self._errors.setdefault(method, []).append((error, times))

    def clear_errors(self) -> None:
        self._errors.clear()

    def exit_container(self, container_id: str, exit_code: int = 0, reason: str = "") -> None:
        """End a running container now, as if its process exited."""
        ctr = self._containers.get(container_id)
        if ctr is not None and ctr.state is ContainerState.RUNNING:
            self._exit(ctr, exit_code, reason or ("Completed" if exit_code == 0 else "Error"))

    def _call(self, method: str, *args: object) -> None:
        if self.record_calls:
            self.calls.append((method, args))
        queue = self._errors.get(method)
        if not queue:
            return
        error, times = queue[0]
        if times > 0:
            if times == 1:
                queue.pop(0)
            else:
                queue[0] = (error, times - 1)
        raise error

    # -- events -----------------------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[ContainerEvent], None]) -> None:
        self._subscribers.append(callback)

    def _emit(self, ctr: _Container, type_: ContainerEventType) -> None:
        sandbox = self._sandboxes.get(ctr.sandbox_id)
        if sandbox is None:
            return
        event = ContainerEvent(ctr.id, type_, sandbox.config.metadata, self.clock())
        for callback in self._subscribers:
            callback(event)

    # -- runtime service ----------------------------------------------------------------------------------------
    async def version(self) -> VersionInfo:
        self._call("version")
        return VersionInfo(RUNTIME_NAME, RUNTIME_VERSION)

    async def update_runtime_config(self, pod_cidr: str) -> None:
        self._call("update_runtime_config", pod_cidr)
        if self._ips is None or self._ips.cidr != pod_cidr:
            self._ips = IPPool(pod_cidr)

    def _new_id(self, seed: str, taken: Mapping[str, object]) -> str:
        n = 0
        while True:
            new_id = hashlib.sha256(f"{self.id_prefix}/{seed}/{n}".encode()).hexdigest()
            if new_id not in taken:
                return new_id
            n += 1

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        self._call("run_pod_sandbox", config)
        ip = ""
        if not config.host_network:
            ip = self._allocate_ip(config.annotations.get(POD_IP_ANNOTATION, ""))
        meta = config.metadata
        sandbox_id = self._new_id(f"{meta.uid}/{meta.attempt}", self._sandboxes)
        self._sandboxes[sandbox_id] = _Sandbox(sandbox_id, config, SandboxState.READY, self.clock(), ip)
        return sandbox_id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self._call("stop_pod_sandbox", sandbox_id)
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            return   # CRI: stopping a missing sandbox is not an error
        for ctr in list(self._containers.values()):
            if ctr.sandbox_id == sandbox_id and ctr.state is ContainerState.RUNNING:
                self._exit(ctr, 137, "Error")
        if sandbox.state is SandboxState.READY:
            sandbox.state = SandboxState.NOTREADY
            if sandbox.ip and self._ips is not None:
                self._ips.release(sandbox.ip)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self._call("remove_pod_sandbox", sandbox_id)
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            return
        if sandbox.state is SandboxState.READY:
            await self.stop_pod_sandbox(sandbox_id)
        for ctr in [c for c in self._containers.values() if c.sandbox_id == sandbox_id]:
            self._drop(ctr)
        del self._sandboxes[sandbox_id]

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        self._call("pod_sandbox_status", sandbox_id)
        return self._sandbox_status(self._sandbox(sandbox_id))

    async def list_pod_sandbox(self) -> list[PodSandboxStatus]:
        self._call("list_pod_sandbox")
        return [self._sandbox_status(s) for s in self._sandboxes.values()]

    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               sandbox_config: PodSandboxConfig | None = None) -> str:
        self._call("create_container", sandbox_id, config)
        sandbox = self._sandbox(sandbox_id)
        if sandbox.state is not SandboxState.READY:
            raise RuntimeServiceError(f"sandbox {sandbox_id[:12]} is not ready", "CreateContainerError")
        await self.pull_image(config.image)
        container_id = self._new_id(f"{sandbox.config.metadata.uid}/{config.metadata.name}/{config.metadata.attempt}",
                                    self._containers)
        ctr = _Container(container_id, sandbox_id, config, ContainerState.CREATED, self.clock())
        self._containers[container_id] = ctr
        self._emit(ctr, ContainerEventType.CREATED)
        return container_id

    async def start_container(self, container_id: str) -> None:
        self._call("start_container", container_id)
        ctr = self._container(container_id)
        if ctr.state is not ContainerState.CREATED:
            raise RuntimeServiceError(f"container {container_id[:12]} is {ctr.state.value}, not created",
                                      "RunContainerError")
        ctr.state = ContainerState.RUNNING
        ctr.started_at = self.clock()
        run_seconds = _float(ctr.config.annotations.get(RUN_SECONDS_ANNOTATION))
        if run_seconds is not None:
            code = _int(ctr.config.annotations.get(EXIT_CODE_ANNOTATION)) or 0
            reason = "Completed" if code == 0 else "Error"
            if run_seconds <= 0:
                self._emit(ctr, ContainerEventType.STARTED)
                self._exit(ctr, code, reason)
                return
            loop = asyncio.get_running_loop()
            ctr.timer = loop.call_later(run_seconds, self._exit, ctr, code, reason)
        self._emit(ctr, ContainerEventType.STARTED)

    async def stop_container(self, container_id: str, timeout: float) -> None:
        """Stop a container: a fake process honours SIGTERM at once and exits 0 (timeout is not waited for)."""
        self._call("stop_container", container_id, timeout)
        ctr = self._containers.get(container_id)
        if ctr is None:
            return
        if ctr.state is ContainerState.RUNNING:
            self._exit(ctr, 0, "Completed")
        elif ctr.state is ContainerState.CREATED:
            ctr.state = ContainerState.EXITED
            ctr.finished_at = self.clock()

    async def remove_container(self, container_id: str) -> None:
        self._call("remove_container", container_id)
        ctr = self._containers.get(container_id)
        if ctr is not None:
            self._drop(ctr)

    async def container_status(self, container_id: str) -> ContainerStatus:
        self._call("container_status", container_id)
        return self._container_status(self._container(container_id))

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        self._call("list_containers", sandbox_id)
        return [self._container_status(c) for c in self._containers.values()
                if sandbox_id is None or c.sandbox_id == sandbox_id]

    # -- image service ------------------------------------------------------------------------------------------
    async def pull_image(self, image: str, auth: AuthConfig | None = None) -> str:
        self._call("pull_image", image)
        ref = image_ref(image)
        if ref not in self._images:
            full = normalize_image(image)
            self._images[ref] = Image(ref, (full,) if "@" not in full else (), (ref,), 0)
        return ref

    async def image_status(self, image: str) -> Image | None:
        self._call("image_status", image)
        return self._images.get(image_ref(image))

    async def list_images(self) -> list[Image]:
        self._call("list_images")
        return list(self._images.values())

    async def remove_image(self, image: str) -> None:
        self._call("remove_image", image)
        self._images.pop(image_ref(image), None)

    # -- internals ----------------------------------------------------------------------------------------------
    def _allocate_ip(self, wanted: str) -> str:
        ip = self._ips.allocate(wanted) if self._ips is not None else None
        if ip is None:
            raise RuntimeServiceError(f"no IP addresses available in range {self._ips.cidr if self._ips else '(none)'}",
                                      "FailedCreatePodSandBox")
        return ip

    def _sandbox(self, sandbox_id: str) -> _Sandbox:
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            raise NotFoundError(f"sandbox {sandbox_id[:12]}")
        return sandbox

    def _container(self, container_id: str) -> _Container:
        ctr = self._containers.get(container_id)
        if ctr is None:
            raise NotFoundError(f"container {container_id[:12]}")
        return ctr

    def _exit(self, ctr: _Container, exit_code: int, reason: str) -> None:
        if ctr.state is not ContainerState.RUNNING:
            return
        if ctr.timer is not None:
            ctr.timer.cancel()
            ctr.timer = None
        ctr.state = ContainerState.EXITED
        ctr.finished_at = self.clock()
        ctr.exit_code = exit_code
        ctr.reason = reason
        self._emit(ctr, ContainerEventType.STOPPED)

    def _drop(self, ctr: _Container) -> None:
        if ctr.timer is not None:
            ctr.timer.cancel()
        self._emit(ctr, ContainerEventType.DELETED)
        self._containers.pop(ctr.id, None)

    @staticmethod
    def _sandbox_status(s: _Sandbox) -> PodSandboxStatus:
        return PodSandboxStatus(s.id, s.config.metadata, s.state, s.created_at, s.ip)

    @staticmethod
    def _container_status(c: _Container) -> ContainerStatus:
        return ContainerStatus(c.id, c.sandbox_id, c.config.metadata, normalize_image(c.config.image),
                               image_ref(c.config.image), c.state, c.created_at, c.started_at, c.finished_at,
                               c.exit_code, c.reason, c.message)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None
