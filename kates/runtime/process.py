"""The `process` runtime: every container is a plain host process. NO ISOLATION.

For machines without root or containerd (issue 4). It implements the whole runtime interface with host processes:

- A sandbox is a directory and some state. There is no network namespace: pods share the host's network, so every
  pod's IP is 127.0.0.1 and two pods listening on the same port collide.
- A container's image is never unpacked. `localhost/busybox:latest` means the host's busybox: the container's PATH
  starts with a per-runtime directory of busybox applet links (`busybox --install -s`), so `sh`, `httpd`, `sleep`
  are busybox's. `command` + `args` (else the image's default, `sh` for busybox) run with the container's env and
  working directory (a per-container directory under the data dir when unset; a missing one is created on the host).
  Each container is its own session and process group: stop signals the whole group (SIGTERM, then SIGKILL after
  the timeout), and when the main process exits the rest of its group and every process exec'd into it are
  killed, as a container's PID 1 takes its namespace with it (an exec's own leftovers die when it ends).
- stdout/stderr are piped through the runtime into `log_path` in the CRI log format, as containerd's shim does:
  one `<RFC3339Nano> <stream> <F|P> <text>` line per line of output, P for pieces of lines over 16 KiB and for
  unterminated output that sat for a moment (or was left at exit). Appends to the log are small page-cache writes
  done inline.
- When the runtime runs as root (and `unshare`, `busybox` exist) each container also gets private mount and UTS
  namespaces (`unshare --mount --uts`, same pid): the pod's hostname is set, volume mounts are bind-mounted at
  their container paths (a missing mount point is created empty on the host, as Docker does for host paths, and
  removed with the last container that mounts on it; missing points under /proc, /sys and /dev are skipped),
  /etc/hostname and /etc/resolv.conf come from the sandbox, and /tmp is the container's own (so pods do not see
  each other's /tmp files nor leave theirs on the host); the rest of the filesystem is the host's. Exec joins
  those namespaces with `nsenter` and runs in the container's current directory. Without root, the hostname and
  /tmp stay the host's and mounts are skipped with a warning: a pod that needs its volumes at their paths needs
  `cri`.
- runAsUser/runAsGroup and allowPrivilegeEscalation=false are applied with `setpriv`; cgroup limits,
  capabilities, readOnlyRootFilesystem and hostPort are not (no OOMKilled is ever reported).
- State is saved as JSON under the data dir. A new runtime object on the same dir sees the old containers, but does
  not adopt running processes (their output pipes died with the old runtime): one whose pid (checked with its
  /proc start time) is still alive is reported UNKNOWN and can be stopped; one that is gone is EXITED with reason
  Unknown. `close()` therefore stops every running container.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import errno
import fcntl
import functools
import json
import logging
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import termios
import time
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .fake import image_ref, normalize_image
from .interface import (AuthConfig, ContainerConfig, ContainerEvent, ContainerEventType, ContainerState,
                        ContainerStats, ContainerStatus, Image, ImagePullError, Mount, NotFoundError,
                        PodSandboxConfig, PodSandboxStatus, RuntimeServiceError, SandboxState, VersionInfo)

log = logging.getLogger(__name__)

RUNTIME_NAME = "process"
RUNTIME_VERSION = "0.1.0"
SANDBOX_IP = "127.0.0.1"
BUSYBOX_IMAGE = "localhost/busybox:latest"
PAUSE_IMAGE = "localhost/pause:3.9"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_LOG_LINE = 16 * 1024            # containerd's CRI logger splits longer lines into P pieces
PARTIAL_FLUSH_SECONDS = 0.25        # unterminated output older than this is logged as a P line
DRAIN_SECONDS = 2.0                 # after exit, how long output pipes held by escaped processes are read
KILL_WAIT_SECONDS = 10.0
WARNING = ("process runtime: containers run as plain host processes with NO isolation; pods share the host "
           "network (pod IP 127.0.0.1)")
_SKIP_MOUNT_ROOTS = ("/proc", "/sys", "/dev")


# -- small helpers -----------------------------------------------------------------------------------------------

def cri_timestamp(ns: int | None = None) -> bytes:
    """RFC 3339 with nanoseconds in UTC, as the CRI log format wants."""
    ns = time.time_ns() if ns is None else ns
    stamp = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.timezone.utc)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{ns % 1_000_000_000:09d}Z".encode()


def exit_code(returncode: int) -> int:
    """A shell-style exit code: killed by signal N → 128 + N, as container runtimes report it."""
    return 128 - returncode if returncode < 0 else returncode


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 = state); None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def _start_time(pid: int) -> int:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else 0


def _alive(pid: int, start: int) -> bool:
    """The process still exists and is the one we started (pids are reused), and is not a zombie."""
    fields = _proc_stat(pid) if pid > 0 else None
    return bool(fields) and fields[0] != "Z" and int(fields[19]) == start


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Signal our child's process group. With a tty, `setsid --ctty` makes the group only after exec: a signal
    sent right after the start finds no group yet and goes to the child itself. (Not `proc.send_signal`: it polls
    the child, which can reap it behind the child watcher's back and lose the exit code.)"""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        if proc.returncode is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
    except PermissionError:
        pass


async def _wait_fd(fd: int, writable: bool) -> None:
    """Wait until `fd` is readable (or writable), without a thread."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    wake = lambda: ready.done() or ready.set_result(None)  # noqa: E731
    (loop.add_writer if writable else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if writable else loop.remove_reader)(fd)


async def read_fd(fd: int, n: int = 65536) -> bytes:
    """Read a non-blocking pipe or pty master; b"" at end (EIO is how a pty says its last slave closed)."""
    while True:
        try:
            return os.read(fd, n)
        except BlockingIOError:
            await _wait_fd(fd, writable=False)
        except OSError as e:
            if e.errno in (errno.EIO, errno.EBADF):
                return b""
            raise


async def write_fd(fd: int, data: bytes) -> None:
    """Write all of `data` to a non-blocking fd; a reader that went away is not an error."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await _wait_fd(fd, writable=True)
        except (BrokenPipeError, OSError):
            return


