"""Container logs: reading the CRI log files, the kubelet's /containerLogs handler, and log rotation.

Runtimes write each container attempt's output to `ContainerConfig.log_path` in the CRI log format, one record a
line: `<RFC3339Nano> <stdout|stderr> <F|P> <text>`, where P marks a partial line continued by the stream's next
record (containerd splits long lines and writes an unterminated last line as P). The kubelet serves those files
(pkg/kubelet/kuberuntime/logs/logs.go) and rotates them (pkg/kubelet/logs/container_log_manager.go): the file is
renamed to `<path>.<YYYYmmdd-HHMMSS>`, the runtime reopens a fresh one at the same path, older rotated files are
gzipped and only `max_files` are kept.

Differences from the Go kubelet, on purpose: partial records are joined into one logical line (so `--timestamps`
prints one timestamp per line and `--tail` counts lines, not chunks), rotated files are read when the tail (or a
whole read) reaches back into them, and following survives a rotation (the kubelet's own reader does neither).
Timestamps are kept as integer nanoseconds: a float cannot hold nanoseconds since 1970.
"""
from __future__ import annotations

import asyncio
import calendar
import collections
import contextlib
import dataclasses
import gzip
import io
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import IO, Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator

from aiohttp import web

from ..api import errors
from ..runtime.interface import ContainerState, NotFoundError, RuntimeServiceError
from .lookup import find_container, find_sandbox

log = logging.getLogger(__name__)

BLOCK = 64 * 1024                 # read size, forwards and backwards
POLL = 0.1                        # follow: seconds between looks at the file when nothing new came
ROTATION_GRACE = 1.0              # follow: seconds a rotated-away file is still read for late writes
RUNNING_CHECK = 0.5               # follow: seconds between asking the runtime whether the container still runs
MAX_PENDING = 1024 * 1024         # a partial line longer than this is passed on unjoined rather than buffered
STREAMS = {"all": frozenset({"stdout", "stderr"}), "stdout": frozenset({"stdout"}),
           "stderr": frozenset({"stderr"})}
ROTATED_TIME_FORMAT = "%Y%m%d-%H%M%S"     # the kubelet's suffix for rotated files (Go: 20060102-150405)

_TS = re.compile(rb"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?"
                 rb"(?:([Zz])|([+-])(\d{2}):(\d{2}))$")
_ROTATED = re.compile(r"^(?:(\d{8}-\d{6}(?:\.\d+)?)|(\d+))(\.gz)?$")


# -- timestamps --------------------------------------------------------------------------------------------------


def parse_time_ns(text: str | bytes) -> int:
    """RFC 3339 with up to nanosecond fractions (containerd trims trailing zeros) → Unix nanoseconds."""
    m = _TS.match(text.encode() if isinstance(text, str) else text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    frac = m.group(7)
    ns = int(frac.ljust(9, b"0")) if frac else 0
    if m.group(9):
        offset = (int(m.group(10)) * 60 + int(m.group(11))) * 60
        secs -= offset if m.group(9) == b"+" else -offset
    return secs * 1_000_000_000 + ns


_fmt_cache: tuple[int, bytes] = (-1, b"")


def format_time_ns(ns: int) -> bytes:
    """Unix nanoseconds → RFC3339NanoFixed in UTC (`2024-01-01T00:00:00.123456789Z`), as kubectl shows them."""
    global _fmt_cache
    secs, frac = divmod(ns, 1_000_000_000)
    if _fmt_cache[0] != secs:
        _fmt_cache = (secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)).encode())
    return b"%s.%09dZ" % (_fmt_cache[1], frac)


def cri_record(stream: str, text: bytes, *, partial: bool = False, at_ns: int | None = None) -> bytes:
    """One record in the CRI log format, as containerd writes it (used by runtimes without their own writer)."""
    ts = format_time_ns(time.time_ns() if at_ns is None else at_ns)
    # containerd's RFC3339Nano trims trailing zeros of the fraction; readers accept both.
    return b"%s %s %s %s\n" % (ts, stream.encode(), b"P" if partial else b"F", text)


