"""Find a pod's sandbox and containers in the runtime by the names the API uses.

The kubelet's streaming and log endpoints are addressed as `namespace/pod/container`; the runtime knows sandboxes
and containers by id. As in Kubernetes, the runtime itself is the source of truth (the kubelet labels what it
creates), so these lookups work the same after an agent restart.
"""
from __future__ import annotations

from ..runtime.interface import (ContainerState, ContainerStatus, NotFoundError, PodSandboxStatus, RuntimeService,
                                 SandboxState)


async def find_sandbox(runtime: RuntimeService, namespace: str, pod: str, uid: str = "") -> PodSandboxStatus:
    """The pod's newest sandbox, preferring a ready one."""
    found = [s for s in await runtime.list_pod_sandbox()
             if s.metadata.namespace == namespace and s.metadata.name == pod and (not uid or s.metadata.uid == uid)]
    if not found:
        raise NotFoundError(f"pod {namespace}/{pod}")
    found.sort(key=lambda s: (s.state is SandboxState.READY, s.metadata.attempt, s.created_at))
    return found[-1]


async def find_container(runtime: RuntimeService, namespace: str, pod: str, container: str, *,
                         previous: bool = False, uid: str = "") -> ContainerStatus:
    """The current attempt of `container` (running preferred, else the newest), or with `previous` the attempt
    before it, which the kubelet keeps until the next restart so `kubectl logs --previous` works."""
    sandbox = await find_sandbox(runtime, namespace, pod, uid)
    attempts = sorted((c for c in await runtime.list_containers(sandbox.id) if c.metadata.name == container),
                      key=lambda c: (c.metadata.attempt, c.created_at))
    if not attempts:
        raise NotFoundError(f"container {container} in pod {namespace}/{pod}")
    if previous:
        if len(attempts) < 2:
            raise NotFoundError(f"previous terminated container {container} in pod {namespace}/{pod}")
        return attempts[-2]
    running = [c for c in attempts if c.state is ContainerState.RUNNING]
    return running[-1] if running else attempts[-1]
