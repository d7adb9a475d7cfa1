"""One worker per pod: the kubelet's syncPod loop, serialised per pod uid.

Follows `pod_workers.go` (one goroutine per pod, the newest spec wins, syncs never overlap) and
`kuberuntime_manager.go` computePodActions/SyncPod: make sure the pod's sandbox is ready (a new one if it died),
run init containers one at a time in order, then start every app container that is missing or must restart under
the pod's restartPolicy, with CrashLoopBackOff in between. The runtime is the source of truth: what runs is read
back from it on every sync (labels name the pod and container, CRI metadata carries the attempt = restartCount),
so a restarted agent adopts running containers and restarts only those that died while it was away.

Termination (deletionTimestamp set): preStop hooks, then StopContainer with what remains of the grace period,
stop and remove the sandbox, tear volumes down, and only then the DELETE with gracePeriodSeconds=0 that lets the
API server remove the pod. Status goes to pods/status as a merge patch, only when it changed.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..api import errors
from ..api.timestamps import parse_rfc3339
from ..client.rest import resource
from ..runtime.interface import (ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, Mount,
                                 NotFoundError, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatus, PortMapping,
                                 RuntimeServiceError, SandboxState, SecurityContext)
from .images import ImageError
from .status import TERMINAL_PHASES, PodRuntimeView, pod_status, restarts, status_changed

if TYPE_CHECKING:
    from .agent import Kubelet

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PODS = resource("pods")

LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
ANN_HASH = "io.kubernetes.container.hash"
ANN_RESTART_COUNT = "io.kubernetes.container.restartCount"
ANN_TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
ANN_GRACE = "io.kubernetes.pod.terminationGracePeriod"

RESYNC_SECONDS = 15.0          # a sync even without events (a missed event, a probe result, a clock-driven change)
DEFAULT_GRACE = 30
VOLUME_REFRESH_SECONDS = 10.0     # configMap/secret/projected volumes re-read at most this often (each resync)


class CreateContainerConfigError(Exception):
    """The container's config cannot be built (a missing ConfigMap/Secret key...): CreateContainerConfigError."""


def container_hash(ctr: Obj) -> str:
    """A stable hash of the container spec: a changed spec (a new image) means a new container."""
    return hashlib.sha256(json.dumps(ctr, sort_keys=True).encode()).hexdigest()[:16]


def pod_full_name(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta['name']}_{meta['namespace']}({meta['uid']})"


def _security(pod: Obj, ctr: Obj) -> SecurityContext | None:
    psc = pod["spec"].get("securityContext") or {}
    sc = ctr.get("securityContext") or {}
    if not psc and not sc:
        return None
    caps = sc.get("capabilities") or {}
    user = sc.get("runAsUser", psc.get("runAsUser"))
    group = sc.get("runAsGroup", psc.get("runAsGroup"))
    groups = tuple(int(g) for g in psc.get("supplementalGroups") or ())
    if psc.get("fsGroup") is not None:
        groups += (int(psc["fsGroup"]),)
    return SecurityContext(run_as_user=None if user is None else int(user),
                           run_as_group=None if group is None else int(group), supplemental_groups=groups,
                           add_capabilities=tuple(caps.get("add") or ()),
                           drop_capabilities=tuple(caps.get("drop") or ()),
                           privileged=bool(sc.get("privileged")),
                           readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")),
                           no_new_privs=sc.get("allowPrivilegeEscalation") is False)


@dataclasses.dataclass
class _Probed:
    """Probe results for one container id (written by the probe workers through the worker's callbacks)."""
    ready: bool | None = None
    started: bool | None = None