def _close(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def _set_winsize(fd: int | None, width: int, height: int) -> None:
    if fd is not None and fd >= 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


@functools.lru_cache(maxsize=None)
def _tool(name: str) -> str:
    """Absolute path of a host tool, so a container's own PATH cannot hide it."""
    return shutil.which(name) or name


@dataclasses.dataclass
class _Stdio:
    """A process's stdio: pipes, or one pty. `child` ends go to the process, the rest are ours (non-blocking)."""
    child: tuple[int, int, int]
    stdin: int | None                   # ours: write end of stdin (the pty master when tty)
    master: int | None                  # pty master when tty
    outputs: list[tuple[int, int]]      # (1 = stdout | 2 = stderr, our read end)

    @classmethod
    def open(cls, *, tty: bool, stdin: bool) -> "_Stdio":
        if tty:
            master, slave = os.openpty()
            os.set_blocking(master, False)
            return cls((slave, slave, slave), master if stdin else None, master, [(1, master)])
        child_in, ours = os.pipe() if stdin else (subprocess.DEVNULL, None)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd in (ours, out_r, err_r):
            if fd is not None:
                os.set_blocking(fd, False)
        return cls((child_in, out_w, err_w), ours, None, [(1, out_r), (2, err_r)])

    async def spawn(self, argv: list[str], env: Mapping[str, str], cwd: str,
                    pass_fds: tuple[int, ...] = ()) -> asyncio.subprocess.Process:
        """Start `argv` as the leader of a new session and process group (with the pty as its terminal)."""
        tty = self.master is not None
        if tty:
            argv = [_tool("setsid"), "--ctty", *argv]
        try:
            return await asyncio.create_subprocess_exec(
                *argv, stdin=self.child[0], stdout=self.child[1], stderr=self.child[2], env=dict(env), cwd=cwd,
                start_new_session=not tty, pass_fds=pass_fds)
        except BaseException:
            self.close_ours()
            raise
        finally:
            for fd in set(self.child):
                _close(fd)

    def close_ours(self) -> None:
        """Close our ends, once (a closed fd number may be reused at once: never close it twice)."""
        for fd in {self.stdin, self.master, *(fd for _, fd in self.outputs)}:
            _close(fd)
        self.stdin = self.master = None
        self.outputs = []


class _LineBuffer:
    """Turns a byte stream into CRI log records: (F, line) per full line, (P, piece) for long or stale pieces."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += data
        out: list[tuple[bytes, bytes]] = []
        while self.buf:
            i = self.buf.find(b"\n", 0, MAX_LOG_LINE + 1)
            if 0 <= i <= MAX_LOG_LINE:
                out.append((b"F", bytes(self.buf[:i])))
                del self.buf[:i + 1]
            elif len(self.buf) > MAX_LOG_LINE:
                out.append((b"P", bytes(self.buf[:MAX_LOG_LINE])))
                del self.buf[:MAX_LOG_LINE]
            else:
                break
        return out

    def flush(self) -> list[tuple[bytes, bytes]]:
        out = [(b"P", bytes(self.buf))] if self.buf else []
        self.buf.clear()
        return out


class _LogFile:
    """One container attempt's CRI log, reopenable after the kubelet rotated it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = self._open()

    def _open(self) -> int:
        if not self.path:
            return -1
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, stream: bytes, records: list[tuple[bytes, bytes]]) -> None:
        if self.fd < 0 or not records:
            return
        stamp = cri_timestamp()
        os.write(self.fd, b"".join(b"%s %s %s %s\n" % (stamp, stream, tag, text) for tag, text in records))

    async def reopen(self) -> None:
        """Open the fresh file in a thread, swap it in on the loop (where the pumps write)."""
        fd = await asyncio.to_thread(self._open)
        old, self.fd = self.fd, fd
        _close(old)

    def close(self) -> None:
        _close(self.fd)
        self.fd = -1


# -- (de)serialising the interface's dataclasses ------------------------------------------------------------------

