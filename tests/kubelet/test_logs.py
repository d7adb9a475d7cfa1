"""Container logs: real CRI-format files on disk, the real /containerLogs handler behind a real aiohttp server."""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from kates.kubelet import logs
from kates.kubelet.logs import (ContainerLogManager, cri_record, format_time_ns, parse_time_ns, read_logs,
                                rotated_files)
from kates.runtime.interface import (ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus,
                                     NotFoundError, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatus,
                                     SandboxState)

T0 = parse_time_ns("2024-05-01T10:00:00Z")
SEC = 1_000_000_000


def rec(stream: str, text: str, *, at: float = 0.0, partial: bool = False) -> bytes:
    """A record as containerd writes it: RFC3339Nano with trailing zeros of the fraction trimmed."""
    ts = format_time_ns(T0 + int(at * SEC)).decode()
    whole, frac = ts[:-1].split(".")
    frac = frac.rstrip("0")
    ts = f"{whole}.{frac}Z" if frac else f"{whole}Z"
    return f"{ts} {stream} {'P' if partial else 'F'} {text}\n".encode()


async def collect(path: Path | str, **kw: Any) -> bytes:
    return b"".join([chunk async for chunk in read_logs(str(path), **kw)])


def write(path: Path, *records: bytes, mode: str = "wb") -> None:
    with open(path, mode) as f:
        f.write(b"".join(records))


# -- timestamps and the format -----------------------------------------------------------------------------------


def test_timestamps_keep_nanoseconds_and_offsets() -> None:
    ns = parse_time_ns("2024-05-01T10:00:00.123456789Z")
    assert ns == T0 + 123456789
    assert format_time_ns(ns) == b"2024-05-01T10:00:00.123456789Z"
    assert parse_time_ns("2024-05-01T10:00:00.5Z") == T0 + 500_000_000
    assert parse_time_ns("2024-05-01T12:00:00+02:00") == T0
    assert format_time_ns(T0) == b"2024-05-01T10:00:00.000000000Z"
    with pytest.raises(ValueError):
        parse_time_ns("yesterday")
    assert cri_record("stderr", b"x", partial=True, at_ns=T0) == b"2024-05-01T10:00:00.000000000Z stderr P x\n"


# -- reading -----------------------------------------------------------------------------------------------------


async def test_read_all_joins_partials_and_selects_streams(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, rec("stdout", "one", at=1), rec("stderr", "err-", at=2, partial=True), rec("stdout", "two", at=3),
          rec("stderr", "line", at=4), b"not a cri record\n", rec("stdout", "", at=5), rec("stdout", "x y  z", at=6))
    assert await collect(log) == b"one\ntwo\nerr-line\n\nx y  z\n"
    assert await collect(log, stream="stdout") == b"one\ntwo\n\nx y  z\n"
    assert await collect(log, stream="stderr") == b"err-line\n"
    with pytest.raises(ValueError):
        await collect(log, stream="both")


async def test_timestamps_since_and_limit_bytes(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, rec("stdout", "a", at=1.5), rec("stdout", "b", at=2.25), rec("stdout", "c", at=3))
    assert await collect(log, timestamps=True) == (b"2024-05-01T10:00:01.500000000Z a\n"
                                                   b"2024-05-01T10:00:02.250000000Z b\n"
                                                   b"2024-05-01T10:00:03.000000000Z c\n")
    assert await collect(log, since_ns=T0 + int(2.25 * SEC)) == b"b\nc\n"
    assert await collect(log, since=(T0 + 3 * SEC) / SEC) == b"c\n"
    assert await collect(log, limit_bytes=3) == b"a\nb"
    assert await collect(log, limit_bytes=4, timestamps=True) == b"2024"
    assert await collect(log, tail_lines=2, since_ns=T0 + 3 * SEC) == b"c\n"     # tail first, then since


