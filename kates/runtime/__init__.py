"""Container runtimes for the node agent, built by name.

- `cri`: a CRI v1 gRPC client (cri.py). Without an endpoint, kates starts and supervises its own containerd under
  `<data dir>/containerd/` (containerd.py) and imports the two local images (images.py) when they are missing; with
  `endpoint` (e.g. CRI-O's socket) it only connects.
- `process`: containers as plain host processes, no isolation (process.py), for machines without root or containerd.
- `fake`: nothing runs (fake.py), the hollow nodes' runtime.
- `auto`: `cri` when running as root with containerd installed, else `process`; it prints which it picked.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .interface import Runtime

KINDS = ("auto", "cri", "process", "fake")


def cri_available() -> bool:
    """Root, containerd and runc (or crun) installed: the `cri` runtime can run here."""
    return (os.geteuid() == 0 and shutil.which("containerd") is not None
            and (shutil.which("runc") is not None or shutil.which("crun") is not None))


async def open_runtime(kind: str, *, data_dir: Path, endpoint: str = "") -> Runtime:
    """Build and start the runtime `kind` for a node whose agent data dir is `data_dir`."""
    data_dir = Path(data_dir)
    if kind == "auto":
        kind = "cri" if endpoint or cri_available() else "process"
        print(f"kates: container runtime {kind}"
              + ("" if kind == "cri" else " (no root or no containerd: containers are host processes, not isolated)"),
              file=sys.stderr, flush=True)
    if kind == "fake":
        from .fake import FakeRuntime
        return FakeRuntime()  # type: ignore[return-value]
    if kind == "process":
        from .process import ProcessRuntime  # type: ignore[import-not-found]
        return ProcessRuntime(data_dir)  # type: ignore[no-any-return]
    if kind != "cri":
        raise ValueError(f"unknown runtime {kind!r}; one of {', '.join(KINDS)}")
    from .cri import CRIRuntime
    if endpoint:
        runtime = CRIRuntime(endpoint)
        await runtime.version()
        return runtime  # type: ignore[return-value]
    from . import images
    from .containerd import Containerd
    containerd = Containerd(data_dir)
    await containerd.start()
    runtime = CRIRuntime(containerd.address, data_dir=data_dir, containerd=containerd)
    try:
        async def present(ref: str) -> bool:
            return await runtime.image_status(ref) is not None
        await images.ensure_local_images(containerd.socket, data_dir / "images", present)
    except BaseException:
        await runtime.close()
        raise
    return runtime  # type: ignore[return-value]
