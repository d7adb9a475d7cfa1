"""`kates images import FILE.tar | ls | rm REF`: the images of this machine's node, without a registry.

It talks to the node's own containerd (the one `kates server`/`kates agent` runs): its socket is
`<data dir>/node/containerd/containerd.sock` for a server data dir, or `<data dir>/containerd/containerd.sock` for an
agent data dir; the agent must be running. `import` takes a docker-archive (`docker save`, `skopeo copy ...
docker-archive:`) or an OCI archive (`skopeo copy ... oci-archive:FILE:NAME`); an OCI archive whose index names
no image needs `--name REPO` (its tags are appended). `ls` and `rm` go through the CRI image service, so they show
exactly what pods can run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tarfile
from pathlib import Path


def node_socket(data_dir: Path) -> Path:
    """The containerd socket of the node whose (server or agent) data dir is `data_dir`."""
    for candidate in (data_dir / "node" / "containerd" / "containerd.sock",
                      data_dir / "containerd" / "containerd.sock"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no containerd socket under {data_dir} (is the node agent running with the cri "
                            f"runtime?)")


def archive_kind(path: Path) -> tuple[str, list[str]]:
    """("docker"|"oci", names in the archive) (blocking)."""
    with tarfile.open(path) as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers()}
        if "manifest.json" in members:
            f = tar.extractfile(members["manifest.json"])
            manifest = json.load(f) if f else []
            return "docker", [t for entry in manifest for t in entry.get("RepoTags") or []]
        if "index.json" in members:
            f = tar.extractfile(members["index.json"])
            index = json.load(f) if f else {}
            names = []
            for m in index.get("manifests", []):
                ann = m.get("annotations") or {}
                names.append(ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name", ""))
            return "oci", [n for n in names if n]
    raise ValueError(f"{path}: neither a docker-archive (manifest.json) nor an OCI archive (index.json)")


def _full_name(name: str) -> bool:
    """An OCI ref.name that is a whole image reference (repo[:tag]), not just a tag."""
    return "/" in name or (":" in name and not name.startswith(":"))


async def _import(socket: Path, path: Path, name: str) -> int:
    from ..runtime.images import ctr_import
    kind, names = await asyncio.to_thread(archive_kind, path)
    base = index = ""
    if kind == "oci" and not names:             # nothing names the image: --name gives it one
        if not name:
            print(f"kates images import: {path} is an OCI archive without image names; give --name IMAGE",
                  file=sys.stderr)
            return 2
        index = name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"
    elif kind == "oci" and not all(_full_name(n) for n in names):   # only tags: --name is the repository
        if not name:
            print(f"kates images import: {path} names only tags ({', '.join(names)}); give --name REPO",
                  file=sys.stderr)
            return 2
        base = name
    out = await ctr_import(str(socket), path, base_name=base, index_name=index)
    for line in out.splitlines():
        if line.startswith("unpacking "):
            print("imported", line.split()[1])
    return 0


async def _ls(socket: Path) -> int:
    from ..runtime.cri import CRIRuntime
    rt = CRIRuntime(str(socket))
    try:
        images = await rt.list_images()
    finally:
        await rt.close()
    rows = [("IMAGE", "ID", "SIZE")]
    for img in sorted(images, key=lambda i: (i.repo_tags or i.repo_digests or ("",))[0]):
        for ref in img.repo_tags or img.repo_digests[:1] or ("<none>",):
            rows.append((ref, img.id.removeprefix("sha256:")[:12], _size(img.size)))
    width = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:<12}  {r[2]}")
    return 0


async def _rm(socket: Path, refs: list[str]) -> int:
    """Remove each reference. CRI RemoveImage drops every tag of the image, so a tag shared with others is only
    untagged (containerd's image delete, as `docker rmi` does)."""
    from ..runtime.cri import CRIRuntime
    from ..runtime.fake import normalize_image
    from ..runtime.interface import RuntimeServiceError
    rt = CRIRuntime(str(socket))
    code = 0
    try:
        for ref in refs:
            image = await rt.image_status(ref)
            if image is None:
                print(f"kates images rm: {ref}: no such image", file=sys.stderr)
                code = 1
                continue
            tag = next((t for t in (ref, normalize_image(ref)) if t in image.repo_tags), "")
            try:
                if tag and len(image.repo_tags) > 1:
                    await _ctr(socket, "images", "rm", tag)
                else:
                    await rt.remove_image(ref)
                print("removed", tag or ref)
            except (RuntimeServiceError, RuntimeError) as e:
                print(f"kates images rm: {ref}: {e}", file=sys.stderr)
                code = 1
    finally:
        await rt.close()
    return code


async def _ctr(socket: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec("ctr", "--address", str(socket), "-n", "k8s.io", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(out.decode(errors="replace").strip())
    return out.decode(errors="replace")


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return str(n)


def main(argv: list[str], data_dir: Path) -> int:
    """`kates images ...`; `data_dir` is the server's (or the agent's) data dir."""
    p = argparse.ArgumentParser(prog="kates images", description="images of this machine's node")
    sub = p.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="import a docker-archive or OCI archive")
    imp.add_argument("file", type=Path)
    imp.add_argument("--name", default="", help="image name for an OCI archive that names none (or only tags: "
                                                "then the repository)")
    sub.add_parser("ls", help="list images")
    rm = sub.add_parser("rm", help="remove images")
    rm.add_argument("refs", nargs="+")
    args = p.parse_args(argv)
    try:
        socket = node_socket(Path(data_dir))
    except FileNotFoundError as e:
        print(f"kates images: {e}", file=sys.stderr)
        return 1
    try:
        if args.cmd == "import":
            if not args.file.exists():
                print(f"kates images import: {args.file}: no such file", file=sys.stderr)
                return 1
            return asyncio.run(_import(socket, args.file, args.name))
        if args.cmd == "ls":
            return asyncio.run(_ls(socket))
        return asyncio.run(_rm(socket, args.refs))
    except (RuntimeError, ValueError, OSError) as e:
        print(f"kates images: {e}", file=sys.stderr)
        return 1
