"""SPDY/3.1, as Kubernetes streams exec, attach and port-forward over it (client-go's httpstream/spdy on
moby/spdystream).

kubectl falls back to SPDY for exec/attach when a WebSocket upgrade is refused, speaks it for port-forward (raw, or
tunnelled in the binary messages of a WebSocket with subprotocol `SPDY/3.1+portforward.k8s.io`), and containerd's CRI
streaming server speaks it too. Only what that use needs is here: one connection multiplexing bidirectional streams,
each opened with a SYN_STREAM whose headers say what it carries (`streamtype: stdout`...), answered by a SYN_REPLY,
ended by a DATA frame with FIN, or cancelled with RST_STREAM; PINGs are echoed. Header blocks are zlib streams primed
with the SPDY/3 dictionary, one compression context per direction for the whole connection.

Flow control follows spdystream, which Kubernetes uses on both ends: WINDOW_UPDATE and SETTINGS are read and ignored,
and back-pressure comes from TCP: the frame reader waits while a stream's small inbound queue is full.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl as ssl_module
import struct
import urllib.parse
import zlib
from typing import Any, Protocol

log = logging.getLogger(__name__)

VERSION = 3

DATA = 0
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6

MAX_DATA_CHUNK = 32 * 1024          # what we put in one DATA frame
MAX_FRAME = 16 * 1024 * 1024        # 24-bit length field
STREAM_QUEUE = 32                   # inbound DATA frames buffered per stream before the reader waits


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): length-prefixed header
    names and common values, then a run of status texts, dates and media types."""
    words = ["options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
             "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
             "content-base", "content-encoding", "content-language", "content-length", "content-location",
             "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
             "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
             "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
             "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
             "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
             "public", "set-cookie", "keep-alive", "origin"]
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
            "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    out = bytearray()
    for w in words:
        out += struct.pack(">I", len(w)) + w.encode()
    return bytes(out + tail.encode())


DICTIONARY = _dictionary()


class SpdyError(Exception):
    """A protocol violation, a reset stream, or a connection that went away."""


class UpgradeError(SpdyError):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(f"unable to upgrade connection: {status}: {body[:500].decode(errors='replace')}")
        self.status = status
        self.body = body
        self.headers = headers


# -- frames ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Frame:
    """One decoded frame; `type` DATA (0) or a control frame type."""
    type: int
    flags: int = 0
    stream_id: int = 0
    data: bytes = b""                                   # DATA payload
    headers: dict[str, str] | None = None               # SYN_STREAM, SYN_REPLY, HEADERS
    associated_id: int = 0
    priority: int = 0
    status: int = 0                                     # RST_STREAM, GOAWAY
    ping_id: int = 0
    delta: int = 0                                      # WINDOW_UPDATE
    settings: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)   # (flags, id, value)


def encode_header_block(headers: dict[str, str]) -> bytes:
    """The uncompressed name/value block; names lower-case as SPDY/3 requires."""
    out = bytearray(struct.pack(">I", len(headers)))
    for name, value in headers.items():
        n, v = name.lower().encode(), value.encode()
        out += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
    return bytes(out)


def decode_header_block(raw: bytes) -> dict[str, str]:
    try:
        (count,) = struct.unpack_from(">I", raw, 0)
        pos, out = 4, {}
        for _ in range(count):
            (ln,) = struct.unpack_from(">I", raw, pos)
            name = raw[pos + 4:pos + 4 + ln].decode()
            pos += 4 + ln
            (lv,) = struct.unpack_from(">I", raw, pos)
            value = raw[pos + 4:pos + 4 + lv].decode()
            pos += 4 + lv
            if pos > len(raw):
                raise SpdyError("truncated header block")
            out[name] = value
        return out
    except (struct.error, UnicodeDecodeError) as e:
        raise SpdyError(f"bad header block: {e}") from None


