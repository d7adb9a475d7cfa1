"""Pod volumes on the node: set up before the containers start, kept current, torn down after the pod.

Each volume lives where the kubelet puts it, `pods/<uid>/volumes/kubernetes.io~<kind>/<name>`, and containers
get bind mounts of those directories (`mounts_for`):
- emptyDir: a directory on disk; `medium: Memory` is a tmpfs of `sizeLimit` (else the pod's memory limit).
- hostPath: the node's path itself, after the `type` check (DirectoryOrCreate and FileOrCreate create it).
- configMap, secret, downwardAPI, projected: files written as the kubelet's AtomicWriter writes them: the data in
  a timestamped `..<time>` directory, a `..data` symlink to it, and one symlink per top-level name through `..data`,
  so an update is one rename and a running container sees either the old or the new set, never a mix. Secret and
  projected volumes are tmpfs (secrets never touch the disk) when the agent may mount, i.e. runs as root.
  `refresh(pod)` rewrites them when their sources changed; the kubelet core calls it periodically, and
  `watch_loop()` (optional) watches configMaps and secrets to refresh the pods using one as soon as it changes.
- projected serviceAccountToken: a bound token from the API server's serviceaccounts/{name}/token (TokenRequest,
  bound to the pod), renewed after 80% of its lifetime as the kubelet's token manager does.
- persistentVolumeClaim: the bound PersistentVolume's hostPath or local path.
With a pod `securityContext.fsGroup`, emptyDir and the written volumes belong to that group (group read, and write
for emptyDir; setgid directories), as SetVolumeOwnership does.
Errors are MountError with the kubelet's FailedMount message (`MountVolume.SetUp failed for volume "x" : ...`).
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import datetime
import functools
import logging
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from ..api import errors
from ..client.rest import resource
from ..runtime.interface import Mount
from . import envvars

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Payload = dict[str, tuple[bytes, int]]      # relative path → (content, mode)

CONFIGMAPS = resource("configmaps")
SECRETS = resource("secrets")
SERVICEACCOUNTS = resource("serviceaccounts")
PVCS = resource("persistentvolumeclaims")
PVS = resource("persistentvolumes")
NODES = resource("nodes")

DEFAULT_MODE = 0o644
DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"
TOKEN_DEFAULT_EXPIRATION = 3600
TOKEN_REFRESH_FRACTION = 0.8

PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}
ALWAYS_READ_ONLY = ("configMap", "secret", "downwardAPI", "projected")
PROPAGATION = {
    None: "PROPAGATION_PRIVATE", "None": "PROPAGATION_PRIVATE",
    "HostToContainer": "PROPAGATION_HOST_TO_CONTAINER", "Bidirectional": "PROPAGATION_BIDIRECTIONAL",
}


class MountError(Exception):
    """A volume cannot be set up (yet); the message is the FailedMount event's."""


def volume_kind(volume: Obj) -> str:
    for kind in ("emptyDir", "hostPath", "configMap", "secret", "downwardAPI", "projected", "persistentVolumeClaim"):
        if volume.get(kind) is not None:
            return kind
    others = [k for k in volume if k != "name"]
    return others[0] if others else "unknown"


# -- mounts --------------------------------------------------------------------------------------------------------


def _mountinfo() -> list[str]:
    """Mount points of this mount namespace (unescaped)."""
    points = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                p = line.split()[4]
                points.append(p.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
                              .replace("\\134", "\\"))
    except OSError:
        pass
    return points


def is_mount_point(path: Path) -> bool:
    return str(path) in _mountinfo()