async def test_tail_counts_lines_not_records(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, rec("stdout", "l1"), rec("stdout", "l2-a ", partial=True), rec("stderr", "e1"),
          rec("stdout", "l2-b ", partial=True), rec("stderr", "e2"), rec("stdout", "l2-c"), rec("stdout", "l3"))
    assert await collect(log, tail_lines=1) == b"l3\n"
    assert await collect(log, tail_lines=2) == b"l2-a l2-b l2-c\nl3\n"
    # Lines in the order they were completed; the partial stdout line interleaves with stderr.
    assert await collect(log, tail_lines=3) == b"e2\nl2-a l2-b l2-c\nl3\n"
    assert await collect(log, tail_lines=2, stream="stderr") == b"e1\ne2\n"
    assert await collect(log, tail_lines=0) == b""
    assert await collect(log, tail_lines=100) == await collect(log)
    # An unterminated last line (the container exited mid-line) is a line of its own.
    write(log, rec("stdout", "end", partial=True), mode="ab")
    assert await collect(log, tail_lines=1) == b"end"
    assert (tmp_path / "empty.log").write_bytes(b"") == 0
    assert await collect(tmp_path / "empty.log", tail_lines=5) == b""
    assert await collect(tmp_path / "missing.log", tail_lines=5) == b""