def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(hint: Any, value: Any) -> Any:
    """Rebuild a value of type `hint` (dataclass, enum, tuple, optional) from its JSON form."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _decode(next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: _decode(hints[f.name], value[f.name])
                       for f in dataclasses.fields(hint) if f.name in value})
    return value


# -- state -------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Sandbox:
    id: str
    config: PodSandboxConfig
    state: SandboxState
    created_at: float


@dataclasses.dataclass
class _Container:
    id: str
    sandbox_id: str
    config: ContainerConfig
    state: ContainerState
    created_at: float
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    pid: int = 0
    pid_start: int = 0
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    cwd: str = ""
    isolated: bool = False
    made: list[str] = dataclasses.field(default_factory=list)    # mount points this container created on the host
    # live only in the runtime object that started the process:
    proc: asyncio.subprocess.Process | None = dataclasses.field(default=None, repr=False)
    stdio: _Stdio | None = None
    pumps: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    logfile: _LogFile | None = None
    exited: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    attached: set["_AttachSession"] = dataclasses.field(default_factory=set)
    execs: set["_ExecSession"] = dataclasses.field(default_factory=set)

    PERSISTED = ("id", "sandbox_id", "config", "state", "created_at", "started_at", "finished_at", "exit_code",
                 "reason", "message", "pid", "pid_start", "env", "cwd", "isolated", "made")


@dataclasses.dataclass(frozen=True)
class _ImageSpec:
    ref: str                        # normalised reference
    cmd: tuple[str, ...]            # the image's default command (entrypoint empty)
    busybox: bool                   # PATH starts with the busybox applet dir
    size: int = 0


# -- streaming sessions ------------------------------------------------------------------------------------------

class _ExecSession:
    """An exec'd process (CRI Exec): its own pipes or pty. Its process group is killed when it exits (what it left
    in the background would hold its output open), when the client abandons it, and when the container exits."""

    def __init__(self, proc: asyncio.subprocess.Process, stdio: _Stdio) -> None:
        self.proc = proc
        self.stdio = stdio
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.ended = False
        self.pumps = [asyncio.create_task(self._pump(ch, fd)) for ch, fd in stdio.outputs]
        self.finisher = asyncio.create_task(self._finish())

    async def _pump(self, channel: int, fd: int) -> None:
        while data := await read_fd(fd):
            self.queue.put_nowait((channel, data))

    async def _finish(self) -> None:
        """Output ends when the process has exited and its pipes are drained (escaped children get a moment)."""
        await self.proc.wait()
        _killpg(self.proc.pid, signal.SIGKILL)
        await _settle(self.pumps, DRAIN_SECONDS)
        self.stdio.close_ours()
        self.queue.put_nowait(None)

    async def write_stdin(self, data: bytes) -> None:
        if self.stdio.stdin is not None:
            await write_fd(self.stdio.stdin, data)

    async def close_stdin(self) -> None:
        if self.stdio.stdin is None:
            return
        if self.stdio.stdin == self.stdio.master:
            await write_fd(self.stdio.stdin, b"\x04")     # a terminal's end of input
            return
        _close(self.stdio.stdin)
        self.stdio.stdin = None

    async def read_output(self) -> tuple[int, bytes] | None:
        if self.ended:
            return None
        item = await self.queue.get()
        self.ended = item is None
        return item

    async def resize(self, width: int, height: int) -> None:
        _set_winsize(self.stdio.master, width, height)

    async def wait(self) -> int:
        return exit_code(await self.proc.wait())

    async def close(self) -> None:
        if self.proc.returncode is None:
            _signal(self.proc, signal.SIGKILL)
        await _settle(self.pumps, 0)
        await self.proc.wait()
        await _settle([self.finisher], DRAIN_SECONDS)
        self.stdio.close_ours()


async def _settle(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    """Give tasks `timeout` seconds to finish, then cancel the rest and wait for them to unwind."""
    tasks = [t for t in tasks if not t.done()]
    if not tasks:
        return
    if timeout > 0:
        _, pending = await asyncio.wait(tasks, timeout=timeout)
    else:
        pending = set(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


class _AttachSession:
    """A view of a running container's stdio (CRI Attach): output is broadcast to every attached session."""

    def __init__(self, ctr: _Container, stdin: bool) -> None:
        self.ctr = ctr
        self.stdin = stdin
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.ended = False
        ctr.attached.add(self)

    def feed(self, item: tuple[int, bytes] | None) -> None:
        self.queue.put_nowait(item)

    async def write_stdin(self, data: bytes) -> None:
        stdio = self.ctr.stdio
        if self.stdin and stdio is not None and stdio.stdin is not None:
            await write_fd(stdio.stdin, data)

    async def close_stdin(self) -> None:
        """Only a container created with stdinOnce sees its stdin closed when the attached client closes it."""
        stdio = self.ctr.stdio
        if not (self.stdin and self.ctr.config.stdin_once) or stdio is None or stdio.stdin is None:
            return
        if stdio.stdin == stdio.master:
            await write_fd(stdio.stdin, b"\x04")     # a terminal's end of input
        else:
            _close(stdio.stdin)
            stdio.stdin = None

    async def read_output(self) -> tuple[int, bytes] | None:
        if self.ended:
            return None
        item = await self.queue.get()
        self.ended = item is None
        return item

    async def resize(self, width: int, height: int) -> None:
        _set_winsize(self.ctr.stdio.master if self.ctr.stdio else None, width, height)

    async def wait(self) -> int:
        await self.ctr.exited.wait()
        return 0

    async def close(self) -> None:
        self.ctr.attached.discard(self)
        self.feed(None)


