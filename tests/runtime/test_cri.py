"""The CRI runtime against a real containerd that kates starts: sandboxes, containers, logs, exit reasons, OOM,
graceful stop, exec, port-forward, images, events, and a containerd restart under running containers."""
from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from pathlib import Path

import pytest

from kates.runtime.interface import (ContainerConfig, ContainerEventType, ContainerMetadata, ContainerState,
                                     ImagePullError, LinuxResources, NotFoundError, SandboxState, SecurityContext)

from kates.runtime import cri_available

pytestmark = [pytest.mark.skipif(not cri_available(), reason="needs root and containerd (make setup installs it)"),
              pytest.mark.asyncio(loop_scope="module")]

CRI_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) (stdout|stderr) (F|P) (.*)$")


async def test_sandbox_gets_ip_from_pod_cidr_and_hostname(node):
    sandbox = await node.pod("web-1")
    status = await node.rt.pod_sandbox_status(sandbox[0])
    assert status.state is SandboxState.READY
    assert ipaddress.ip_address(status.ip) in ipaddress.ip_network(node.pod_cidr)
    assert status.metadata.name == "web-1" and status.labels["io.kubernetes.pod.name"] == "web-1"
    cid = await node.container(sandbox, "main", ["sleep", "60"])
    code, out, _ = await node.rt.exec_sync(cid, ["hostname"], 5)
    assert (code, out.strip()) == (0, b"web-1")
    code, out, _ = await node.rt.exec_sync(cid, ["sh", "-c", "ip -4 addr show eth0"], 5)
    assert status.ip in out.decode()
    listed = {s.id: s for s in await node.rt.list_pod_sandbox()}
    assert listed[sandbox[0]].ip == status.ip
    rss = await asyncio.to_thread(node.rt.containerd.rss_bytes)
    assert rss["containerd"] > 0 and rss["shim_count"] >= 1 and rss["shims"] > 0