MNT_DETACH = 2


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount_tmpfs_sync(path: str, opts: str) -> None:
    # the mount(2) syscall directly: a `mount` process per pod would cost more than the rest of the volume setup
    if _libc().mount(b"tmpfs", path.encode(), b"tmpfs", 0, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise MountError(f"mount tmpfs at {path} failed: {os.strerror(err)}")


def _unmount_sync(path: str) -> None:
    if _libc().umount2(path.encode(), 0) != 0 and _libc().umount2(path.encode(), MNT_DETACH) != 0:
        log.warning("cannot unmount %s: %s", path, os.strerror(ctypes.get_errno()))


async def mount_tmpfs(path: Path, size: int = 0) -> None:
    opts = "mode=0755" + (f",size={size}" if size else "")
    await asyncio.to_thread(_mount_tmpfs_sync, str(path), opts)


def _unmount_under_sync(root: str) -> None:
    prefix = root.rstrip("/") + "/"
    for p in sorted({p for p in _mountinfo() if p == root or p.startswith(prefix)}, key=len, reverse=True):
        _unmount_sync(p)


async def unmount_under(root: Path) -> None:
    """Unmount everything at or below `root`, deepest first (lazily if busy)."""
    await asyncio.to_thread(_unmount_under_sync, str(root))


# -- AtomicWriter --------------------------------------------------------------------------------------------------


def _check_payload_path(path: str) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or path.startswith(".."):
        raise MountError(f"invalid path {path!r}: must be relative and must not contain '..'")


def _read_current(target: Path) -> Payload | None:
    data = target / DATA_DIR
    if not data.is_symlink():
        return None
    current: Payload = {}
    base = target / os.readlink(data)
    for dirpath, _, files in os.walk(base):
        for f in files:
            full = Path(dirpath) / f
            st = full.lstat()
            current[str(full.relative_to(base))] = (full.read_bytes(), stat.S_IMODE(st.st_mode))
    return current


def set_ownership(path: Path, fs_group: int, readonly: bool) -> None:
    """SetVolumeOwnership (volume_linux.go): everything below `path` gets group `fs_group` and group read (and write
    unless read-only) permission; directories also the setgid bit, so new files inherit the group."""
    _own(str(path), fs_group, readonly)
    for dirpath, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            _own(os.path.join(dirpath, name), fs_group, readonly)


def _own(p: str, fs_group: int, readonly: bool) -> None:
    os.lchown(p, -1, fs_group)
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode):
        return
    mask = 0o440 if readonly else 0o660
    if stat.S_ISDIR(st.st_mode):
        mask |= stat.S_ISGID | 0o110
    os.chmod(p, stat.S_IMODE(st.st_mode) | mask)


def _same(current: Payload | None, payload: Payload, fs_group: int | None) -> bool:
    """Whether the files on disk are the payload (with an fsGroup, modes on disk also carry group read)."""
    if current is None or current.keys() != payload.keys():
        return False
    for rel, (content, mode) in payload.items():
        want = mode | 0o440 if fs_group is not None else mode
        if current[rel] != (content, want):
            return False
    return True


def atomic_write(target: Path, payload: Payload, fs_group: int | None = None) -> bool:
    """Make `target` hold exactly `payload`, switching versions with one rename of `..data`; False when it already
    did. With `fs_group` the files get its ownership before they become visible. Blocking: call it in a thread."""
    for p in payload:
        _check_payload_path(p)
    target.mkdir(parents=True, exist_ok=True)
    top = {p.split("/", 1)[0] for p in payload}
    current = _read_current(target)
    if _same(current, payload, fs_group) and all((target / t).is_symlink() for t in top):
        return False
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.") + str(time.time_ns() % 10**9)
    new = target / stamp
    n = 0
    while new.exists():
        n += 1
        new = target / f"{stamp}{n}"
    new.mkdir(mode=0o755)
    for rel, (content, mode) in payload.items():
        f = new / rel
        f.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        f.write_bytes(content)
        os.chmod(f, mode)
    if fs_group is not None:
        _own(str(target), fs_group, readonly=True)
        set_ownership(new, fs_group, readonly=True)
    tmp = target / DATA_DIR_TMP
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(new.name, tmp)
    os.rename(tmp, target / DATA_DIR)
    for t in top:
        link = target / t
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            os.symlink(f"{DATA_DIR}/{t}", link)
    for entry in target.iterdir():
        name = entry.name
        if name.startswith(".."):
            if name not in (DATA_DIR, new.name) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)     # the previous version
        elif name not in top and entry.is_symlink() and os.readlink(entry).startswith(DATA_DIR + "/"):
            entry.unlink()
    return True