class _TcpStream:
    """A port-forward connection: plain TCP to 127.0.0.1 (the sandbox shares the host's network)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read(self, n: int = 65536) -> bytes:
        try:
            return await self.reader.read(n)
        except ConnectionError:
            return b""

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close_write(self) -> None:
        if self.writer.can_write_eof() and not self.writer.is_closing():
            self.writer.write_eof()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


# -- the runtime -------------------------------------------------------------------------------------------------

class ProcessRuntime:
    """Runtime, streaming and image service over plain host processes (see the module docstring for what that
    does and does not give a pod). `data_dir` is the node agent's data dir; the runtime keeps its state in
    `data_dir/process/` (sandboxes/, containers/, bin/), as the node's data layout has it.

    `images` adds image references the runtime accepts, each mapped to its default command (run with the host's
    PATH); `isolate` forces the root-only mount/UTS namespaces on or off (default: on when possible)."""

    name = RUNTIME_NAME

    def __init__(self, data_dir: Path, *, images: Mapping[str, Sequence[str]] | None = None,
                 isolate: bool | None = None) -> None:
        self.data_dir = Path(data_dir) / "process"
        self.bin_dir = self.data_dir / "bin"
        self.busybox = shutil.which("busybox") or ""
        can_isolate = (os.geteuid() == 0 and bool(self.busybox) and bool(shutil.which("unshare"))
                       and bool(shutil.which("nsenter")))
        self.isolate = can_isolate if isolate is None else (isolate and can_isolate)
        self._images = self._image_table(images or {})
        self._present: set[str] = set()
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._subscribers: list[Callable[[ContainerEvent], None]] = []
        self._watchers: set[asyncio.Task[None]] = set()
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._save_lock = asyncio.Lock()

    def _image_table(self, extra: Mapping[str, Sequence[str]]) -> dict[str, _ImageSpec]:
        table: dict[str, _ImageSpec] = {}
        if self.busybox:
            size = os.path.getsize(self.busybox)
            table[BUSYBOX_IMAGE] = _ImageSpec(BUSYBOX_IMAGE, ("sh",), True, size)
            table[PAUSE_IMAGE] = _ImageSpec(PAUSE_IMAGE, ("sleep", "infinity"), True, size)
        for ref, cmd in extra.items():
            full = normalize_image(ref)
            table[full] = _ImageSpec(full, tuple(cmd), False)
        return table

    # -- loading and saving ---------------------------------------------------------------------------------------
    async def _ready(self) -> None:
        if self._loaded:
            return
        async with self._load_lock:
            if not self._loaded:
                await asyncio.to_thread(self._load)
                self._present = set(self._images)
                self._loaded = True

    def _load(self) -> None:
        log.warning("%s%s", WARNING, "; root: containers get private mount and UTS namespaces" if self.isolate
                    else "; hostname and volume mounts are not possible without root")
        for sub in ("sandboxes", "containers", "bin"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.busybox and not (self.bin_dir / "sh").exists():
            subprocess.run([self.busybox, "--install", "-s", str(self.bin_dir)], check=False)
        for path in (self.data_dir / "sandboxes").glob("*/sandbox.json"):
            data = json.loads(path.read_text())
            self._sandboxes[data["id"]] = _Sandbox(data["id"], _decode(PodSandboxConfig, data["config"]),
                                                   SandboxState(data["state"]), data["created_at"])
        for path in (self.data_dir / "containers").glob("*/container.json"):
            self._adopt(json.loads(path.read_text()))

    def _adopt(self, data: dict[str, Any]) -> None:
        """A container saved by an earlier runtime object: its process cannot be re-attached (see module doc)."""
        hints = typing.get_type_hints(_Container)
        ctr = _Container(**{k: _decode(hints[k], data[k]) for k in _Container.PERSISTED if k in data})
        if ctr.state in (ContainerState.RUNNING, ContainerState.UNKNOWN):
            if _alive(ctr.pid, ctr.pid_start):
                ctr.state, ctr.message = ContainerState.UNKNOWN, "the process runtime restarted; process not adopted"
            else:
                ctr.state, ctr.exit_code, ctr.reason = ContainerState.EXITED, 255, "Unknown"
                ctr.finished_at = ctr.finished_at or time.time()
                ctr.message = "the process exited while the process runtime was not running"
        if ctr.state is not ContainerState.RUNNING:
            ctr.exited.set()
        self._containers[ctr.id] = ctr

    async def _save_sandbox(self, sb: _Sandbox) -> None:
        data = {"id": sb.id, "config": _encode(sb.config), "state": sb.state.value, "created_at": sb.created_at}
        await self._write_json(self.data_dir / "sandboxes" / sb.id / "sandbox.json", data)

    async def _save_container(self, ctr: _Container) -> None:
        data = {k: _encode(getattr(ctr, k)) for k in _Container.PERSISTED}
        await self._write_json(self.data_dir / "containers" / ctr.id / "container.json", data)

    async def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        text = json.dumps(data)

        def write() -> None:
            if not path.parent.is_dir():
                return      # removed meanwhile
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        async with self._save_lock:
            await asyncio.to_thread(write)

    # -- events -----------------------------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[ContainerEvent], None]) -> None:
        self._subscribers.append(callback)

    def _emit(self, ctr: _Container, kind: ContainerEventType) -> None:
        sandbox = self._sandboxes.get(ctr.sandbox_id)
        if sandbox is None:
            return
        event = ContainerEvent(ctr.id, kind, sandbox.config.metadata, time.time())
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("container event subscriber failed")

    # -- runtime service: sandboxes ---------------------------------------------------------------------------------
    async def version(self) -> VersionInfo:
        return VersionInfo(RUNTIME_NAME, RUNTIME_VERSION)

    async def update_runtime_config(self, pod_cidr: str) -> None:
        """Nothing to configure: the process runtime has no pod network (every pod is 127.0.0.1)."""
        await self._ready()

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        await self._ready()
        sb = _Sandbox(secrets.token_hex(32), config, SandboxState.READY, time.time())
        directory = self.data_dir / "sandboxes" / sb.id
        await asyncio.to_thread(self._write_sandbox_files, directory, config)
        self._sandboxes[sb.id] = sb
        await self._save_sandbox(sb)
        return sb.id

    @staticmethod
    def _write_sandbox_files(directory: Path, config: PodSandboxConfig) -> None:
        """The files containerd would give the sandbox; bind-mounted into isolated containers."""
        directory.mkdir(parents=True)
        (directory / "hostname").write_text(_hostname(config) + "\n")
        dns = config.dns_config
        if dns is not None and (dns.servers or dns.searches or dns.options):
            lines = [f"nameserver {s}" for s in dns.servers]
            lines += [f"search {' '.join(dns.searches)}"] if dns.searches else []
            lines += [f"options {' '.join(dns.options)}"] if dns.options else []
            (directory / "resolv.conf").write_text("\n".join(lines) + "\n")

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        await self._ready()
        sb = self._sandboxes.get(sandbox_id)
        if sb is None:
            return
        await asyncio.gather(*(self.stop_container(c.id, 0) for c in list(self._containers.values())
                               if c.sandbox_id == sandbox_id))
        if sb.state is SandboxState.READY:
            sb.state = SandboxState.NOTREADY
            await self._save_sandbox(sb)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        await self._ready()
        if sandbox_id not in self._sandboxes:
            return
        await self.stop_pod_sandbox(sandbox_id)
        for ctr in [c for c in self._containers.values() if c.sandbox_id == sandbox_id]:
            await self.remove_container(ctr.id)
        self._sandboxes.pop(sandbox_id, None)
        await asyncio.to_thread(shutil.rmtree, self.data_dir / "sandboxes" / sandbox_id, True)

    async def pod_sandbox_status(self, sandbox_id: str) -> PodSandboxStatus:
        await self._ready()
        return self._sandbox_status(self._sandbox(sandbox_id))

    async def list_pod_sandbox(self) -> list[PodSandboxStatus]:
        await self._ready()
        return [self._sandbox_status(sb) for sb in self._sandboxes.values()]

    @staticmethod
    def _sandbox_status(sb: _Sandbox) -> PodSandboxStatus:
        ip = "" if sb.config.host_network else SANDBOX_IP
        return PodSandboxStatus(sb.id, sb.config.metadata, sb.state, sb.created_at, ip,
                                dict(sb.config.labels), dict(sb.config.annotations))

    def _sandbox(self, sandbox_id: str) -> _Sandbox:
        sb = self._sandboxes.get(sandbox_id)
        if sb is None:
            raise NotFoundError(f"sandbox {sandbox_id[:12]}")
        return sb

    # -- runtime service: containers --------------------------------------------------------------------------------
    async def create_container(self, sandbox_id: str, config: ContainerConfig,
                               sandbox_config: PodSandboxConfig | None = None) -> str:
        await self._ready()
        sb = self._sandbox(sandbox_id)
        if sb.state is not SandboxState.READY:
            raise RuntimeServiceError(f"sandbox {sandbox_id[:12]} is not ready", "CreateContainerError")
        spec = self._image(config.image)
        if spec.ref not in self._present:
            raise RuntimeServiceError(f"image {config.image} is not present", "CreateContainerError")
        ctr = _Container(secrets.token_hex(32), sandbox_id, config, ContainerState.CREATED, time.time(),
                         isolated=self.isolate)
        ctr.env = self._env(config, sb, spec)
        ctr.cwd = config.working_dir or str(self._ctr_dir(ctr.id) / "cwd")
        await asyncio.to_thread(self._make_ctr_dirs, ctr)
        self._containers[ctr.id] = ctr
        await self._save_container(ctr)
        self._emit(ctr, ContainerEventType.CREATED)
        return ctr.id

    def _ctr_dir(self, container_id: str) -> Path:
        return self.data_dir / "containers" / container_id

    def _make_ctr_dirs(self, ctr: _Container) -> None:
        base = self._ctr_dir(ctr.id)
        (base / "cwd").mkdir(parents=True)
        (base / "tmp").mkdir()
        os.chmod(base / "tmp", 0o1777)      # the container's /tmp when isolated

    def _env(self, config: ContainerConfig, sb: _Sandbox, spec: _ImageSpec) -> dict[str, str]:
        path = f"{self.bin_dir}:{HOST_PATH}" if spec.busybox else HOST_PATH
        uid = config.security.run_as_user if config.security else None
        env = {"PATH": path, "HOSTNAME": _hostname(sb.config), "HOME": "/root" if (uid or 0) == 0 else "/"}
        if config.tty:
            env["TERM"] = "xterm"
        env.update(dict(config.envs))
        return env

    def _argv(self, ctr: _Container) -> list[str]:
        """Kubernetes' command/args over the image's default command, argv[0] resolved on the container's PATH."""
        spec = self._image(ctr.config.image)
        argv = list(ctr.config.command) + list(ctr.config.args) if ctr.config.command else \
            (list(ctr.config.args) or list(spec.cmd))
        if not argv:
            raise _StartError("no command specified")
        return self._resolve(argv, ctr.env)

    @staticmethod
    def _resolve(argv: list[str], env: Mapping[str, str]) -> list[str]:
        if "/" in argv[0]:
            return argv
        found = shutil.which(argv[0], path=env.get("PATH", ""))
        if found is None:
            raise _StartError(f'exec: "{argv[0]}": executable file not found in $PATH')
        return [found, *argv[1:]]

    async def start_container(self, container_id: str) -> None:
        await self._ready()
        ctr = self._container(container_id)
        if ctr.state is not ContainerState.CREATED:
            raise RuntimeServiceError(f"container {container_id[:12]} is {ctr.state.value}, not created",
                                      "RunContainerError")
        sb = self._sandbox(ctr.sandbox_id)
        try:
            await self._spawn(ctr, sb)
        except (_StartError, OSError) as e:
            await self._start_failed(ctr, str(e))
            raise RuntimeServiceError(f"failed to start container {ctr.config.metadata.name}: {e}",
                                      "RunContainerError") from e
        ctr.state, ctr.started_at = ContainerState.RUNNING, time.time()
        self._emit(ctr, ContainerEventType.STARTED)
        task = asyncio.create_task(self._watch(ctr))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        await self._save_container(ctr)

    async def _start_failed(self, ctr: _Container, message: str) -> None:
        """As containerd: the container is EXITED with code 128 and reason StartError."""
        if ctr.logfile is not None:
            ctr.logfile.close()
        ctr.state, ctr.exit_code, ctr.reason, ctr.message = ContainerState.EXITED, 128, "StartError", message
        ctr.started_at = ctr.finished_at = time.time()
        ctr.exited.set()
        self._emit(ctr, ContainerEventType.STOPPED)
        await self._save_container(ctr)

    async def _spawn(self, ctr: _Container, sb: _Sandbox) -> None:
        argv = [*self._user_prefix(ctr.config), *self._argv(ctr)]
        ready_r = ready_w = -1
        if ctr.isolated:
            mounts = await asyncio.to_thread(self._prepare_mounts, ctr, sb)
            ready_r, ready_w = _pipe_above_stdio()
            script = self._ns_script(mounts, _hostname(sb.config), ctr.cwd, ready_w)
            argv = [_tool("unshare"), "--mount", "--uts", "--propagation", "private", "--",
                    self.busybox, "sh", "-c", script, "sh", *argv]
        else:
            self._warn_mounts(ctr)
            await asyncio.to_thread(_make_mount_point, ctr.cwd, True, ctr.made)
        try:
            ctr.logfile = await asyncio.to_thread(_LogFile, ctr.config.log_path)
            stdio = _Stdio.open(tty=ctr.config.tty, stdin=ctr.config.stdin)
            # isolated, the script enters the working dir once the mounts are there
            ctr.proc = await stdio.spawn(argv, ctr.env, "/" if ctr.isolated else ctr.cwd,
                                         (ready_w,) if ready_w >= 0 else ())
            _close(ready_w)
            ready_w = -1
            ctr.stdio, ctr.pid, ctr.pid_start = stdio, ctr.proc.pid, _start_time(ctr.proc.pid)
            ctr.pumps = [asyncio.create_task(self._pump(ctr, channel, fd)) for channel, fd in stdio.outputs]
            if ready_r >= 0:    # so that an exec right after the start sees the hostname and the mounts
                os.set_blocking(ready_r, False)
                try:
                    await asyncio.wait_for(read_fd(ready_r), KILL_WAIT_SECONDS)
                except asyncio.TimeoutError:
                    log.warning("container %s: namespace setup still running after %gs",
                                ctr.config.metadata.name, KILL_WAIT_SECONDS)
        finally:
            _close(ready_w)
            _close(ready_r)

    def _user_prefix(self, config: ContainerConfig) -> list[str]:
        """setpriv for runAsUser/runAsGroup (root only) and allowPrivilegeEscalation=false."""
        sec = config.security
        if sec is None:
            return []
        args: list[str] = []
        root = os.geteuid() == 0
        if sec.run_as_user is not None and sec.run_as_user != os.geteuid():
            if not root:
                raise _StartError(f"runAsUser {sec.run_as_user} needs the agent to run as root")
            gid = sec.run_as_group if sec.run_as_group is not None else _primary_gid(sec.run_as_user)
            groups = ",".join(str(g) for g in sec.supplemental_groups)
            args += [f"--reuid={sec.run_as_user}", f"--regid={gid}",
                     f"--groups={groups}" if groups else "--clear-groups"]
        elif sec.run_as_group is not None and root:
            args += [f"--regid={sec.run_as_group}", "--clear-groups"]
        if sec.no_new_privs:
            args.append("--no-new-privs")
        return [_tool("setpriv"), *args, "--"] if args else []

    def _warn_mounts(self, ctr: _Container) -> None:
        if ctr.config.mounts:
            log.warning("process runtime without namespaces (root): container %s gets none of its %d mounts (%s)",
                        ctr.config.metadata.name, len(ctr.config.mounts),
                        ", ".join(m.container_path for m in ctr.config.mounts))

    def _prepare_mounts(self, ctr: _Container, sb: _Sandbox) -> list[tuple[str, str, str]]:
        """(source, target, options) in mount order for the namespace script; creates the mount points (inside
        the source of an enclosing mount when there is one, as a runtime creates them in the rootfs).

        /tmp is the container's own (`<container dir>/tmp`, bind-mounted over /tmp last, with its submounts):
        mounts below /tmp are staged in it, and so is the runtime's state dir when it lives under /tmp (it holds
        the busybox applet links and working dirs the container runs from). Every source is thus resolved in the
        host's view of /tmp."""
        sb_dir = self.data_dir / "sandboxes" / sb.id
        private_tmp = str(self._ctr_dir(ctr.id) / "tmp")
        state = os.path.realpath(self.data_dir)
        privatize = state != "/tmp" and all(os.path.normpath(m.container_path) != "/tmp" for m in ctr.config.mounts)

        def staged(path: str) -> str:
            return private_tmp + path[len("/tmp"):] if privatize and path.startswith("/tmp/") else path
        wanted = [Mount(state, state)] if privatize and state.startswith("/tmp/") else []
        wanted.append(Mount("/etc/hostname", str(sb_dir / "hostname")))
        if (sb_dir / "resolv.conf").exists():
            wanted.append(Mount("/etc/resolv.conf", str(sb_dir / "resolv.conf")))
        wanted += sorted(ctr.config.mounts, key=lambda m: os.path.normpath(m.container_path).count("/"))
        out: list[tuple[str, str, str]] = []
        done: list[tuple[str, str]] = []          # (container path, source) of the mounts so far
        for m in wanted:
            target = os.path.normpath(m.container_path)
            if not os.path.exists(m.host_path):
                raise _StartError(f"mount source {m.host_path} does not exist")
            point = ""
            for outer, source in done:
                if target.startswith(outer.rstrip("/") + "/"):
                    point = os.path.join(source, target[len(outer.rstrip("/")) + 1:])
            where = staged(target)
            # only points made on the host itself are the container's to remove (not those in volumes or its /tmp)
            made = ctr.made if not point and where == target else []
            if not _make_mount_point(point or where, os.path.isdir(m.host_path), made):
                log.info("process runtime: container %s: no mount point %s on the host; mount skipped",
                         ctr.config.metadata.name, m.container_path)
                continue
            # the kernel lists mounts by real path (/var/run → /run) and busybox finds a remount target there
            options = "bind" if m.host_path == state else "rbind"
            out.append((m.host_path, where if point else os.path.realpath(where), options))
            if m.readonly:
                out.append(("", out[-1][1], "remount,bind,ro"))
            done.append((target, m.host_path))
        if privatize:
            out.append((private_tmp, "/tmp", "rbind"))
        cwd = os.path.normpath(ctr.cwd)
        if staged(cwd) == cwd and not any(cwd == t or cwd.startswith(t.rstrip("/") + "/") for t, _ in done):
            _make_mount_point(cwd, True, ctr.made)     # else the script makes it, in its volume or in /tmp
        return out

    def _ns_script(self, mounts: list[tuple[str, str, str]], hostname: str, cwd: str, ready_fd: int) -> str:
        """What runs in the new namespaces before the container's command replaces it (same pid); closing
        `ready_fd` tells the runtime the namespaces are set up (or the script died)."""
        q, bb = shlex.quote, shlex.quote(self.busybox)
        lines = ["set -e"]
        for source, target, options in mounts:
            lines.append(f"{bb} mount -o {options} {q(source)} {q(target)}" if source
                         else f"{bb} mount -o {options} {q(target)}")
        lines += [f"{bb} hostname {q(hostname)}", f"{bb} mkdir -p {q(cwd)}", f"cd {q(cwd)}",
                  f"exec {ready_fd}>&-", 'exec "$@"']
        return "\n".join(lines)

    async def _pump(self, ctr: _Container, channel: int, fd: int) -> None:
        """Copy one output of the container to its CRI log and to attached sessions."""
        lines = _LineBuffer()
        stream = b"stdout" if channel == 1 else b"stderr"
        try:
            while True:
                try:
                    data = await asyncio.wait_for(read_fd(fd), PARTIAL_FLUSH_SECONDS) if lines.buf \
                        else await read_fd(fd)
                except asyncio.TimeoutError:
                    self._log(ctr, stream, lines.flush())
                    continue
                if not data:
                    break
                self._log(ctr, stream, lines.feed(data))
                for session in list(ctr.attached):
                    session.feed((channel, data))
        finally:
            self._log(ctr, stream, lines.flush())

    @staticmethod
    def _log(ctr: _Container, stream: bytes, records: list[tuple[bytes, bytes]]) -> None:
        if ctr.logfile is not None:
            try:
                ctr.logfile.write(stream, records)
            except OSError as e:
                log.warning("container %s: cannot write its log: %s", ctr.id[:12], e)

    async def _watch(self, ctr: _Container) -> None:
        """The main process exited (the child watcher wakes us at once): take its group down, drain, report."""
        assert ctr.proc is not None and ctr.stdio is not None
        code = exit_code(await ctr.proc.wait())
        finished = time.time()
        _killpg(ctr.pid, signal.SIGKILL)
        await _settle(ctr.pumps, DRAIN_SECONDS)
        ctr.stdio.close_ours()
        if ctr.logfile is not None:
            ctr.logfile.close()
        ctr.state, ctr.exit_code, ctr.finished_at = ContainerState.EXITED, code, finished
        ctr.reason = "Completed" if code == 0 else "Error"
        ctr.exited.set()
        for session in list(ctr.attached):
            session.feed(None)
        ctr.attached.clear()
        for session in list(ctr.execs):      # exec'd processes die with the container, as in its pid namespace
            _signal(session.proc, signal.SIGKILL)
        if ctr.id in self._containers:
            self._emit(ctr, ContainerEventType.STOPPED)
            await self._save_container(ctr)

    async def stop_container(self, container_id: str, timeout: float) -> None:
        """SIGTERM to the container's process group, SIGKILL after `timeout` s; returns once it has exited."""
        await self._ready()
        ctr = self._containers.get(container_id)
        if ctr is None:
            return
        if ctr.state is ContainerState.CREATED:
            ctr.state, ctr.finished_at = ContainerState.EXITED, time.time()
            ctr.exited.set()
            await self._save_container(ctr)
            return
        if ctr.state is ContainerState.UNKNOWN:
            await self._stop_foreign(ctr, timeout)
            return
        if ctr.state is not ContainerState.RUNNING or ctr.proc is None:
            return
        if timeout > 0:
            _signal(ctr.proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(ctr.exited.wait(), timeout)
                return
            except asyncio.TimeoutError:
                pass
        _signal(ctr.proc, signal.SIGKILL)
        try:
            await asyncio.wait_for(ctr.exited.wait(), KILL_WAIT_SECONDS)
        except asyncio.TimeoutError:
            raise RuntimeServiceError(f"container {container_id[:12]} did not die after SIGKILL") from None

    async def _stop_foreign(self, ctr: _Container, timeout: float) -> None:
        """Stop a process an earlier runtime object started: not our child, so watch /proc (and never signal a
        group whose leader is gone: its pid may belong to someone else by now)."""
        code = 143
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_WAIT_SECONDS)):
            if not _alive(ctr.pid, ctr.pid_start) or wait <= 0:
                continue
            code = 128 + sig
            _killpg(ctr.pid, sig)
            deadline = time.monotonic() + wait
            while _alive(ctr.pid, ctr.pid_start) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        ctr.state, ctr.exit_code, ctr.reason = ContainerState.EXITED, code, "Error"
        ctr.finished_at = time.time()
        ctr.exited.set()
        self._emit(ctr, ContainerEventType.STOPPED)
        await self._save_container(ctr)

    async def remove_container(self, container_id: str) -> None:
        """Kill it if still running, then forget it and its directory (the kubelet owns the log file)."""
        await self._ready()
        ctr = self._containers.get(container_id)
        if ctr is None:
            return
        if ctr.state in (ContainerState.RUNNING, ContainerState.UNKNOWN):
            await self.stop_container(container_id, 0)
        self._emit(ctr, ContainerEventType.DELETED)
        self._containers.pop(container_id, None)
        await self._release_mount_points(ctr)
        await asyncio.to_thread(shutil.rmtree, self._ctr_dir(container_id), True)

    async def _release_mount_points(self, ctr: _Container) -> None:
        """Remove the host mount points `ctr` made; one a live container still mounts on passes to that one."""
        if not ctr.made:
            return
        live = [c for c in self._containers.values() if c.state is not ContainerState.EXITED]
        users = {os.path.normpath(path): c for c in live
                 for path in (c.cwd, *(m.container_path for m in c.config.mounts))}
        kept = await asyncio.to_thread(_remove_mount_points, ctr.made, set(users))
        heirs: dict[str, _Container] = {}
        for path in kept:
            heir = next(c for t, c in users.items() if t == path or t.startswith(path + "/"))
            heir.made.insert(sum(1 for p in heir.made if p in kept), path)
            heirs[heir.id] = heir
        for heir in heirs.values():
            await self._save_container(heir)

    async def container_status(self, container_id: str) -> ContainerStatus:
        await self._ready()
        return self._status(self._container(container_id))

    async def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        await self._ready()
        return [self._status(c) for c in self._containers.values() if sandbox_id in (None, c.sandbox_id)]

    def _status(self, c: _Container) -> ContainerStatus:
        image = normalize_image(c.config.image)
        return ContainerStatus(c.id, c.sandbox_id, c.config.metadata, image, image_ref(image), c.state,
                               c.created_at, c.started_at, c.finished_at, c.exit_code, c.reason, c.message,
                               c.config.log_path, dict(c.config.labels), dict(c.config.annotations))

    def _container(self, container_id: str) -> _Container:
        ctr = self._containers.get(container_id)
        if ctr is None:
            raise NotFoundError(f"container {container_id[:12]}")
        return ctr

    def _running(self, container_id: str) -> _Container:
        ctr = self._container(container_id)
        if ctr.state is not ContainerState.RUNNING or ctr.proc is None:
            raise RuntimeServiceError(f"container {container_id[:12]} is {ctr.state.value}, not running",
                                      "ContainerNotRunning")
        return ctr

    # -- streaming --------------------------------------------------------------------------------------------------
    async def exec(self, container_id: str, cmd: list[str], *, stdin: bool, tty: bool) -> _ExecSession:
        """Run `cmd` beside the container's process: same env, cwd, user and (when isolated) namespaces."""
        await self._ready()
        ctr = self._running(container_id)
        if not cmd:
            raise RuntimeServiceError("exec: no command", "ExecError")
        try:
            argv = [*self._user_prefix(ctr.config), *self._resolve(list(cmd), ctr.env)]
        except _StartError as e:
            raise RuntimeServiceError(str(e), "ExecError") from None
        if ctr.isolated:
            argv = [_tool("nsenter"), "-t", str(ctr.pid), "-m", "-u", "--wd", "--", *argv]    # its cwd, resolved inside
        stdio = _Stdio.open(tty=tty, stdin=stdin)
        try:
            proc = await stdio.spawn(argv, dict(ctr.env, TERM="xterm") if tty else ctr.env,
                                     "/" if ctr.isolated else ctr.cwd)
        except OSError as e:
            raise RuntimeServiceError(f"exec {cmd[0]}: {e}", "ExecError") from e
        session = _ExecSession(proc, stdio)
        ctr.execs.add(session)
        session.finisher.add_done_callback(lambda _: ctr.execs.discard(session))
        return session

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes, bytes]:
        """Run `cmd` to completion; past `timeout` it is killed and RuntimeServiceError(reason DeadlineExceeded)
        is raised, as CRI ExecSync fails with a deadline error."""
        session = await self.exec(container_id, cmd, stdin=False, tty=False)
        out: dict[int, list[bytes]] = {1: [], 2: []}

        async def collect() -> int:
            while (item := await session.read_output()) is not None:
                out[item[0]].append(item[1])
            return await session.wait()
        try:
            code = await asyncio.wait_for(collect(), timeout if timeout > 0 else None)
        except asyncio.TimeoutError:
            raise RuntimeServiceError(f"command {cmd!r} timed out after {timeout:g}s", "DeadlineExceeded") from None
        finally:
            await session.close()
        return code, b"".join(out[1]), b"".join(out[2])

    async def attach(self, container_id: str, *, stdin: bool, tty: bool) -> _AttachSession:
        await self._ready()
        return _AttachSession(self._running(container_id), stdin)

    async def port_forward(self, sandbox_id: str, port: int) -> _TcpStream:
        """The sandbox is the host's network: a TCP connection to 127.0.0.1:`port`."""
        await self._ready()
        self._sandbox(sandbox_id)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            raise RuntimeServiceError(f"failed to connect to localhost:{port} of sandbox {sandbox_id[:12]}: {e}",
                                      "PortForwardError") from e
        return _TcpStream(reader, writer)

    async def reopen_container_log(self, container_id: str) -> None:
        await self._ready()
        ctr = self._running(container_id)
        if ctr.logfile is not None:
            await ctr.logfile.reopen()

    async def container_stats(self, container_id: str) -> ContainerStats:
        """CPU time and resident memory of the container's process group, from /proc."""
        await self._ready()
        ctr = self._container(container_id)
        if ctr.state is not ContainerState.RUNNING:
            return ContainerStats(container_id, at=time.time())
        cpu, rss = await asyncio.to_thread(_group_usage, ctr.pid)
        return ContainerStats(container_id, cpu, rss, time.time())

    # -- images -----------------------------------------------------------------------------------------------------
    def _image(self, image: str) -> _ImageSpec:
        spec = self._images.get(normalize_image(image))
        if spec is None:
            raise ImagePullError(f"the process runtime runs host commands; image {image} is not available")
        return spec

    async def pull_image(self, image: str, auth: AuthConfig | None = None) -> str:
        await self._ready()
        spec = self._image(image)
        self._present.add(spec.ref)
        return image_ref(spec.ref)

    async def image_status(self, image: str) -> Image | None:
        await self._ready()
        ref = normalize_image(image)
        return self._image_info(self._images[ref]) if ref in self._present else None

    async def list_images(self) -> list[Image]:
        await self._ready()
        return [self._image_info(self._images[ref]) for ref in sorted(self._present)]

    async def remove_image(self, image: str) -> None:
        await self._ready()
        self._present.discard(normalize_image(image))

    @staticmethod
    def _image_info(spec: _ImageSpec) -> Image:
        return Image(image_ref(spec.ref), (spec.ref,), (image_ref(spec.ref),), spec.size)

    async def image_fs_usage(self) -> tuple[int, int]:
        await self._ready()
        st = await asyncio.to_thread(os.statvfs, self.data_dir)
        used = sum(self._images[ref].size for ref in self._present)
        return used, st.f_blocks * st.f_frsize

    # -- lifecycle --------------------------------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop every running container (processes cannot be adopted by a later runtime object)."""
        running = [c.id for c in self._containers.values() if c.state is ContainerState.RUNNING]
        await asyncio.gather(*(self.stop_container(cid, 2.0) for cid in running), return_exceptions=True)
        if self._watchers:
            await asyncio.wait(list(self._watchers), timeout=DRAIN_SECONDS + 1)