async def test_logs_in_cri_format_exit_codes_and_reasons(node):
    sandbox = await node.pod()
    ok = await node.container(sandbox, "ok", ["sh", "-c", "echo out-line; echo err-line >&2"])
    bad = await node.container(sandbox, "bad", ["sh", "-c", "exit 3"])
    done = await node.wait_exited(ok)
    assert (done.exit_code, done.reason) == (0, "Completed")
    assert done.finished_at >= done.started_at >= done.created_at > 0
    failed = await node.wait_exited(bad)
    assert (failed.exit_code, failed.reason) == (3, "Error")
    lines = Path(done.log_path).read_text().splitlines()
    assert done.log_path == str(Path(sandbox[1].log_directory) / "ok" / "0.log")
    parsed = [CRI_LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert {(m.group(3), m.group(5)) for m in parsed} == {("stdout", "out-line"), ("stderr", "err-line")}
    names = {c.metadata.name: c for c in await node.rt.list_containers(sandbox[0])}
    assert names["bad"].exit_code == 3 and names["ok"].reason == "Completed"


async def test_oom_killed_under_a_small_memory_limit(node):
    sandbox = await node.pod()
    cid = await node.container(sandbox, "hog", ["tail", "/dev/zero"],
                               resources=LinuxResources(memory_limit_in_bytes=16 * 1024 * 1024))
    status = await node.wait_exited(cid, timeout=20)
    assert status.reason == "OOMKilled" and status.exit_code == 137


async def test_stop_honours_timeout_when_sigterm_is_ignored(node):
    sandbox = await node.pod()
    stubborn = await node.container(sandbox, "stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
    polite = await node.container(sandbox, "polite", ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await node.rt.stop_container(polite, 10)
    assert time.monotonic() - started < 2
    assert (await node.rt.container_status(polite)).exit_code == 0
    started = time.monotonic()
    await node.rt.stop_container(stubborn, 2)
    took = time.monotonic() - started
    assert 1.8 <= took < 6, took
    status = await node.rt.container_status(stubborn)
    assert status.state is ContainerState.EXITED and status.exit_code == 137


async def test_exec_sync_and_streaming_exec(node):
    sandbox = await node.pod()
    cid = await node.container(sandbox, "main", ["sleep", "60"])
    code, out, err = await node.rt.exec_sync(cid, ["sh", "-c", "echo hi; echo oops >&2; exit 2"], 5)
    assert (code, out, err) == (2, b"hi\n", b"oops\n")

    session = await node.rt.exec(cid, ["cat"], stdin=True, tty=False)
    await session.write_stdin(b"hello from stdin\n")
    await session.close_stdin()
    output = b""
    while (chunk := await asyncio.wait_for(session.read_output(), 5)) is not None:
        assert chunk[0] == 1
        output += chunk[1]
    assert output == b"hello from stdin\n"
    assert await asyncio.wait_for(session.wait(), 5) == 0
    await session.close()

    session = await node.rt.exec(cid, ["sh", "-c", "echo bye >&2; exit 3"], stdin=False, tty=False)
    chunks = []
    while (chunk := await asyncio.wait_for(session.read_output(), 5)) is not None:
        chunks.append(chunk)
    assert chunks == [(2, b"bye\n")]
    assert await asyncio.wait_for(session.wait(), 5) == 3
    await session.close()


async def test_exec_with_tty(node):
    sandbox = await node.pod()
    cid = await node.container(sandbox, "main", ["sleep", "60"])
    session = await node.rt.exec(cid, ["sh", "-c", "sleep 0.5; stty size; exit 4"], stdin=True, tty=True)
    await session.resize(100, 30)
    output = b""
    while (chunk := await asyncio.wait_for(session.read_output(), 5)) is not None:
        assert chunk[0] == 1                # a terminal has one output stream
        output += chunk[1]
    assert b"30 100" in output
    assert await asyncio.wait_for(session.wait(), 5) == 4
    await session.close()


async def test_port_forward_to_httpd(node):
    sandbox = await node.pod()
    await node.container(sandbox, "web", ["sh", "-c", "echo pf-ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"])
    from kates.runtime.cri import PortForwardError
    deadline = time.monotonic() + 5
    while True:
        stream = await node.rt.port_forward(sandbox[0], 8080)
        await stream.write(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        reply = b""
        try:
            while chunk := await asyncio.wait_for(stream.read(), 5):
                reply += chunk
        except PortForwardError:
            assert time.monotonic() < deadline, "httpd never listened"
            await asyncio.sleep(0.1)    # httpd not listening yet
            continue
        finally:
            await stream.close()
        break
    assert reply.startswith(b"HTTP/1.") and b"200" in reply.split(b"\r\n")[0]
    assert reply.endswith(b"pf-ok\n")


async def test_missing_image_fails_fast_with_the_registry_message(node):
    ref = "127.0.0.1:5999/nope:1"
    assert await node.rt.image_status(ref) is None
    started = time.monotonic()
    with pytest.raises(ImagePullError) as info:
        await node.rt.pull_image(ref)
    assert time.monotonic() - started < 10
    assert info.value.reason == "ErrImagePull" and "127.0.0.1:5999" in str(info.value)
    images = {t for i in await node.rt.list_images() for t in i.repo_tags}
    assert {"localhost/busybox:latest", "localhost/pause:3.9"} <= images
    used, total = await node.rt.image_fs_usage()
    assert 0 < used < total


async def test_security_context(node):
    sandbox = await node.pod()
    cid = await node.container(sandbox, "locked", ["sleep", "60"], security=SecurityContext(
        run_as_user=65534, run_as_group=65534, readonly_rootfs=True, drop_capabilities=("ALL",),
        no_new_privs=True))
    code, out, _ = await node.rt.exec_sync(cid, ["sh", "-c", "id -u; id -g; grep CapEff /proc/self/status"], 5)
    assert code == 0
    uid, gid, caps = out.decode().split("\n")[:3]
    assert (uid, gid) == ("65534", "65534") and caps.split()[1] == "0000000000000000"
    code, _, err = await node.rt.exec_sync(cid, ["touch", "/newfile"], 5)
    assert code != 0 and b"Read-only" in err


async def test_events_and_stats(node):
    events = []
    node.rt.subscribe(events.append)
    await asyncio.sleep(1.2)            # the first relist records what exists
    sandbox = await node.pod()
    cid = await node.container(sandbox, "blip", ["sh", "-c", "sleep 0.3"])
    await node.wait_exited(cid)
    deadline = time.monotonic() + 5
    while not any(e.container_id == cid and e.type is ContainerEventType.STOPPED for e in events):
        assert time.monotonic() < deadline, events
        await asyncio.sleep(0.1)
    assert all(e.sandbox.name == sandbox[1].metadata.name for e in events if e.container_id == cid)
    runner = await node.container(sandbox, "runner", ["sh", "-c", "while :; do :; done"])
    await asyncio.sleep(0.5)
    stats = await node.rt.container_stats(runner)
    assert stats.cpu_usage_core_nanoseconds > 0 and stats.memory_working_set_bytes > 0
    await node.rt.stop_container(runner, 0)


async def test_not_found_errors(node):
    with pytest.raises(NotFoundError):
        await node.rt.container_status("0" * 64)
    with pytest.raises(NotFoundError):
        await node.rt.pod_sandbox_status("0" * 64)
    await node.rt.stop_container("0" * 64, 1)        # CRI: stopping or removing what is gone is no error
    await node.rt.remove_pod_sandbox("0" * 64)


async def test_containerd_restart_keeps_containers_running(node):
    sandbox = await node.pod()
    cid = await node.container(sandbox, "survivor", ["sleep", "120"])
    before = await node.rt.container_status(cid)
    containerd = node.rt.containerd
    old_pid = containerd.pid
    await containerd.kill()
    deadline = time.monotonic() + 10
    while containerd.pid in (None, old_pid):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await containerd.wait_ready(10)
    after = await node.rt.container_status(cid)
    assert after.state is ContainerState.RUNNING and after.started_at == before.started_at
    code, out, _ = await node.rt.exec_sync(cid, ["echo", "still here"], 5)
    assert (code, out) == (0, b"still here\n")
    assert (await node.rt.pod_sandbox_status(sandbox[0])).state is SandboxState.READY


async def test_attach_to_a_container_reading_stdin(node):
    sandbox = await node.pod()
    cid = await node.container(sandbox, "echoer", ["sh", "-c", "while read line; do echo got:$line; done"],
                               stdin=True)
    session = await node.rt.attach(cid, stdin=True, tty=False)
    await session.write_stdin(b"one\n")
    chunk = await asyncio.wait_for(session.read_output(), 5)
    assert chunk == (1, b"got:one\n")
    await session.close()


async def test_host_network_and_host_port(node):
    host = await node.pod(host_network=True)
    assert (await node.rt.pod_sandbox_status(host[0])).ip == ""
    cid = await node.container(host, "main", ["sleep", "60"])
    code, out, _ = await node.rt.exec_sync(cid, ["sh", "-c", "ip -4 addr"], 5)
    assert code == 0 and "192.0.2.2" in out.decode()

    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from kates.runtime.interface import PortMapping
    sandbox = await node.pod(port_mappings=(PortMapping(8080, port),))
    await node.container(sandbox, "web", ["sh", "-c", "echo hp-ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"])
    deadline = time.monotonic() + 5
    reply = b""
    while not reply:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("192.0.2.2", port), 2)
            writer.write(b"GET /index.html HTTP/1.0\r\n\r\n")
            reply = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        except OSError:
            pass
        if not reply:
            assert time.monotonic() < deadline, "hostPort never answered"
            await asyncio.sleep(0.1)
    assert reply.endswith(b"hp-ok\n")


async def test_port_forward_to_a_closed_port_reports_the_error(node):
    from kates.runtime.cri import PortForwardError
    sandbox = await node.pod()
    await node.container(sandbox, "idle", ["sleep", "60"])
    stream = await node.rt.port_forward(sandbox[0], 9)
    await stream.write(b"hello")
    with pytest.raises(PortForwardError) as info:
        await asyncio.wait_for(stream.read(), 5)
    assert "9" in str(info.value) and isinstance(info.value, ConnectionError)
    await stream.close()


async def test_a_restarted_agent_adopts_sandboxes_and_containers(node):
    from kates.runtime.cri import CRIRuntime
    sandbox = await node.pod("adopted")
    running = await node.container(sandbox, "main", ["sleep", "60"])
    fresh = CRIRuntime(node.rt.containerd.address, data_dir=node.data_dir)     # knows nothing yet
    try:
        found = {s.id: s for s in await fresh.list_pod_sandbox()}[sandbox[0]]
        assert found.metadata.name == "adopted" and found.ip
        assert {c.id: c.state for c in await fresh.list_containers(sandbox[0])}[running] is ContainerState.RUNNING
        log_path = Path(sandbox[1].log_directory) / "late" / "0.log"
        cid = await fresh.create_container(sandbox[0], ContainerConfig(       # no sandbox config given
            ContainerMetadata("late"), "localhost/busybox:latest", command=("echo", "late-line"),
            log_path=str(log_path)))
        await fresh.start_container(cid)
        status = await node.wait_exited(cid)
        assert status.log_path == str(log_path) and "late-line" in log_path.read_text()
    finally:
        await fresh.close()


async def test_containerd_left_by_a_dead_agent_is_replaced():
    import shutil
    import tempfile
    from kates.runtime.containerd import Containerd
    data_dir = Path(tempfile.mkdtemp(prefix="kt", dir="/tmp"))
    first = Containerd(data_dir)
    await first.start()
    first._stopping = True              # the agent "dies": nobody supervises this containerd any more
    first._task.cancel()
    second = Containerd(data_dir)
    try:
        await second.start(timeout=15)
        assert first.proc.returncode is not None or await asyncio.wait_for(first.proc.wait(), 5) is not None
        assert second.pid and second.pid != first.proc.pid
    finally:
        await second.stop()
        await first.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_dns_config_becomes_resolv_conf(node):
    from kates.runtime.interface import DNSConfig
    sandbox = await node.pod(dns_config=DNSConfig(("10.96.0.10",), ("default.svc.cluster.local", "cluster.local"),
                                                  ("ndots:5",)))
    cid = await node.container(sandbox, "main", ["sleep", "60"])
    code, out, _ = await node.rt.exec_sync(cid, ["cat", "/etc/resolv.conf"], 5)
    text = out.decode()
    assert "nameserver 10.96.0.10" in text and "search default.svc.cluster.local cluster.local" in text
    assert "options ndots:5" in text


@pytest.fixture(scope="module")
def registries(tmp_path_factory):
    """Two docker-registry (distribution) instances on 127.0.0.1: anonymous, and htpasswd-protected (u / pw),
    each holding 127.0.0.1:PORT/test/busybox:1 pushed with skopeo."""
    import shutil as sh
    import socket
    import subprocess
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import crypt   # deprecated, still in 3.11: libxcrypt makes the bcrypt hashes distribution's htpasswd wants
    from kates.runtime import images
    if not sh.which("docker-registry") or not sh.which("skopeo"):
        pytest.skip("needs docker-registry and skopeo")
    root = tmp_path_factory.mktemp("registries")
    archive = images.ensure_archive(root / "cache", images.BUSYBOX_IMAGE)
    procs, out = [], {}
    try:
        for kind in ("anon", "auth"):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            auth = ""
            if kind == "auth":
                (root / "htpasswd").write_text(f"u:{crypt.crypt('pw', crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
                auth = f"auth:\n  htpasswd:\n    realm: kates\n    path: {root / 'htpasswd'}\n"
            config = root / f"{kind}.yml"
            config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                              f"    rootdirectory: {root / kind}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}")
            procs.append(subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "registry did not start"
                    time.sleep(0.05)
            ref = f"127.0.0.1:{port}/test/busybox:1"
            creds = ["--dest-creds", "u:pw"] if kind == "auth" else []
            subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", *creds, f"docker-archive:{archive}",
                            f"docker://{ref}"], check=True, timeout=60)
            out[kind] = ref
        yield out
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


async def test_pull_from_registries_with_and_without_credentials(node, registries):
    from kates.runtime.interface import AuthConfig
    anon = registries["anon"]
    assert await node.rt.image_status(anon) is None
    ref = await node.rt.pull_image(anon)
    assert ref.startswith("sha256:") and (await node.rt.image_status(anon)).id == ref

    protected = registries["auth"]
    with pytest.raises(ImagePullError) as info:
        await node.rt.pull_image(protected)
    assert "401" in str(info.value) or "unauthorized" in str(info.value).lower()
    with pytest.raises(ImagePullError):
        await node.rt.pull_image(protected, AuthConfig(username="u", password="wrong"))
    host = protected.split("/")[0]
    await node.rt.pull_image(protected, AuthConfig(username="u", password="pw", server_address=host))
    sandbox = await node.pod()
    cid = await node.rt.create_container(sandbox[0], ContainerConfig(ContainerMetadata("pulled"), protected,
                                                                     command=("echo", "from-registry")), sandbox[1])
    await node.rt.start_container(cid)
    assert (await node.wait_exited(cid)).exit_code == 0
    await node.rt.remove_image(anon)
    assert await node.rt.image_status(anon) is None
    # CRI removes an image with all its names: the pushed copies share localhost/busybox's image id
    from kates.runtime import images

    async def present(r):
        return await node.rt.image_status(r) is not None
    await images.ensure_local_images(node.rt.containerd.socket, node.data_dir / "images", present)
    assert await node.rt.image_status("localhost/busybox:latest") is not None


async def test_reopen_container_log_after_rotation(node):
    sandbox = await node.pod()
    cid = await node.container(sandbox, "talker", ["sh", "-c", "i=0; while :; do echo line-$i; i=$((i+1)); "
                                                                "sleep 0.05; done"])
    log_path = Path((await node.rt.container_status(cid)).log_path)
    await asyncio.sleep(0.3)
    log_path.rename(log_path.with_suffix(".log.1"))
    await node.rt.reopen_container_log(cid)
    await asyncio.sleep(0.3)
    fresh = log_path.read_text().splitlines()
    assert fresh and all(CRI_LINE.match(line) for line in fresh)
    assert log_path.with_suffix(".log.1").read_text().splitlines()[0].endswith("line-0")
    assert not fresh[0].endswith("line-0")


async def test_network_config_and_cluster_routes(node):
    import json as json_
    import subprocess
    from kates.runtime import cni
    conf = json_.loads((cni.conf_dir(node.data_dir) / cni.CONF_NAME).read_text())
    bridge, portmap = conf["plugins"]
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]      # no loopback: containerd does lo
    assert bridge["bridge"] == cni.bridge_name(node.data_dir) and len(bridge["bridge"]) <= 15
    assert bridge["ipam"]["ranges"] == [[{"subnet": node.pod_cidr}]]
    assert bridge["ipam"]["dataDir"].startswith(str(node.data_dir))
    assert portmap["capabilities"] == {"portMappings": True}
    routes = subprocess.run(["ip", "route", "show", "type", "blackhole"], capture_output=True, text=True).stdout
    assert "10.244.0.0/16" in routes and "10.96.0.0/12" in routes
    assert cni.configured_cidr(node.data_dir) == node.pod_cidr
    await node.rt.update_runtime_config(node.pod_cidr)       # idempotent
    assert (await node.rt.network_ready())[0]


async def test_open_runtime_kinds(tmp_path):
    from kates.runtime import open_runtime
    from kates.runtime.fake import FakeRuntime
    assert isinstance(await open_runtime("fake", data_dir=tmp_path), FakeRuntime)
    with pytest.raises(ValueError):
        await open_runtime("docker", data_dir=tmp_path)