# -- parsing -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class LogLine:
    """One logical line: the partial records of a stream joined; `data` ends with a newline when complete."""
    ts: int
    stream: str
    data: bytes
    continued: bool = False        # the rest of a line too long to join: no timestamp prefix of its own


def parse_record(raw: bytes) -> tuple[int, str, bool, bytes] | None:
    """(timestamp ns, stream, partial, text) of one CRI log record (without its newline); None if malformed."""
    parts = raw.split(b" ", 3)
    if len(parts) < 3:
        return None
    stream = parts[1]
    if stream == b"stdout":
        name = "stdout"
    elif stream == b"stderr":
        name = "stderr"
    else:
        return None
    try:
        ts = parse_time_ns(parts[0])
    except ValueError:
        return None
    # Tags are ':'-separated for forward compatibility; the first says full or partial.
    partial = parts[2].split(b":", 1)[0] == b"P"
    return ts, name, partial, parts[3] if len(parts) > 3 else b""


class _Assembler:
    """Joins partial records into lines, per stream."""

    def __init__(self, streams: frozenset[str]) -> None:
        self.streams = streams
        self.pending: dict[str, LogLine] = {}

    def feed(self, raw: bytes) -> LogLine | None:
        rec = parse_record(raw)
        if rec is None or rec[1] not in self.streams:
            return None
        ts, stream, partial, text = rec
        line = self.pending.get(stream)
        if line is None:
            line = LogLine(ts, stream, text)
        else:
            line.data += text
        if partial:
            if len(line.data) < MAX_PENDING:
                self.pending[stream] = line
                return None
            self.pending[stream] = LogLine(ts, stream, b"", continued=True)
            return line
        self.pending.pop(stream, None)
        line.data += b"\n"
        return line

    def flush(self) -> list[LogLine]:
        """Unterminated lines at the very end (the container ended without a newline)."""
        lines = sorted((ln for ln in self.pending.values() if ln.data), key=lambda ln: ln.ts)
        self.pending.clear()
        return lines


class _Output:
    """since, timestamps and limitBytes applied to lines on their way out."""

    def __init__(self, since_ns: int | None, timestamps: bool, limit_bytes: int | None) -> None:
        self.since_ns = since_ns
        self.timestamps = timestamps
        self.remain = limit_bytes if limit_bytes is not None else -1
        self.done = limit_bytes is not None and limit_bytes <= 0

    def render(self, lines: Iterable[LogLine]) -> bytes:
        out = []
        for line in lines:
            if self.done:
                break
            if self.since_ns is not None and line.ts < self.since_ns:
                continue
            data = line.data
            if self.timestamps and not line.continued:
                data = format_time_ns(line.ts) + b" " + data
            if self.remain >= 0:
                if len(data) >= self.remain:
                    data = data[:self.remain]
                    self.done = True
                self.remain -= len(data)
            out.append(data)
        return b"".join(out)


# -- files -------------------------------------------------------------------------------------------------------


def rotated_files(path: str) -> list[str]:
    """The rotated siblings of `path` (`path.<YYYYmmdd-HHMMSS>[.gz]`, `path.N[.gz]`), oldest first."""
    directory, base = os.path.split(path)
    found = []
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    for name in names:
        if not name.startswith(base + "."):
            continue
        m = _ROTATED.match(name[len(base) + 1:])
        if not m:
            continue
        # Time-stamped names sort by their stamp; logrotate-style numbers count backwards (.1 is the newest)
        # and come before time-stamped ones.
        key = (1, m.group(1), 0) if m.group(1) else (0, "", -int(m.group(2)))
        found.append((key, os.path.join(directory, name)))
    found.sort()
    return [p for _, p in found]


def _open(path: str) -> IO[bytes]:
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as z:
            return io.BytesIO(z.read())
    return open(path, "rb")


def _size(f: IO[bytes]) -> int:
    f.seek(0, os.SEEK_END)
    return f.tell()


