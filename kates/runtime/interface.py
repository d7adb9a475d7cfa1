"""What the kubelet may rely on from a container runtime: the CRI's concepts, as Python types.

The shape follows the CRI v1 API (`staging/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto` and
`services.go`): a runtime service of pod sandboxes and containers, an image service, and streaming (exec,
attach, port-forward). Three implementations share it: `cri` (a CRI v1 gRPC client to containerd or any CRI
endpoint), `process` (plain host processes, no isolation) and `fake` (hollow nodes, tests). The kubelet never
knows which one it drives.

Containers write their output to `ContainerConfig.log_path` in the CRI log format (one line per chunk:
`<RFC3339Nano> <stdout|stderr> <F|P> <text>`), as containerd does; the kubelet serves logs from those files.
Times are Unix seconds as floats (CRI uses nanoseconds; implementations convert).
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Callable, Mapping, Protocol

# -- errors ------------------------------------------------------------------------------------------------------


class RuntimeServiceError(Exception):
    """A runtime call failed (CRI returns a gRPC error). `reason` becomes the container's waiting reason."""

    def __init__(self, message: str, reason: str = "RuntimeError") -> None:
        super().__init__(message)
        self.reason = reason


class NotFoundError(RuntimeServiceError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found", "NotFound")


class ImagePullError(RuntimeServiceError):
    """The image could not be pulled (no such image, registry unreachable, unauthorized)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "ErrImagePull")


# -- states and events -----------------------------------------------------------------------------------------


class SandboxState(enum.Enum):
    READY = "SANDBOX_READY"
    NOTREADY = "SANDBOX_NOTREADY"


class ContainerState(enum.Enum):
    CREATED = "CONTAINER_CREATED"
    RUNNING = "CONTAINER_RUNNING"
    EXITED = "CONTAINER_EXITED"
    UNKNOWN = "CONTAINER_UNKNOWN"


class ContainerEventType(enum.Enum):
    CREATED = "CONTAINER_CREATED_EVENT"
    STARTED = "CONTAINER_STARTED_EVENT"
    STOPPED = "CONTAINER_STOPPED_EVENT"
    DELETED = "CONTAINER_DELETED_EVENT"


# -- sandboxes ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PodSandboxMetadata:
    name: str
    namespace: str
    uid: str
    attempt: int = 0


@dataclasses.dataclass(frozen=True)
class DNSConfig:
    """What goes into the sandbox's /etc/resolv.conf."""
    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PortMapping:
    """A hostPort: `host_ip:host_port` on the node forwards to `container_port` in the sandbox."""
    container_port: int
    host_port: int
    protocol: str = "TCP"               # TCP, UDP, SCTP
    host_ip: str = ""


@dataclasses.dataclass(frozen=True)
class PodSandboxConfig:
    metadata: PodSandboxMetadata
    hostname: str = ""
    host_network: bool = False
    log_directory: str = ""             # where the pod's container logs live (log_path is relative to it in CRI)
    dns_config: DNSConfig | None = None
    port_mappings: tuple[PortMapping, ...] = ()
    cgroup_parent: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    sysctls: Mapping[str, str] = dataclasses.field(default_factory=dict)
    privileged: bool = False            # any container of the pod is privileged
    runtime_handler: str = ""           # RuntimeClass handler; "" = the runtime's default


@dataclasses.dataclass(frozen=True)
class PodSandboxStatus:
    id: str
    metadata: PodSandboxMetadata
    state: SandboxState
    created_at: float
    ip: str                             # "" for host-network sandboxes: the kubelet uses the node's IP
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


# -- containers --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ContainerMetadata:
    name: str
    attempt: int = 0


@dataclasses.dataclass(frozen=True)
class Mount:
    container_path: str
    host_path: str
    readonly: bool = False
    propagation: str = "PROPAGATION_PRIVATE"   # PROPAGATION_PRIVATE, _HOST_TO_CONTAINER, _BIDIRECTIONAL


@dataclasses.dataclass(frozen=True)
class LinuxResources:
    """cgroup settings the kubelet derives from requests and limits (see `kubelet/resources.py`)."""
    cpu_period: int = 0                 # microseconds; 0 = unset
    cpu_quota: int = 0                  # microseconds per period; 0 = unlimited
    cpu_shares: int = 0                 # 2..262144; 0 = runtime default
    memory_limit_in_bytes: int = 0      # 0 = unlimited
    oom_score_adj: int = 0


@dataclasses.dataclass(frozen=True)
class SecurityContext:
    run_as_user: int | None = None
    run_as_group: int | None = None
    supplemental_groups: tuple[int, ...] = ()
    add_capabilities: tuple[str, ...] = ()     # without the CAP_ prefix, as in the pod spec ("NET_ADMIN")
    drop_capabilities: tuple[str, ...] = ()    # "ALL" drops every capability
    privileged: bool = False
    readonly_rootfs: bool = False
    no_new_privs: bool = False                 # allowPrivilegeEscalation: false


@dataclasses.dataclass(frozen=True)
class ContainerConfig:
    metadata: ContainerMetadata
    image: str                          # the reference as the pod spec names it; runtimes resolve it
    command: tuple[str, ...] = ()       # entrypoint override (pod spec `command`); () = the image's
    args: tuple[str, ...] = ()          # pod spec `args`; () = the image's CMD when command is also ()
    working_dir: str = ""
    envs: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()
    log_path: str = ""                  # absolute path of this attempt's log file (CRI format)
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    resources: LinuxResources | None = None
    security: SecurityContext | None = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ContainerStatus:
    id: str
    sandbox_id: str
    metadata: ContainerMetadata
    image: str
    image_ref: str
    state: ContainerState
    created_at: float
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""                    # for exited containers: Completed, Error, OOMKilled
    message: str = ""
    log_path: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ContainerEvent:
    container_id: str
    type: ContainerEventType
    sandbox: PodSandboxMetadata
    at: float


@dataclasses.dataclass(frozen=True)
class ContainerStats:
    container_id: str
    cpu_usage_core_nanoseconds: int = 0     # cumulative
    memory_working_set_bytes: int = 0
    at: float = 0.0


# -- images ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Image:
    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    """Registry credentials from an imagePullSecret (`.dockerconfigjson`), for one registry."""
    username: str = ""
    password: str = ""
    auth: str = ""                      # base64 user:password, as docker config files carry it
    server_address: str = ""


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    runtime_name: str
    runtime_version: str
    runtime_api_version: str = "v1"


# -- streaming ---------------------------------------------------------------------------------------------------


class StreamSession(Protocol):
    """A running exec or attach: stdin in, stdout/stderr out, resize, and the exit code at the end."""

    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    async def read_output(self) -> tuple[int, bytes] | None:
        """Next chunk as (1 = stdout | 2 = stderr, data); None once all output has ended."""
        ...
    async def resize(self, width: int, height: int) -> None: ...
    async def wait(self) -> int:
        """The exit code (exec), or 0 when an attach ends."""
        ...
    async def close(self) -> None:
        """Abandon the session (the client went away); an exec'd process is killed."""
        ...


class ByteStream(Protocol):
    """One port-forward connection into a sandbox's network namespace."""

    async def read(self, n: int = 65536) -> bytes: ...     # b"" at end of stream
    async def write(self, data: bytes) -> None: ...
    async def close_write(self) -> None: ...               # half-close: the peer sees end of stream
    async def close(self) -> None: ...


# -- services ----------------------------------------------------------------------------------------------------


class RuntimeService(Protocol):
    """Sandboxes and containers (CRI RuntimeService)."""

    async def version(self) -> VersionInfo: ...
    async def update_runtime_config(self, pod_cidr: str) -> None: ...
    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str: ...
    async def stop_pod_sandbox(self, sandbox_id: str) -> None: ...
    async def remove_pod_sandbox(self, sandbox_id: str) -> None: ...
    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus: ...
    async def list_pod_sandbox(self) -> list[PodSandboxStatus]: ...
    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               sandbox_config: PodSandboxConfig | None = None) -> str: ...
    async def start_container(self, container_id: str) -> None: ...
    async def stop_container(self, container_id: str, timeout: float) -> None:
        """SIGTERM (or the image's stop signal), then SIGKILL after `timeout` seconds; returns once exited."""
        ...
    async def remove_container(self, container_id: str) -> None: ...
    async def container_status(self, container_id: str) -> ContainerStatus: ...
    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]: ...
    def subscribe(self, callback: Callable[[ContainerEvent], None]) -> None:
        """Container lifecycle events; implementations without native events poll (a PLEG relist)."""
        ...


