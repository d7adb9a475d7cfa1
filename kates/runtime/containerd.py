"""A containerd that kates starts, configures and supervises itself, one per node, everything under the data dir.

As k3s does, the node agent owns its containerd: `<data dir>/containerd/` holds config.toml, root, state, the gRPC
socket and containerd.log, so several nodes (test clusters) run side by side on one machine without sharing
anything: each runtime handler keeps its state root under the data dir too (runc's default
/run/containerd/runc/k8s.io would be shared), and CNI config and IPAM state are per node (see cni.py).

Settings that matter on these machines (../shared/docs/runtime-on-these-machines.md):
- `restrict_oom_score_adj = true`: root here lacks CAP_SYS_RESOURCE; without it runc fails to start the pause
  container ("can't get final child's PID from pipe: EOF").
- crun is the default handler when the hugetlb v1 hierarchy is mounted (crun refuses the hybrid cgroup layout
  without it; we mount it when absent, which also makes ContainerStats work); runc otherwise. Both handlers are
  configured, so a RuntimeClass can name either.
- the sandbox image is the locally built `localhost/pause:3.9`; 127.0.0.1:5000 is mirrored over plain http.
- the CRI streaming server (exec, attach, port-forward URLs) listens on 127.0.0.1, ephemeral port.

containerd runs as a child with PR_SET_PDEATHSIG (it dies with the agent; container shims do not, so containers
survive both an agent restart and a containerd restart), is restarted with back-off when it dies, and is ready once
its socket exists and answers the CRI Version call.

containerd leaves each pod's cgroup directory behind when the pod's sandbox is removed; `remove_pod_cgroups` deletes
it (the CRI runtime calls it from `remove_pod_sandbox`, see cri.py).
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import cni
from .images import PAUSE_IMAGE

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_SOCKET_PATH = 100    # sun_path is 108 bytes; containerd adds ".ttrpc"


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def ensure_hugetlb_mount() -> bool:
    """Mount the hugetlb v1 hierarchy when the kernel lists the controller but nothing mounts it (blocking).

    True when crun can run here: pure cgroup v2, or v1/hybrid with hugetlb mounted (which also makes
    ContainerStats work)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return True                       # pure cgroup v2: crun's home ground, nothing to mount
    target = CGROUP_ROOT / "hugetlb"
    if os.path.ismount(target):
        return True
    try:
        with open("/proc/cgroups") as f:
            listed = any(line.split()[0] == "hugetlb" for line in f if line.strip() and not line.startswith("#"))
    except OSError:
        listed = False
    if not listed:
        return True                       # no hugetlb controller in this kernel: crun has nothing to miss
    try:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(target)],
                       check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # read-only /sys, no privileges: runc it is
        return os.path.ismount(target)
    return True