class PodWorker:
    """Serialises everything the kubelet does to one pod (by uid)."""

    def __init__(self, kubelet: "Kubelet", pod: Obj) -> None:
        self.k = kubelet
        self.pod: Obj | None = pod
        self.uid: str = pod["metadata"]["uid"]
        self.key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        self.sandbox_ids: list[str] = []
        self.discovered = False
        self.waiting: dict[str, tuple[str, str]] = {}
        self.probed: dict[str, _Probed] = {}
        self.messages: dict[str, str] = {}
        self.killed_for: dict[str, str] = {}         # container id → why the kubelet killed it (liveness...)
        self.finished = False                        # terminal: containers stopped, nothing restarts
        self.done = asyncio.Event()                  # the worker has ended (the pod is gone)
        self._wake = asyncio.Event()
        self._next: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._deleted = False
        self._deletion_seen: float | None = None
        self.pod_ip = ""
        self.volume_paths: dict[str, str] | None = None
        self._volumes_refreshed = 0.0
        self.probe_ids: set[str] = set()             # containers with probe workers (the agent runs them)
        self._sandbox_configs: dict[int, PodSandboxConfig] = {}
        self.deadline_exceeded = False
        self._side_tasks: set[asyncio.Task[None]] = set()

    @property
    def terminating(self) -> bool:
        """The pod is being removed (deleted in the API, or gone from it) and the worker has not finished."""
        if self.done.is_set():
            return False
        return self._deleted or bool(self.pod and self.pod["metadata"].get("deletionTimestamp"))

    # -- driving the worker --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod-worker-{self.key}")

    def update(self, pod: Obj) -> None:
        """A newer version of the pod (from the informer). One older than what the worker has is ignored, and so is
        the same version: the echo of the worker's own status write, which needs no second sync."""
        if self.pod is not None and _rv(pod) and _rv(pod) <= _rv(self.pod):
            return
        self.pod = pod
        self._wake.set()

    def deleted(self) -> None:
        """The pod is gone from the API server: kill what still runs and clean up."""
        self._deleted = True
        self._wake.set()

    def wake(self, after: float = 0.0) -> None:
        """Sync now, or no later than `after` seconds from now."""
        if after <= 0:
            self._wake.set()
            return
        at = time.monotonic() + after
        if self._next is None or at < self._next:
            self._next = at

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                if self._deleted:
                    await self.cleanup()
                    return
                self._next = None
                await self.sync()
                failures = 0
                if self.done.is_set():
                    return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # an API or runtime hiccup: try again with back-off
                failures += 1
                level = logging.DEBUG if isinstance(e, (errors.APIError, RuntimeServiceError)) else logging.WARNING
                log.log(level, "sync pod %s: %s", self.key, e, exc_info=level == logging.WARNING)
                self.wake(min(0.2 * 2 ** failures, 10.0))
            timeout = RESYNC_SECONDS if self._next is None else max(0.0, self._next - time.monotonic())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    # -- runtime views -------------------------------------------------------------------------------------------
    async def _sandboxes(self) -> list[PodSandboxStatus]:
        rt = self.k.runtime
        if not self.discovered:
            # what the runtime had for this pod when the agent started (adoption); a pod seen later has none
            self.sandbox_ids = list(self.k.sandbox_index.pop(self.uid, []))
            self.discovered = True
        out = []
        for sid in list(self.sandbox_ids):
            try:
                out.append(await rt.pod_sandbox_status(sid))
            except NotFoundError:
                self.sandbox_ids.remove(sid)
        out.sort(key=lambda s: (s.metadata.attempt, s.created_at))
        return out

    async def _containers(self, sandboxes: list[PodSandboxStatus]) -> list[ContainerStatus]:
        out: list[ContainerStatus] = []
        for s in sandboxes:
            try:
                out += await self.k.runtime.list_containers(s.id)
            except NotFoundError:
                pass
        return out

    @staticmethod
    def _current(sandbox: PodSandboxStatus | None, containers: list[ContainerStatus], name: str
                 ) -> ContainerStatus | None:
        mine = [c for c in containers if c.metadata.name == name and (sandbox is None or c.sandbox_id == sandbox.id)]
        mine.sort(key=lambda c: (c.metadata.attempt, c.created_at))
        return mine[-1] if mine else None

    @staticmethod
    def _next_attempt(containers: list[ContainerStatus], name: str, pod: Obj) -> int:
        attempts = [c.metadata.attempt for c in containers if c.metadata.name == name]
        if attempts:
            return max(attempts) + 1
        old = [s.get("restartCount", 0) for s in ((pod.get("status") or {}).get("containerStatuses") or []) +
               ((pod.get("status") or {}).get("initContainerStatuses") or []) if s.get("name") == name
               and (s.get("state") or {}).get("running") is None and s.get("containerID")]
        return (old[0] + 1) if old else 0

    # -- the sync ------------------------------------------------------------------------------------------------
    async def sync(self) -> None:
        pod = self.pod
        assert pod is not None
        if pod["metadata"].get("deletionTimestamp"):
            await self.terminate(pod)
            return
        sandboxes = await self._sandboxes()
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES or self.finished:
            await self._finish(pod, sandboxes)
            return
        remaining = self._deadline_remaining(pod)
        if remaining is not None and remaining <= 0:
            await self._deadline_exceeded(pod, sandboxes)
            return
        if remaining is not None:
            self.wake(remaining + 0.05)
        t0 = time.monotonic()
        if not await self._setup_volumes(pod):
            await self.write_status(pod, sandboxes)
            return
        t1 = time.monotonic()
        sandbox = next((s for s in reversed(sandboxes) if s.state is SandboxState.READY), None)
        containers = await self._containers(sandboxes)
        self._prune_probes(containers)
        if sandbox is None:
            if sandboxes and self._all_done(pod, containers):
                await self.write_status(pod, sandboxes)
                return
            sandbox = await self._create_sandbox(pod, sandboxes, containers)
            if sandbox is None:
                await self.write_status(pod, sandboxes)
                return
            sandboxes.append(sandbox)
        self.pod_ip = self.k.node_ip if pod["spec"].get("hostNetwork") else sandbox.ip   # for env and hooks
        t2 = time.monotonic()
        if await self._sync_init_containers(pod, sandbox, containers):
            await self._sync_app_containers(pod, sandbox, containers)
        t3 = time.monotonic()
        await self.write_status(pod, sandboxes)
        log.debug("sync %s: volumes %.0f ms, sandbox %.0f ms, containers %.0f ms, status %.0f ms", self.key,
                  (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (time.monotonic() - t3) * 1e3)

    @staticmethod
    def _deadline_remaining(pod: Obj) -> float | None:
        """Seconds left of spec.activeDeadlineSeconds (counted from status.startTime), None without one."""
        deadline = pod["spec"].get("activeDeadlineSeconds")
        start = parse_rfc3339((pod.get("status") or {}).get("startTime"))
        if deadline is None or start is None:
            return None
        return start + int(deadline) - time.time()

    async def _deadline_exceeded(self, pod: Obj, sandboxes: list[PodSandboxStatus]) -> None:
        """The pod ran longer than activeDeadlineSeconds: kill it and fail it (reason DeadlineExceeded)."""
        if not self.deadline_exceeded:
            self.deadline_exceeded = True
            self.k.recorder.event(pod, "Normal", "DeadlineExceeded",
                                  "Pod was active on the node longer than the specified deadline")
            await self.kill_containers(pod, await self._containers(sandboxes), self._grace(pod))
        await self.write_status(pod, sandboxes)

    def _prune_probes(self, containers: list[ContainerStatus]) -> None:
        """Probe workers of containers that no longer run stop."""
        running = {c.id for c in containers if c.state is ContainerState.RUNNING}
        for cid in list(self.probe_ids):
            if cid not in running:
                self.k.probes_forget(self, only=cid)

    def _all_done(self, pod: Obj, containers: list[ContainerStatus]) -> bool:
        """Whether nothing of this pod will run again (restartPolicy and exit codes): no new sandbox then."""
        policy = pod["spec"].get("restartPolicy", "Always")
        if policy == "Always":
            return False
        for ctr in pod["spec"].get("containers") or []:
            cur = self._current(None, containers, ctr["name"])
            if cur is None or cur.state is not ContainerState.EXITED or restarts(policy, cur.exit_code):
                return False
        return True

    async def _setup_volumes(self, pod: Obj) -> bool:
        """Volumes are set up once per pod (until that succeeds), then refreshed now and then so configMap and
        secret updates reach running pods."""
        if not pod["spec"].get("volumes"):
            self.volume_paths = {}
            return True
        if self.volume_paths is not None:
            if time.monotonic() - self._volumes_refreshed >= VOLUME_REFRESH_SECONDS:
                self._volumes_refreshed = time.monotonic()
                await self.k.refresh_volumes(pod)
            return True
        try:
            self.volume_paths = await self.k.setup_volumes(pod)
            self._volumes_refreshed = time.monotonic()
        except Exception as e:     # MountError, or the API unreachable: keep the pod ContainerCreating
            message = str(e)
            self.k.recorder.event(pod, "Warning", "FailedMount", message)
            log.info("pod %s: %s", self.key, message)
            self.wake(2.0)
            return False
        return True

    async def _create_sandbox(self, pod: Obj, old: list[PodSandboxStatus],
                              containers: list[ContainerStatus]) -> PodSandboxStatus | None:
        rt = self.k.runtime
        if old:
            self.k.recorder.event(pod, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and "
                                  "re-created.")
            for c in containers:
                if c.state is ContainerState.RUNNING:
                    await rt.stop_container(c.id, 0)
            for s in old:
                await rt.stop_pod_sandbox(s.id)
        attempt = max((s.metadata.attempt for s in old), default=-1) + 1
        config = self.sandbox_config(pod, attempt)
        try:
            sid = await rt.run_pod_sandbox(config)
        except RuntimeServiceError as e:
            self.k.recorder.event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
            log.info("pod %s: sandbox: %s", self.key, e)
            self.wake(min(2.0 * (1 + len(old)), 10.0))
            return None
        self.sandbox_ids.append(sid)
        return await rt.pod_sandbox_status(sid)

    def sandbox_config(self, pod: Obj, attempt: int) -> PodSandboxConfig:
        """The sandbox's config (made once per attempt: CreateContainer passes it again)."""
        cached = self._sandbox_configs.get(attempt)
        if cached is None:
            cached = self._sandbox_configs[attempt] = self._make_sandbox_config(pod, attempt)
        return cached

    def _make_sandbox_config(self, pod: Obj, attempt: int) -> PodSandboxConfig:
        meta, spec = pod["metadata"], pod["spec"]
        labels = dict(meta.get("labels") or {})
        labels.update({LABEL_POD_NAME: meta["name"], LABEL_POD_NAMESPACE: meta["namespace"],
                       LABEL_POD_UID: meta["uid"]})
        ports = []
        for ctr in spec.get("containers") or []:
            for p in ctr.get("ports") or []:
                if p.get("hostPort"):
                    ports.append(PortMapping(int(p["containerPort"]), int(p["hostPort"]), p.get("protocol", "TCP"),
                                             p.get("hostIP", "")))
        privileged = any((c.get("securityContext") or {}).get("privileged")
                         for c in (spec.get("containers") or []) + (spec.get("initContainers") or []))
        sysctls = {s["name"]: str(s.get("value", "")) for s in (spec.get("securityContext") or {}).get("sysctls") or []}
        return PodSandboxConfig(
            metadata=PodSandboxMetadata(meta["name"], meta["namespace"], meta["uid"], attempt),
            hostname=self.k.hostname_for(pod), host_network=bool(spec.get("hostNetwork")),
            log_directory=str(self.k.pod_log_dir(pod)), dns_config=self.k.dns_config(pod),
            port_mappings=tuple(ports), cgroup_parent=self.k.cgroup_parent(pod), labels=labels,
            annotations=dict(meta.get("annotations") or {}), sysctls=sysctls, privileged=privileged,
            runtime_handler=self.k.runtime_handler(pod))

    # -- init and app containers --------------------------------------------------------------------------------
    async def _sync_init_containers(self, pod: Obj, sandbox: PodSandboxStatus,
                                    containers: list[ContainerStatus]) -> bool:
        """Run init containers one by one; True once all have succeeded (sidecars: started)."""
        policy = pod["spec"].get("restartPolicy", "Always")
        for ctr in pod["spec"].get("initContainers") or []:
            sidecar = ctr.get("restartPolicy") == "Always"
            cur = self._current(sandbox, containers, ctr["name"])
            if cur is None:
                await self.start_container(pod, sandbox, ctr, containers)
                if not sidecar:
                    return False
                continue
            if cur.state is ContainerState.CREATED:
                await self._remove_quietly(cur.id)
                await self.start_container(pod, sandbox, ctr, containers)
                return False
            if cur.state is ContainerState.RUNNING:
                if sidecar:
                    await self._check_running(pod, sandbox, ctr, cur, containers)
                    continue
                return False
            if cur.exit_code == 0 and not sidecar:
                continue
            if policy == "Never" and not sidecar:
                return False            # the pod has failed: pod_phase says Failed, _finish stops the sandbox
            await self._restart(pod, sandbox, ctr, cur, containers)
            if not sidecar:
                return False
        return True

    async def _sync_app_containers(self, pod: Obj, sandbox: PodSandboxStatus,
                                   containers: list[ContainerStatus]) -> None:
        policy = pod["spec"].get("restartPolicy", "Always")
        for ctr in pod["spec"].get("containers") or []:
            cur = self._current(sandbox, containers, ctr["name"])
            if cur is None:
                # after a sandbox re-creation, a Never/OnFailure container that completed does not run again
                prev = self._current(None, containers, ctr["name"])
                if prev is not None and prev.state is ContainerState.EXITED and not restarts(policy, prev.exit_code):
                    continue
                await self.start_container(pod, sandbox, ctr, containers)
            elif cur.state is ContainerState.CREATED:
                await self._remove_quietly(cur.id)
                await self.start_container(pod, sandbox, ctr, containers)
            elif cur.state is ContainerState.RUNNING:
                await self._check_running(pod, sandbox, ctr, cur, containers)
            elif cur.state is ContainerState.EXITED and restarts(policy, cur.exit_code):
                await self._restart(pod, sandbox, ctr, cur, containers)
            elif cur.state is ContainerState.EXITED:
                self.waiting.pop(ctr["name"], None)

    async def _check_running(self, pod: Obj, sandbox: PodSandboxStatus, ctr: Obj, cur: ContainerStatus,
                             containers: list[ContainerStatus]) -> None:
        """A running container whose spec changed, or whose liveness/startup probe failed, is killed (and
        restarted by the next sync under the restart policy)."""
        self.waiting.pop(ctr["name"], None)
        self.k.probes_track(self, pod, ctr, cur)
        why = ""
        if cur.annotations.get(ANN_HASH) and cur.annotations.get(ANN_HASH) != container_hash(ctr):
            why = f"Container {ctr['name']} definition changed, will be restarted"
        elif self.killed_for.get(cur.id):
            why = self.killed_for[cur.id]
        if why:
            self.k.recorder.event(pod, "Normal", "Killing", why)
            await self._stop_container(pod, ctr, cur, self._grace(pod))
            self.wake()

    async def _restart(self, pod: Obj, sandbox: PodSandboxStatus, ctr: Obj, cur: ContainerStatus,
                       containers: list[ContainerStatus]) -> None:
        """Restart an exited container unless it is in CrashLoopBackOff (10 s doubling to 5 min)."""
        key = f"{self.uid}/{ctr['name']}"
        backoff = self.k.backoff
        finished = cur.finished_at or time.time()
        backoff.seed(key, cur.metadata.attempt, finished)
        if backoff.in_backoff_since(key, finished):
            delay = backoff.get(key)
            message = f"back-off {delay:g}s restarting failed container={ctr['name']} pod={pod_full_name(pod)}"
            if self.waiting.get(ctr["name"], ("",))[0] != "CrashLoopBackOff":
                self.k.recorder.event(pod, "Warning", "BackOff", f"Back-off restarting failed container "
                                      f"{ctr['name']} in pod {pod_full_name(pod)}")
            self.waiting[ctr["name"]] = ("CrashLoopBackOff", message)
            self.wake(backoff.remaining(key, finished) + 0.05)
            return
        backoff.next(key, finished)
        await self.start_container(pod, sandbox, ctr, containers)

    async def start_container(self, pod: Obj, sandbox: PodSandboxStatus, ctr: Obj,
                              containers: list[ContainerStatus]) -> bool:
        """Pull, create, start, postStart: one container attempt. Failures become the container's waiting reason."""
        name = ctr["name"]
        rt = self.k.runtime
        try:
            image = await self.k.images.ensure_image(pod, ctr)
        except ImageError as e:
            self.waiting[name] = (e.reason, e.message)
            self.wake(max(self.k.images.retry_after(pod, ctr), 1.0))
            return False
        attempt = self._next_attempt(containers, name, pod)
        try:
            config = await self.container_config(pod, sandbox, ctr, image, attempt)
        except CreateContainerConfigError as e:
            self.waiting[name] = ("CreateContainerConfigError", str(e))
            self.k.recorder.event(pod, "Warning", "Failed", f"Error: {e}")
            self.wake(2.0)
            return False
        try:
            cid = await rt.create_container(sandbox.id, config, self.sandbox_config(pod, sandbox.metadata.attempt))
        except RuntimeServiceError as e:
            self.waiting[name] = ("CreateContainerError", str(e))
            self.k.recorder.event(pod, "Warning", "Failed", f"Error: {e}")
            self.wake(2.0)
            return False
        self.k.recorder.event(pod, "Normal", "Created", f"Created container {name}")
        try:
            await rt.start_container(cid)
        except RuntimeServiceError as e:
            self.waiting[name] = ("RunContainerError", str(e))
            self.k.recorder.event(pod, "Warning", "Failed", f"Error: {e}")
            self.k.backoff.next(f"{self.uid}/{name}")
            self.wake(1.0)
            return False
        self.waiting.pop(name, None)
        self.k.recorder.event(pod, "Normal", "Started", f"Started container {name}")
        await self._gc_attempts(containers, name, attempt)
        hook = (ctr.get("lifecycle") or {}).get("postStart")
        if hook:
            error = await self.run_hook(pod, ctr, cid, hook, None)
            if error:
                self.k.recorder.event(pod, "Warning", "FailedPostStartHook", error)
                self.killed_for[cid] = f"FailedPostStartHook: {error}"
                try:
                    await rt.stop_container(cid, self._grace(pod))
                except RuntimeServiceError:
                    pass
        return True

    async def _gc_attempts(self, containers: list[ContainerStatus], name: str, attempt: int) -> None:
        """Keep one exited attempt per container name (for `logs --previous`); older ones go."""
        for c in containers:
            if c.metadata.name == name and c.metadata.attempt < attempt - 1 and c.state is ContainerState.EXITED:
                await self._remove_quietly(c.id)

    async def _remove_quietly(self, cid: str) -> None:
        try:
            await self.k.runtime.remove_container(cid)
        except RuntimeServiceError as e:
            log.debug("remove container %s: %s", cid, e)
        self.probed.pop(cid, None)
        self.messages.pop(cid, None)
        self.killed_for.pop(cid, None)

    async def container_config(self, pod: Obj, sandbox: PodSandboxStatus, ctr: Obj, image: str,
                               attempt: int) -> ContainerConfig:
        meta = pod["metadata"]
        name = ctr["name"]
        envs = await self.k.container_env(pod, ctr)
        mounts = list(await self.k.container_mounts(pod, ctr, self.volume_paths, envs))
        tm_path = ctr.get("terminationMessagePath") or "/dev/termination-log"
        tm_host = self.k.termination_log_path(pod, name, attempt)
        await asyncio.to_thread(_touch, tm_host)
        if not any(m.container_path == tm_path for m in mounts):
            mounts.append(Mount(container_path=tm_path, host_path=str(tm_host)))
        log_path = self.k.pod_log_dir(pod) / name / f"{attempt}.log"
        await asyncio.to_thread(log_path.parent.mkdir, parents=True, exist_ok=True)
        labels = {LABEL_POD_NAME: meta["name"], LABEL_POD_NAMESPACE: meta["namespace"], LABEL_POD_UID: meta["uid"],
                  LABEL_CONTAINER_NAME: name}
        annotations = {ANN_HASH: container_hash(ctr), ANN_RESTART_COUNT: str(attempt),
                       ANN_TERMINATION_MESSAGE_PATH: tm_path, ANN_GRACE: str(self._grace(pod)),
                       "kates.io/termination-message-host-path": str(tm_host),
                       "kates.io/termination-message-policy": ctr.get("terminationMessagePolicy", "File")}
        return ContainerConfig(
            metadata=ContainerMetadata(name, attempt), image=image,
            command=tuple(ctr.get("command") or ()), args=tuple(ctr.get("args") or ()),
            working_dir=ctr.get("workingDir", ""), envs=tuple(envs), mounts=tuple(mounts), log_path=str(log_path),
            stdin=bool(ctr.get("stdin")), stdin_once=bool(ctr.get("stdinOnce")), tty=bool(ctr.get("tty")),
            resources=self.k.linux_resources(pod, ctr), security=_security(pod, ctr), labels=labels,
            annotations=annotations)

    # -- hooks -----------------------------------------------------------------------------------------------
    async def run_hook(self, pod: Obj, ctr: Obj | None, cid: str, hook: Obj, timeout: float | None) -> str:
        """Run a postStart/preStop handler (hooks.py); '' on success, else the event message."""
        from .hooks import run_handler
        error = await run_handler(hook, runtime=self.k.runtime, container_id=cid, pod_ip=self.pod_ip or
                                  self.k.node_ip, container=ctr, pod=pod, timeout=timeout)
        return error or ""

    # -- stopping ------------------------------------------------------------------------------------------------
    @staticmethod
    def _grace(pod: Obj) -> int:
        meta = pod["metadata"]
        if meta.get("deletionGracePeriodSeconds") is not None:
            return int(meta["deletionGracePeriodSeconds"])
        value = pod["spec"].get("terminationGracePeriodSeconds")
        return DEFAULT_GRACE if value is None else int(value)

    async def _stop_container(self, pod: Obj, ctr: Obj | None, cs: ContainerStatus, grace: float) -> None:
        """preStop (within the grace period), then StopContainer with what is left of it."""
        started = time.monotonic()
        hook = ((ctr or {}).get("lifecycle") or {}).get("preStop")
        if hook and cs.state is ContainerState.RUNNING and grace > 0:
            try:
                error = await asyncio.wait_for(self.run_hook(pod, ctr, cs.id, hook, grace), grace)
            except asyncio.TimeoutError:
                error = f"PreStop hook for Container {cs.metadata.name} did not complete in {grace}s"
            if error:
                self.k.recorder.event(pod, "Warning", "FailedPreStopHook", error)
        left = max(grace - (time.monotonic() - started), 2.0 if grace > 0 else 0.0)
        try:
            await self.k.runtime.stop_container(cs.id, left)
        except NotFoundError:
            pass

    async def kill_containers(self, pod: Obj, containers: list[ContainerStatus], grace: float) -> None:
        specs = {c["name"]: c for c in (pod["spec"].get("containers") or []) + (pod["spec"].get("initContainers")
                                                                               or [])}
        running = [c for c in containers if c.state in (ContainerState.RUNNING, ContainerState.CREATED)]
        for c in running:
            if c.state is ContainerState.RUNNING:
                self.k.recorder.event(pod, "Normal", "Killing", f"Stopping container {c.metadata.name}")
        await asyncio.gather(*(self._stop_container(pod, specs.get(c.metadata.name), c, grace) for c in running))

    async def _finish(self, pod: Obj, sandboxes: list[PodSandboxStatus]) -> None:
        """A pod in a terminal phase: make sure nothing of it runs any more (its containers stay, for logs)."""
        if not self.finished:
            containers = await self._containers(sandboxes)
            await self.kill_containers(pod, containers, self._grace(pod))
            for s in sandboxes:
                if s.state is SandboxState.READY:
                    await self.k.runtime.stop_pod_sandbox(s.id)
            self.finished = True
            self.k.probes_forget(self)
        await self.write_status(pod, sandboxes)

    async def terminate(self, pod: Obj) -> None:
        """Graceful deletion: stop everything within the grace period, remove it, then confirm the DELETE."""
        meta = pod["metadata"]
        if self._deletion_seen is None:
            self._deletion_seen = time.monotonic()
        grace = self._grace(pod)
        sandboxes = await self._sandboxes()
        containers = await self._containers(sandboxes)
        t0 = time.monotonic()
        await self._kill_shortenable(pod, sandboxes, containers, grace)
        self.k.probes_forget(self)
        t1 = time.monotonic()
        for s in sandboxes:
            await self.k.runtime.stop_pod_sandbox(s.id)
        t2 = time.monotonic()
        if meta.get("finalizers"):
            self.finished = True
            await self.write_status(pod, await self._sandboxes(), final=True)
        for s in sandboxes:
            try:
                await self._remove_sandbox(s.id)
            except RuntimeServiceError as e:
                # Nothing of the pod runs any more: as the kubelet, let the pod go and leave the sandbox to the
                # orphan sweep (a netns the runtime cannot unlink yet must not keep the pod Terminating forever).
                log.info("removing sandbox %s of %s: %s (the orphan sweep retries)", s.id[:12], self.key, e)
        t3 = time.monotonic()
        await self.k.teardown_volumes(pod)
        await self.k.remove_pod_files(pod)
        t4 = time.monotonic()
        log.debug("terminate %s: %.2f s after the deletion was seen; containers %.2f s, sandbox stop %.2f s, "
                  "sandbox removal %.2f s, volumes and files %.2f s", self.key,
                  t0 - self._deletion_seen, t1 - t0, t2 - t1, t3 - t2, t4 - t3)
        try:
            await self.k.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0,
                                       preconditions={"uid": meta["uid"]})
        except errors.NotFound:
            pass
        except errors.Conflict:
            # another pod of that name (ours is gone), or a lost race (retried by the worker)
            try:
                current = await self.k.client.get(PODS, meta["name"], meta["namespace"])
            except errors.NotFound:
                current = None
            if current is not None and current["metadata"]["uid"] == self.uid:
                raise
        self.done.set()

    async def _kill_shortenable(self, pod: Obj, sandboxes: list[PodSandboxStatus], containers: list[ContainerStatus],
                                grace: float) -> None:
        """Kill the containers within `grace`; a newer DELETE with a shorter grace period (or a force delete)
        while they stop cuts it short, as the kubelet's pod workers do."""
        kill = asyncio.create_task(self.kill_containers(pod, containers, grace))
        deadline = time.monotonic() + grace
        try:
            while not kill.done():
                self._wake.clear()
                waker = asyncio.create_task(self._wake.wait())
                await asyncio.wait({kill, waker}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                if kill.done():
                    break
                shorter = 0 if self._deleted or self.pod is None else self._grace(self.pod)
                if time.monotonic() + shorter >= deadline - 0.5:
                    continue
                deadline = time.monotonic() + shorter
                for c in await self._containers(sandboxes):
                    if c.state is ContainerState.RUNNING:
                        task = asyncio.create_task(self._stop_quietly(c.id, shorter))
                        self._side_tasks.add(task)
                        task.add_done_callback(self._side_tasks.discard)
        finally:
            await kill

    async def _stop_quietly(self, cid: str, timeout: float) -> None:
        try:
            await self.k.runtime.stop_container(cid, timeout)
        except RuntimeServiceError as e:
            log.debug("stop container %s: %s", cid, e)

    async def cleanup(self) -> None:
        """The pod is gone from the API (deleted while the agent was away, or force-deleted): remove its traces."""
        sandboxes = await self._sandboxes()
        pod = self.pod
        if pod is not None:
            containers = await self._containers(sandboxes)
            await self.kill_containers(pod, containers, 0 if not pod["metadata"].get("deletionTimestamp")
                                       else min(self._grace(pod), 2))
        self.k.probes_forget(self)
        for s in sandboxes:
            try:
                await self.k.runtime.stop_pod_sandbox(s.id)
            except NotFoundError:
                pass
            await self._remove_sandbox(s.id)
        if pod is not None:
            await self.k.teardown_volumes(pod)
            await self.k.remove_pod_files(pod)
        self.done.set()

    async def _remove_sandbox(self, sid: str) -> None:
        try:
            await self.k.runtime.remove_pod_sandbox(sid)
        except NotFoundError:
            pass
        if sid in self.sandbox_ids:
            self.sandbox_ids.remove(sid)

    # -- status --------------------------------------------------------------------------------------------------
    async def _termination_messages(self, containers: list[ContainerStatus]) -> None:
        for c in containers:
            if c.state is not ContainerState.EXITED or c.id in self.messages:
                continue
            text = ""
            path = c.annotations.get("kates.io/termination-message-host-path")
            if path:
                text = await asyncio.to_thread(_read_tail, Path(path), 4096)
            if not text and c.annotations.get("kates.io/termination-message-policy") == "FallbackToLogsOnError" \
                    and c.exit_code != 0 and c.log_path:
                text = await asyncio.to_thread(_log_tail, Path(c.log_path), 80, 2048)
            self.messages[c.id] = text

    async def write_status(self, pod: Obj, sandboxes: list[PodSandboxStatus], final: bool = False) -> None:
        containers = await self._containers(sandboxes)
        await self._termination_messages(containers)
        sandbox = next((s for s in reversed(sandboxes) if s.state is SandboxState.READY), None) or \
            (sandboxes[-1] if sandboxes else None)
        ready = {cid: p.ready for cid, p in self.probed.items() if p.ready is not None}
        started = {cid: p.started for cid, p in self.probed.items() if p.started is not None}
        specs = {c["name"]: c for c in (pod["spec"].get("containers") or []) +
                 (pod["spec"].get("initContainers") or [])}
        for c in containers:    # probed containers are unready / not started until their probes say otherwise
            spec = specs.get(c.metadata.name) or {}
            if spec.get("readinessProbe"):
                ready.setdefault(c.id, False)
            if spec.get("startupProbe"):
                started.setdefault(c.id, False)
        view = PodRuntimeView(containers=containers, sandbox=sandbox, waiting=dict(self.waiting), ready=ready,
                              started=started, messages=self.messages, id_prefix=self.k.id_prefix)
        status = pod_status(pod, view, self.k.node_ip)
        self.pod_ip = status.get("podIP", "")
        if self.deadline_exceeded and status["phase"] not in TERMINAL_PHASES:
            status["phase"] = "Failed"
            status["reason"] = "DeadlineExceeded"
            status["message"] = "Pod was active on the node longer than the specified deadline"
        if final and status["phase"] not in TERMINAL_PHASES:
            codes = [(s["state"].get("terminated") or {}).get("exitCode", 137) for s in status["containerStatuses"]]
            status["phase"] = "Succeeded" if codes and all(c == 0 for c in codes) else "Failed"
        if status["phase"] in TERMINAL_PHASES and not self.finished:
            self.wake()      # stop the sandbox on the next round (_finish)
        if not status_changed(pod, status):
            return
        meta = pod["metadata"]
        try:
            updated = await self.k.client.patch(PODS, meta["name"], {"status": status}, meta["namespace"],
                                                subresource="status")
        except errors.NotFound:
            return
        if updated and updated.get("metadata", {}).get("uid") == self.uid and self.pod is not None \
                and _rv(updated) >= _rv(self.pod):
            self.pod = updated     # the next sync compares with what was written, not a stale informer copy


def _rv(obj: Obj) -> int:
    """The resourceVersion as a number (kates' are store revisions); 0 when it is not one."""
    value = obj.get("metadata", {}).get("resourceVersion") or "0"
    return int(value) if value.isdigit() else 0


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)
    os.chmod(path, 0o666)


def _read_tail(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
    except OSError:
        return ""
    return data.decode(errors="replace")


def _log_tail(path: Path, lines: int, limit: int) -> str:
    """The last lines of a CRI-format log, text only (FallbackToLogsOnError)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit * 4))
            raw = f.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    out = []
    for line in raw:
        parts = line.split(" ", 3)
        if len(parts) == 4:
            out.append(parts[3] + ("\n" if parts[2] == "F" else ""))
    return "".join(out)[-limit:]