def _tail_scan(f: IO[bytes], end: int, n: int, streams: frozenset[str], count_trailing: bool) -> tuple[int, int]:
    """Read backwards from `end` in blocks until the last `n` lines of `streams` are covered, including the
    partial records they join. Returns (offset to read forwards from, lines found): fewer than `n` means the
    whole file is needed and the rest must come from an older rotated file."""
    count = 0
    open_: set[str] = set()     # streams whose oldest included line may start further back
    closed: set[str] = set()    # streams whose included lines are all complete
    start = end
    pos = end
    cur = end                    # start offset of the oldest record looked at so far
    carry = b""
    first = True
    while pos > 0:
        size = min(BLOCK, pos)
        pos -= size
        f.seek(pos)
        data = f.read(size) + carry
        parts = data.split(b"\n")
        tail = parts.pop()      # after the last newline: "" or, at the end of the file, an unterminated record
        records: list[tuple[bytes, int]] = []
        if first:
            first = False
            if tail:
                cur -= len(tail)
                records.append((tail, cur))
        if pos > 0:
            carry = parts[0] + b"\n"
            parts = parts[1:]
        for raw in reversed(parts):
            cur -= len(raw) + 1
            records.append((raw, cur))
        for raw, offset in records:
            rec = parse_record(raw)
            if rec is None or rec[1] not in streams or rec[1] in closed:
                continue
            stream, partial = rec[1], rec[2]
            if stream in open_:
                if partial:                 # an earlier piece of the open line
                    start = offset
                    continue
                if count >= n:              # the line before the oldest one we need: done with this stream
                    open_.discard(stream)
                    closed.add(stream)
                    if not open_:
                        return start, count
                    continue
                count += 1                  # ends the line before: it is needed too
                start = offset
                continue
            # The newest record of this stream.
            if count >= n:
                closed.add(stream)
                if not open_:
                    return start, count
                continue
            if not partial or count_trailing:
                count += 1
            open_.add(stream)
            start = offset
        if count >= n and not open_:
            return start, count
    return start, count


def _complete_lines(buf: bytes) -> tuple[list[bytes], bytes]:
    """Split off whole records; the unterminated rest stays for the next read."""
    cut = buf.rfind(b"\n")
    if cut < 0:
        return [], buf
    return buf[:cut].split(b"\n"), buf[cut + 1:]


@dataclasses.dataclass
class _Plan:
    """What to read first: (file, offset) pairs, oldest first; the live file is `current`, open since before
    its size was taken, so a rotation in between cannot make us read another file's bytes."""
    parts: list[tuple[str, int]]
    current: IO[bytes] | None
    current_end: int
    current_path: str = ""

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


def _initial_plan(path: str, tail_lines: int | None, streams: frozenset[str], follow: bool,
                  since_ns: int | None) -> _Plan:
    files = rotated_files(path)
    if since_ns is not None:
        # A rotated file last written before `since` holds nothing newer (its lines are older than its mtime).
        kept = []
        for p in files:
            with contextlib.suppress(OSError):
                if os.stat(p).st_mtime_ns + 1_000_000_000 >= since_ns:
                    kept.append(p)
        files = kept
    try:
        current: IO[bytes] | None = open(path, "rb")
    except FileNotFoundError:
        current = None
    plan = _Plan([], current, 0, path)
    if current is not None:
        files.append(path)
        plan.current_end = _size(current)
        if follow:
            # Following resumes after the last whole record; a record being written is read once whole.
            plan.current_end = _last_newline_end(current, plan.current_end)
    if tail_lines is None:
        plan.parts = [(p, 0) for p in files]
        return plan
    if tail_lines == 0:
        return plan
    need = tail_lines
    for p in reversed(files):
        if p == path and current is not None:
            start, found = _tail_scan(current, plan.current_end, need, streams, count_trailing=not follow)
        else:
            try:
                with _open(p) as f:
                    start, found = _tail_scan(f, _size(f), need, streams, count_trailing=True)
            except FileNotFoundError:
                continue
        plan.parts.insert(0, (p, start))
        need -= found
        if need <= 0:
            break
    return plan


def _last_newline_end(f: IO[bytes], end: int) -> int:
    pos = end
    while pos > 0:
        size = min(BLOCK, pos)
        pos -= size
        f.seek(pos)
        cut = f.read(size).rfind(b"\n")
        if cut >= 0:
            return pos + cut + 1
    return 0


