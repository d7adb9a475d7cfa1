"""A real containerd per test module, started by kates under a short temporary data dir, with its own pod CIDR
(10.244.N.0/24, random N), bridge and cgroup parent, so parallel test runs never collide."""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import AsyncIterator

import pytest
import pytest_asyncio

from kates.runtime import cri_available
from kates.runtime.interface import (ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus,
                                     PodSandboxConfig, PodSandboxMetadata)

BUSYBOX = "localhost/busybox:latest"

class Node:
    """One test node: the CRI runtime over its own containerd, and helpers to run pods on it."""

    def __init__(self, runtime, data_dir: Path, pod_cidr: str) -> None:
        self.rt = runtime
        self.data_dir = data_dir
        self.pod_cidr = pod_cidr
        self.n = 0

    async def pod(self, name: str = "", **kw) -> tuple[str, PodSandboxConfig]:
        self.n += 1
        name = name or f"pod{self.n}"
        uid = f"uid-{name}-{self.n}-{os.getpid()}"
        config = PodSandboxConfig(PodSandboxMetadata(name, "default", uid), hostname=name,
                                  log_directory=str(self.data_dir / "logs" / "pods" / f"default_{name}_{uid}"),
                                  labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "default",
                                          "io.kubernetes.pod.uid": uid}, **kw)
        return await self.rt.run_pod_sandbox(config), config

    async def container(self, sandbox: tuple[str, PodSandboxConfig], name: str, command: list[str],
                        start: bool = True, **kw) -> str:
        sandbox_id, config = sandbox
        log_path = str(Path(config.log_directory) / name / "0.log")
        cid = await self.rt.create_container(sandbox_id, ContainerConfig(
            ContainerMetadata(name), BUSYBOX, command=tuple(command), log_path=log_path,
            labels={"io.kubernetes.container.name": name}, **kw), config)
        if start:
            await self.rt.start_container(cid)
        return cid

    async def wait_exited(self, cid: str, timeout: float = 10) -> ContainerStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = await self.rt.container_status(cid)
            if status.state is ContainerState.EXITED:
                return status
            assert time.monotonic() < deadline, f"container still {status.state}"
            await asyncio.sleep(0.05)

    async def cleanup(self) -> None:
        for s in await self.rt.list_pod_sandbox():
            await self.rt.stop_pod_sandbox(s.id)
            await self.rt.remove_pod_sandbox(s.id)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node() -> AsyncIterator[Node]:
    if not cri_available():
        pytest.skip("needs root and containerd")
    from kates.runtime import cni, open_runtime
    from kates.runtime.containerd import remove_pod_cgroups
    data_dir = Path(tempfile.mkdtemp(prefix="kt", dir="/tmp"))
    pod_cidr = f"10.244.{random.randint(100, 250)}.0/24"
    runtime = await open_runtime("cri", data_dir=data_dir)
    clean = False
    try:
        await runtime.update_runtime_config(pod_cidr)
        n = Node(runtime, data_dir, pod_cidr)
        yield n
        await runtime.containerd.wait_ready(10)
        await n.cleanup()
        clean = True
    finally:
        await runtime.close()
        if clean:     # never delete containerd's state while it still has containers (they would leak)
            await cni.delete_bridge(data_dir)
            await asyncio.to_thread(remove_pod_cgroups, f"/kates/{cni.bridge_name(data_dir)}")
            await asyncio.to_thread(shutil.rmtree, data_dir, True)