class Codec:
    """Encodes and decodes frames; owns the two zlib contexts, so one Codec per connection."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                         DICTIONARY)
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def _compress(self, headers: dict[str, str]) -> bytes:
        return self._deflate.compress(encode_header_block(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def _decompress(self, block: bytes) -> dict[str, str]:
        try:
            return decode_header_block(self._inflate.decompress(block))
        except zlib.error as e:
            raise SpdyError(f"header block does not decompress: {e}") from None

    @staticmethod
    def _control(type_: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, type_, (flags << 24) | len(payload)) + payload

    def encode(self, f: Frame) -> bytes:
        if f.type == DATA:
            return struct.pack(">II", f.stream_id & 0x7FFFFFFF, (f.flags << 24) | len(f.data)) + f.data
        if f.type == SYN_STREAM:
            payload = (struct.pack(">IIBB", f.stream_id & 0x7FFFFFFF, f.associated_id & 0x7FFFFFFF,
                                   (f.priority & 7) << 5, 0) + self._compress(f.headers or {}))
        elif f.type in (SYN_REPLY, HEADERS):
            payload = struct.pack(">I", f.stream_id & 0x7FFFFFFF) + self._compress(f.headers or {})
        elif f.type in (RST_STREAM, GOAWAY):
            payload = struct.pack(">II", f.stream_id & 0x7FFFFFFF, f.status)
        elif f.type == PING:
            payload = struct.pack(">I", f.ping_id)
        elif f.type == WINDOW_UPDATE:
            payload = struct.pack(">II", f.stream_id & 0x7FFFFFFF, f.delta & 0x7FFFFFFF)
        elif f.type == SETTINGS:
            payload = struct.pack(">I", len(f.settings)) + b"".join(
                struct.pack(">II", (fl << 24) | (id_ & 0xFFFFFF), v) for fl, id_, v in f.settings)
        else:
            raise SpdyError(f"cannot encode frame type {f.type}")
        return self._control(f.type, f.flags, payload)

    def decode(self, head: bytes, payload: bytes) -> Frame | None:
        """A frame from its 8-byte header and payload; None for control frames we do not know (ignored)."""
        first, second = struct.unpack(">II", head)
        flags = second >> 24
        if not first & 0x80000000:
            return Frame(DATA, flags, stream_id=first & 0x7FFFFFFF, data=payload)
        version, type_ = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        try:
            if type_ == SYN_STREAM:
                sid, assoc, pri, _slot = struct.unpack_from(">IIBB", payload)
                return Frame(type_, flags, sid & 0x7FFFFFFF, associated_id=assoc & 0x7FFFFFFF, priority=pri >> 5,
                             headers=self._decompress(payload[10:]))
            if type_ in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", payload)
                return Frame(type_, flags, sid & 0x7FFFFFFF, headers=self._decompress(payload[4:]))
            if type_ in (RST_STREAM, GOAWAY):
                sid, status = struct.unpack_from(">II", payload)
                return Frame(type_, flags, sid & 0x7FFFFFFF, status=status)
            if type_ == PING:
                return Frame(type_, flags, ping_id=struct.unpack_from(">I", payload)[0])
            if type_ == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", payload)
                return Frame(type_, flags, sid & 0x7FFFFFFF, delta=delta & 0x7FFFFFFF)
            if type_ == SETTINGS:
                (n,) = struct.unpack_from(">I", payload)
                entries = []
                for i in range(n):
                    fid, value = struct.unpack_from(">II", payload, 4 + 8 * i)
                    entries.append((fid >> 24, fid & 0xFFFFFF, value))
                return Frame(type_, flags, settings=entries)
        except struct.error:
            raise SpdyError(f"truncated control frame of type {type_}") from None
        return None


# -- transports --------------------------------------------------------------------------------------------------


class Reader(Protocol):
    async def readexactly(self, n: int) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...


class _WebSocketWriter:
    """Each drained batch of frames goes out as one binary WebSocket message (client-go's TunnelingConnection)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._pending.append(data)

    async def drain(self) -> None:
        if self._pending:
            data, self._pending = b"".join(self._pending), []
            await self.ws.send_bytes(data)

    def close(self) -> None:
        asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


async def _pump_websocket(ws: Any, reader: asyncio.StreamReader) -> None:
    """Binary WebSocket messages → a byte stream (the tunnelled SPDY connection)."""
    import aiohttp
    try:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                reader.feed_data(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                              aiohttp.WSMsgType.ERROR):
                break
            # text, ping, pong: not part of the tunnel
    except Exception:
        pass
    finally:
        reader.feed_eof()


# -- streams and connections -------------------------------------------------------------------------------------


class SpdyStream:
    """One bidirectional stream of a SpdyConnection."""

    def __init__(self, conn: SpdyConnection, stream_id: int, headers: dict[str, str]) -> None:
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self.reply_headers: dict[str, str] = {}
        self._inbound: asyncio.Queue[bytes | None] = asyncio.Queue(STREAM_QUEUE)
        self._replied = asyncio.get_running_loop().create_future()
        self.remote_closed = False      # FIN or RST received
        self.local_closed = False       # FIN or RST sent
        self.reset_received = False
        self._eof = False

    def __repr__(self) -> str:
        return f"SpdyStream({self.id}, {self.headers})"

    async def read(self) -> bytes:
        """The next chunk of data; b"" once the peer has finished (FIN) or the stream was reset."""
        if self._eof:
            return b""
        data = await self._inbound.get()
        if data is None:
            self._eof = True
            return b""
        return data

    async def write(self, data: bytes) -> None:
        if self.local_closed:
            raise SpdyError(f"stream {self.id} is closed for writing")
        if self.reset_received:
            raise SpdyError(f"stream {self.id} was reset")
        view = memoryview(data)
        for i in range(0, len(view), MAX_DATA_CHUNK):
            await self.conn._send(Frame(DATA, 0, self.id, data=bytes(view[i:i + MAX_DATA_CHUNK])))

    async def close_write(self) -> None:
        """Half-close (FIN): the peer reads end of stream; reading here goes on."""
        if self.local_closed or self.reset_received:
            return
        self.local_closed = True
        with contextlib.suppress(SpdyError, ConnectionError):
            await self.conn._send(Frame(DATA, FLAG_FIN, self.id))
        self.conn._maybe_forget(self)

    async def reset(self, status: int = CANCEL) -> None:
        """Cancel the stream both ways (RST_STREAM)."""
        if not (self.local_closed and self.remote_closed):
            self.local_closed = True
            with contextlib.suppress(SpdyError, ConnectionError):
                await self.conn._send(Frame(RST_STREAM, 0, self.id, status=status))
        self._remote_end()
        self.conn._maybe_forget(self)

    async def _feed(self, data: bytes) -> None:
        if not self.remote_closed:
            await self._inbound.put(data)

    def _remote_end(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            try:
                self._inbound.put_nowait(None)
            except asyncio.QueueFull:
                asyncio.ensure_future(self._inbound.put(None))


class SpdyConnection:
    """A SPDY/3.1 session over a byte stream: open streams (client side) or accept them (server side)."""

    def __init__(self, reader: Reader, writer: Writer, *, client: bool) -> None:
        self.client = client
        self._reader = reader
        self._writer = writer
        self._codec = Codec()
        self._streams: dict[int, SpdyStream] = {}
        self._next_id = 1 if client else 2
        self._next_ping = 1 if client else 2
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._accepted: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._closed = asyncio.Event()
        self.goaway_received = False
        self._extra_tasks: list[asyncio.Task[None]] = []
        self._read_task = asyncio.ensure_future(self._read_loop())

    @classmethod
    def over_websocket(cls, ws: Any, *, client: bool) -> SpdyConnection:
        """SPDY tunnelled in a WebSocket's binary messages (aiohttp client or server WebSocket)."""
        reader = asyncio.StreamReader(limit=MAX_FRAME + 16)
        conn = cls(reader, _WebSocketWriter(ws), client=client)
        conn._extra_tasks.append(asyncio.ensure_future(_pump_websocket(ws, reader)))
        return conn

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Returns once the peer has gone away (or close() was called)."""
        await self._closed.wait()

    # -- sending ---------------------------------------------------------------------------------------------
    async def _send(self, frame: Frame) -> None:
        if self._closed.is_set():
            raise SpdyError("connection closed")
        async with self._send_lock:
            # encode under the lock: the header compressor is one stream shared by every frame
            self._writer.write(self._codec.encode(frame))
            try:
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as e:
                self._shutdown()
                raise SpdyError(f"connection lost: {e}") from None

    async def open_stream(self, headers: dict[str, str], *, timeout: float = 30.0) -> SpdyStream:
        """SYN_STREAM, then wait for the peer's SYN_REPLY (as client-go's CreateStream does)."""
        sid = self._next_id
        self._next_id += 2
        stream = SpdyStream(self, sid, dict(headers))
        self._streams[sid] = stream
        await self._send(Frame(SYN_STREAM, 0, sid, headers=stream.headers))
        try:
            await asyncio.wait_for(asyncio.shield(stream._replied), timeout)
        except asyncio.TimeoutError:
            await stream.reset()
            raise SpdyError(f"timed out waiting for a reply to stream {sid}") from None
        return stream

    async def accept_stream(self) -> SpdyStream | None:
        """The next stream the peer opened (already answered with SYN_REPLY); None once the connection ended."""
        if self._closed.is_set() and self._accepted.empty():
            return None
        stream = await self._accepted.get()
        if stream is None:
            self._accepted.put_nowait(None)     # every later caller sees the end too
        return stream

    async def ping(self, timeout: float = 10.0) -> float:
        """Round trip time of a PING, in seconds."""
        pid = self._next_ping
        self._next_ping += 2
        fut = asyncio.get_running_loop().create_future()
        self._pings[pid] = fut
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._send(Frame(PING, ping_id=pid))
            await asyncio.wait_for(fut, timeout)
        finally:
            self._pings.pop(pid, None)
        return loop.time() - started

    async def close(self) -> None:
        """GOAWAY, then close the transport; every stream reads end of stream."""
        if not self._closed.is_set():
            with contextlib.suppress(Exception):
                last = max((s for s in self._streams if (s % 2 == 1) != self.client), default=0)
                await asyncio.wait_for(self._send(Frame(GOAWAY, 0, last, status=0)), 2)
        self._shutdown()
        self._read_task.cancel()
        for t in self._extra_tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._read_task

    def _shutdown(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for s in list(self._streams.values()):
            s._remote_end()
            s.local_closed = True
            if not s._replied.done():
                s._replied.set_exception(SpdyError("connection closed"))
                s._replied.exception()          # retrieved: no "never retrieved" warning
        self._streams.clear()
        self._accepted.put_nowait(None)
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(SpdyError("connection closed"))
        with contextlib.suppress(Exception):
            self._writer.close()

    def _maybe_forget(self, stream: SpdyStream) -> None:
        if stream.local_closed and stream.remote_closed:
            self._streams.pop(stream.id, None)

    # -- receiving -------------------------------------------------------------------------------------------
    async def _read_frame(self) -> Frame | None:
        head = await self._reader.readexactly(8)
        length = struct.unpack(">I", head[4:])[0] & 0xFFFFFF
        payload = await self._reader.readexactly(length) if length else b""
        return self._codec.decode(head, payload)

    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await self._read_frame()
                if frame is not None:
                    await self._handle(frame)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl_module.SSLError):
            pass
        except SpdyError as e:
            log.debug("SPDY connection failed: %s", e)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("SPDY reader failed")
        finally:
            self._shutdown()

    async def _handle(self, f: Frame) -> None:
        if f.type == DATA:
            stream = self._streams.get(f.stream_id)
            if stream is None:
                return      # data for a stream we already forgot (spdystream drops it too)
            if f.data:
                await stream._feed(f.data)
            if f.flags & FLAG_FIN:
                stream._remote_end()
                self._maybe_forget(stream)
        elif f.type == SYN_STREAM:
            if (f.stream_id % 2 == 1) != (not self.client) or f.stream_id in self._streams or self.goaway_received:
                await self._send(Frame(RST_STREAM, 0, f.stream_id, status=PROTOCOL_ERROR))
                return
            stream = SpdyStream(self, f.stream_id, f.headers or {})
            stream._replied.set_result(None)
            self._streams[f.stream_id] = stream
            if f.flags & FLAG_FIN:
                stream._remote_end()
            if f.flags & FLAG_UNIDIRECTIONAL:
                stream.local_closed = True
            await self._send(Frame(SYN_REPLY, 0, f.stream_id, headers={}))
            self._accepted.put_nowait(stream)
        elif f.type == SYN_REPLY:
            stream = self._streams.get(f.stream_id)
            if stream is not None and not stream._replied.done():
                stream.reply_headers = f.headers or {}
                stream._replied.set_result(None)
                if f.flags & FLAG_FIN:
                    stream._remote_end()
        elif f.type == RST_STREAM:
            stream = self._streams.pop(f.stream_id, None)
            if stream is not None:
                stream.reset_received = True
                stream.local_closed = True
                stream._remote_end()
                if not stream._replied.done():
                    stream._replied.set_exception(SpdyError(f"stream {f.stream_id} was reset ({f.status})"))
        elif f.type == PING:
            if (f.ping_id % 2 == 1) == self.client:       # the answer to one of ours
                fut = self._pings.get(f.ping_id)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            else:
                await self._send(Frame(PING, ping_id=f.ping_id))
        elif f.type == GOAWAY:
            self.goaway_received = True
        elif f.type == HEADERS:
            stream = self._streams.get(f.stream_id)
            if stream is not None:
                stream.headers.update(f.headers or {})
                if f.flags & FLAG_FIN:
                    stream._remote_end()
        # SETTINGS, WINDOW_UPDATE: ignored, as spdystream does


# -- HTTP upgrade (client side) -------------------------------------------------------------------------------------


async def read_http_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], list[tuple[str, str]]]:
    """Status code and headers of an HTTP/1.1 response (lower-case names; repeated headers joined by ", ")."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise SpdyError(f"not an HTTP response: {lines[0]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        pairs.append((name, value))
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return status, headers, pairs


async def read_http_body(reader: asyncio.StreamReader, headers: dict[str, str], limit: int = 1 << 20) -> bytes:
    """The body of a non-101 answer, bounded (Content-Length, chunked, or until the server closes)."""
    if "content-length" in headers:
        return await reader.readexactly(min(int(headers["content-length"]), limit))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while len(body) < limit:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            body += await reader.readexactly(size)
            await reader.readline()
        return bytes(body)
    return await reader.read(limit)


async def spdy_upgrade(url: str, protocols: list[str], *, ssl: ssl_module.SSLContext | None = None,
                       headers: dict[str, str] | None = None, method: str = "POST", timeout: float = 30.0,
                       ) -> tuple[SpdyConnection, str]:
    """Connect to `url`, upgrade to SPDY/3.1 offering `protocols` (X-Stream-Protocol-Version), and return the
    client side of the connection with the protocol the server chose. Raises UpgradeError on a non-101 answer."""
    u = urllib.parse.urlsplit(url)
    secure = u.scheme in ("https", "wss")
    port = u.port or (443 if secure else 80)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(u.hostname, port, ssl=(ssl or ssl_module.create_default_context()) if secure else None,
                                limit=MAX_FRAME + 16), timeout)
    try:
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        host = f"[{u.hostname}]" if u.hostname and ":" in u.hostname else u.hostname
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: Upgrade",
                 "Upgrade: SPDY/3.1", "Content-Length: 0"]
        lines += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status, got, _ = await asyncio.wait_for(read_http_head(reader), timeout)
        if status != 101:
            body = await asyncio.wait_for(read_http_body(reader, got), timeout)
            raise UpgradeError(status, body, got)
        if got.get("upgrade", "").lower() != "spdy/3.1":
            raise SpdyError(f"server upgraded to {got.get('upgrade')!r}, not SPDY/3.1")
    except BaseException:
        writer.close()
        raise
    return SpdyConnection(reader, writer, client=True), got.get("x-stream-protocol-version", "")
