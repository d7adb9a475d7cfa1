"""The data path of the Ingress controller: an aiohttp server on the node's HTTP and HTTPS ports that forwards each
request to a ready endpoint of the Service its Ingress rule names.

Why a proxy in Python and not kernel rules: Ingress routes on the Host header, the path and the TLS server name,
which only an HTTP-aware hop can see. Bodies are streamed both ways (nothing buffered beyond a small response), so
uploads, server-sent events and long downloads pass through; websockets are relayed message by message. Endpoints
are picked round-robin and a refused connection moves on to the next one. The routing table and certificates are
replaced as a whole by the controller, so updates never touch an open connection.
"""
from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import os
import socket
import ssl
import tempfile
from base64 import b64decode
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .routes import Backend, RouteTable, ServiceRef

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade"))
WS_HANDSHAKE = frozenset(h.lower() for h in (
    "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Accept"))
SMALL_BODY = 64 * 1024        # responses up to this size with a Content-Length are read whole (fewer writes)
CONNECT_ATTEMPTS = 3          # connections tried per request, cycling through the endpoints
# A backend whose listen queue is full drops the SYN, and the kernel resends it only after 1 s (busybox httpd's
# backlog is 9): every attempt but the last gives up after this long and tries again with a fresh SYN (HAProxy's
# "timeout connect" + "retries"). Measured with wrk -c 16 on a busybox pod: p99 1 s without, see bench_ingress.py.
FAST_CONNECT_TIMEOUT = 0.2