def _read_region(plan: _Plan, path: str, start: int) -> Iterator[bytes]:
    """Raw records of one planned file from `start` (the live file: up to where the plan saw it end)."""
    if path == plan.current_path and plan.current is not None:
        f, end, owned = plan.current, plan.current_end, False
    else:
        try:
            f, end, owned = _open(path), None, True
        except FileNotFoundError:
            return
    try:
        f.seek(start)
        left = None if end is None else end - start
        buf = b""
        while left is None or left > 0:
            chunk = f.read(BLOCK if left is None else min(BLOCK, left))
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            lines, buf = _complete_lines(buf + chunk)
            yield from lines
        if buf:
            yield buf
    finally:
        if owned:
            f.close()


async def read_logs(path: str, *, follow: bool = False, tail_lines: int | None = None, since: float | None = None,
                    timestamps: bool = False, limit_bytes: int | None = None, stream: str = "all",
                    is_running: Callable[[], Awaitable[bool]] | None = None,
                    since_ns: int | None = None) -> AsyncIterator[bytes]:
    """A container's log as the user sees it, in chunks (one per block read, so a follower gets lines at once).

    `tail_lines` counts lines from the end (reading backwards, and into rotated files when the current one has
    too few), `since` (Unix seconds; or `since_ns`) drops older lines, `limit_bytes` cuts the output,
    `stream` picks stdout or stderr. With `follow`, new lines keep coming until `is_running` says the container
    has ended and the file is drained; a rotation (a new file at `path`) is followed once the old one is drained.
    """
    streams = STREAMS.get(stream)
    if streams is None:
        raise ValueError(f"stream must be one of {sorted(STREAMS)}")
    if since_ns is None and since is not None:
        since_ns = int(since * 1_000_000_000)
    out = _Output(since_ns, timestamps, limit_bytes)
    if out.done:
        return
    assembler = _Assembler(streams)
    plan = await asyncio.to_thread(_initial_plan, path, tail_lines, streams, follow, since_ns)
    try:
        # The existing content: the tail (or everything) up to where the live file ended a moment ago.
        if tail_lines is not None:
            def collect() -> list[LogLine]:
                last: collections.deque[LogLine] = collections.deque(maxlen=tail_lines)
                for p, start in plan.parts:
                    for raw in _read_region(plan, p, start):
                        line = assembler.feed(raw)
                        if line is not None:
                            last.append(line)
                if not follow:
                    last.extend(assembler.flush())
                return list(last)
            data = out.render(await asyncio.to_thread(collect))
            if data:
                yield data
        else:
            for p, start in plan.parts:
                reader = _read_region(plan, p, start)
                try:
                    while not out.done:
                        raws = await asyncio.to_thread(_take, reader, 2048)
                        if not raws:
                            break
                        data = out.render(ln for ln in map(assembler.feed, raws) if ln is not None)
                        if data:
                            yield data
                finally:
                    reader.close()
        if out.done:
            return
        if not follow:
            data = out.render(assembler.flush())
            if data:
                yield data
            return
        tail = _Tail(path, plan.current, plan.current_end)
        plan.current = None         # the follower owns it now
        async for data in _follow(tail, assembler, out, is_running):
            yield data
    finally:
        plan.close()


def _take(it: Iterator[bytes], n: int) -> list[bytes]:
    return [raw for raw, _ in zip(it, range(n))]


