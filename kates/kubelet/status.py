"""Pod and node status as a kubelet reports it: phase, conditions, container statuses; node conditions.

Shared by the real node agent (`agent.py`, `podworker.py`) and the hollow nodes (`hollow.py`): the pure helpers
follow the kubelet's `getPhase`, `generateAPIPodStatus` and `status/generate.go`, and the node condition setters of
`nodestatus/setters.go`. Nothing here talks to the API server or to a runtime: inputs in, status dicts out.
"""
from __future__ import annotations

import calendar
import dataclasses
import datetime
import time
from typing import Any, Mapping

from ..runtime.interface import ContainerState, ContainerStatus, PodSandboxStatus, SandboxState

Obj = dict[str, Any]

KUBELET_VERSION = "v1.32.0"
LEASE_NAMESPACE = "kube-node-lease"
KUBELET_OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")
TERMINAL_PHASES = ("Succeeded", "Failed")

NODE_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def micro_time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 UTC time ("2026-01-01T00:00:00Z"; fractions ignored)."""
    if not value:
        return None
    try:
        return float(calendar.timegm((int(value[0:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]),
                                      int(value[14:16]), int(value[17:19]), 0, 0, 0)))
    except ValueError:
        return None


def _condition(obj: Obj, type_: str) -> Obj | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def node_conditions(now: float, previous: list[Obj] | None = None) -> list[Obj]:
    stamp = rfc3339(now)
    old = {c.get("type"): c for c in previous or []}
    out = []
    for type_, status, reason, message in NODE_CONDITIONS:
        prev = old.get(type_)
        transition = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
        out.append({"type": type_, "status": status, "lastHeartbeatTime": stamp,
                    "lastTransitionTime": transition or stamp, "reason": reason, "message": message})
    return out


def node_healthy(node: Obj) -> bool:
    """What this kubelet posted is still there: Ready True, no pressure."""
    want = {t: s for t, s, _, _ in NODE_CONDITIONS}
    have = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
    return all(have.get(t) == s for t, s in want.items())


def restarts(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def _volume_mounts(ctr: Obj) -> list[Obj]:
    out = []
    for m in ctr.get("volumeMounts") or []:
        entry = {"name": m.get("name"), "mountPath": m.get("mountPath")}
        if m.get("readOnly"):
            entry["readOnly"] = True
            entry["recursiveReadOnly"] = "Disabled"
        out.append(entry)
    return out


def init_incomplete(spec: Obj, init_statuses: list[Obj]) -> list[str]:
    """Init containers still holding the pod back: not yet exited 0 (sidecars: not yet started)."""
    sidecars = {c["name"] for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"}
    out = []
    for s in init_statuses:
        done = s["started"] if s["name"] in sidecars else \
            s["state"].get("terminated", {}).get("exitCode", -1) == 0
        if not done:
            out.append(s["name"])
    return out


def pod_phase(pod: Obj, init_statuses: list[Obj], statuses: list[Obj], initialized: bool) -> str:
    """The kubelet's getPhase, for a pod that is not being deleted."""
    policy = pod["spec"].get("restartPolicy", "Always")
    if not initialized:
        failed_init = any(s["state"].get("terminated", {}).get("exitCode", 0) != 0 for s in init_statuses)
        return "Failed" if failed_init and policy == "Never" else "Pending"
    running = waiting = stopped = succeeded = 0
    for cs in statuses:
        state = cs["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif cs.get("lastState", {}).get("terminated"):
            stopped += 1   # waiting to restart after an exit
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if policy == "Always":
        return "Running"
    if policy == "OnFailure":
        return "Succeeded" if stopped == succeeded else "Running"
    return "Succeeded" if stopped == succeeded else "Failed"


def _cond(type_: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    c: Obj = {"type": type_, "status": "True" if ok else "False"}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def pod_conditions(pod: Obj, phase: str, sandbox_ready: bool, incomplete: list[str],
                   statuses: list[Obj]) -> list[Obj]:
    terminal = phase in TERMINAL_PHASES
    unready = [s["name"] for s in statuses if not s["ready"]]
    initialized = _cond("Initialized", not incomplete, "PodCompleted" if terminal and not incomplete else
                        "ContainersNotInitialized" if incomplete else "",
                        f"containers with incomplete status: [{' '.join(incomplete)}]" if incomplete else "")
    if terminal:
        containers_ready = _cond("ContainersReady", False, "PodCompleted")
        ready = _cond("Ready", False, "PodCompleted")
    else:
        message = f"containers with unready status: [{' '.join(unready)}]" if unready else ""
        containers_ready = _cond("ContainersReady", not unready, "ContainersNotReady" if unready else "", message)
        gates = [g.get("conditionType") for g in pod["spec"].get("readinessGates") or []]
        missing = [g for g in gates if (_condition(pod, g) or {}).get("status") != "True"]
        if unready:
            ready = _cond("Ready", False, "ContainersNotReady", message)
        elif missing:
            ready = _cond("Ready", False, "ReadinessGatesNotReady",
                          f"corresponding condition of pod readiness gate \"{missing[0]}\" does not exist.")
        else:
            ready = _cond("Ready", True)
    return [_cond("PodReadyToStartContainers", sandbox_ready and not terminal), initialized, ready, containers_ready]


def _with_transition_times(new: list[Obj], pod: Obj, now: float) -> list[Obj]:
    for c in new:
        old = _condition(pod, c["type"])
        keep = old is not None and old.get("status") == c["status"] and old.get("lastTransitionTime")
        c["lastTransitionTime"] = old["lastTransitionTime"] if keep else rfc3339(now)
    return new


def others_conditions(pod: Obj, now: float) -> list[Obj]:
    """The conditions this kubelet does not own, as last seen (PodScheduled added if the binder did not)."""
    old = (pod.get("status") or {}).get("conditions") or []
    out = [c for c in old if c.get("type") not in KUBELET_OWNED_CONDITIONS]
    if not any(c.get("type") == "PodScheduled" for c in out):
        out.insert(0, {"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(now)})
    return out


def status_changed(pod: Obj, status: Obj) -> bool:
    """Whether patching `status` would change the pod."""
    old = pod.get("status") or {}
    return any(old.get(key) != value for key, value in status.items())


# -- the real kubelet's pod status ----------------------------------------------------------------------------------

@dataclasses.dataclass
class PodRuntimeView:
    """What the runtime and the pod worker know of one pod, the input of `pod_status`.

    `containers` are all of the pod's containers in the runtime (every sandbox attempt); per name the newest attempt
    is the current one and the one before it the lastState. `waiting` holds why a container is not running
    (ErrImagePull, CrashLoopBackOff, CreateContainerConfigError...); `ready`/`started` are probe results by container
    id (absent: no such probe, so ready/started once running); `messages` termination messages by container id."""

    containers: list[ContainerStatus] = dataclasses.field(default_factory=list)
    sandbox: PodSandboxStatus | None = None
    waiting: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    ready: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    started: Mapping[str, bool] = dataclasses.field(default_factory=dict)
    messages: Mapping[str, str] = dataclasses.field(default_factory=dict)
    id_prefix: str = "containerd"

    def attempts(self, name: str) -> list[ContainerStatus]:
        return sorted((c for c in self.containers if c.metadata.name == name),
                      key=lambda c: (c.metadata.attempt, c.created_at))


def terminated_state(cs: ContainerStatus, id_prefix: str, message: str = "") -> Obj:
    """`state.terminated` of an exited container: exit code, reason (Completed, Error, OOMKilled), times."""
    out: Obj = {"exitCode": cs.exit_code, "reason": cs.reason or ("Completed" if cs.exit_code == 0 else "Error")}
    if message or cs.message:
        out["message"] = message or cs.message
    if cs.started_at:
        out["startedAt"] = rfc3339(cs.started_at)
    out["finishedAt"] = rfc3339(cs.finished_at or cs.started_at or cs.created_at)
    out["containerID"] = f"{id_prefix}://{cs.id}"
    return out


def real_container_status(ctr: Obj, view: PodRuntimeView, init: bool, creating: str) -> Obj:
    """One entry of containerStatuses / initContainerStatuses (the kubelet's convertToAPIContainerStatuses)."""
    name = ctr["name"]
    attempts = view.attempts(name)
    cur = attempts[-1] if attempts else None
    last = attempts[-2] if len(attempts) > 1 else None
    waiting = view.waiting.get(name)
    out: Obj = {"name": name, "image": (cur.image if cur and cur.image else ctr.get("image", "")), "imageID": "",
                "restartCount": cur.metadata.attempt if cur else 0}
    ready = started = False
    if waiting and (cur is None or cur.state is not ContainerState.RUNNING):
        w: Obj = {"reason": waiting[0]}
        if waiting[1]:
            w["message"] = waiting[1]
        out["state"] = {"waiting": w}
        if cur is not None and cur.state is ContainerState.EXITED:
            last = cur
    elif cur is None or cur.state in (ContainerState.CREATED, ContainerState.UNKNOWN):
        out["state"] = {"waiting": {"reason": creating}}
    elif cur.state is ContainerState.RUNNING:
        out["state"] = {"running": {"startedAt": rfc3339(cur.started_at or cur.created_at)}}
        started = view.started.get(cur.id, True)
        ready = started and view.ready.get(cur.id, True)
    else:
        out["state"] = {"terminated": terminated_state(cur, view.id_prefix, view.messages.get(cur.id, ""))}
        ready = init and cur.exit_code == 0
    out["lastState"] = {"terminated": terminated_state(last, view.id_prefix, view.messages.get(last.id, ""))} \
        if last is not None and last.state is ContainerState.EXITED else {}
    out["ready"] = ready
    out["started"] = started
    if cur is not None:
        out["imageID"] = cur.image_ref
        out["containerID"] = f"{view.id_prefix}://{cur.id}"
    mounts = _volume_mounts(ctr)
    if mounts:
        out["volumeMounts"] = mounts
    return out


def pod_status(pod: Obj, view: PodRuntimeView, node_ip: str, now: float | None = None) -> Obj:
    """The part of a pod's status this kubelet owns (generateAPIPodStatus): phase, conditions, container
    statuses, pod and host IPs, start time. Conditions other writers own are carried over as last seen."""
    now = time.time() if now is None else now
    spec, old = pod["spec"], pod.get("status") or {}
    init_statuses = [real_container_status(c, view, True, "PodInitializing") for c in spec.get("initContainers") or []]
    incomplete = init_incomplete(spec, init_statuses)
    creating = "PodInitializing" if incomplete else "ContainerCreating"
    statuses = [real_container_status(c, view, False, creating) for c in spec.get("containers") or []]
    phase = pod_phase(pod, init_statuses, statuses, not incomplete)
    if old.get("phase") in TERMINAL_PHASES:
        phase = old["phase"]          # a terminal phase never changes back (the status manager refuses it)
    sandbox_ready = view.sandbox is not None and view.sandbox.state is SandboxState.READY
    conditions = _with_transition_times(pod_conditions(pod, phase, sandbox_ready, incomplete, statuses), pod, now)
    conditions += others_conditions(pod, now)
    status: Obj = {"phase": phase, "conditions": conditions, "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
                   "startTime": old.get("startTime") or rfc3339(now), "containerStatuses": statuses}
    pod_ip = node_ip if spec.get("hostNetwork") else (view.sandbox.ip if view.sandbox else "") or old.get("podIP", "")
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return status


def node_capacity_quantities(cpus: int, memory_bytes: int, storage_bytes: int, pods: int = 110) -> Obj:
    """Node capacity as quantity strings (memory in Ki as the kubelet reports it)."""
    return {"cpu": str(cpus), "memory": f"{memory_bytes // 1024}Ki", "pods": str(pods),
            "ephemeral-storage": f"{storage_bytes // 1024}Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0"}