class Router:
    """What the proxy consults per request: the current `RouteTable` and the TLS contexts of its Secrets.

    Both are replaced by assignment (the controller's `update`); a handler reads `self.table` once per request."""

    def __init__(self) -> None:
        self.table = RouteTable()
        self.contexts: dict[str, ssl.SSLContext] = {}           # "ns/secret" → context with its certificate
        self._versions: dict[str, str] = {}                      # "ns/secret" → resourceVersion loaded
        self._next: dict[ServiceRef, itertools.count[int]] = {}

    async def update(self, table: RouteTable, secrets: dict[str, dict[str, Any]]) -> None:
        """Load the certificates of changed TLS Secrets (off the event loop), then swap in the new table."""
        contexts = dict(self.contexts)
        versions = dict(self._versions)
        for key in [k for k in contexts if k not in secrets]:
            contexts.pop(key)
            versions.pop(key, None)
        for key, secret in secrets.items():
            rv = secret["metadata"].get("resourceVersion", "")
            if versions.get(key) == rv:
                continue
            data = secret.get("data") or {}
            try:
                contexts[key] = await asyncio.to_thread(server_context, b64decode(data.get("tls.crt", "")),
                                                        b64decode(data.get("tls.key", "")))
                versions[key] = rv
            except (ssl.SSLError, ValueError, OSError) as e:
                log.warning("TLS secret %s is unusable: %s", key, e)
                contexts.pop(key, None)
                versions.pop(key, None)
        self.contexts, self._versions, self.table = contexts, versions, table

    def pick(self, backend: Backend) -> list[tuple[str, int]]:
        """The endpoints to try, in order: round-robin start, then the following ones for connect retries."""
        eps = backend.endpoints
        counter = self._next.get(backend.service)
        if counter is None:
            counter = self._next[backend.service] = itertools.count()
        start = next(counter) % len(eps)
        return [eps[(start + i) % len(eps)] for i in range(CONNECT_ATTEMPTS)]

    def sni(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        """The SNI callback: present the certificate of the Ingress TLS entry that covers the server name."""
        if not server_name:
            return
        key = self.table.tls_secret(server_name)
        ctx = self.contexts.get(key) if key else None
        if ctx is not None:
            sslobj.context = ctx


def server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server SSLContext for one certificate chain and key (PEM). The ssl module only loads from files: they
    live for the duration of the call in a private temporary directory."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory(prefix="kates-ingress-") as d:
        cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        with open(cert, "wb") as f:
            f.write(cert_pem)
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


def fake_certificate() -> tuple[bytes, bytes]:
    """A self-signed certificate for names no Ingress has a Secret for (ingress-nginx serves one too)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kates Ingress Controller Fake Certificate")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("ingress.local")]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


async def bind(host: str, port: int | None, retry: float = 2.0) -> socket.socket | None:
    """A listening socket on host:port, retried while the port is taken (another cluster's ingress on this
    machine, or a restart racing the old process): the controller keeps routes and status current meanwhile."""
    if port is None:
        return None
    warned = False
    while True:
        try:
            sock = socket.create_server((host, port), backlog=1024, reuse_port=False)
            sock.set_inheritable(True)
            return sock
        except OSError as e:
            if not warned:
                log.warning("cannot listen on %s:%d (%s); retrying every %.0fs", host, port, e.strerror, retry)
                warned = True
            await asyncio.sleep(retry)


def _forward_headers(request: web.BaseRequest, drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    """The request's end-to-end headers plus X-Forwarded-For/Proto/Host/Port; Host itself is kept."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        low = name.lower()
        if low not in HOP_BY_HOP and low not in drop and not low.startswith("x-forwarded-"):
            headers.add(name, value)
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = "https" if request.secure else "http"
    headers["X-Forwarded-Host"] = request.headers.get("Host", "")
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if sockname:
        headers["X-Forwarded-Port"] = str(sockname[1])
    return headers


def _response_headers(headers: CIMultiDictProxy[str], *, keep_length: bool) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        low = name.lower()
        if low in HOP_BY_HOP or (low == "content-length" and not keep_length):
            continue
        out.add(name, value)
    return out


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


class Proxy:
    """The HTTP(S) listeners and the forwarding handler."""

    def __init__(self, router: Router, *, connect_timeout: float = 5.0,
                 fast_connect_timeout: float = FAST_CONNECT_TIMEOUT) -> None:
        self.router = router
        self.connect_timeout = connect_timeout
        self._fast = aiohttp.ClientTimeout(total=None, sock_connect=fast_connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.ServerRunner | None = None
        self.sites: list[web.SockSite] = []

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
                auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def tls_context(self) -> ssl.SSLContext:
        ctx = server_context(*fake_certificate())
        ctx.sni_callback = self.router.sni    # type: ignore[assignment]
        return ctx

    async def start(self, host: str, http_port: int | None, https_port: int | None) -> None:
        """Listen; a port that is taken is retried in the background, so routes and status keep working."""
        http, https = await asyncio.gather(bind(host, http_port), bind(host, https_port))
        await self.serve(http, https)

    async def serve(self, http: socket.socket | None, https: socket.socket | None) -> None:
        """Serve on listening sockets: bound here, or inherited from the `kates ingress` parent that runs several
        worker processes on the same sockets (each accepts from the one queue, like a pre-forking server)."""
        server = web.Server(self.handle, handler_cancellation=False)
        # on stop, open connections (websockets, long polls) get a few seconds, not aiohttp's default minute
        self._runner = web.ServerRunner(server, handle_signals=False, access_log=None, shutdown_timeout=3.0)
        await self._runner.setup()
        if http is not None:
            self.sites.append(web.SockSite(self._runner, http))
        if https is not None:
            ctx = await asyncio.to_thread(self.tls_context)
            self.sites.append(web.SockSite(self._runner, https, ssl_context=ctx))
        for site in self.sites:
            await site.start()
            log.info("ingress serving on %s", site.name)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- forwarding -----------------------------------------------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        backend = self.router.table.route(request.headers.get("Host", ""), request.path)
        if backend is None:
            return _plain(404, "404 page not found: no Ingress rule matches and there is no default backend")
        if not backend.endpoints:
            return _plain(503, f"503 service unavailable: {backend.missing}")
        candidates = self.router.pick(backend)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, candidates)
        headers = _forward_headers(request)
        body = request.content if request.body_exists else None
        last: Exception | None = None
        path = request.raw_path.split("?", 1)[0]
        for attempt, (ip, port) in enumerate(candidates, 1):
            url = URL.build(scheme="http", host=ip, port=port, encoded=True, path=path,
                            query_string=request.query_string)
            try:
                upstream = await self.session.request(request.method, url, headers=headers, data=body,
                                                      allow_redirects=False, compress=None,
                                                      **({} if attempt == len(candidates) else
                                                         {"timeout": self._fast}))
            except (aiohttp.ClientConnectorError, asyncio.TimeoutError) as e:
                last = e
                continue          # nothing was sent: the next endpoint may take it
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
                if body is not None:
                    return _plain(502, f"502 bad gateway: {e}")
                last = e          # a kept-alive connection the backend had just closed: safe to resend
                continue
            except aiohttp.ClientError as e:
                return _plain(502, f"502 bad gateway: {e}")
            try:
                return await self._relay(request, upstream)
            finally:
                upstream.release()
        return _plain(502, f"502 bad gateway: no endpoint accepted the connection ({last})")

    async def _relay(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        length = upstream.content_length
        if length is not None and length <= SMALL_BODY and request.method != "HEAD":
            data = await upstream.read()
            return web.Response(status=upstream.status, reason=upstream.reason, body=data,
                                headers=_response_headers(upstream.headers, keep_length=False))
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=_response_headers(upstream.headers, keep_length=True))
        if length is None and request.method != "HEAD" and upstream.status not in (204, 304) \
                and upstream.status >= 200:
            response.enable_chunked_encoding()
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _websocket(self, request: web.BaseRequest, candidates: list[tuple[str, int]]) -> web.StreamResponse:
        headers = _forward_headers(request, drop=WS_HANDSHAKE)
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        upstream: aiohttp.ClientWebSocketResponse | None = None
        for ip, port in candidates:
            url = URL.build(scheme="ws", host=ip, port=port, encoded=True,
                            path=request.raw_path.split("?", 1)[0], query_string=request.query_string)
            try:
                upstream = await self.session.ws_connect(url, headers=headers, protocols=protocols,
                                                         autoping=False, max_msg_size=0)
                break
            except (aiohttp.ClientConnectorError, asyncio.TimeoutError):
                continue
            except aiohttp.WSServerHandshakeError as e:
                return _plain(e.status if e.status >= 400 else 502, f"websocket handshake refused upstream: {e}")
        if upstream is None:
            return _plain(502, "502 bad gateway: no endpoint accepted the websocket")
        downstream = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (),
                                           autoping=False, max_msg_size=0)
        await downstream.prepare(request)      # type: ignore[arg-type]

        async def pump(src: Any, dst: Any) -> None:
            async for msg in src:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                elif msg.type == aiohttp.WSMsgType.PING:
                    await dst.ping(msg.data)
                elif msg.type == aiohttp.WSMsgType.PONG:
                    await dst.pong(msg.data)
                else:
                    break
            await dst.close(code=src.close_code or aiohttp.WSCloseCode.OK)

        tasks = [asyncio.create_task(pump(downstream, upstream), name="ws-up"),
                 asyncio.create_task(pump(upstream, downstream), name="ws-down")]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
        return downstream