class _Tail:
    """The file being followed (all methods run in a worker thread). After a rotation the renamed file stays open
    for a grace period: the runtime may finish a write to it just after we saw the new file appear."""

    def __init__(self, path: str, f: IO[bytes] | None, offset: int) -> None:
        self.path = path
        self.f = f
        self.buf = b""
        self.offset = offset
        self.old: IO[bytes] | None = None
        self.old_buf = b""
        self.old_until = 0.0
        self.skipped: list[str] = []
        if f is not None:
            f.seek(offset)

    def read(self) -> list[bytes]:
        if self.old is not None:
            chunk = self.old.read(BLOCK)
            if chunk:
                lines, self.old_buf = _complete_lines(self.old_buf + chunk)
                if lines:
                    return lines
            elif time.monotonic() > self.old_until:
                self.old.close()
                self.old = None
                rest, self.old_buf = self.old_buf, b""
                if rest:
                    return [rest]
        while self.skipped:
            # Rotated more than once between two looks: files we never had open, read whole, in order.
            name = self.skipped.pop(0)
            try:
                f = _open(name)
            except FileNotFoundError:
                try:
                    f = _open(name + ".gz")     # compressed in the meantime
                except FileNotFoundError:
                    continue
            with f:
                lines, rest = _complete_lines(f.read())
            return lines + ([rest] if rest else [])
        if self.f is None:
            try:
                self.f = open(self.path, "rb")
            except FileNotFoundError:
                return []
            self.f.seek(self.offset)
        chunk = self.f.read(BLOCK)
        if not chunk:
            return []
        lines, self.buf = _complete_lines(self.buf + chunk)
        return lines

    def rotated(self) -> bool:
        """Another file now sits at the path (renamed away, runtime reopened): switch to it from its start."""
        if self.f is None:
            return False
        try:
            new = open(self.path, "rb")     # opened now: by the next look it may have been rotated away too
        except FileNotFoundError:
            return False            # renamed, the runtime has not reopened yet: keep draining the old one
        mine, theirs = os.fstat(self.f.fileno()), os.fstat(new.fileno()).st_ino
        if theirs == mine.st_ino:
            new.close()
            return False
        # Where did ours go? By inode, or, once gzipped (the manager keeps the mtime), by mtime.
        rotated = rotated_files(self.path)
        for i, name in enumerate(rotated):
            with contextlib.suppress(OSError):
                other = os.stat(name)
                if other.st_ino == mine.st_ino or (name.endswith(".gz")
                                                   and other.st_mtime_ns == mine.st_mtime_ns):
                    for later in rotated[i + 1:]:
                        with contextlib.suppress(OSError):
                            if os.stat(later).st_ino != theirs:    # not the one just opened, renamed since
                                self.skipped.append(later)
                    break
        if self.old is not None:
            self.old.close()
        self.old, self.old_buf, self.old_until = self.f, self.buf, time.monotonic() + ROTATION_GRACE
        self.f, self.offset, self.buf = new, 0, b""
        return True

    def leftover(self) -> list[bytes]:
        bufs = [b for b in (self.old_buf, self.buf) if b]
        self.old_buf = self.buf = b""
        return bufs

    def close(self) -> None:
        for f in (self.old, self.f):
            if f is not None:
                f.close()
        self.old = self.f = None


async def _follow(tail: _Tail, assembler: _Assembler, out: _Output,
                  is_running: Callable[[], Awaitable[bool]] | None) -> AsyncIterator[bytes]:
    last_check = time.monotonic()
    try:
        while not out.done:
            raws = await asyncio.to_thread(tail.read)
            if raws:
                data = out.render(ln for ln in map(assembler.feed, raws) if ln is not None)
                if data:
                    yield data
                continue
            if await asyncio.to_thread(tail.rotated):
                continue
            now = time.monotonic()
            if now - last_check >= RUNNING_CHECK:
                last_check = now
                if is_running is None or not await is_running():
                    # Ended: whatever it wrote before exiting is in the file now; drain it and stop.
                    rest: list[bytes] = []
                    while True:
                        batch = await asyncio.to_thread(tail.read)
                        if batch:
                            rest += batch
                        elif not await asyncio.to_thread(tail.rotated):
                            break
                    rest += tail.leftover()
                    lines = [ln for ln in map(assembler.feed, rest) if ln is not None]
                    data = out.render([*lines, *assembler.flush()])
                    if data:
                        yield data
                    return
            await asyncio.sleep(POLL)
    finally:
        tail.close()


# -- the kubelet's /containerLogs handler --------------------------------------------------------------------------


def _bool(query: Any, name: str) -> bool:
    """As the API converts query parameters: only absent, "0" and "false" (any case) are false."""
    value = query.get(name)
    return value is not None and value != "0" and value.lower() != "false"