# -- hostPath --------------------------------------------------------------------------------------------------


def check_host_path(path: str, kind: str) -> None:
    """The hostPath `type` check (host_path.go checkType); creates the path for the ...OrCreate types."""
    p = Path(path)
    if kind == "DirectoryOrCreate":
        if not p.exists():
            p.mkdir(mode=0o755, parents=True)
            return
        kind = "Directory"
    if kind == "FileOrCreate":
        if not p.exists():
            try:
                p.touch(mode=0o644)
            except OSError as e:
                raise MountError(f"hostPath type check failed: {path} cannot be created: {e}") from None
            return
        kind = "File"
    checks: dict[str, tuple[Callable[[int], bool], str]] = {
        "Directory": (stat.S_ISDIR, "is not a directory"),
        "File": (stat.S_ISREG, "is not a file"),
        "Socket": (stat.S_ISSOCK, "is not a socket file"),
        "CharDevice": (stat.S_ISCHR, "is not a character device"),
        "BlockDevice": (stat.S_ISBLK, "is not a block device"),
    }
    if not kind:
        return
    if kind not in checks:
        raise MountError(f"hostPath type check failed: {kind} is not a valid type")
    test, msg = checks[kind]
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise MountError(f"hostPath type check failed: {path} {msg}") from None
    if not test(mode):
        raise MountError(f"hostPath type check failed: {path} {msg}")


# -- the manager ---------------------------------------------------------------------------------------------------


def _b64(data: Mapping[str, str]) -> dict[str, bytes]:
    import base64
    return {k: base64.b64decode(v) for k, v in (data or {}).items()}


