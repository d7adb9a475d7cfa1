"""From a pod's requests and limits to cgroup settings, QoS class and cgroup parent, as the kubelet derives them.

The rules follow pkg/apis/core/v1/helper/qos (QoS class), pkg/kubelet/qos/policy.go (oom_score_adj),
pkg/kubelet/cm/helpers_linux.go (cpu shares and quota) and the cgroupfs layout of pkg/kubelet/cm
(`kubepods[/burstable|/besteffort]/pod<uid>`). Quantities are parsed exactly (Decimal), and rounded up where
Kubernetes' `MilliValue()` / `Value()` round up.
"""
from __future__ import annotations

import asyncio
import functools
import math
import os
import posixpath
from decimal import Decimal
from typing import Any

from ..api.validation import quantity
from ..runtime.interface import LinuxResources

Obj = dict[str, Any]

MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
QUOTA_PERIOD = 100_000            # microseconds, the CFS default the kubelet uses
MIN_QUOTA = 1000                  # microseconds
GUARANTEED_OOM_SCORE_ADJ = -997
BESTEFFORT_OOM_SCORE_ADJ = 1000
COMPUTE = ("cpu", "memory")       # the resources QoS looks at


def milli_value(raw: Any) -> int:
    """`Quantity.MilliValue()`: thousandths, rounded up (`0.0001` CPU is 1m)."""
    return math.ceil(quantity.parse(raw).value * 1000)


def value(raw: Any) -> int:
    """`Quantity.Value()`: whole units, rounded up."""
    return math.ceil(quantity.parse(raw).value)


def _decimal(raw: Any) -> Decimal:
    return quantity.parse(raw).value


def _requests_limits(container: Obj) -> tuple[Obj, Obj]:
    """Requests defaulted from limits, as the API server's defaulting does for pods created without requests."""
    res = container.get("resources") or {}
    limits = dict(res.get("limits") or {})
    requests = dict(res.get("requests") or {})
    for name, q in limits.items():
        requests.setdefault(name, q)
    return requests, limits


def qos_class(pod: Obj) -> str:
    """Guaranteed, Burstable or BestEffort over init and app containers (GetPodQOS); `status.qosClass` wins once set
    because the class of a running pod never changes."""
    known = (pod.get("status") or {}).get("qosClass")
    if known:
        return known
    spec = pod.get("spec") or {}
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        req, lim = _requests_limits(c)
        for name in COMPUTE:
            if name in req and _decimal(req[name]) != 0:
                requests[name] = requests.get(name, Decimal(0)) + _decimal(req[name])
        found = 0
        for name in COMPUTE:
            if name in lim and _decimal(lim[name]) != 0:
                found += 1
                limits[name] = limits.get(name, Decimal(0)) + _decimal(lim[name])
        if found != len(COMPUTE):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests.keys() == limits.keys() and all(requests[k] == limits[k] for k in requests):
        return "Guaranteed"
    return "Burstable"


@functools.lru_cache(maxsize=1)
def machine_memory() -> int:
    """Bytes of RAM (MemTotal), the capacity oom_score_adj is scaled by when the caller has no node capacity."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def oom_score_adj(pod: Obj, container: Obj, memory_capacity: int = 0) -> int:
    """qos/policy.go: Guaranteed and node-critical -997, BestEffort 1000, Burstable scaled by the memory request,
    kept within 3..999 so it stays between the two."""
    if (pod.get("spec") or {}).get("priorityClassName") == "system-node-critical":
        return GUARANTEED_OOM_SCORE_ADJ
    qos = qos_class(pod)
    if qos == "Guaranteed":
        return GUARANTEED_OOM_SCORE_ADJ
    if qos == "BestEffort":
        return BESTEFFORT_OOM_SCORE_ADJ
    capacity = memory_capacity or machine_memory()
    req, _ = _requests_limits(container)
    request = value(req["memory"]) if "memory" in req else 0
    adj = 1000 - (1000 * request) // capacity
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    if adj == BESTEFFORT_OOM_SCORE_ADJ:
        return adj - 1
    return adj


def milli_cpu_to_shares(milli: int) -> int:
    if milli == 0:
        return MIN_SHARES
    return max(MIN_SHARES, min(MAX_SHARES, milli * SHARES_PER_CPU // 1000))


def milli_cpu_to_quota(milli: int, period: int = QUOTA_PERIOD) -> int:
    if milli == 0:
        return 0
    return max(MIN_QUOTA, milli * period // 1000)


def linux_resources(pod: Obj, container: Obj, *, memory_capacity: int = 0) -> LinuxResources:
    """The container's cgroup settings: shares from the CPU request (the limit when only that is set; 2 when
    neither), quota from the CPU limit over a 100 ms period, the memory limit, and oom_score_adj by QoS."""
    req, lim = _requests_limits(container)
    cpu_request = milli_value(req["cpu"]) if "cpu" in req else 0
    cpu_limit = milli_value(lim["cpu"]) if "cpu" in lim else 0
    shares = milli_cpu_to_shares(cpu_limit if cpu_request == 0 and cpu_limit else cpu_request)
    quota = milli_cpu_to_quota(cpu_limit)
    return LinuxResources(
        cpu_period=QUOTA_PERIOD if quota else 0,
        cpu_quota=quota,
        cpu_shares=shares,
        memory_limit_in_bytes=value(lim["memory"]) if "memory" in lim else 0,
        oom_score_adj=oom_score_adj(pod, container, memory_capacity),
    )


def pod_cgroup_parent(pod: Obj, node_cgroup_root: str = "/") -> str:
    """The pod's cgroup under the node's root (cgroupfs driver): `kubepods/pod<uid>` for Guaranteed pods,
    `kubepods/burstable/pod<uid>` and `kubepods/besteffort/pod<uid>` for the others."""
    uid = pod["metadata"]["uid"]
    qos = qos_class(pod)
    parts = [node_cgroup_root or "/", "kubepods"]
    if qos != "Guaranteed":
        parts.append(qos.lower())
    parts.append(f"pod{uid}")
    return posixpath.join(*parts)


CGROUP_ROOT = "/sys/fs/cgroup"


def _remove_pod_cgroup_sync(cgroup_parent: str, cgroup_root: str) -> list[str]:
    left: list[str] = []
    rel = cgroup_parent.strip("/")
    if not rel:
        return left
    try:
        hierarchies = [os.path.join(cgroup_root, h) for h in os.listdir(cgroup_root)]
    except OSError:
        return left
    for hier in hierarchies:
        pod_dir = os.path.join(hier, rel)
        if os.path.islink(hier) or not os.path.isdir(pod_dir):
            continue
        # deepest first: container cgroups, then the pod's; rmdir fails (EBUSY) while a process is still inside
        for dirpath, dirs, _ in sorted(os.walk(pod_dir), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(dirpath)
            except OSError as e:
                left.append(f"{dirpath}: {e.strerror}")
    return left


async def remove_pod_cgroup(cgroup_parent: str, cgroup_root: str = CGROUP_ROOT) -> list[str]:
    """Remove the pod's cgroup (and the containers' below it) from every hierarchy once its containers are gone:
    containerd leaves them behind. Returns what could not be removed (still in use), empty when all went."""
    return await asyncio.to_thread(_remove_pod_cgroup_sync, cgroup_parent, cgroup_root)