class StreamingService(Protocol):
    """exec, attach and port-forward (CRI Exec/Attach/PortForward, but returning live sessions, not URLs)."""

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes, bytes]:
        """Run `cmd` in the container; (exit code, stdout, stderr). Exec probes use this."""
        ...
    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool) -> StreamSession: ...
    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> StreamSession: ...
    async def port_forward(self, sandbox_id: str, port: int) -> ByteStream:
        """A TCP connection to localhost:`port` inside the sandbox's network namespace."""
        ...
    async def reopen_container_log(self, container_id: str) -> None:
        """The kubelet rotated the log file: write to a fresh one at the same path."""
        ...
    async def container_stats(self, container_id: str) -> ContainerStats: ...


class ImageService(Protocol):
    """Images (CRI ImageService)."""

    async def pull_image(self, image: str, auth: AuthConfig | None = None) -> str: ...
    async def image_status(self, image: str) -> Image | None: ...
    async def list_images(self) -> list[Image]: ...
    async def remove_image(self, image: str) -> None: ...
    async def image_fs_usage(self) -> tuple[int, int]:
        """(bytes used by images, bytes of the filesystem holding them) for image GC."""
        ...


class Runtime(RuntimeService, StreamingService, ImageService, Protocol):
    """Everything a kubelet drives; `kates/runtime/__init__.py:open_runtime` builds one by name."""

    name: str

    async def close(self) -> None: ...
