"""Pod volumes written for real: files, symlinks, tmpfs and bind mounts in a temporary pods dir, sources from a real
API server. Every mount a test makes is unmounted by the manager's teardown (checked)."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import stat
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import jwt
import pytest

from kates.client.rest import Client, resource
from kates.kubelet.volumes import MountError, VolumeManager, _mountinfo, atomic_write
from kates.runtime.interface import Mount
from nodeutil import BUSYBOX
from test_envvars import cri_exec

CONFIGMAPS = resource("configmaps")
SECRETS = resource("secrets")
PODS = resource("pods")
SERVICEACCOUNTS = resource("serviceaccounts")
PVS = resource("persistentvolumes")
PVCS = resource("persistentvolumeclaims")

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="tmpfs and bind mounts need root")


@pytest.fixture
async def client(server: Any) -> AsyncIterator[Client]:
    c = Client.from_kubeconfig(server.kubeconfig, user_agent="test-volumes")
    yield c
    await c.close()


@pytest.fixture
async def manager(client: Client, tmp_path: Path) -> AsyncIterator[VolumeManager]:
    m = VolumeManager(client, pods_dir=tmp_path / "pods", node_name="vol-node", node_ip="192.0.2.2",
                      node_allocatable={"cpu": "2", "memory": "4Gi"})
    yield m
    for uid_dir in (tmp_path / "pods").glob("*"):
        await m.teardown(uid_dir.name)
    assert not [p for p in _mountinfo() if p.startswith(str(tmp_path))], "mounts left behind"


def make_pod(ns: str, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]] | None = None,
             **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "vp", "namespace": ns, "uid": str(uuid.uuid4()), "labels": {"app": "v"}, **meta},
            "spec": {"nodeName": "vol-node", "volumes": volumes, "containers": [
                {"name": "c", "image": "x", "volumeMounts": mounts or [],
                 "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}]}}


def tree(d: Path) -> dict[str, str]:
    """What a container sees: user-visible names (through the symlinks) and their text."""
    out = {}
    for dirpath, dirs, files in os.walk(d, followlinks=True):
        rel = Path(dirpath).relative_to(d)
        if any(part.startswith("..") for part in rel.parts):
            continue
        dirs[:] = [x for x in dirs if not x.startswith("..")]
        for f in files:
            if not f.startswith(".."):
                out[str(rel / f) if str(rel) != "." else f] = (Path(dirpath) / f).read_text()
    return out


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


async def test_atomic_writer_layout_and_swap(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert atomic_write(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert os.readlink(target / "..data").startswith("..")
    assert os.readlink(target / "a") == "..data/a" and os.readlink(target / "dir") == "..data/dir"
    assert tree(target) == {"a": "1", "dir/b": "2"} and mode(target / "dir" / "b") == 0o600
    first = os.readlink(target / "..data")
    assert not atomic_write(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})      # unchanged: nothing written
    assert atomic_write(target, {"a": (b"one", 0o644), "c": (b"3", 0o644)})
    assert tree(target) == {"a": "one", "c": "3"}
    assert not (target / first).exists() and not (target / "dir").is_symlink()
    assert sorted(p.name for p in target.iterdir() if p.name.startswith("..")) == sorted(
        ["..data", os.readlink(target / "..data")])
    with pytest.raises(MountError):
        atomic_write(target, {"../escape": (b"x", 0o644)})


@root_only
async def test_kinds_set_up_mounted_refreshed_torn_down(client: Client, ns: str, manager: VolumeManager,
                                                       tmp_path: Path) -> None:
    await client.create(CONFIGMAPS, {"metadata": {"name": "cfg"}, "data": {"greeting": "hello", "other": "o"},
                                     "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()}}, ns)
    await client.create(SECRETS, {"metadata": {"name": "sec"}, "data": {
        "token": base64.b64encode(b"t0ps3cret").decode()}}, ns)
    host_dir = tmp_path / "host" / "made"
    volumes = [
        {"name": "work", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "cfg-items", "configMap": {"name": "cfg", "defaultMode": 0o600,
                                            "items": [{"key": "greeting", "path": "sub/hi.txt", "mode": 0o640}]}},
        {"name": "secret", "secret": {"secretName": "sec"}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "mem_mi", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                                    "divisor": "1Mi"}}]}},
        {"name": "host", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
        {"name": "opt", "configMap": {"name": "absent", "optional": True}},
    ]
    pod = make_pod(ns, volumes)
    uid = pod["metadata"]["uid"]
    paths = await manager.setup(pod)
    base = tmp_path / "pods" / uid / "volumes"
    assert paths["work"] == str(base / "kubernetes.io~empty-dir" / "work") and mode(Path(paths["work"])) == 0o777
    assert paths["cfg"] == str(base / "kubernetes.io~configmap" / "cfg")
    assert paths["secret"] == str(base / "kubernetes.io~secret" / "secret")
    assert paths["host"] == str(host_dir) and host_dir.is_dir()
    assert tree(Path(paths["cfg"])) == {"greeting": "hello", "other": "o", "blob": "\x00\x01"}
    assert mode(Path(paths["cfg"]) / "greeting") == 0o644
    assert tree(Path(paths["cfg-items"])) == {"sub/hi.txt": "hello"}
    assert mode(Path(paths["cfg-items"]) / "sub" / "hi.txt") == 0o640
    assert tree(Path(paths["secret"])) == {"token": "t0ps3cret"}
    assert tree(Path(paths["info"])) == {"labels": 'app="v"', "name": "vp", "mem_mi": "64"}
    assert tree(Path(paths["opt"])) == {}
    mounts = _mountinfo()
    assert paths["secret"] in mounts and paths["mem"] in mounts and paths["cfg"] not in mounts
    st = os.statvfs(paths["mem"])
    assert st.f_blocks * st.f_frsize == 8 << 20

    # a "container" sees the volume through a bind mount, as containerd gives it; updates reach it
    seen = tmp_path / "container-view"
    seen.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", paths["cfg"], str(seen)], check=True)
    try:
        held = open(seen / "greeting")        # a reader holding the old file keeps reading the old content
        cm = await client.get(CONFIGMAPS, "cfg", ns)
        cm["data"] = {"greeting": "bonjour", "added": "new"}
        await client.update(CONFIGMAPS, cm)
        pod["metadata"]["labels"] = {"app": "v", "rev": "2"}
        await manager.refresh(pod)
        assert tree(seen) == {"greeting": "bonjour", "added": "new", "blob": "\x00\x01"}
        assert held.read() == "hello"
        held.close()
        assert tree(Path(paths["info"]))["labels"] == 'app="v"\nrev="2"'
        # a source that disappears leaves the last contents in place
        await client.delete(CONFIGMAPS, "cfg", ns)
        await manager.refresh(pod)
        assert tree(seen)["greeting"] == "bonjour"
    finally:
        subprocess.run(["umount", str(seen)], check=True)

    await manager.teardown(uid)
    assert not (tmp_path / "pods" / uid / "volumes").exists()
    assert not [p for p in _mountinfo() if p.startswith(str(tmp_path))]
    assert host_dir.is_dir()      # hostPath data is the node's, never removed


@root_only
async def test_fs_group_owns_the_volumes(client: Client, ns: str, manager: VolumeManager) -> None:
    await client.create(SECRETS, {"metadata": {"name": "sec"}, "data": {"k": base64.b64encode(b"v").decode()}}, ns)
    pod = make_pod(ns, [{"name": "work", "emptyDir": {}},
                        {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}}])
    pod["spec"]["securityContext"] = {"fsGroup": 1234}
    paths = await manager.setup(pod)
    work = os.stat(paths["work"])
    assert work.st_gid == 1234 and stat.S_IMODE(work.st_mode) == 0o2777
    secret_file = Path(paths["sec"]) / "k"
    assert os.stat(secret_file).st_gid == 1234 and mode(secret_file) == 0o440
    version = os.readlink(Path(paths["sec"]) / "..data")
    await manager.refresh(pod)
    assert os.readlink(Path(paths["sec"]) / "..data") == version      # unchanged: not rewritten


async def test_watch_loop_refreshes_on_change(client: Client, ns: str, manager: VolumeManager) -> None:
    await client.create(CONFIGMAPS, {"metadata": {"name": "live"}, "data": {"v": "1"}}, ns)
    await client.create(SECRETS, {"metadata": {"name": "live-s"}, "data": {"v": base64.b64encode(b"a").decode()}}, ns)
    pod = make_pod(ns, [{"name": "c", "configMap": {"name": "live"}},
                        {"name": "p", "projected": {"sources": [{"secret": {"name": "live-s"}}]}}])
    paths = await manager.setup(pod)
    loop = asyncio.create_task(manager.watch_loop())
    try:
        deadline = time.monotonic() + 5
        while len(manager._informers) < 2 or not all(i.has_synced for i in manager._informers.values()):
            assert time.monotonic() < deadline, "the watches did not sync"
            await asyncio.sleep(0.02)
        cm = await client.get(CONFIGMAPS, "live", ns)
        cm["data"] = {"v": "2"}
        await client.update(CONFIGMAPS, cm)
        secret = await client.get(SECRETS, "live-s", ns)
        secret["data"] = {"v": base64.b64encode(b"b").decode()}
        await client.update(SECRETS, secret)
        deadline = time.monotonic() + 5
        while tree(Path(paths["c"])) != {"v": "2"} or tree(Path(paths["p"])) != {"v": "b"}:
            assert time.monotonic() < deadline, "a watched change did not reach the volume"
            await asyncio.sleep(0.05)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_failures_carry_the_failed_mount_message(client: Client, ns: str, manager: VolumeManager,
                                                       tmp_path: Path) -> None:
    await client.create(CONFIGMAPS, {"metadata": {"name": "have"}, "data": {"k": "v"}}, ns)
    (tmp_path / "a-file").write_text("x")
    sock_path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        cases = [
            ({"name": "x", "configMap": {"name": "y"}}, 'configmap "y" not found'),
            ({"name": "x", "secret": {"secretName": "y"}}, 'secret "y" not found'),
            ({"name": "x", "configMap": {"name": "have", "items": [{"key": "nope", "path": "p"}]}},
             "configmap references non-existent config key: nope"),
            ({"name": "x", "hostPath": {"path": str(tmp_path / "missing"), "type": "Directory"}},
             f"hostPath type check failed: {tmp_path / 'missing'} is not a directory"),
            ({"name": "x", "hostPath": {"path": str(tmp_path / "a-file"), "type": "Directory"}},
             f"hostPath type check failed: {tmp_path / 'a-file'} is not a directory"),
            ({"name": "x", "hostPath": {"path": str(tmp_path), "type": "File"}},
             f"hostPath type check failed: {tmp_path} is not a file"),
            ({"name": "x", "hostPath": {"path": str(tmp_path / "a-file"), "type": "Socket"}},
             f"hostPath type check failed: {tmp_path / 'a-file'} is not a socket file"),
            ({"name": "x", "persistentVolumeClaim": {"claimName": "nope"}}, 'persistentvolumeclaim "nope" not found'),
        ]
        for vol, message in cases:
            with pytest.raises(MountError) as e:
                await manager.setup(make_pod(ns, [vol]))
            assert str(e.value) == f'MountVolume.SetUp failed for volume "x" : {message}'
        ok = await manager.setup(make_pod(ns, [
            {"name": "s", "hostPath": {"path": str(sock_path), "type": "Socket"}},
            {"name": "f", "hostPath": {"path": str(tmp_path / "new-file"), "type": "FileOrCreate"}}]))
        assert ok["s"] == str(sock_path) and (tmp_path / "new-file").is_file()
    finally:
        sock.close()


async def test_container_mounts(client: Client, ns: str, manager: VolumeManager, tmp_path: Path) -> None:
    await client.create(CONFIGMAPS, {"metadata": {"name": "cfg"}, "data": {"app.conf": "x=1"}}, ns)
    pvc_dir = tmp_path / "pv-data"
    pvc_dir.mkdir()
    pv_name = "pv-" + uuid.uuid4().hex[:6]
    await client.create(PVS, {"metadata": {"name": pv_name}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": str(pvc_dir)}}})
    pvc = await client.create(PVCS, {"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": pv_name}}, ns)
    pod = make_pod(ns, [{"name": "work", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}])
    with pytest.raises(MountError, match="non-bound phase"):
        await manager.setup(pod)
    pvc["status"] = {"phase": "Bound"}
    await client.update_status(PVCS, pvc)
    try:
        paths = await manager.setup(pod)
        assert paths["data"] == str(pvc_dir)
        ctr = {"name": "c", "volumeMounts": [
            {"name": "work", "mountPath": "/work"},
            {"name": "work", "mountPath": "/logs", "subPathExpr": "logs/$(POD_NAME)", "mountPropagation":
             "HostToContainer"},
            {"name": "cfg", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
            {"name": "data", "mountPath": "/data", "readOnly": True}]}
        mounts = manager.mounts_for(pod, ctr, paths, env=[("POD_NAME", "vp")])
        work = paths["work"]
        assert mounts[0] == Mount("/work", work, False, "PROPAGATION_PRIVATE")
        assert mounts[1] == Mount("/logs", os.path.join(work, "logs", "vp"), False, "PROPAGATION_HOST_TO_CONTAINER")
        assert os.path.isdir(os.path.join(work, "logs", "vp"))
        # configMap volumes are always read-only; a subPath is resolved to the real file
        assert mounts[2].readonly and Path(mounts[2].host_path).read_text() == "x=1"
        assert ".." in mounts[2].host_path and not os.path.islink(mounts[2].host_path)
        assert mounts[3] == Mount("/data", str(pvc_dir), True, "PROPAGATION_PRIVATE")

        os.symlink("/etc", os.path.join(work, "escape"))
        for bad in ({"subPath": "escape"}, {"subPath": "../x"}, {"subPath": "/abs"}):
            with pytest.raises(MountError):
                manager.mounts_for(pod, {"name": "c", "volumeMounts": [{"name": "work", "mountPath": "/m", **bad}]},
                                   paths)
        with pytest.raises(MountError, match='cannot find volume "nope"'):
            manager.mounts_for(pod, {"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/m"}]}, paths)
    finally:
        await client.delete(PVS, pv_name)


async def test_projected_service_account_token_and_ca(client: Client, ns: str, manager: VolumeManager,
                                                      server: Any) -> None:
    """The kube-api-access volume ServiceAccount admission adds: a bound token, the CA, the namespace."""
    await client.create(SERVICEACCOUNTS, {"metadata": {"name": "robot"}}, ns)
    ca = client.connection.ca_data or "-----BEGIN CERTIFICATE-----\n"
    await client.create(CONFIGMAPS, {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca}}, ns)
    api_pod = await client.create(PODS, {"metadata": {"name": "tokened"}, "spec": {
        "serviceAccountName": "robot", "containers": [{"name": "c", "image": "x"}]}}, ns)
    volume = {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                      "fieldPath": "metadata.namespace"}}]}}]}}
    pod = {**api_pod, "spec": {**api_pod["spec"], "volumes": [volume]}}
    paths = await manager.setup(pod)
    files = tree(Path(paths["kube-api-access-abcde"]))
    assert files["ca.crt"] == ca and files["namespace"] == ns
    claims = jwt.decode(files["token"], options={"verify_signature": False})
    assert claims["sub"] == f"system:serviceaccount:{ns}:robot"
    assert claims["kubernetes.io"]["pod"]["uid"] == api_pod["metadata"]["uid"]
    # the token authenticates: a pod can call the API as its ServiceAccount
    from kates.client.rest import Connection
    as_pod = Client(Connection(client.connection.server, client.connection.ssl_context, token=files["token"]))
    try:
        got = await as_pod.get(PODS, "tokened", ns)
        assert got["metadata"]["uid"] == api_pod["metadata"]["uid"]
    finally:
        await as_pod.close()
    # refresh keeps a fresh token (no new request); missing accounts fail clearly
    await manager.refresh(pod)
    assert tree(Path(paths["kube-api-access-abcde"]))["token"] == files["token"]
    orphan = {**pod, "metadata": {**pod["metadata"], "uid": str(uuid.uuid4())},
              "spec": {**pod["spec"], "serviceAccountName": "ghost"}}
    with pytest.raises(MountError, match='volume "kube-api-access-abcde" : failed to fetch token'):
        await manager.setup(orphan)
    await asyncio.sleep(0)


# -- on a real node ------------------------------------------------------------------------------------------------


@pytest.mark.node
async def test_volumes_in_a_real_container(node_kubectl: Any, node_ns: str, node_cri: Any) -> None:
    k, ns = node_kubectl, node_ns
    k.run("create", "configmap", "cfg", "--from-literal=greeting=hello", "-n", ns)
    k.run("create", "secret", "generic", "sec", "--from-literal=token=t0ps3cret", "-n", ns)
    k.apply(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vols", "namespace": ns,
                                                                        "labels": {"app": "vols"}},
                        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                            "name": "main", "image": BUSYBOX, "command": ["sleep", "3600"],
                            "volumeMounts": [
                                {"name": "cfg", "mountPath": "/cfg"},
                                {"name": "cfg", "mountPath": "/etc/greeting", "subPath": "greeting"},
                                {"name": "sec", "mountPath": "/sec"},
                                {"name": "mem", "mountPath": "/mem"},
                                {"name": "work", "mountPath": "/work"},
                                {"name": "info", "mountPath": "/info"}]}],
                            "volumes": [
                                {"name": "cfg", "configMap": {"name": "cfg"}},
                                {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
                                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                                {"name": "work", "emptyDir": {}},
                                {"name": "info", "downwardAPI": {"items": [
                                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}}))
    k.run("wait", "--for=condition=Ready", "pod/vols", "-n", ns, "--timeout=60s")

    def sh(cmd: str) -> Any:
        return cri_exec(node_cri, ns, "vols", "sh", "-c", cmd)
    assert await sh("cat /cfg/greeting /etc/greeting /sec/token") == "hellohellot0ps3cret"
    assert await sh("cat /info/labels") == 'app="vols"'
    assert (await sh("stat -c %a /sec/..data/token")).strip() == "400"
    mounts = {line.split()[1]: line.split() for line in (await sh("cat /proc/mounts")).splitlines()}
    assert mounts["/sec"][2] == "tmpfs" and mounts["/mem"][2] == "tmpfs" and "size=16384k" in mounts["/mem"][3]
    assert mounts["/cfg"][3].startswith("ro") and mounts["/work"][3].startswith("rw")
    assert (await sh("touch /cfg/x 2>&1; echo $?")).strip().endswith("1")
    assert await sh("echo data > /work/f && cat /work/f") == "data\n"
    # the ServiceAccount admission's kube-api-access volume: a bound token, the CA and the namespace
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert await sh(f"cat {sa}/namespace") == ns
    assert (await sh(f"cat {sa}/token")).count(".") == 2
    assert "BEGIN CERTIFICATE" in await sh(f"cat {sa}/ca.crt")

    # updates reach the running container (the kubelet refreshes every ~10 s); subPath mounts keep their file
    k.run("patch", "configmap", "cfg", "-n", ns, "-p", '{"data": {"greeting": "bonjour"}}')
    k.run("label", "pod", "vols", "-n", ns, "rev=2")
    deadline = time.monotonic() + 40
    while (g := await sh("cat /cfg/greeting")) != "bonjour":
        assert time.monotonic() < deadline, f"configMap update did not reach the pod: {g!r}"
        await asyncio.sleep(1)
    assert await sh("cat /etc/greeting") == "hello"
    assert await sh("cat /info/labels") == 'app="vols"\nrev="2"'