def _int(query: Any, name: str, minimum: int) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise errors.BadRequest(f'invalid value for {name}: "{value}"') from None
    if n < minimum:
        raise errors.BadRequest(f"{name} must be {'greater than 0' if minimum == 1 else 'non-negative'}: {n}")
    return n


@dataclasses.dataclass
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_ns: int | None = None
    stream: str = "all"


def parse_log_options(query: Any, now_ns: int | None = None) -> LogOptions:
    """PodLogOptions from a query string; errors.BadRequest for values the API would reject."""
    opts = LogOptions(follow=_bool(query, "follow"), previous=_bool(query, "previous"),
                      timestamps=_bool(query, "timestamps"), tail_lines=_int(query, "tailLines", 0),
                      limit_bytes=_int(query, "limitBytes", 1))
    since_seconds = _int(query, "sinceSeconds", 1)
    since_time = query.get("sinceTime") or None
    if since_seconds is not None and since_time is not None:
        raise errors.BadRequest("at most one of sinceTime or sinceSeconds may be specified")
    if since_seconds is not None:
        opts.since_ns = (time.time_ns() if now_ns is None else now_ns) - since_seconds * 1_000_000_000
    elif since_time is not None:
        try:
            opts.since_ns = parse_time_ns(since_time)
        except ValueError:
            raise errors.BadRequest(f'invalid value for sinceTime: "{since_time}"') from None
    stream = query.get("stream") or "All"
    if stream.lower() not in STREAMS:
        raise errors.BadRequest(f'invalid value for stream: "{stream}" (All, Stdout or Stderr)')
    opts.stream = stream.lower()
    return opts


def _status(err: errors.APIError) -> web.Response:
    return web.Response(body=json.dumps(err.status()).encode(), status=err.code, content_type="application/json")


async def serve_container_logs(request: web.Request, runtime: Any, namespace: str, pod: str,
                               container: str) -> web.StreamResponse:
    """GET /containerLogs/{namespace}/{pod}/{container}: the container's log as text/plain, chunked, flushed a
    chunk at a time so `kubectl logs -f` shows lines as they come; ends when the client goes away."""
    try:
        opts = parse_log_options(request.query)
    except errors.APIError as e:
        return _status(e)
    try:
        await find_sandbox(runtime, namespace, pod)
    except NotFoundError:
        return _status(errors.NotFound(f'pod "{pod}" does not exist'))
    try:
        status = await find_container(runtime, namespace, pod, container, previous=opts.previous)
    except NotFoundError:
        if opts.previous:
            return _status(errors.NotFound(f'previous terminated container "{container}" in pod "{pod}" not found'))
        return _status(errors.NotFound(f'container "{container}" in pod "{pod}" not found'))
    except RuntimeServiceError as e:
        return _status(errors.APIError(f"failed to look up container {container!r}: {e}"))
    if not status.log_path:
        return _status(errors.NotFound(f'container "{container}" in pod "{pod}" has no log'))

    container_id = status.id

    async def is_running() -> bool:
        try:
            return (await runtime.container_status(container_id)).state is ContainerState.RUNNING
        except RuntimeServiceError:
            return False

    response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunks = read_logs(status.log_path, follow=opts.follow, tail_lines=opts.tail_lines, since_ns=opts.since_ns,
                       timestamps=opts.timestamps, limit_bytes=opts.limit_bytes, stream=opts.stream,
                       is_running=is_running)

    async def pump() -> None:
        async for chunk in chunks:
            await response.write(chunk)

    pumping = asyncio.ensure_future(pump())
    try:
        # A follower may sit idle for long: notice the client leaving without waiting for the next write.
        while True:
            done, _ = await asyncio.wait({pumping}, timeout=0.5)
            if done:
                break
            transport = request.transport
            if transport is None or transport.is_closing():
                break
    finally:
        if not pumping.done():
            pumping.cancel()
            await asyncio.wait({pumping})
        with contextlib.suppress(RuntimeError):
            await chunks.aclose()
    if pumping.cancelled():
        return response
    exc = pumping.exception()
    if exc is not None:
        if not isinstance(exc, ConnectionError):
            log.warning("serving the log of %s/%s/%s failed: %s", namespace, pod, container, exc)
        return response
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


