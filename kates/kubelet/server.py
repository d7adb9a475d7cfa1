"""The kubelet's own HTTPS API: health, container logs, exec, attach and port-forward (pkg/kubelet/server).

The API server reaches it at the Node's InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port` and relays
`kubectl logs/exec/attach/port-forward` here. It is never open to anonymous callers: TLS requires a client
certificate signed by the cluster CA, and the certificate must be the API server's kubelet client (or another
member of system:masters, as an admin). Streams are served in every protocol the real kubelet speaks:

- exec/attach: WebSocket channels (v5...v1, base64 variants) or SPDY/3.1 (remotecommand v4...v1) — kubectl 1.32
  tries WebSocket v5 first and falls back to SPDY on a non-101 answer; the exit code goes back on the error channel.
- port-forward: SPDY/3.1 (plain upgrade, or tunnelled in a WebSocket with subprotocol SPDY/3.1+portforward.k8s.io
  as kubectl 1.32 does) with a data and an error stream per connection, or WebSocket channels with `?port=N`
  (the Python client's `portforward`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import struct
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from aiohttp import WSMsgType, web

from ..runtime.interface import (ByteStream, ContainerState, NotFoundError, PodSandboxStatus, Runtime,
                                 RuntimeServiceError, StreamSession)
from ..streaming import channels as ch
from ..streaming.hijack import accept_upgrade
from ..streaming.spdy import SpdyConnection, SpdyError, SpdyStream
from .logs import serve_container_logs
from .lookup import find_container, find_sandbox

log = logging.getLogger(__name__)

SPDY_EXEC_PROTOCOLS = (ch.V4, ch.V3, ch.V2, ch.V1)       # remotecommand over SPDY (v5 exists only for WebSocket)
SPDY_PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
STREAM_CREATION_TIMEOUT = 30.0                             # the kubelet's --streaming-connection... default
ALLOWED_GROUPS = ("system:masters",)
ALLOWED_USERS = ("kube-apiserver-kubelet-client",)


def _status_json(status: str, message: str = "", reason: str = "", code: int = 0,
                 details: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"metadata": {}, "status": status}
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = details
    if code:
        body["code"] = code
    return json.dumps(body, separators=(",", ":")).encode()


def exit_status(code: int, cmd: list[str]) -> bytes:
    """The error-channel Status that tells the client the command's exit code (remotecommand v4+)."""
    if code == 0:
        return _status_json("Success")
    return _status_json("Failure", f"command terminated with non-zero exit code: error executing command "
                                   f"[{' '.join(cmd)}], exit code {code}", "NonZeroExitCode",
                        details={"causes": [{"reason": "ExitCode", "message": str(code)}]})


def _flag(query: Any, name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true", "yes")


def _text_error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message)


# -- exec/attach transports -------------------------------------------------------------------------------------


class _Options:
    def __init__(self, query: Any) -> None:
        self.stdin = _flag(query, "stdin") or _flag(query, "input")
        self.stdout = _flag(query, "stdout") or _flag(query, "output")
        self.stderr = _flag(query, "stderr") or _flag(query, "error")
        self.tty = _flag(query, "tty")
        if self.tty:
            self.stderr = False     # a terminal has one output stream


# Events from the client: ("stdin", data), ("eof", b""), ("resize", (w, h)), and ("gone", b"") as the last one.
Event = tuple[str, Any]