class VolumeManager:
    """Volumes of the pods on one node. Stateless across agent restarts: what is on disk is the state."""

    def __init__(self, client: Any, *, pods_dir: Path, node_name: str, node_ip: str = "",
                 node_allocatable: Mapping[str, Any] | None = None, use_tmpfs: bool | None = None) -> None:
        self.client = client
        self.pods_dir = Path(pods_dir)
        self.node_name = node_name
        self.node_ip = node_ip
        self.node_allocatable = node_allocatable
        self.use_tmpfs = (os.geteuid() == 0) if use_tmpfs is None else use_tmpfs
        self._tokens: dict[tuple[str, str, str, int], tuple[str, float, float]] = {}   # → (token, got, expiry)
        self._warned_no_tmpfs = False
        self._pods: dict[str, Obj] = {}             # uid → the latest pod object whose volumes are set up
        self._informers: dict[str, Any] = {}        # while watch_loop runs: "configmaps"/"secrets" → Informer
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    def volume_dir(self, pod_uid: str, volume: Obj) -> Path:
        return self.pods_dir / pod_uid / "volumes" / PLUGIN_DIRS[volume_kind(volume)] / volume["name"]

    # -- setup ---------------------------------------------------------------------------------------------------
    async def setup(self, pod: Obj) -> dict[str, str]:
        """Set up every volume of the pod; volume name → host path. Raises MountError for the first that fails."""
        paths: dict[str, str] = {}
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            try:
                paths[vol["name"]] = await self._setup_one(pod, vol)
            except MountError as e:
                raise MountError(f'MountVolume.SetUp failed for volume "{vol["name"]}" : {e}') from None
        self._pods[pod["metadata"]["uid"]] = pod
        return paths

    async def refresh(self, pod: Obj) -> None:
        """Rewrite configMap, secret, downwardAPI and projected volumes whose sources changed (renewing tokens near
        their expiry). A source that vanished leaves the last contents in place, as in the kubelet."""
        uid = pod["metadata"]["uid"]
        if uid in self._pods:
            self._pods[uid] = pod
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            kind = volume_kind(vol)
            if kind not in ALWAYS_READ_ONLY:
                continue
            target = self.volume_dir(uid, vol)
            if not (target / DATA_DIR).is_symlink():
                continue        # not set up (yet): setup() writes it
            try:
                payload = await self._payload(pod, vol, kind)
                if await asyncio.to_thread(atomic_write, target, payload, fs_group(pod)):
                    log.info("updated volume %s of pod %s/%s", vol["name"], pod["metadata"].get("namespace"),
                             pod["metadata"]["name"])
            except (MountError, errors.APIError) as e:
                log.warning("cannot refresh volume %s of pod %s: %s", vol["name"], pod["metadata"]["name"], e)

    async def teardown(self, pod_uid: str) -> None:
        """Unmount and remove the pod's volumes (hostPath and persistent volumes' data stays)."""
        root = self.pods_dir / pod_uid / "volumes"
        await unmount_under(root)
        await asyncio.to_thread(shutil.rmtree, root, True)
        for key in [k for k in self._tokens if k[0] == pod_uid]:
            del self._tokens[key]
        self._pods.pop(pod_uid, None)
        self._dirty.discard(pod_uid)

    # -- watching sources ----------------------------------------------------------------------------------------
    async def watch_loop(self) -> None:
        """Optional, runs until cancelled: watch configMaps and secrets, refresh at once the volumes of the pods that
        use one that changed (the kubelet's periodic refresh stays the safety net), and serve reads from the watch
        cache instead of a GET per volume per refresh."""
        from ..client.informer import Informer
        self._informers = {"configmaps": Informer(self.client, CONFIGMAPS), "secrets": Informer(self.client, SECRETS)}
        for kind, informer in self._informers.items():
            informer.add_handler(
                on_add=lambda obj, kind=kind, inf=informer: inf.has_synced and self._changed(kind, obj),
                on_update=lambda old, new, kind=kind: self._changed(kind, new),
                on_delete=lambda obj, kind=kind: self._changed(kind, obj))
            informer.start()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                dirty, self._dirty = self._dirty, set()
                for uid in dirty:
                    pod = self._pods.get(uid)
                    if pod is not None:
                        await self.refresh(pod)
        finally:
            informers, self._informers = self._informers, {}
            for informer in informers.values():
                await informer.stop()

    def _changed(self, kind: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        for uid, pod in self._pods.items():
            if pod["metadata"].get("namespace") == ns and name in referenced(pod, kind):
                self._dirty.add(uid)
                self._wake.set()

    async def _get(self, rt: Any, name: str, namespace: str) -> Obj:
        """From the watch cache when watch_loop runs (falling back to the API for what it has not seen yet)."""
        informer = self._informers.get(rt.resource)
        if informer is not None and informer.has_synced:
            obj = informer.store.get(f"{namespace}/{name}")
            if obj is not None:
                return obj
        return await self.client.get(rt, name, namespace)

    async def _setup_one(self, pod: Obj, vol: Obj) -> str:
        kind = volume_kind(vol)
        uid = pod["metadata"]["uid"]
        if kind == "hostPath":
            hp = vol["hostPath"]
            await asyncio.to_thread(check_host_path, hp.get("path", ""), hp.get("type") or "")
            return hp.get("path", "")
        if kind == "persistentVolumeClaim":
            return await self._pvc_path(pod, vol["persistentVolumeClaim"])
        if kind not in PLUGIN_DIRS:
            raise MountError(f"volume kind {kind} is not supported by this node")
        target = self.volume_dir(uid, vol)
        await asyncio.to_thread(target.mkdir, 0o755, True, True)
        if kind == "emptyDir":
            ed = vol["emptyDir"] or {}
            if ed.get("medium") == "Memory":
                await self._tmpfs(target, self._memory_size(pod, ed.get("sizeLimit")))
            os.chmod(target, 0o777)     # emptyDirs are world-writable, as in Kubernetes
            if fs_group(pod) is not None:
                await asyncio.to_thread(set_ownership, target, fs_group(pod), False)
            return str(target)
        if kind in ("secret", "projected"):
            await self._tmpfs(target, 0)
        payload = await self._payload(pod, vol, kind)
        await asyncio.to_thread(atomic_write, target, payload, fs_group(pod))
        return str(target)

    async def _tmpfs(self, target: Path, size: int) -> None:
        if not self.use_tmpfs:
            if not self._warned_no_tmpfs:
                log.warning("not root: memory-backed volumes (secrets, emptyDir medium Memory) are kept on disk")
                self._warned_no_tmpfs = True
            return
        if not await asyncio.to_thread(is_mount_point, target):
            await mount_tmpfs(target, size)

    def _memory_size(self, pod: Obj, size_limit: Any) -> int:
        from .resources import value
        if size_limit:
            return value(size_limit)
        limits = [((c.get("resources") or {}).get("limits") or {}).get("memory")
                  for c in (pod.get("spec") or {}).get("containers") or []]
        if limits and all(limits):
            return sum(value(m) for m in limits)
        return 0

    async def _pvc_path(self, pod: Obj, src: Obj) -> str:
        ns = pod["metadata"].get("namespace", "default")
        name = src.get("claimName", "")
        try:
            pvc = await self.client.get(PVCS, name, ns)
        except errors.NotFound:
            raise MountError(f'persistentvolumeclaim "{name}" not found') from None
        phase = (pvc.get("status") or {}).get("phase", "")
        pv_name = (pvc.get("spec") or {}).get("volumeName", "")
        if phase != "Bound" or not pv_name:
            raise MountError(f'PVC {ns}/{name} has non-bound phase ("{phase}") or empty pvc.Spec.VolumeName '
                             f'("{pv_name}")')
        try:
            pv = await self.client.get(PVS, pv_name)
        except errors.NotFound:
            raise MountError(f'persistentvolume "{pv_name}" not found') from None
        spec = pv.get("spec") or {}
        if spec.get("hostPath"):
            await asyncio.to_thread(check_host_path, spec["hostPath"].get("path", ""),
                                    spec["hostPath"].get("type") or "")
            return spec["hostPath"]["path"]
        if spec.get("local"):
            path = spec["local"].get("path", "")
            if not await asyncio.to_thread(os.path.isdir, path):
                raise MountError(f"path {path} does not exist")
            return path
        raise MountError(f"persistent volume {pv_name} has no hostPath or local source this node can mount")

    # -- payloads ------------------------------------------------------------------------------------------------
    async def _payload(self, pod: Obj, vol: Obj, kind: str) -> Payload:
        if kind == "configMap":
            src = vol["configMap"]
            return await self._configmap_files(pod, src, src.get("defaultMode", DEFAULT_MODE))
        if kind == "secret":
            src = vol["secret"]
            return await self._secret_files(pod, src, src.get("defaultMode", DEFAULT_MODE), name_key="secretName")
        if kind == "downwardAPI":
            src = vol["downwardAPI"]
            return await self._downward_files(pod, src.get("items") or [], src.get("defaultMode", DEFAULT_MODE))
        if kind == "projected":
            return await self._projected_files(pod, vol["projected"])
        return {}

    async def _configmap_files(self, pod: Obj, src: Obj, mode: int) -> Payload:
        name = src.get("name", "")
        try:
            cm = await self._get(CONFIGMAPS, name, pod["metadata"].get("namespace", "default"))
        except errors.NotFound:
            if src.get("optional"):
                return {}
            raise MountError(f'configmap "{name}" not found') from None
        data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        data.update(_b64(cm.get("binaryData") or {}))
        return _project(data, src.get("items"), mode, bool(src.get("optional")), "configmap references non-existent "
                        "config key")

    async def _secret_files(self, pod: Obj, src: Obj, mode: int, name_key: str = "name") -> Payload:
        name = src.get(name_key, "")
        try:
            secret = await self._get(SECRETS, name, pod["metadata"].get("namespace", "default"))
        except errors.NotFound:
            if src.get("optional"):
                return {}
            raise MountError(f'secret "{name}" not found') from None
        return _project(_b64(secret.get("data") or {}), src.get("items"), mode, bool(src.get("optional")),
                        "references non-existent secret key")

    async def _allocatable(self) -> Mapping[str, Any]:
        if self.node_allocatable is None:
            try:
                node = await self.client.get(NODES, self.node_name)
                self.node_allocatable = (node.get("status") or {}).get("allocatable") or {}
            except errors.APIError:
                return {}
        return self.node_allocatable

    async def _downward_files(self, pod: Obj, items: list[Obj], mode: int) -> Payload:
        payload: Payload = {}
        spec = pod.get("spec") or {}
        for item in items:
            try:
                if item.get("fieldRef"):
                    text = envvars.field_value(pod, item["fieldRef"].get("fieldPath", ""), node_ip=self.node_ip)
                elif item.get("resourceFieldRef"):
                    sel = item["resourceFieldRef"]
                    container = next((c for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
                                      if c.get("name") == sel.get("containerName")), None)
                    if container is None:
                        raise MountError(f"container {sel.get('containerName')!r} not found in the pod")
                    text = envvars.resource_value(sel, container, await self._allocatable())
                else:
                    continue
            except envvars.CreateContainerConfigError as e:
                raise MountError(str(e)) from None
            payload[item["path"]] = (text.encode(), item.get("mode", mode))
        return payload

    async def _projected_files(self, pod: Obj, projected: Obj) -> Payload:
        mode = projected.get("defaultMode", DEFAULT_MODE)
        payload: Payload = {}
        for source in projected.get("sources") or []:
            if source.get("configMap") is not None:
                payload.update(await self._configmap_files(pod, source["configMap"], mode))
            elif source.get("secret") is not None:
                payload.update(await self._secret_files(pod, source["secret"], mode))
            elif source.get("downwardAPI") is not None:
                payload.update(await self._downward_files(pod, source["downwardAPI"].get("items") or [], mode))
            elif source.get("serviceAccountToken") is not None:
                sat = source["serviceAccountToken"]
                payload[sat.get("path", "token")] = ((await self._token(pod, sat)).encode(), mode)
            else:
                raise MountError(f"projected volume source {next(iter(source), '?')} is not supported")
        return payload

    async def _token(self, pod: Obj, sat: Obj) -> str:
        """A bound ServiceAccount token, cached until 80% of its lifetime (or 24 h) has passed."""
        meta = pod["metadata"]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        audience = sat.get("audience") or ""
        expiration = int(sat.get("expirationSeconds") or TOKEN_DEFAULT_EXPIRATION)
        key = (meta["uid"], sa, audience, expiration)
        now = time.time()
        cached = self._tokens.get(key)
        if cached is not None:
            token, got, expiry = cached
            if now < got + min((expiry - got) * TOKEN_REFRESH_FRACTION, 24 * 3600):
                return token
        spec: Obj = {"expirationSeconds": expiration,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}
        if audience:
            spec["audiences"] = [audience]      # none: the API server's own audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            resp = await self.client.create(SERVICEACCOUNTS, body, meta.get("namespace", "default"),
                                            subresource="token", name=sa)
        except errors.NotFound as e:
            raise MountError(f"failed to fetch token: {e} (the API server must serve serviceaccounts/{{name}}/token "
                             f"and ServiceAccount {sa!r} must exist)") from None
        except errors.APIError as e:
            raise MountError(f"failed to fetch token: {e}") from None
        status = (resp or {}).get("status") or {}
        token = status.get("token")
        if not token:
            raise MountError("failed to fetch token: the TokenRequest answer carries no token")
        expiry = now + expiration
        stamp = status.get("expirationTimestamp")
        if stamp:
            try:
                expiry = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
            except ValueError:
                pass
        self._tokens[key] = (token, now, expiry)
        return token

    # -- container mounts --------------------------------------------------------------------------------------
    def mounts_for(self, pod: Obj, container: Obj, paths: Mapping[str, str], *,
                   env: list[tuple[str, str]] | tuple[tuple[str, str], ...] = ()) -> tuple[Mount, ...]:
        """The container's bind mounts of the pod's volumes. `env` (the container's environment) expands
        subPathExpr; a subPath that does not exist yet is created as a directory, as the kubelet does."""
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        mounts = []
        env_map = dict(env)
        for vm in container.get("volumeMounts") or []:
            name = vm.get("name", "")
            if name not in paths or name not in volumes:
                raise MountError(f'cannot find volume "{name}" to mount into container "{container.get("name")}"')
            vol = volumes[name]
            kind = volume_kind(vol)
            host = paths[name]
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                sub = envvars.expand(vm["subPathExpr"], envvars.mapping_for(env_map))
            if sub:
                host = self._sub_path(host, sub, create=kind not in ALWAYS_READ_ONLY)
            readonly = bool(vm.get("readOnly")) or kind in ALWAYS_READ_ONLY or (
                kind == "persistentVolumeClaim" and bool(vol["persistentVolumeClaim"].get("readOnly")))
            mounts.append(Mount(container_path=vm.get("mountPath", ""), host_path=host, readonly=readonly,
                                propagation=PROPAGATION.get(vm.get("mountPropagation"), "PROPAGATION_PRIVATE")))
        return tuple(mounts)

    @staticmethod
    def _sub_path(volume_path: str, sub: str, *, create: bool) -> str:
        if sub.startswith("/") or ".." in sub.split("/"):
            raise MountError(f"subPath {sub!r} must be a relative path without '..'")
        base = os.path.realpath(volume_path)
        full = os.path.join(volume_path, sub)
        if not os.path.lexists(full) and create:
            os.makedirs(full, mode=0o755 if not os.path.isdir(base) else stat.S_IMODE(os.stat(base).st_mode),
                        exist_ok=True)
        real = os.path.realpath(full)
        if real != base and not real.startswith(base.rstrip("/") + "/"):
            raise MountError(f"subPath {sub!r} resolves to {real}, outside the volume")
        return real


def referenced(pod: Obj, kind: str) -> set[str]:
    """Names of the configMaps (kind "configmaps") or secrets ("secrets") the pod's volumes read."""
    names: set[str] = set()
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        if kind == "configmaps" and vol.get("configMap"):
            names.add(vol["configMap"].get("name", ""))
        elif kind == "secrets" and vol.get("secret"):
            names.add(vol["secret"].get("secretName", ""))
        for src in (vol.get("projected") or {}).get("sources") or []:
            if kind == "configmaps" and src.get("configMap"):
                names.add(src["configMap"].get("name", ""))
            elif kind == "secrets" and src.get("secret"):
                names.add(src["secret"].get("name", ""))
    return names


def fs_group(pod: Obj) -> int | None:
    """The pod's securityContext.fsGroup: the group that owns its volumes."""
    value = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    return int(value) if value is not None else None


def _project(data: dict[str, bytes], items: list[Obj] | None, mode: int, optional: bool, missing: str) -> Payload:
    """MakePayload of the configMap and secret plugins: every key, or the listed items with their paths and modes."""
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    payload: Payload = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise MountError(f"{missing}: {key}")
        payload[item.get("path") or key] = (data[key], item.get("mode", mode))
    return payload