# -- rotation ----------------------------------------------------------------------------------------------------


def _rotate_sync(path: str, max_files: int, compress: bool) -> str | None:
    """Make room (gzip all but the newest rotated file, drop the oldest beyond max_files - 1), then rename the
    live file away. Returns the new name, or None when there was nothing to rotate."""
    rotated = rotated_files(path)
    # Keep max_files in all, the live file included; the rename adds one rotated file.
    for old in rotated[:max(0, len(rotated) - (max_files - 2))] if max_files >= 2 else rotated:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old)
    rotated = rotated_files(path)
    if compress:
        for old in rotated:       # the newest rotated one may still be written to until the reopen: it is
            if old.endswith(".gz"):  # compressed at the next rotation, when it is one of these older ones
                continue
            st = os.stat(old)
            with open(old, "rb") as src, gzip.open(old + ".tmp", "wb") as dst:
                while chunk := src.read(BLOCK):
                    dst.write(chunk)
            os.utime(old + ".tmp", ns=(st.st_atime_ns, st.st_mtime_ns))
            os.rename(old + ".tmp", old + ".gz")
            os.unlink(old)
        rotated = rotated_files(path)
    if not os.path.exists(path):
        return None
    secs, frac = divmod(time.time_ns(), 1_000_000_000)
    target = f"{path}.{time.strftime(ROTATED_TIME_FORMAT, time.gmtime(secs))}"
    if any(p.startswith(target) for p in rotated):
        # Rotated twice within a second: a finer stamp, still sorting after the others of that second.
        target = f"{target}.{frac:09d}"
    os.rename(path, target)
    return target


class ContainerLogManager:
    """Rotates the log of every running container once it grows past `max_size`, keeping `max_files` files
    per container (the live one included), as the kubelet's container log manager does."""

    def __init__(self, runtime: Any, *, max_size: int = 10 * 1024 * 1024, max_files: int = 5,
                 interval: float = 10.0, compress: bool = True) -> None:
        if max_files < 2:
            raise ValueError("max_files must be at least 2")
        self.runtime = runtime
        self.max_size = max_size
        self.max_files = max_files
        self.interval = interval
        self.compress = compress
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="container-log-manager")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self.rotate_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("log rotation failed")
            await asyncio.sleep(self.interval)

    async def rotate_once(self) -> list[str]:
        """One pass over the running containers; returns the ids of those whose log was rotated."""
        rotated = []
        for c in await self.runtime.list_containers():
            if c.state is not ContainerState.RUNNING or not c.log_path:
                continue
            try:
                size = (await asyncio.to_thread(os.stat, c.log_path)).st_size
            except FileNotFoundError:
                # Lost (removed by hand, or a rotation that failed halfway): ask for a fresh one.
                await self._reopen(c.id)
                continue
            if size < self.max_size:
                continue
            log.debug("rotating %s (%d bytes)", c.log_path, size)
            if await self.rotate(c.id, c.log_path):
                rotated.append(c.id)
        return rotated

    async def rotate(self, container_id: str, path: str) -> bool:
        target = await asyncio.to_thread(_rotate_sync, path, self.max_files, self.compress)
        if target is None:
            return False
        if not await self._reopen(container_id):
            # The runtime still writes to the renamed file: put it back so the log stays at its path.
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.rename, target, path)
            return False
        return True

    async def _reopen(self, container_id: str) -> bool:
        try:
            await self.runtime.reopen_container_log(container_id)
            return True
        except RuntimeServiceError as e:
            log.warning("reopening the log of container %s failed: %s", container_id, e)
            return False


def pod_log_dir(logs_root: Path, namespace: str, pod: str, uid: str) -> Path:
    """`<logs>/pods/<namespace>_<pod>_<uid>`: where a pod's container logs live (the kubelet's layout)."""
    return logs_root / "pods" / f"{namespace}_{pod}_{uid}"