class _WebSocketExec:
    """exec/attach over the WebSocket channel protocol."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.version = ch.version(protocol)

    async def send(self, channel: int, data: bytes) -> None:
        msg = ch.encode(self.protocol, channel, data)
        if isinstance(msg, str):
            await self.ws.send_str(msg)
        else:
            await self.ws.send_bytes(msg)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                decoded = ch.decode(self.protocol, msg.data)
                if decoded is None:
                    continue
                channel, data = decoded
                if channel == ch.STDIN and data:
                    yield "stdin", data
                elif channel == ch.RESIZE:
                    size = _parse_resize(data)
                    if size:
                        yield "resize", size
                elif channel == ch.CLOSE and self.version >= 5 and data[:1] == bytes((ch.STDIN,)):
                    yield "eof", b""
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
        yield "gone", b""

    async def finish(self, status: bytes) -> None:
        """Report how the command ended, then close (code 1000)."""
        with contextlib.suppress(Exception):
            if self.version >= 4:
                await self.send(ch.ERROR, status)
            else:
                parsed = json.loads(status)
                if parsed.get("status") != "Success":
                    await self.send(ch.ERROR, parsed.get("message", "").encode())
        await self.close()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


class _SpdyExec:
    """exec/attach over SPDY: one stream per kind (streamtype header: error, stdin, stdout, stderr, resize)."""

    def __init__(self, conn: SpdyConnection, protocol: str, streams: dict[str, SpdyStream]) -> None:
        self.conn = conn
        self.protocol = protocol
        self.version = ch.version(protocol)
        self.streams = streams

    @classmethod
    async def accept(cls, conn: SpdyConnection, protocol: str, opts: _Options) -> _SpdyExec:
        version = ch.version(protocol)
        expected = {"error"}
        if opts.stdin:
            expected.add("stdin")
        if opts.stdout:
            expected.add("stdout")
        if opts.stderr:
            expected.add("stderr")
        if opts.tty and version >= 3:
            expected.add("resize")
        streams: dict[str, SpdyStream] = {}

        async def collect() -> None:
            while not expected <= streams.keys():
                stream = await conn.accept_stream()
                if stream is None:
                    raise SpdyError("connection closed before all streams were created")
                kind = stream.headers.get("streamtype", "")
                if kind in ("error", "stdin", "stdout", "stderr", "resize"):
                    streams[kind] = stream
                else:
                    await stream.reset()

        await asyncio.wait_for(collect(), STREAM_CREATION_TIMEOUT)
        return cls(conn, protocol, streams)

    async def send(self, channel: int, data: bytes) -> None:
        stream = self.streams.get({ch.STDOUT: "stdout", ch.STDERR: "stderr"}[channel])
        if stream is not None:
            await stream.write(data)

    async def events(self) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()

        async def stdin(stream: SpdyStream) -> None:
            while data := await stream.read():
                await queue.put(("stdin", data))
            if not stream.reset_received:
                await queue.put(("eof", b""))

        async def resize(stream: SpdyStream) -> None:
            buf = b""
            decoder = json.JSONDecoder()
            while data := await stream.read():
                buf += data
                while buf.strip():
                    text = buf.decode(errors="replace").lstrip()
                    try:
                        obj, end = decoder.raw_decode(text)
                    except ValueError:
                        break
                    buf = text[end:].encode()
                    size = _parse_resize(json.dumps(obj).encode())
                    if size:
                        await queue.put(("resize", size))

        async def gone() -> None:
            await self.conn.wait_closed()
            await queue.put(("gone", b""))

        tasks = [asyncio.ensure_future(gone())]
        if "stdin" in self.streams:
            tasks.append(asyncio.ensure_future(stdin(self.streams["stdin"])))
        if "resize" in self.streams:
            tasks.append(asyncio.ensure_future(resize(self.streams["resize"])))
        try:
            while True:
                event = await queue.get()
                yield event
                if event[0] == "gone":
                    return
        finally:
            for t in tasks:
                t.cancel()

    async def finish(self, status: bytes) -> None:
        with contextlib.suppress(SpdyError, ConnectionError):
            for kind in ("stdout", "stderr"):
                if kind in self.streams:
                    await self.streams[kind].close_write()
            error = self.streams["error"]
            if self.version >= 4:
                await error.write(status)
            else:
                parsed = json.loads(status)
                if parsed.get("status") != "Success":
                    await error.write(parsed.get("message", "").encode())
            await error.close_write()
        await self.close()

    async def close(self) -> None:
        await self.conn.close()


def _parse_resize(data: bytes) -> tuple[int, int] | None:
    try:
        size = json.loads(data)
        return int(size.get("Width", 0)), int(size.get("Height", 0))
    except (ValueError, AttributeError, TypeError):
        return None


# -- the server --------------------------------------------------------------------------------------------------


class KubeletServer:
    """The kubelet's HTTPS endpoint for one node."""

    def __init__(self, runtime: Runtime, *, node_name: str, tls_cert: Path | str, tls_key: Path | str,
                 client_ca: Path | str) -> None:
        self.runtime = runtime
        self.node_name = node_name
        self.tls_cert, self.tls_key, self.client_ca = str(tls_cert), str(tls_key), str(client_ca)
        self._runner: web.AppRunner | None = None
        self._sessions: set[asyncio.Task[Any]] = set()
        self.port = 0

    def ssl_context(self) -> ssl.SSLContext:
        # Only the cluster CA vouches for callers: a default context would also trust every public CA's certificates.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.tls_cert, self.tls_key)
        ctx.load_verify_locations(self.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authorize])
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/containerLogs/{ns}/{pod}/{container}", self.container_logs)
        for verb in ("exec", "attach"):
            for path in (f"/{verb}/{{ns}}/{{pod}}/{{container}}", f"/{verb}/{{ns}}/{{pod}}/{{uid}}/{{container}}"):
                r.add_route("GET", path, self.exec if verb == "exec" else self.attach)
                r.add_route("POST", path, self.exec if verb == "exec" else self.attach)
        for path in ("/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"):
            r.add_route("GET", path, self.port_forward)
            r.add_route("POST", path, self.port_forward)
        return app

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 = any free port); returns the port."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self.ssl_context(), reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        for t in list(self._sessions):
            t.cancel()
        if self._sessions:
            await asyncio.wait(self._sessions, timeout=2)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- authn/authz -----------------------------------------------------------------------------------------
    @web.middleware
    async def _authorize(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        user, groups = _peer_identity(request)
        if user is None:
            return _text_error(401, "Unauthorized")
        if request.path != "/healthz" and user not in ALLOWED_USERS and not set(groups) & set(ALLOWED_GROUPS):
            return _text_error(403, f"Forbidden (user={user}, verb={request.method.lower()}, resource=nodes, "
                                    f"subresource(s)=[proxy])")
        return await handler(request)

    # -- handlers --------------------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        return await serve_container_logs(request, self.runtime, m["ns"], m["pod"], m["container"])

    async def exec(self, request: web.Request) -> web.StreamResponse:
        cmd = request.query.getall("command", [])
        if not cmd:
            return _text_error(400, "you must specify at least 1 command")
        return await self._stream_container(request, cmd)

    async def attach(self, request: web.Request) -> web.StreamResponse:
        return await self._stream_container(request, None)

    async def _stream_container(self, request: web.Request, cmd: list[str] | None) -> web.StreamResponse:
        m = request.match_info
        ns, pod, name = m["ns"], m["pod"], m["container"]
        opts = _Options(request.query)
        if not (opts.stdin or opts.stdout or opts.stderr):
            return _text_error(400, "you must specify at least 1 of stdin, stdout, stderr")
        try:
            container = await find_container(self.runtime, ns, pod, name, uid=m.get("uid", ""))
        except NotFoundError:
            return _text_error(404, f'container "{name}" in pod "{pod}" not found')
        if container.state is not ContainerState.RUNNING:
            return _text_error(400, f"container {name} is not running (state {container.state.name})")
        runtime = self.runtime

        async def open_session() -> StreamSession:
            if cmd is None:
                return await runtime.attach(container.id, stdin=opts.stdin, tty=opts.tty)
            return await runtime.exec(container.id, cmd, stdin=opts.stdin, tty=opts.tty)

        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade == "websocket":
            offered = ch.offered_protocols(request.headers.get("Sec-WebSocket-Protocol", ""))
            protocol = ch.negotiate(offered, ch.EXEC_PROTOCOLS) if offered else ch.V1
            if protocol is None:
                return _text_error(400, f"none of the offered WebSocket protocols {offered} is supported; "
                                        f"supported: {list(ch.EXEC_PROTOCOLS)}")
            ws = web.WebSocketResponse(protocols=(protocol,), autoping=True, max_msg_size=0)
            await ws.prepare(request)
            await self._run(_WebSocketExec(ws, protocol), open_session, opts, cmd)
            return ws
        if upgrade.startswith("spdy/"):
            offered = _spdy_protocols(request)
            protocol = ch.negotiate(offered, SPDY_EXEC_PROTOCOLS)
            if protocol is None:
                return _text_error(403, f"unable to upgrade: unable to negotiate protocol: client supports "
                                        f"{offered}, server supports {list(SPDY_EXEC_PROTOCOLS)}")
            response, raw = await accept_upgrade(request, _spdy_reply_headers(protocol))
            conn = SpdyConnection(raw.reader, raw, client=False)
            try:
                transport = await _SpdyExec.accept(conn, protocol, opts)
            except (asyncio.TimeoutError, SpdyError) as e:
                log.info("exec/attach for %s/%s/%s: %s", ns, pod, name, e or "timed out waiting for streams")
                await conn.close()
                return response
            await self._run(transport, open_session, opts, cmd)
            return response
        return _text_error(400, "Upgrade request required")

    async def _run(self, transport: _WebSocketExec | _SpdyExec, open_session: Callable[[], Awaitable[StreamSession]],
                   opts: _Options, cmd: list[str] | None) -> None:
        """Pump stdin/resize in and stdout/stderr out until the process ends (or the client leaves)."""
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            try:
                session = await open_session()
            except RuntimeServiceError as e:
                what = "executing command in container" if cmd is not None else "attaching to container"
                await transport.finish(_status_json("Failure", f"Internal error occurred: error {what}: {e}",
                                                    "InternalError", 500))
                return

            async def pump_in() -> None:
                """Ends only when the client goes away: a process that stops reading its stdin (or exits) must
                not cut the session short before its exit code is reported."""
                stdin_open = opts.stdin
                async for kind, value in transport.events():
                    try:
                        if kind == "stdin" and stdin_open:
                            await session.write_stdin(value)
                        elif kind == "eof" and stdin_open:
                            stdin_open = False
                            await session.close_stdin()
                        elif kind == "resize" and opts.tty:
                            await session.resize(*value)
                        elif kind == "gone":
                            return
                    except (ConnectionError, OSError, RuntimeServiceError) as e:
                        log.debug("stdin of an exec/attach session closed: %s", e)
                        stdin_open = False

            async def pump_out() -> None:
                while (chunk := await session.read_output()) is not None:
                    channel, data = chunk
                    if opts.tty:
                        channel = ch.STDOUT
                    if (channel == ch.STDOUT and opts.stdout) or (channel == ch.STDERR and opts.stderr):
                        await transport.send(channel, data)

            inbound = asyncio.ensure_future(pump_in())
            outbound = asyncio.ensure_future(pump_out())
            try:
                done, _ = await asyncio.wait({inbound, outbound}, return_when=asyncio.FIRST_COMPLETED)
                ended: asyncio.Future[int] | None = None
                if outbound in done and outbound.exception() is None:
                    # the output is over; the process may still run (it closed its stdout): wait for its exit,
                    # unless the client leaves first
                    ended = asyncio.ensure_future(session.wait())
                    done, _ = await asyncio.wait({ended, inbound}, return_when=asyncio.FIRST_COMPLETED)
                if ended is not None and ended in done:
                    inbound.cancel()
                    await transport.finish(exit_status(ended.result(), cmd or []))
                else:               # the client went away (or the output could not be delivered)
                    if ended is not None:
                        ended.cancel()
                    await session.close()
                    await transport.close()
            except (ConnectionError, SpdyError, RuntimeServiceError) as e:
                log.debug("stream session ended: %s", e)
                await session.close()
                await transport.close()
            finally:
                for t in (inbound, outbound):
                    t.cancel()
                await asyncio.gather(inbound, outbound, return_exceptions=True)
        finally:
            self._sessions.discard(task)

    # -- port-forward -----------------------------------------------------------------------------------------
    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        ns, pod = m["ns"], m["pod"]
        try:
            sandbox = await find_sandbox(self.runtime, ns, pod, m.get("uid", ""))
        except NotFoundError:
            return _text_error(404, f'pod "{pod}" not found')
        upgrade = request.headers.get("Upgrade", "").lower()
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            if upgrade == "websocket":
                offered = ch.offered_protocols(request.headers.get("Sec-WebSocket-Protocol", ""))
                if ch.SPDY_PORT_FORWARD_TUNNEL in offered:
                    ws = web.WebSocketResponse(protocols=(ch.SPDY_PORT_FORWARD_TUNNEL,), autoping=True,
                                               max_msg_size=0)
                    await ws.prepare(request)
                    conn = SpdyConnection.over_websocket(ws, client=False)
                    await self._spdy_port_forward(conn, sandbox)
                    with contextlib.suppress(Exception):
                        await ws.close()
                    return ws
                protocol = ch.negotiate(offered, ch.PORT_FORWARD_PROTOCOLS) if offered else ch.V1
                if protocol is None:
                    return _text_error(400, f"none of the offered WebSocket protocols {offered} is supported")
                try:
                    ports = [int(p) for p in request.query.getall("port", [])]
                except ValueError:
                    return _text_error(400, "invalid port in query")
                if not ports or not all(0 < p < 65536 for p in ports):
                    return _text_error(400, 'query parameter "port" is required (1-65535)')
                ws = web.WebSocketResponse(protocols=(protocol,), autoping=True, max_msg_size=0)
                await ws.prepare(request)
                await self._websocket_port_forward(ws, protocol, ports, sandbox)
                return ws
            if upgrade.startswith("spdy/"):
                offered = _spdy_protocols(request)
                if offered and SPDY_PORT_FORWARD_PROTOCOL not in offered:
                    return _text_error(403, f"unable to upgrade: unable to negotiate protocol: client supports "
                                            f"{offered}, server supports [{SPDY_PORT_FORWARD_PROTOCOL}]")
                response, raw = await accept_upgrade(request, _spdy_reply_headers(SPDY_PORT_FORWARD_PROTOCOL))
                conn = SpdyConnection(raw.reader, raw, client=False)
                await self._spdy_port_forward(conn, sandbox)
                return response
            return _text_error(400, "Upgrade request required")
        finally:
            self._sessions.discard(task)

    def _forward_error(self, sandbox: PodSandboxStatus, port: int, err: Exception) -> bytes:
        md = sandbox.metadata
        return (f"error forwarding port {port} to pod {md.namespace}/{md.name}, uid {md.uid}: {err}").encode()

    async def _spdy_port_forward(self, conn: SpdyConnection, sandbox: PodSandboxStatus) -> None:
        """Pair each connection's data and error streams by requestID; forward each pair on its own."""
        pending: dict[str, dict[str, SpdyStream]] = {}
        tasks: set[asyncio.Task[None]] = set()
        try:
            while (stream := await conn.accept_stream()) is not None:
                kind = stream.headers.get("streamtype", "")
                if kind not in ("data", "error"):
                    await stream.reset()
                    continue
                # clients older than requestID pair a data stream with the error stream opened just before it
                rid = stream.headers.get("requestid") or str(stream.id if kind == "error" else stream.id - 2)
                pair = pending.setdefault(rid, {})
                pair[kind] = stream
                if len(pair) == 2:
                    del pending[rid]
                    t = asyncio.ensure_future(self._forward_pair(pair["data"], pair["error"], sandbox))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await conn.close()

    async def _forward_pair(self, data: SpdyStream, error: SpdyStream, sandbox: PodSandboxStatus) -> None:
        try:
            port = int(data.headers.get("port", "0"))
        except ValueError:
            port = 0
        try:
            if not 0 < port < 65536:
                raise RuntimeServiceError(f"invalid port {data.headers.get('port')!r}")
            target = await self.runtime.port_forward(sandbox.id, port)
        except (RuntimeServiceError, OSError) as e:
            with contextlib.suppress(SpdyError, ConnectionError):
                await error.write(self._forward_error(sandbox, port, e))
                await error.close_write()
                await data.close_write()
            return
        try:
            await _relay(data.read, data.write, data.close_write, target)
        except RuntimeServiceError as e:       # e.g. the CRI runtime learns only now that nothing listens
            with contextlib.suppress(SpdyError, ConnectionError):
                await error.write(self._forward_error(sandbox, port, e))
        except (SpdyError, ConnectionError, OSError) as e:
            log.debug("port-forward connection ended: %s", e)
        finally:
            with contextlib.suppress(Exception):
                await target.close()
            with contextlib.suppress(SpdyError, ConnectionError):
                await data.close_write()
                await error.close_write()

    async def _websocket_port_forward(self, ws: web.WebSocketResponse, protocol: str, ports: list[int],
                                      sandbox: PodSandboxStatus) -> None:
        """Channels 2i (data) and 2i+1 (error) for the i-th port; the first message on each carries the port."""
        send_lock = asyncio.Lock()

        async def send(channel: int, data: bytes) -> None:
            msg = ch.encode(protocol, channel, data)
            async with send_lock:
                if isinstance(msg, str):
                    await ws.send_str(msg)
                else:
                    await ws.send_bytes(msg)

        targets: list[ByteStream | None] = []
        for i, port in enumerate(ports):
            prefix = struct.pack("<H", port)
            await send(2 * i, prefix)
            await send(2 * i + 1, prefix)
            try:
                targets.append(await self.runtime.port_forward(sandbox.id, port))
            except (RuntimeServiceError, OSError) as e:
                targets.append(None)
                await send(2 * i + 1, self._forward_error(sandbox, port, e))

        async def downstream(i: int, target: ByteStream) -> None:
            try:
                while data := await target.read(65536):
                    await send(2 * i, data)
            except RuntimeServiceError as e:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await send(2 * i + 1, self._forward_error(sandbox, ports[i], e))
            except (ConnectionError, OSError, RuntimeError):
                pass

        async def upstream() -> None:
            while True:
                msg = await ws.receive()
                if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                        return
                    continue
                decoded = ch.decode(protocol, msg.data)
                if decoded is None:
                    continue
                channel, data = decoded
                if channel == ch.CLOSE and data:              # v5-style close of a data channel
                    idx = data[0] // 2
                    if idx < len(targets) and targets[idx] is not None and data[0] % 2 == 0:
                        await targets[idx].close_write()      # type: ignore[union-attr]
                    continue
                idx = channel // 2
                if channel % 2 == 0 and idx < len(targets) and targets[idx] is not None and data:
                    await targets[idx].write(data)            # type: ignore[union-attr]

        downs = [asyncio.ensure_future(downstream(i, t)) for i, t in enumerate(targets) if t is not None]
        up = asyncio.ensure_future(upstream())
        try:
            if downs:
                all_down = asyncio.ensure_future(asyncio.gather(*downs, return_exceptions=True))
                await asyncio.wait({up, all_down}, return_when=asyncio.FIRST_COMPLETED)
                all_down.cancel()
            else:
                await up
        except (ConnectionError, OSError):
            pass
        finally:
            up.cancel()
            for t in downs:
                t.cancel()
            await asyncio.gather(up, *downs, return_exceptions=True)
            for t in targets:
                if t is not None:
                    with contextlib.suppress(Exception):
                        await t.close()
            with contextlib.suppress(Exception):
                await ws.close()


async def _relay(read: Callable[[], Awaitable[bytes]], write: Callable[[bytes], Awaitable[None]],
                 close_write: Callable[[], Awaitable[None]], target: ByteStream) -> None:
    """Client stream ⇄ pod connection. Done when the pod side has finished sending (the client's half-close is
    passed on, so a request/response exchange completes); the client going away ends it too."""

    async def up() -> None:
        while data := await read():
            await target.write(data)
        await target.close_write()

    async def down() -> None:
        while data := await target.read(65536):
            await write(data)
        await close_write()

    up_t, down_t = asyncio.ensure_future(up()), asyncio.ensure_future(down())
    try:
        await down_t
    finally:
        up_t.cancel()
        down_t.cancel()
        await asyncio.gather(up_t, down_t, return_exceptions=True)


def _spdy_protocols(request: web.Request) -> list[str]:
    out: list[str] = []
    for value in request.headers.getall("X-Stream-Protocol-Version", []):
        out += ch.offered_protocols(value)
    return out


def _spdy_reply_headers(protocol: str) -> dict[str, str]:
    return {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": protocol}


def _peer_identity(request: web.Request) -> tuple[str | None, list[str]]:
    """CN and O of the verified client certificate (the TLS layer already checked it against the cluster CA)."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None, []
    user, groups = None, []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = str(value)
            elif key == "organizationName":
                groups.append(str(value))
    return user, groups