def _pipe_above_stdio() -> tuple[int, int]:
    """A pipe whose ends are not 0-2 (an agent started with closed stdio must not hand out fd 0 as a sync fd)."""
    r, w = os.pipe()
    if min(r, w) > 2:
        return r, w
    r2, w2 = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 3), fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 3)
    _close(r)
    _close(w)
    return r2, w2


def _make_mount_point(target: str, is_dir: bool, made: list[str]) -> bool:
    """Create a missing mount point on the host (empty), appending what was created to `made` (outermost first);
    False for the kernel's own trees, or on failure."""
    if os.path.lexists(target):
        return True
    if any(target == r or target.startswith(r + "/") for r in _SKIP_MOUNT_ROOTS):
        return False
    missing, parent = [], os.path.dirname(target)
    while parent != "/" and not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    try:
        for path in reversed(missing):
            os.mkdir(path)
            made.append(path)
        if is_dir:
            os.mkdir(target)
        else:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        made.append(target)
    except OSError:
        return False
    return True


def _remove_mount_points(made: list[str], in_use: set[str]) -> list[str]:
    """Undo `_make_mount_point`, innermost first, leaving anything not empty or still a live container's mount
    target (removing a mount point detaches it in every mount namespace); returns those kept for that reason."""
    kept = []
    for path in reversed(made):
        if any(t == path or t.startswith(path + "/") for t in in_use):
            kept.insert(0, path)
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            elif os.path.isfile(path) and os.path.getsize(path) == 0:
                os.unlink(path)
        except OSError:
            pass
    return kept


def _primary_gid(uid: int) -> int:
    """The group a user runs as when runAsGroup is unset: its passwd entry's, else 0 (as container runtimes do)."""
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return 0


class _StartError(Exception):
    """The container's process could not be started (bad command, missing mount source...)."""


def _hostname(config: PodSandboxConfig) -> str:
    """The pod's hostname; a hostNetwork pod keeps the node's, as it shares the host's UTS namespace in CRI."""
    if config.host_network:
        return socket.gethostname()
    return config.hostname or config.metadata.name


def _group_usage(pgid: int) -> tuple[int, int]:
    """(cpu ns, rss bytes) summed over the processes of one process group."""
    ticks, pages = 0, 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        if fields and int(fields[2]) == pgid:
            ticks += sum(int(f) for f in fields[11:15])
            pages += int(fields[21])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK"), pages * os.sysconf("SC_PAGE_SIZE")