async def test_tail_reads_backwards_across_blocks(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    line = rec("stdout", "x" * 90, at=1)
    big = line * (32 * 1024 * 1024 // len(line))                     # 32 MiB
    long_line = [rec("stdout", "y" * 70_000, partial=True), rec("stdout", "z" * 70_000, partial=True),
                 rec("stdout", "end")]                               # one line longer than two blocks
    write(log, big, *long_line, *(rec("stdout", f"n{i}") for i in range(3)))
    started = time.monotonic()
    out = await collect(log, tail_lines=4)
    elapsed = time.monotonic() - started
    assert out == b"y" * 70_000 + b"z" * 70_000 + b"end\nn0\nn1\nn2\n"
    assert elapsed < 0.3, f"tail read the whole file? {elapsed:.2f}s"
    assert (await collect(log, tail_lines=1000)).count(b"\n") == 1000


async def test_rotated_files_are_read_when_needed(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    with gzip.open(f"{log}.20240501-100000.gz", "wb") as z:
        z.write(rec("stdout", "r1-a") + rec("stdout", "r1-b"))
    write(Path(f"{log}.20240501-100500"), rec("stdout", "r2-a"), rec("stdout", "r2-b"))
    write(log, rec("stdout", "cur-a"), rec("stdout", "cur-b"))
    write(Path(f"{log}.tmp"), rec("stdout", "not rotated"))
    assert rotated_files(str(log)) == [f"{log}.20240501-100000.gz", f"{log}.20240501-100500"]
    assert await collect(log) == b"r1-a\nr1-b\nr2-a\nr2-b\ncur-a\ncur-b\n"
    assert await collect(log, tail_lines=2) == b"cur-a\ncur-b\n"
    assert await collect(log, tail_lines=3) == b"r2-b\ncur-a\ncur-b\n"
    assert await collect(log, tail_lines=5) == b"r1-b\nr2-a\nr2-b\ncur-a\ncur-b\n"
    assert await collect(log, tail_lines=50) == await collect(log)


# -- following ---------------------------------------------------------------------------------------------------


class Flag:
    """is_running for read_logs: a container whose end the test decides."""

    def __init__(self) -> None:
        self.running = True
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.running


async def test_follow_sees_appended_lines_and_ends_with_the_container(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, rec("stdout", "old-1"), rec("stdout", "old-2"))
    flag = Flag()
    stream = read_logs(str(log), follow=True, tail_lines=1, is_running=flag).__aiter__()
    assert await asyncio.wait_for(stream.__anext__(), 2) == b"old-2\n"
    write(log, cri_record("stdout", b"new-1"), mode="ab")
    assert await asyncio.wait_for(stream.__anext__(), 2) == b"new-1\n"
    # A record written in two pieces is passed on only once whole.
    piece = cri_record("stdout", b"half-and-half")
    write(log, piece[:20], mode="ab")
    next_chunk = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.3)
    assert not next_chunk.done()
    write(log, piece[20:], mode="ab")
    assert await asyncio.wait_for(next_chunk, 2) == b"half-and-half\n"
    # The last words before exiting, and an unterminated final line, still come out; then the stream ends.
    write(log, cri_record("stdout", b"bye"), cri_record("stdout", b"no newline", partial=True), mode="ab")
    assert await asyncio.wait_for(stream.__anext__(), 2) == b"bye\n"
    flag.running = False
    rest = [chunk async for chunk in stream]
    assert b"".join(rest) == b"no newline"


async def test_follow_an_exited_container_returns_at_once(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, rec("stdout", "done"))
    flag = Flag()
    flag.running = False
    started = time.monotonic()
    assert await asyncio.wait_for(collect(log, follow=True, is_running=flag), 3) == b"done\n"
    assert time.monotonic() - started < 1.5


async def test_follow_across_rotation(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, rec("stdout", "before"))
    flag = Flag()
    stream = read_logs(str(log), follow=True, is_running=flag).__aiter__()
    assert await asyncio.wait_for(stream.__anext__(), 2) == b"before\n"
    # The runtime still writes to the renamed file until it reopens: those lines must not be lost.
    os.rename(log, f"{log}.20240501-100000")
    write(Path(f"{log}.20240501-100000"), cri_record("stdout", b"late in old file"), mode="ab")
    await asyncio.sleep(0.3)
    write(log, cri_record("stdout", b"in new file"))
    got = b""
    while b"in new file" not in got:
        got += await asyncio.wait_for(stream.__anext__(), 3)
    assert got == b"late in old file\nin new file\n"
    flag.running = False
    assert [chunk async for chunk in stream] == []


async def test_follow_waits_for_a_log_not_yet_created(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    flag = Flag()
    stream = read_logs(str(log), follow=True, is_running=flag).__aiter__()
    nxt = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.2)
    write(log, cri_record("stderr", b"hello"))
    assert await asyncio.wait_for(nxt, 2) == b"hello\n"
    flag.running = False
    assert [chunk async for chunk in stream] == []


# -- the HTTP handler ----------------------------------------------------------------------------------------------


class FilesRuntime:
    """A runtime of containers that are only log files: just what the log handler and the rotation ask of a
    runtime (lookups by list, status, reopening the log), with a writer per container as a shim would have."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sandboxes: list[PodSandboxStatus] = []
        self.containers: dict[str, ContainerStatus] = {}
        self.reopened: list[str] = []

    def add_pod(self, namespace: str, name: str) -> str:
        sid = f"sb-{len(self.sandboxes)}"
        self.sandboxes.append(PodSandboxStatus(sid, PodSandboxMetadata(name, namespace, "uid-" + name),
                                               SandboxState.READY, time.time(), "10.0.0.1"))
        return sid

    def add_container(self, sandbox_id: str, name: str, attempt: int, *, running: bool) -> ContainerStatus:
        sb = next(s for s in self.sandboxes if s.id == sandbox_id)
        path = self.root / f"{sb.metadata.namespace}_{sb.metadata.name}_{sb.metadata.uid}" / name / f"{attempt}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        cid = f"c-{len(self.containers)}"
        c = ContainerStatus(cid, sandbox_id, ContainerMetadata(name, attempt), "busybox", "sha256:x",
                            ContainerState.RUNNING if running else ContainerState.EXITED, time.time() + attempt,
                            log_path=str(path))
        self.containers[cid] = c
        return c

    def exit(self, cid: str) -> None:
        import dataclasses
        self.containers[cid] = dataclasses.replace(self.containers[cid], state=ContainerState.EXITED)

    async def list_pod_sandbox(self) -> list[PodSandboxStatus]:
        return list(self.sandboxes)

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        return [c for c in self.containers.values() if sandbox_id is None or c.sandbox_id == sandbox_id]

    async def container_status(self, container_id: str) -> ContainerStatus:
        if container_id not in self.containers:
            raise NotFoundError(f"container {container_id}")
        return self.containers[container_id]

    async def reopen_container_log(self, container_id: str) -> None:
        self.reopened.append(container_id)
        Path(self.containers[container_id].log_path).touch()


@pytest.fixture
async def kubelet(tmp_path: Path) -> Any:
    runtime = FilesRuntime(tmp_path / "logs")
    finished: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            return await logs.serve_container_logs(request, runtime, m["ns"], m["pod"], m["container"])
        finally:
            finished.append(request.path_qs)

    app = web.Application()
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", handler)
    app_runner = web.AppRunner(app)
    await app_runner.setup()
    site = web.TCPSite(app_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        yield runtime, http, finished
    await app_runner.cleanup()


async def test_handler_serves_tail_timestamps_previous_and_errors(kubelet: Any) -> None:
    runtime, http, _ = kubelet
    sb = runtime.add_pod("default", "web")
    first = runtime.add_container(sb, "app", 0, running=False)
    write(Path(first.log_path), rec("stdout", "first run"), rec("stderr", "crashed", at=1))
    current = runtime.add_container(sb, "app", 1, running=True)
    write(Path(current.log_path), rec("stdout", "a", at=2), rec("stdout", "b", at=3))

    async with http.get("/containerLogs/default/web/app") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        assert await r.read() == b"a\nb\n"
    async with http.get("/containerLogs/default/web/app?tailLines=1&timestamps=true") as r:
        assert await r.read() == b"2024-05-01T10:00:03.000000000Z b\n"
    async with http.get("/containerLogs/default/web/app", params={"previous": "true", "limitBytes": "12"}) as r:
        assert await r.read() == b"first run\ncr"
    async with http.get("/containerLogs/default/web/app",
                        params={"sinceTime": "2024-05-01T10:00:02.5Z"}) as r:
        assert await r.read() == b"b\n"
    async with http.get("/containerLogs/default/web/app", params={"previous": "true", "stream": "Stderr"}) as r:
        assert await r.read() == b"crashed\n"

    other = runtime.add_pod("default", "solo")
    runtime.add_container(other, "app", 0, running=True)
    for url, code, message in [
        ("/containerLogs/default/solo/app?previous=true", 404,
         'previous terminated container "app" in pod "solo" not found'),
        ("/containerLogs/default/web/nope", 404, 'container "nope" in pod "web" not found'),
        ("/containerLogs/default/ghost/app", 404, 'pod "ghost" does not exist'),
        ("/containerLogs/default/web/app?tailLines=-1", 400, "tailLines"),
        ("/containerLogs/default/web/app?tailLines=x", 400, "tailLines"),
        ("/containerLogs/default/web/app?limitBytes=0", 400, "limitBytes"),
        ("/containerLogs/default/web/app?sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z", 400, "at most one"),
        ("/containerLogs/default/web/app?sinceTime=yesterday", 400, "sinceTime"),
    ]:
        async with http.get(url) as r:
            body = await r.json()
            assert r.status == code, url
            assert body["kind"] == "Status" and body["code"] == code and message in body["message"], body


async def test_handler_follow_streams_lines_as_written_and_ends(kubelet: Any) -> None:
    runtime, http, finished = kubelet
    sb = runtime.add_pod("default", "ticker")
    c = runtime.add_container(sb, "tick", 0, running=True)
    path = Path(c.log_path)
    write(path, rec("stdout", "tick-1"), rec("stdout", "tick-2"))
    async with http.get("/containerLogs/default/ticker/tick?follow=true&tailLines=1") as r:
        assert r.status == 200
        assert await asyncio.wait_for(r.content.readline(), 2) == b"tick-2\n"
        for i in (3, 4):
            write(path, cri_record("stdout", b"tick-%d" % i), mode="ab")
            started = time.monotonic()
            assert await asyncio.wait_for(r.content.readline(), 2) == b"tick-%d\n" % i
            assert time.monotonic() - started < 0.5
        runtime.exit(c.id)
        assert await asyncio.wait_for(r.read(), 3) == b""        # the response ends with the container
    assert len(finished) == 1


async def test_handler_stops_when_the_follower_goes_away(kubelet: Any) -> None:
    runtime, http, finished = kubelet
    sb = runtime.add_pod("default", "quiet")
    c = runtime.add_container(sb, "q", 0, running=True)
    write(Path(c.log_path), rec("stdout", "only line"))
    async with http.get("/containerLogs/default/quiet/q?follow=1") as r:
        assert await asyncio.wait_for(r.content.readline(), 2) == b"only line\n"
        r.close()                                                 # kubectl logs -f interrupted
    deadline = time.monotonic() + 3
    while not finished and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert finished, "the handler kept following after the client left"


# -- rotation ----------------------------------------------------------------------------------------------------


async def test_log_manager_rotates_compresses_and_keeps_max_files(tmp_path: Path) -> None:
    runtime = FilesRuntime(tmp_path / "logs")
    sb = runtime.add_pod("default", "chatty")
    c = runtime.add_container(sb, "talk", 0, running=True)
    idle = runtime.add_container(sb, "idle", 0, running=True)
    done = runtime.add_container(sb, "done", 0, running=False)
    path = Path(c.log_path)
    write(Path(done.log_path), rec("stdout", "x" * 2000))
    manager = ContainerLogManager(runtime, max_size=1000, max_files=3, interval=0.05)
    written = []
    for round_ in range(5):
        lines = [rec("stdout", f"round-{round_}-line-{i}-" + "x" * 40) for i in range(20)]
        write(path, *lines, mode="ab")
        written += lines
        assert await manager.rotate_once() == [c.id]
    assert runtime.reopened == [c.id] * 5
    rotated = rotated_files(str(path))
    assert len(rotated) == 2                                   # + the live file = max_files
    assert rotated[0].endswith(".gz") and not rotated[1].endswith(".gz")
    assert path.exists() and path.stat().st_size == 0          # the runtime reopened a fresh one
    # Everything still on disk reads back in order: the last two rounds.
    assert await collect(path) == b"".join(ln.split(b" ", 3)[3] for ln in written[-40:])
    assert not rotated_files(idle.log_path) and not rotated_files(done.log_path)

    # Running in the background, on its own.
    write(path, *written[:30])
    await manager.start()
    try:
        deadline = time.monotonic() + 3
        while path.stat().st_size and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert path.stat().st_size == 0 and len(runtime.reopened) == 6
    finally:
        await manager.stop()


# -- real runtimes: the process runtime, and containerd through CRI ---------------------------------------------------

BUSYBOX = "localhost/busybox:latest"


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["process", "cri"])
async def real_runtime(request: pytest.FixtureRequest) -> Any:
    """A real runtime of each kind, on its own data dir (containerd with its own pod CIDR and bridge)."""
    from kates.runtime import cri_available, open_runtime
    kind = request.param
    if kind == "cri" and not cri_available():
        pytest.skip("needs root and containerd")
    data_dir = Path(tempfile.mkdtemp(prefix="ktl", dir="/tmp"))
    runtime = await open_runtime(kind, data_dir=data_dir / ("process" if kind == "process" else ""))
    try:
        if kind == "cri":
            await runtime.update_runtime_config(f"10.244.{random.randint(100, 250)}.0/24")
        yield runtime, data_dir
        for s in await runtime.list_pod_sandbox():
            await runtime.stop_pod_sandbox(s.id)
            await runtime.remove_pod_sandbox(s.id)
    finally:
        await runtime.close()
        if kind == "cri":
            from kates.runtime import cni
            from kates.runtime.containerd import remove_pod_cgroups
            await cni.delete_bridge(data_dir)
            await asyncio.to_thread(remove_pod_cgroups, f"/kates/{cni.bridge_name(data_dir)}")
        await asyncio.to_thread(shutil.rmtree, data_dir, True)


async def run_pod(runtime: Any, data_dir: Path, name: str) -> tuple[str, PodSandboxConfig]:
    uid = f"uid-{name}-{os.getpid()}"
    config = PodSandboxConfig(
        PodSandboxMetadata(name, "default", uid), hostname=name,
        log_directory=str(logs.pod_log_dir(data_dir / "logs", "default", name, uid)),
        labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "default",
                "io.kubernetes.pod.uid": uid})
    return await runtime.run_pod_sandbox(config), config


async def run_container(runtime: Any, pod: tuple[str, PodSandboxConfig], name: str, attempt: int,
                        script: str) -> str:
    sandbox_id, config = pod
    cid = await runtime.create_container(sandbox_id, ContainerConfig(
        ContainerMetadata(name, attempt), BUSYBOX, command=("sh", "-c", script),
        log_path=str(Path(config.log_directory) / name / f"{attempt}.log"),
        labels={"io.kubernetes.container.name": name, "io.kubernetes.pod.name": config.metadata.name,
                "io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": config.metadata.uid}), config)
    await runtime.start_container(cid)
    return cid


async def wait_state(runtime: Any, cid: str, state: ContainerState, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (await runtime.container_status(cid)).state is not state:
        assert time.monotonic() < deadline, f"container never {state}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def log_server(runtime: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """The handler behind a real aiohttp server, as kates/kubelet/server.py mounts it."""
    async def handler(request: web.Request) -> web.StreamResponse:
        m = request.match_info
        return await logs.serve_container_logs(request, runtime, m["ns"], m["pod"], m["container"])

    app = web.Application()
    app.router.add_get("/containerLogs/{ns}/{pod}/{container}", handler)
    app_runner = web.AppRunner(app)
    await app_runner.setup()
    site = web.TCPSite(app_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            yield http
    finally:
        await app_runner.cleanup()


@pytest.mark.asyncio(loop_scope="module")
async def test_real_container_logs_previous_tail_and_follow(real_runtime: Any) -> None:
    runtime, data_dir = real_runtime
    pod = await run_pod(runtime, data_dir, "talker")
    # The first attempt: stdout and stderr, a line longer than the runtime's 16 KiB records, an unterminated
    # last line, then a crash.
    first = await run_container(runtime, pod, "app", 0,
                                "echo out-1; echo err-1 >&2; head -c 40000 /dev/zero | tr '\\0' y; echo; "
                                "printf 'no newline'; exit 1")
    await wait_state(runtime, first, ContainerState.EXITED)
    raw = Path((await runtime.container_status(first)).log_path).read_bytes()
    assert b" stdout P " in raw and b" stderr F err-1\n" in raw          # the runtime really split the long line
    second = await run_container(runtime, pod, "app", 1,
                                 "i=0; while [ $i -lt 3 ]; do i=$((i+1)); echo tick-$i; sleep 0.2; done; "
                                 "read -t 30 x < /dev/null; sleep 0.6; echo last")
    async with log_server(runtime) as http:
        async with http.get("/containerLogs/default/talker/app", params={"previous": "true"}) as r:
            body = await r.read()
        # stdout and stderr are separate pipes: their relative order is the runtime's
        assert sorted(body.split(b"\n")) == sorted([b"out-1", b"err-1", b"y" * 40000, b"no newline"])
        async with http.get("/containerLogs/default/talker/app",
                            params={"previous": "true", "stream": "Stdout"}) as r:
            assert await r.read() == b"out-1\n" + b"y" * 40000 + b"\nno newline"
        async with http.get("/containerLogs/default/talker/app",
                            params={"previous": "true", "stream": "Stderr", "timestamps": "true"}) as r:
            stamp, text = (await r.read()).split(b" ", 1)
        assert text == b"err-1\n" and abs(parse_time_ns(stamp) - time.time_ns()) < 60 * SEC
        async with http.get("/containerLogs/default/talker/app",
                            params={"previous": "true", "tailLines": "2", "limitBytes": "10", "stream": "Stdout"}) as r:
            assert await r.read() == b"y" * 10
        # Follow the running attempt from its first line until it exits.
        async with http.get("/containerLogs/default/talker/app", params={"follow": "true", "tailLines": "1"}) as r:
            seen = [await asyncio.wait_for(r.content.readline(), 5) for _ in range(3)]
            assert seen[0].startswith(b"tick-") and seen[-1] == b"tick-3\n"
            assert await asyncio.wait_for(r.read(), 10) == b"last\n"
        await wait_state(runtime, second, ContainerState.EXITED)
        async with http.get("/containerLogs/default/talker/app", params={"sinceSeconds": "600"}) as r:
            assert await r.read() == b"tick-1\ntick-2\ntick-3\nlast\n"


@pytest.mark.asyncio(loop_scope="module")
async def test_real_container_log_rotation_loses_nothing(real_runtime: Any) -> None:
    runtime, data_dir = real_runtime
    pod = await run_pod(runtime, data_dir, "rotor")
    cid = await run_container(runtime, pod, "count", 0,
                              "i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo line-$i-xxxxxxxxxxxxxxxxxxxx; "
                              "[ $((i % 20)) -eq 0 ] && sleep 0.05; done")
    path = (await runtime.container_status(cid)).log_path
    manager = ContainerLogManager(runtime, max_size=2048, max_files=1000, interval=0.02)
    follower = asyncio.ensure_future(collect(path, follow=True, is_running=lambda: is_running(runtime, cid)))
    await manager.start()
    try:
        await wait_state(runtime, cid, ContainerState.EXITED, timeout=20)
    finally:
        await manager.stop()
    expected = b"".join(b"line-%d-xxxxxxxxxxxxxxxxxxxx\n" % i for i in range(1, 401))
    assert len(rotated_files(path)) >= 3
    assert await asyncio.wait_for(follower, 10) == expected
    assert await collect(path) == expected


async def is_running(runtime: Any, cid: str) -> bool:
    return (await runtime.container_status(cid)).state is ContainerState.RUNNING


# -- end to end: the real kubectl, through the API server, to the agent's kubelet API on a real node -----------------

TALKER = """
apiVersion: v1
kind: Pod
metadata: {{name: talker, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: crasher
    image: {image}
    command: ["sh", "-c", "echo crash-out; echo crash-err >&2; exit 3"]
  - name: ticker
    image: {image}
    command: ["sh", "-c", "echo started; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.25; done"]
"""


def test_kubectl_logs_on_a_real_pod(node_kubectl: Any, node_ns: str) -> None:
    import re
    import subprocess

    from nodeutil import BUSYBOX as image, wait_for

    k, ns = node_kubectl, node_ns
    k.apply(TALKER.format(ns=ns, image=image))

    def statuses() -> dict[str, Any]:
        pod = k.json("get", "pod", "talker", "-n", ns)
        return {s["name"]: s for s in pod["status"].get("containerStatuses") or []}
    wait_for("a restart of crasher and ticker running",
             lambda: statuses()["crasher"]["restartCount"] >= 1 and "running" in statuses()["ticker"]["state"],
             timeout=60)
    wait_for("a few ticks", lambda: "tick-6\n" in k.run("logs", "talker", "-c", "ticker", "-n", ns).stdout,
             timeout=20)

    previous = k.run("logs", "talker", "-c", "crasher", "-n", ns, "--previous").stdout
    assert sorted(previous.splitlines()) == ["crash-err", "crash-out"]
    none = k.run("logs", "talker", "-c", "ticker", "-n", ns, "--previous", check=False)
    assert none.returncode != 0 and 'previous terminated container "ticker"' in none.stderr
    bad = k.run("logs", "talker", "-c", "nope", "-n", ns, check=False)
    assert bad.returncode != 0 and "nope" in bad.stderr

    everything = k.run("logs", "talker", "-c", "ticker", "-n", ns).stdout.splitlines()
    assert everything[:3] == ["started", "tick-1", "tick-2"]
    tail = k.run("logs", "talker", "-c", "ticker", "-n", ns, "--tail=2").stdout.splitlines()
    assert len(tail) == 2 and all(line.startswith("tick-") for line in tail)
    assert int(tail[1][5:]) == int(tail[0][5:]) + 1 >= 7
    stamped = k.run("logs", "talker", "-c", "ticker", "-n", ns, "--tail=3", "--timestamps").stdout.splitlines()
    assert len(stamped) == 3
    stamps = [parse_time_ns(line.split(" ", 1)[0]) for line in stamped]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z tick-\d+", line) for line in stamped)
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time_ns()) < 30 * SEC
    recent = k.run("logs", "talker", "-c", "ticker", "-n", ns, "--since=1s").stdout.splitlines()
    assert "started" not in recent and 1 <= len(recent) <= 8
    assert k.run("logs", "talker", "-c", "ticker", "-n", ns, "--limit-bytes=5").stdout == "start"

    # Follow: new ticks arrive as they are written, a fraction of a second apart.
    follower = subprocess.Popen(["kubectl", "logs", "-f", "talker", "-c", "ticker", "-n", ns, "--tail=1"],
                                env=k.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()
        assert first.startswith("tick-")
        arrivals = []
        for _ in range(4):
            line = follower.stdout.readline()
            arrivals.append((time.monotonic(), line))
        numbers = [int(line.strip()[5:]) for _, line in arrivals]
        assert numbers == list(range(int(first.strip()[5:]) + 1, int(first.strip()[5:]) + 5))
        assert arrivals[-1][0] - arrivals[0][0] < 2.0
    finally:
        follower.kill()
        follower.wait(5)
    k.run("delete", "pod", "talker", "-n", ns, "--wait=false")


def test_the_kubelet_api_serves_logs_of_a_real_pod(node: Any, node_kubectl: Any, node_ns: str) -> None:
    """What the API server does for `kubectl logs`: the node's kubelet API over TLS with the kubelet client
    certificate of the cluster PKI."""
    import ssl
    import urllib.error
    import urllib.request

    from nodeutil import BUSYBOX as image, wait_for

    k, ns = node_kubectl, node_ns
    k.apply(TALKER.format(ns=ns, image=image).replace("talker", "direct"))
    wait_for("ticker running", lambda: any("running" in s["state"] for s in k.json(
        "get", "pod", "direct", "-n", ns)["status"].get("containerStatuses") or [] if s["name"] == "ticker"),
        timeout=60)
    node_obj = k.json("get", "node", node.node_name)
    ip = next(a["address"] for a in node_obj["status"]["addresses"] if a["type"] == "InternalIP")
    port = node_obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    pki = node.data_dir / "pki"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(pki / "apiserver-kubelet-client.crt", pki / "apiserver-kubelet-client.key")
    base = f"https://{ip}:{port}/containerLogs/{ns}/direct"

    wait_for("two ticks", lambda: b"tick-2\n" in urllib.request.urlopen(f"{base}/ticker", context=ctx,
                                                                       timeout=10).read(), timeout=20)
    with urllib.request.urlopen(f"{base}/ticker?tailLines=1&timestamps=true", context=ctx, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        stamp, text = r.read().split(b" ", 1)
    assert text.startswith(b"tick-") and text.count(b"\n") == 1
    assert abs(parse_time_ns(stamp) - time.time_ns()) < 30 * SEC
    with urllib.request.urlopen(f"{base}/ticker?follow=true&tailLines=1", context=ctx, timeout=10) as r:
        first = int(r.readline().strip()[5:])
        assert [r.readline() for _ in range(3)] == [b"tick-%d\n" % (first + i) for i in (1, 2, 3)]
    wait_for("a restart of crasher", lambda: any(s["restartCount"] >= 1 for s in k.json(
        "get", "pod", "direct", "-n", ns)["status"]["containerStatuses"] if s["name"] == "crasher"), timeout=60)
    with urllib.request.urlopen(f"{base}/crasher?previous=true&stream=Stdout", context=ctx, timeout=10) as r:
        assert r.read() == b"crash-out\n"
    try:
        urllib.request.urlopen(f"{base}/ticker?previous=true", context=ctx, timeout=10)
        raise AssertionError("a previous log of a container that never restarted")
    except urllib.error.HTTPError as e:
        assert e.code == 404
        assert json.loads(e.read())["message"] == 'previous terminated container "ticker" in pod "direct" not found'
    k.run("delete", "pod", "direct", "-n", ns, "--wait=false")
