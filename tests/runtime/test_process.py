"""The process runtime with real host processes: busybox sh, cat, sleep, httpd."""
from __future__ import annotations

import asyncio
import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import AsyncIterator

import pytest

from kates.runtime.interface import (ContainerConfig, ContainerEventType, ContainerMetadata, ContainerState,
                                     DNSConfig, ImagePullError, Mount, NotFoundError, PodSandboxConfig,
                                     PodSandboxMetadata, RuntimeServiceError, SandboxState, SecurityContext)
from kates.runtime.process import BUSYBOX_IMAGE, MAX_LOG_LINE, ProcessRuntime

pytestmark = pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static")

LOG_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) ([FP]) (.*)$")
ROOT = os.geteuid() == 0


@pytest.fixture(params=["namespaces", "plain"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    """Each test runs as root with the mount/UTS namespaces, and as plain processes (what non-root gets)."""
    if request.param == "namespaces" and not ROOT:
        pytest.skip("namespaces need root")
    rt = ProcessRuntime(tmp_path / "node", isolate=request.param == "namespaces")
    assert rt.isolate is (request.param == "namespaces")
    yield rt
    await rt.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def sandbox(rt: ProcessRuntime, name: str = "web", **kw) -> str:
    meta = PodSandboxMetadata(name, "default", f"uid-{name}")
    return await rt.run_pod_sandbox(PodSandboxConfig(meta, hostname=name, labels={"app": name}, **kw))


async def container(rt: ProcessRuntime, sb: str, tmp_path: Path, *command: str, name: str = "main",
                    start: bool = True, **kw) -> tuple[str, Path]:
    log = tmp_path / "logs" / f"{name}-{time.monotonic_ns()}.log"
    cid = await rt.create_container(sb, ContainerConfig(ContainerMetadata(name), BUSYBOX_IMAGE, command=command,
                                                        log_path=str(log), **kw))
    if start:
        await rt.start_container(cid)
    return cid, log


async def wait_exited(rt: ProcessRuntime, cid: str, timeout: float = 5):
    deadline = time.monotonic() + timeout
    while (status := await rt.container_status(cid)).state is not ContainerState.EXITED:
        assert time.monotonic() < deadline, f"container still {status.state}"
        await asyncio.sleep(0.02)
    return status


def log_records(path: Path) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for line in path.read_bytes().splitlines():
        m = LOG_LINE.match(line)
        assert m, line
        out.append(m.groups())
    return out


async def read_all(session, timeout: float = 5) -> dict[int, bytes]:
    out = {1: b"", 2: b""}

    async def collect():
        while (item := await session.read_output()) is not None:
            out[item[0]] += item[1]
    await asyncio.wait_for(collect(), timeout)
    return out


async def test_version_and_images(runtime: ProcessRuntime) -> None:
    assert (await runtime.version()).runtime_name == "process"
    assert runtime.name == "process"
    image = await runtime.image_status(BUSYBOX_IMAGE)
    assert image is not None and image.repo_tags == (BUSYBOX_IMAGE,) and image.size > 0
    assert {i.repo_tags[0] for i in await runtime.list_images()} == {BUSYBOX_IMAGE, "localhost/pause:3.9"}
    with pytest.raises(ImagePullError, match="nginx"):
        await runtime.pull_image("nginx")
    assert await runtime.image_status("nginx") is None
    await runtime.remove_image(BUSYBOX_IMAGE)
    assert await runtime.image_status(BUSYBOX_IMAGE) is None
    assert (await runtime.pull_image(BUSYBOX_IMAGE)).startswith("localhost/busybox@sha256:")
    used, total = await runtime.image_fs_usage()
    assert 0 < used < total


async def test_configured_image_runs_host_command(tmp_path: Path) -> None:
    rt = ProcessRuntime(tmp_path / "p", images={"example.com/tools:1": ["echo", "from-host"]})
    try:
        await rt.pull_image("example.com/tools:1")
        sb = await sandbox(rt)
        log = tmp_path / "tools.log"
        cid = await rt.create_container(sb, ContainerConfig(ContainerMetadata("t"), "example.com/tools:1",
                                                            log_path=str(log)))
        await rt.start_container(cid)
        assert (await wait_exited(rt, cid)).exit_code == 0
        assert log_records(log) == [(b"stdout", b"F", b"from-host")]
    finally:
        await rt.close()


async def test_sandbox_lifecycle(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    status = await runtime.pod_sandbox_status(sb)
    assert status.ip == "127.0.0.1" and status.state is SandboxState.READY and status.labels == {"app": "web"}
    host = await runtime.run_pod_sandbox(PodSandboxConfig(PodSandboxMetadata("h", "default", "u-h"),
                                                          host_network=True))
    assert (await runtime.pod_sandbox_status(host)).ip == ""
    events = []
    runtime.subscribe(events.append)
    cid, _ = await container(runtime, sb, tmp_path, "sleep", "30")
    await runtime.stop_pod_sandbox(sb)
    assert (await runtime.pod_sandbox_status(sb)).state is SandboxState.NOTREADY
    assert (await runtime.container_status(cid)).state is ContainerState.EXITED
    with pytest.raises(RuntimeServiceError):
        await container(runtime, sb, tmp_path, "true")
    await runtime.remove_pod_sandbox(sb)
    assert [s.id for s in await runtime.list_pod_sandbox()] == [host]
    assert await runtime.list_containers() == []
    assert [e.type for e in events] == [ContainerEventType.CREATED, ContainerEventType.STARTED,
                                        ContainerEventType.STOPPED, ContainerEventType.DELETED]
    assert events[0].sandbox.name == "web"
    with pytest.raises(NotFoundError):
        await runtime.pod_sandbox_status(sb)
    await runtime.stop_pod_sandbox(sb)       # missing sandboxes are not an error (CRI)


async def test_exit_code_logs_env_and_events(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    stopped = asyncio.Event()
    runtime.subscribe(lambda e: e.type is ContainerEventType.STOPPED and stopped.set())
    script = 'echo "out $GREETING $HOSTNAME"; echo err >&2; pwd; printf unterminated; exit 3'
    cid, log = await container(runtime, sb, tmp_path, "sh", "-c", script, envs=(("GREETING", "hello"),),
                               working_dir=str(tmp_path), labels={"io.kubernetes.container.name": "main"})
    started = time.monotonic()
    await asyncio.wait_for(stopped.wait(), 5)
    assert time.monotonic() - started < 1        # an exit is an event, not a poll
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (ContainerState.EXITED, 3, "Error")
    assert status.started_at >= status.created_at and status.finished_at >= status.started_at
    assert status.image == BUSYBOX_IMAGE and status.log_path == str(log)
    assert status.labels == {"io.kubernetes.container.name": "main"}
    records = log_records(log)
    assert (b"stdout", b"F", b"out hello web") in records
    assert (b"stderr", b"F", b"err") in records
    assert (b"stdout", b"F", str(tmp_path).encode()) in records
    assert (b"stdout", b"P", b"unterminated") in records      # left unterminated at exit: a partial record
    cid2, _ = await container(runtime, sb, tmp_path, "true", name="ok")
    assert ((await wait_exited(runtime, cid2)).exit_code, (await runtime.container_status(cid2)).reason) == \
        (0, "Completed")
    assert {c.id for c in await runtime.list_containers(sb)} == {cid, cid2}


async def test_long_lines_are_split_into_partial_records(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    cid, log = await container(runtime, sb, tmp_path, "sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo")
    await wait_exited(runtime, cid)
    records = log_records(log)
    assert [tag for _, tag, _ in records] == [b"P", b"P", b"F"]
    assert len(records[0][2]) == MAX_LOG_LINE
    assert b"".join(text for _, _, text in records) == b"x" * 40000


async def test_stop_sends_term_then_kill_to_the_group(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    polite, _ = await container(runtime, sb, tmp_path, "sleep", "300", name="polite")
    started = time.monotonic()
    await runtime.stop_container(polite, 5)
    assert time.monotonic() - started < 1
    assert (await runtime.container_status(polite)).exit_code == 143        # SIGTERM
    stubborn, log = await container(runtime, sb, tmp_path, "sh", "-c",
                                    "trap '' TERM; sleep 300 & echo ready; while true; do sleep 1; done",
                                    name="stubborn")
    pid = runtime._containers[stubborn].pid
    await until(lambda: log.exists() and b"ready" in log.read_bytes())
    started = time.monotonic()
    await runtime.stop_container(stubborn, 1)
    took = time.monotonic() - started
    assert 1 <= took < 3
    status = await runtime.container_status(stubborn)
    assert (status.exit_code, status.reason) == (137, "Error")
    assert group_members(pid) == []


async def test_background_processes_die_with_the_main_process(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    cid, _ = await container(runtime, sb, tmp_path, "sh", "-c", "sleep 300 & sleep 300 & echo bye")
    pid = runtime._containers[cid].pid
    assert (await wait_exited(runtime, cid)).exit_code == 0
    assert group_members(pid) == []


async def test_invalid_command_is_a_start_error(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    cid, _ = await container(runtime, sb, tmp_path, "no-such-command", start=False)
    with pytest.raises(RuntimeServiceError, match="executable file not found") as err:
        await runtime.start_container(cid)
    assert err.value.reason == "RunContainerError"
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (ContainerState.EXITED, 128, "StartError")
    with pytest.raises(RuntimeServiceError):
        await runtime.start_container(cid)


async def test_exec_sync(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    cid, _ = await container(runtime, sb, tmp_path, "sleep", "300", envs=(("WHO", "me"),),
                             working_dir=str(tmp_path))
    code, out, err = await runtime.exec_sync(cid, ["sh", "-c", "echo $WHO; pwd; echo oops >&2; exit 4"], 5)
    assert (code, out, err) == (4, f"me\n{tmp_path}\n".encode(), b"oops\n")
    started = time.monotonic()
    with pytest.raises(RuntimeServiceError) as timeout:
        await runtime.exec_sync(cid, ["sleep", "30"], 0.3)
    assert timeout.value.reason == "DeadlineExceeded" and time.monotonic() - started < 2
    with pytest.raises(RuntimeServiceError, match="not found"):
        await runtime.exec_sync(cid, ["no-such-command"], 5)
    await runtime.stop_container(cid, 0)
    with pytest.raises(RuntimeServiceError, match="not running"):
        await runtime.exec_sync(cid, ["true"], 5)


async def test_exec_with_stdin_and_close(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    cid, _ = await container(runtime, sb, tmp_path, "sleep", "300")
    session = await runtime.exec(cid, ["cat"], stdin=True, tty=False)
    await session.write_stdin(b"hello from stdin\n")
    await session.close_stdin()
    assert (await read_all(session))[1] == b"hello from stdin\n"
    assert await session.wait() == 0
    await session.close()
    failing = await runtime.exec(cid, ["sh", "-c", "echo no >&2; exit 3"], stdin=False, tty=False)
    assert (await read_all(failing))[2] == b"no\n"
    assert await failing.wait() == 3
    await failing.close()


async def test_exec_tty_with_resize(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    cid, _ = await container(runtime, sb, tmp_path, "sleep", "300")
    session = await runtime.exec(cid, ["sh", "-c", "read line; stty size; [ -t 0 ] && echo is-a-tty"],
                                 stdin=True, tty=True)
    await session.resize(100, 40)
    await session.write_stdin(b"go\n")
    out = (await read_all(session))[1]
    assert b"go\r\n" in out and b"40 100" in out and b"is-a-tty" in out
    assert await session.wait() == 0
    await session.close()
    abandoned = await runtime.exec(cid, ["sleep", "300"], stdin=True, tty=True)
    await abandoned.close()                   # the client went away: the process is killed
    assert await abandoned.wait() == 137
    orphan = await runtime.exec(cid, ["sh", "-c", "echo up; exec sleep 300"], stdin=False, tty=False)
    assert await asyncio.wait_for(orphan.read_output(), 5) == (1, b"up\n")
    await runtime.stop_container(cid, 0)      # exec'd processes die with their container
    assert await asyncio.wait_for(orphan.wait(), 5) == 137
    await orphan.close()


async def test_attach_and_stdin_once(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    cid, log = await container(runtime, sb, tmp_path, "cat", stdin=True, stdin_once=True)
    session = await runtime.attach(cid, stdin=True, tty=False)
    await session.write_stdin(b"typed\n")
    assert await asyncio.wait_for(session.read_output(), 5) == (1, b"typed\n")
    await session.close_stdin()               # stdinOnce: the container's stdin closes, cat ends
    assert await asyncio.wait_for(session.read_output(), 5) is None
    assert await session.wait() == 0
    assert (await wait_exited(runtime, cid)).exit_code == 0
    assert log_records(log) == [(b"stdout", b"F", b"typed")]
    with pytest.raises(RuntimeServiceError):
        await runtime.attach(cid, stdin=False, tty=False)


async def test_tty_container(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    cid, log = await container(runtime, sb, tmp_path, "sh", "-c", "[ -t 1 ] && echo tty; read x; echo got $x",
                               stdin=True, tty=True)
    session = await runtime.attach(cid, stdin=True, tty=True)
    await session.resize(80, 24)
    await session.write_stdin(b"it\n")
    await wait_exited(runtime, cid)
    assert b"got it" in log.read_bytes() and b"tty" in log.read_bytes()
    await session.close()


async def test_port_forward_to_httpd(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    port = free_port()
    await container(runtime, sb, tmp_path, "sh", "-c",
                    f"echo forwarded > index.html; exec httpd -f -p 127.0.0.1:{port} -h .")   # in its own dir

    async def fetch() -> bytes:
        stream = await runtime.port_forward(sb, port)
        await stream.write(b"GET / HTTP/1.0\r\n\r\n")
        await stream.close_write()
        data = b""
        while chunk := await stream.read():
            data += chunk
        await stream.close()
        return data
    deadline = time.monotonic() + 5
    while True:
        try:
            body = await fetch()
            break
        except RuntimeServiceError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert body.startswith(b"HTTP/1.") and body.endswith(b"forwarded\n")
    with pytest.raises(RuntimeServiceError):
        await runtime.port_forward(sb, free_port())


async def test_stats_and_log_reopen(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    cid, log = await container(runtime, sb, tmp_path, "sh", "-c",
                               "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.05; done")
    stats = await runtime.container_stats(cid)
    assert stats.memory_working_set_bytes > 0 and stats.cpu_usage_core_nanoseconds >= 0
    await until(lambda: log.exists() and b"tick-2" in log.read_bytes())
    log.rename(log.with_suffix(".1"))
    await runtime.reopen_container_log(cid)
    await until(lambda: log.exists() and len(log_records(log)) >= 2)
    assert all(LOG_LINE.match(line) for line in log.read_bytes().splitlines())
    assert b"tick-1\n" in log.with_suffix(".1").read_bytes() and b"tick-1\n" not in log.read_bytes()


async def test_a_new_runtime_object_reports_old_containers(tmp_path: Path) -> None:
    first = ProcessRuntime(tmp_path / "p")
    sb = await sandbox(first)
    done, _ = await container(first, sb, tmp_path, "sh", "-c", "exit 7", name="done")
    running, _ = await container(first, sb, tmp_path, "sleep", "300", name="running")
    await wait_exited(first, done)
    second = ProcessRuntime(tmp_path / "p")
    try:
        assert [s.id for s in await second.list_pod_sandbox()] == [sb]
        assert (await second.container_status(done)).exit_code == 7
        status = await second.container_status(running)
        assert status.state is ContainerState.UNKNOWN and status.metadata.name == "running"
        await second.stop_container(running, 1)
        assert (await second.container_status(running)).state is ContainerState.EXITED
        await wait_exited(first, running)     # the first object sees its child die
    finally:
        await first.close()
        await second.close()


async def test_close_stops_running_containers(tmp_path: Path) -> None:
    rt = ProcessRuntime(tmp_path / "p")
    sb = await sandbox(rt)
    cid, _ = await container(rt, sb, tmp_path, "sleep", "300")
    pid = rt._containers[cid].pid
    await rt.close()
    assert group_members(pid) == []
    again = ProcessRuntime(tmp_path / "p")
    status = await again.container_status(cid)
    assert (status.state, status.exit_code) == (ContainerState.EXITED, 143)


@pytest.mark.skipif(not ROOT, reason="namespaces need root")
async def test_root_gives_hostname_mounts_and_private_tmp(runtime: ProcessRuntime, tmp_path: Path) -> None:
    if not runtime.isolate:
        pytest.skip("plain processes have the host's hostname, no mounts")
    sb = await sandbox(runtime, "named-pod", dns_config=DNSConfig(("10.96.0.10",), ("default.svc",)))
    volume, config = tmp_path / "vol", tmp_path / "app.conf"
    volume.mkdir()
    (volume / "token").write_text("t0ps3cret")
    config.write_text("key=value")
    at = Path(f"/kates-test-{uuid.uuid4().hex[:8]}")       # a mount point the runtime must make on the host
    mounts = (Mount(str(at / "conf" / "app.conf"), str(config)), Mount(str(at), str(volume), readonly=True),
              Mount("/tmp/secret", str(volume)))
    try:
        cid, _ = await container(runtime, sb, tmp_path, "sleep", "300", mounts=mounts, working_dir=str(at))
        run = lambda *cmd: runtime.exec_sync(cid, list(cmd), 5)  # noqa: E731
        assert await run("hostname") == (0, b"named-pod\n", b"")
        assert await run("cat", "token", "conf/app.conf", "/tmp/secret/token") == \
            (0, b"t0ps3cretkey=valuet0ps3cret", b"")
        code, _, err = await run("sh", "-c", "echo x > other")
        assert code != 0 and b"Read-only" in err
        assert (await run("cat", "/etc/resolv.conf"))[1] == b"nameserver 10.96.0.10\nsearch default.svc\n"
        assert (await run("cat", "/etc/hostname"))[1] == b"named-pod\n"
        assert await run("sh", "-c", "echo private > /tmp/mine; cat /tmp/mine") == (0, b"private\n", b"")
        assert not os.path.exists("/tmp/mine") and not os.path.exists("/tmp/secret")   # the host's /tmp is not
        assert os.listdir(at) == [] and socket.gethostname() != "named-pod"          # the host sees none of it
        assert (volume / "conf" / "app.conf").read_text() == ""    # a nested mount point is made in the volume
        other, _ = await container(runtime, sb, tmp_path, "sleep", "300", mounts=mounts[1:2], name="other")
        await runtime.remove_container(cid)
        assert at.is_dir()                    # still the other container's mount point
        await runtime.remove_container(other)
        assert not at.exists()                # mount points the runtime made go with their last container
    finally:
        if at.exists():
            os.rmdir(at)


@pytest.mark.skipif(not ROOT, reason="switching users needs root")
async def test_run_as_user_and_no_new_privs(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sb = await sandbox(runtime)
    security = SecurityContext(run_as_user=65534, run_as_group=65534, supplemental_groups=(5,), no_new_privs=True)
    cid, log = await container(runtime, sb, tmp_path, "sh", "-c",
                               "id -u; id -g; id -G; grep NoNewPrivs /proc/self/status; sleep 300",
                               security=security)
    await until(lambda: log.exists() and b"NoNewPrivs" in log.read_bytes())
    assert [text for _, _, text in log_records(log)] == [b"65534", b"65534", b"65534 5", b"NoNewPrivs:\t1"]
    assert (await runtime.exec_sync(cid, ["id", "-u"], 5))[1] == b"65534\n"      # exec runs as the same user


async def test_without_namespaces_hostname_is_the_hosts(tmp_path: Path) -> None:
    rt = ProcessRuntime(tmp_path / "p", isolate=False)
    try:
        sb = await sandbox(rt, "plain-pod")
        cid, _ = await container(rt, sb, tmp_path, "sleep", "300",
                                 mounts=(Mount("/kates-never-created", str(tmp_path)),))
        assert await rt.exec_sync(cid, ["sh", "-c", "echo $HOSTNAME; hostname"], 5) == \
            (0, f"plain-pod\n{socket.gethostname()}\n".encode(), b"")
        assert not os.path.exists("/kates-never-created")
    finally:
        await rt.close()


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = raw[raw.rfind(")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


async def until(check, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