def remove_pod_cgroups(cgroup_parent: str) -> int:
    """Remove a pod's cgroup directory (and empty children) in every v1 hierarchy and the unified one (blocking).

    Only empty cgroups can be removed; returns how many directories were removed."""
    rel = cgroup_parent.strip("/")
    if not rel or ".." in rel.split("/"):
        return 0
    removed = 0
    try:
        hierarchies = [p for p in CGROUP_ROOT.iterdir() if p.is_dir()]
    except OSError:
        return 0
    for hierarchy in hierarchies + [CGROUP_ROOT]:
        top = hierarchy / rel
        if not top.is_dir() or hierarchy == CGROUP_ROOT and not (CGROUP_ROOT / "cgroup.controllers").exists():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
                removed += 1
            except OSError:
                pass
    return removed


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class Containerd:
    """One node's containerd: config, child process, supervision."""

    def __init__(self, data_dir: Path, *, binary: str = "", runtime: str = "auto",
                 registry_mirrors: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.dir = self.data_dir / "containerd"
        self.socket = str(self.dir / "containerd.sock")
        self.config_path = self.dir / "config.toml"
        self.log_path = self.dir / "containerd.log"
        self.binary = binary or shutil.which("containerd") or "/usr/bin/containerd"
        self.runtime = runtime           # "auto" (crun when usable), "crun" or "runc"
        self.default_handler = "runc"
        self.registry_mirrors = {"127.0.0.1:5000": "http://127.0.0.1:5000", **(registry_mirrors or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = asyncio.Event()
        if len(self.socket) > MAX_SOCKET_PATH:
            raise ValueError(f"containerd socket path too long for a unix socket ({len(self.socket)} > "
                             f"{MAX_SOCKET_PATH}): {self.socket}; use a shorter data dir")

    @property
    def address(self) -> str:
        """gRPC target for the CRI client."""
        return "unix://" + self.socket

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def config_toml(self) -> str:
        """containerd 1.6 config (version 2) for this node."""
        d = self.dir
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        crun = shutil.which("crun") or "/usr/bin/crun"
        runc = shutil.which("runc") or "/usr/sbin/runc"
        lines = [
            "version = 2",
            f'root = "{d / "root"}"',
            f'state = "{d / "state"}"',
            "oom_score = 0",
            "",
            "[grpc]",
            f'  address = "{self.socket}"',
            "",
            "[debug]",
            '  level = "warn"',
            "",
            f"[{cri}]",
            "  restrict_oom_score_adj = true",
            f'  sandbox_image = "{PAUSE_IMAGE}"',
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            "  enable_tls_streaming = false",
            "  disable_tcp_service = true",
            "  tolerate_missing_hugetlb_controller = true",
            "  disable_hugetlb_controller = true",
            "  max_container_log_line_size = 16384",
            "",
            f"[{cri}.cni]",
            f'  bin_dir = "{cni.CNI_BIN_DIR}"',
            f'  conf_dir = "{cni.conf_dir(self.data_dir)}"',
            "  max_conf_num = 1",
            "",
            f"[{cri}.containerd]",
            f'  default_runtime_name = "{self.default_handler}"',
            '  snapshotter = "overlayfs"',
            "",
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.runc.options]",
            f'  BinaryName = "{runc}"',
            f'  Root = "{d / "runc"}"',
            "",
            f"[{cri}.containerd.runtimes.crun]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.crun.options]",
            f'  BinaryName = "{crun}"',
            f'  Root = "{d / "crun"}"',
            "",
        ]
        for host, endpoint in self.registry_mirrors.items():
            lines += [f'[{cri}.registry.mirrors."{host}"]', f'  endpoint = ["{endpoint}"]', ""]
        return "\n".join(lines)

    def prepare(self) -> None:
        """Pick the default handler, write config.toml and create the directories (blocking)."""
        crun_ok = bool(shutil.which("crun")) and ensure_hugetlb_mount()
        if self.runtime == "crun" or (self.runtime == "auto" and crun_ok):
            self.default_handler = "crun"
        else:
            self.default_handler = "runc"
        for sub in ("root", "state", "runc", "crun"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        cni.conf_dir(self.data_dir).mkdir(parents=True, exist_ok=True)
        text = self.config_toml()
        try:
            same = self.config_path.read_text() == text
        except FileNotFoundError:
            same = False
        if not same:
            self.config_path.write_text(text)

    @property
    def pid_path(self) -> Path:
        return self.dir / "containerd.pid"

    def _previous_pid(self) -> int | None:
        """The pid of a containerd still running on this data dir (its agent died and it has not yet exited)."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if str(self.config_path).encode() in cmdline else None

    async def _stop_previous(self, timeout: float = 10.0) -> None:
        """A containerd left from a previous agent holds the metadata lock: stop it (containers survive)."""
        pid = await asyncio.to_thread(self._previous_pid)
        if pid is None:
            return
        log.warning("stopping containerd %s left running on %s", pid, self.dir)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)

    async def start(self, timeout: float = 20.0) -> None:
        """Start containerd and supervise it; returns once it answers on its socket."""
        await asyncio.to_thread(self.prepare)
        await self._stop_previous()
        self._stopping = False
        self._ready.clear()
        await self._spawn()
        try:
            await self.wait_ready(timeout)       # fails fast, with containerd's log, if it exits at once
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._supervise(), name="containerd-supervisor")

    async def _spawn(self) -> None:
        try:
            os.unlink(self.socket)       # a stale socket file would make wait_ready succeed too early
        except FileNotFoundError:
            pass
        logf = open(self.log_path, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.binary, "--config", str(self.config_path), stdin=asyncio.subprocess.DEVNULL,
                stdout=logf, stderr=logf, preexec_fn=_die_with_parent)
        finally:
            logf.close()
        self.pid_path.write_text(f"{self.proc.pid}\n")
        log.info("containerd started (pid %s, handler %s, socket %s)", self.proc.pid, self.default_handler,
                 self.socket)

    async def _supervise(self) -> None:
        backoff = 0.2
        while not self._stopping:
            assert self.proc is not None
            started = time.monotonic()
            code = await self.proc.wait()
            if self._stopping:
                return
            self._ready.clear()
            if time.monotonic() - started > 30:
                backoff = 0.2
            log.warning("containerd exited with %s; restarting in %.1fs (log: %s)", code, backoff, self.log_path)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            if self._stopping:
                return
            self.restarts += 1
            try:
                await self._spawn()
            except OSError as e:
                log.error("cannot restart containerd: %s", e)

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for the socket file, then for a CRI Version answer (a gRPC channel opened before the socket
        exists backs off ~1 s before retrying, so the file comes first)."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket):
            if self.proc is not None and self.proc.returncode is not None and self._task is None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"containerd socket {self.socket} did not appear: {self._log_tail()}")
            await asyncio.sleep(0.02)
        from .cri import api_pb2, api_pb2_grpc, grpc     # cri.py sets grpc's environment before loading it
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = api_pb2_grpc.RuntimeServiceStub(channel)
            while True:
                try:
                    await stub.Version(api_pb2.VersionRequest(), timeout=max(0.5, deadline - time.monotonic()))
                    break
                except grpc.aio.AioRpcError as e:
                    if self.proc is not None and self.proc.returncode is not None and self._task is None:
                        raise RuntimeError(f"containerd exited with {self.proc.returncode}: {self._log_tail()}")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"containerd did not answer: {e.details()}; {self._log_tail()}") from e
                    await asyncio.sleep(0.05)
        self._ready.set()

    def _log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of containerd itself and of all its shims together (one per pod, ~13 MB each), for the
        node's benchmarks and status (blocking: reads /proc)."""
        out = {"containerd": 0, "shims": 0, "shim_count": 0}
        pid = self.pid
        if pid is not None:
            out["containerd"] = _rss(pid)
        needle = f"-address\0{self.socket}\0".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline.split(b"\0", 1)[0] and needle in cmdline + b"\0":
                out["shims"] += _rss(int(entry))
                out["shim_count"] += 1
        return out

    async def kill(self) -> None:
        """SIGKILL containerd (tests: the supervisor restarts it)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop supervising and stop containerd; containers keep running in their shims."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
