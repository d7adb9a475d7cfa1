"""The two local images every kates node has without a registry: `localhost/busybox:latest` and `localhost/pause:3.9`.

No registry on the internet is reachable from these machines, so the images the acceptance scenarios run (busybox)
and the sandbox image containerd needs (pause) are built here, in pure Python, as docker-archive tarballs:

- busybox: `/bin/busybox` from Debian's busybox-static, one symlink per applet (`busybox --list-full`), /tmp, /root,
  /etc/passwd and /etc/group with root and nobody, default CMD `sh`;
- pause: Debian's catatonit copied to /pause, ENTRYPOINT `/pause -P` (catatonit's pause mode: reaps, sleeps).

Archives are deterministic (fixed mtimes, sorted entries), cached under `<data dir>/images/`, and imported with
`ctr -n k8s.io images import` only when the CRI's ImageStatus says they are missing, so a node start costs two
ImageStatus calls once the images are there.

Who imports: the node agent, at start (`open_runtime("cri")`), not `make setup`. A node's containerd, its data dir
and its image store exist only once the agent runs (each test cluster has its own), and the first import costs
~0.3 s; `make setup` installs the Debian packages the images are built from.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Awaitable, Callable

BUSYBOX_IMAGE = "localhost/busybox:latest"
PAUSE_IMAGE = "localhost/pause:3.9"
BUSYBOX_BINARY = "/bin/busybox"
CATATONIT_BINARY = "/usr/bin/catatonit"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\nnobody:x:65534:\n"


class _Layer:
    """An uncompressed, reproducible layer tar built in memory."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.seen: set[str] = set()

    def _info(self, name: str, type_: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = type_
        info.mode = mode
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def dir(self, name: str, mode: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            path = "/".join(parts[:i])
            if path and path not in self.seen:
                self.seen.add(path)
                self.tar.addfile(self._info(path, tarfile.DIRTYPE, mode if i == len(parts) else 0o755))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        self.dir(os.path.dirname(name)) if "/" in name else None
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.seen.add(name)
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        if name in self.seen:
            return
        self.dir(os.path.dirname(name)) if "/" in name else None
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.seen.add(name)
        self.tar.addfile(info)

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def _docker_archive(ref: str, layer: bytes, config: dict[str, object]) -> bytes:
    """A docker-archive (`docker save` layout) holding one single-layer image tagged `ref`."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    image_config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": config, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "kates/runtime/images.py"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.split(":", 1)[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((config_name, config_bytes), (layer_name, layer), ("manifest.json", manifest)):
            if "/" in name:
                d = tarfile.TarInfo(name.split("/")[0])
                d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 0
                tar.addfile(d)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def build_busybox(busybox: str = BUSYBOX_BINARY) -> bytes:
    """docker-archive bytes of `localhost/busybox:latest`."""
    applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout.split()
    layer = _Layer()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "root", "etc", "proc", "sys", "dev", "var/www", "home"):
        layer.dir(d, 0o700 if d == "root" else 0o755)
    layer.dir("tmp", 0o1777)
    layer.dir("var/tmp", 0o1777)
    layer.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    for applet in sorted(applets):
        if applet != "bin/busybox":
            layer.symlink(applet, "/bin/busybox")
    layer.file("etc/passwd", PASSWD.encode())
    layer.file("etc/group", GROUP.encode())
    return _docker_archive(BUSYBOX_IMAGE, layer.bytes(), {"Env": [PATH_ENV], "Cmd": ["sh"]})


def build_pause(catatonit: str = CATATONIT_BINARY) -> bytes:
    """docker-archive bytes of `localhost/pause:3.9` (catatonit in pause mode)."""
    layer = _Layer()
    layer.file("pause", Path(catatonit).read_bytes(), 0o755)
    return _docker_archive(PAUSE_IMAGE, layer.bytes(), {"Env": [PATH_ENV], "Entrypoint": ["/pause", "-P"]})


BUILDERS: dict[str, Callable[[], bytes]] = {BUSYBOX_IMAGE: build_busybox, PAUSE_IMAGE: build_pause}


def archive_path(cache_dir: Path, ref: str) -> Path:
    return cache_dir / (ref.replace("/", "_").replace(":", "_") + ".tar")


def ensure_archive(cache_dir: Path, ref: str) -> Path:
    """The cached archive of a local image, built when absent (blocking: call through to_thread)."""
    path = archive_path(cache_dir, ref)
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(BUILDERS[ref]())
        tmp.replace(path)
    return path


async def ctr_import(socket: str, archive: Path, base_name: str = "", index_name: str = "") -> str:
    """`ctr -n k8s.io images import` a docker-archive or OCI archive; returns ctr's output.

    `base_name` prefixes the tags (ref.name annotations) of an OCI archive; `index_name` names the image of an
    OCI archive that carries no names at all."""
    ctr = shutil.which("ctr") or "/usr/bin/ctr"
    args = [ctr, "--address", socket, "-n", "k8s.io", "images", "import"]
    if base_name:
        args += ["--base-name", base_name]
    if index_name:
        args += ["--index-name", index_name]
    args.append(str(archive))
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"ctr images import {archive} failed: {text.strip()}")
    return text


async def ensure_local_images(socket: str, cache_dir: Path,
                              image_present: Callable[[str], Awaitable[bool]]) -> list[str]:
    """Import busybox and pause into the containerd at `socket` unless `image_present(ref)` says they are there.

    Returns the refs imported (empty on every start after the first)."""
    imported = []
    for ref in (PAUSE_IMAGE, BUSYBOX_IMAGE):
        if await image_present(ref):
            continue
        path = await asyncio.to_thread(ensure_archive, cache_dir, ref)
        await ctr_import(socket, path)
        imported.append(ref)
    return imported
