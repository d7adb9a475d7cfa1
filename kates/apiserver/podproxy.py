"""Pod subresources served by the pod's kubelet: log, exec, attach, portforward (and node proxy to /healthz & co).

As kube-apiserver does, the API server finds the pod's node, reaches its kubelet at the Node's InternalIP and
`status.daemonEndpoints.kubeletEndpoint.Port`, and authenticates with its kubelet client certificate
(CN kube-apiserver-kubelet-client, O system:masters). The kubelet's serving certificate is not verified, as
kube-apiserver without --kubelet-certificate-authority does not verify it either.

Logs are a chunked text/plain stream copied as it comes. exec/attach/portforward are upgrades (WebSocket or SPDY):
the request goes to the kubelet with the same upgrade headers, and once the kubelet answers 101 the two connections
are spliced byte for byte (kube-apiserver's UpgradeAwareHandler), so every protocol the kubelet speaks reaches the
client unchanged, nothing is buffered beyond a read, and either side closing ends both. A kubelet that refuses the
upgrade becomes a Status with its message (kubectl then tries SPDY, and prints the error if that fails too).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import urllib.parse
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from ..api import errors
from ..streaming.hijack import accept_upgrade, splice
from ..streaming.spdy import read_http_body, read_http_head
from .catalog import Catalog
from .registry import Registry
from .requests import Target

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
LOG_QUERY = ("follow", "previous", "tailLines", "sinceSeconds", "sinceTime", "timestamps", "limitBytes", "stream")
# Request headers not passed to the kubelet: the caller's credentials and what describes this hop only.
DROP_REQUEST_HEADERS = {"host", "authorization", "content-length", "transfer-encoding", "keep-alive",
                        "proxy-connection", "sec-websocket-extensions", "impersonate-user", "impersonate-group",
                        "accept-encoding"}
DROP_REPLY_HEADERS = {"date", "server", "content-length", "content-type", "transfer-encoding", "keep-alive"}


class PodProxy:
    """Serves pods/{name}/log|exec|attach|portforward and nodes/{name}/proxy by way of the kubelet."""

    def __init__(self, registry: Registry, catalog: Catalog) -> None:
        self.registry = registry
        self.catalog = catalog
        self.tls: ssl.SSLContext | None = None        # the kubelet client certificate (PKI.kubelet_client_context)
        self._session: aiohttp.ClientSession | None = None
        self._active: set[asyncio.Task[Any]] = set()     # open streams, ended when the API server stops

    async def close(self) -> None:
        for task in list(self._active):
            task.cancel()
        if self._active:
            await asyncio.wait(self._active, timeout=2)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _tls(self) -> ssl.SSLContext:
        if self.tls is None:
            raise errors.ServiceUnavailable("the API server has no kubelet client certificate configured")
        return self.tls

    # -- lookups ---------------------------------------------------------------------------------------------
    async def _pod(self, t: Target) -> dict[str, Any]:
        assert t.namespace is not None and t.name is not None
        return await self.registry.get(t.rt, t.namespace, t.name)

    async def _kubelet(self, node_name: str) -> tuple[str, int]:
        nodes = self.catalog.lookup("", "v1", "nodes")
        assert nodes is not None
        try:
            node = await self.registry.get(nodes, None, node_name)
        except errors.NotFound:
            raise errors.NotFound(f'nodes "{node_name}" not found',
                                  details={"name": node_name, "kind": "nodes"}) from None
        status = node.get("status") or {}
        addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        host = addresses.get("InternalIP") or addresses.get("ExternalIP") or addresses.get("Hostname")
        if not host:
            raise errors.BadRequest(f"node {node_name} has no address to reach its kubelet")
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250
        return host, int(port)

    async def _pod_kubelet(self, pod: dict[str, Any]) -> tuple[str, int]:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.BadRequest(f"pod {pod['metadata']['name']} does not have a host assigned")
        return await self._kubelet(node_name)

    @staticmethod
    def container_name(pod: dict[str, Any], requested: str) -> str:
        """The container a request means: the named one, or the only one (as kube-apiserver's pod strategy)."""
        spec = pod.get("spec") or {}
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in spec.get("containers") or []]
        inits = [c["name"] for c in spec.get("initContainers") or []]
        ephemeral = [c["name"] for c in spec.get("ephemeralContainers") or []]
        if not requested:
            if len(containers) == 1:
                return containers[0]
            message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
            if inits:
                message += f" or one of the init containers: [{' '.join(inits)}]"
            if ephemeral:
                message += f" or one of the ephemeral containers: [{' '.join(ephemeral)}]"
            raise errors.BadRequest(message)
        if requested not in containers + inits + ephemeral:
            raise errors.BadRequest(f"container {requested} is not valid for pod {name}")
        return requested

    # -- log -------------------------------------------------------------------------------------------------
    async def log(self, request: web.Request, t: Target) -> web.StreamResponse:
        pod = await self._pod(t)
        container = self.container_name(pod, request.query.get("container", ""))
        host, port = await self._pod_kubelet(pod)
        query = [(k, v) for k, v in request.query.items() if k in LOG_QUERY]
        path = (f"/containerLogs/{_q(t.namespace or '')}/{_q(t.name or '')}/{_q(container)}"
                + (f"?{urllib.parse.urlencode(query)}" if query else ""))
        return await self._stream_get(request, host, port, path)

    async def _tracked(self, coro: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        try:
            return await coro
        finally:
            self._active.discard(task)

    async def _stream_get(self, request: web.Request, host: str, port: int, path: str) -> web.StreamResponse:
        return await self._tracked(self._stream_get_inner(request, host, port, path))

    async def _stream_get_inner(self, request: web.Request, host: str, port: int, path: str) -> web.StreamResponse:
        """GET from the kubelet and copy the body as it arrives (chunked), until it ends or the client leaves."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None,
                                                                                sock_connect=CONNECT_TIMEOUT))
        url = f"https://{_host(host)}:{port}{path}"
        try:
            upstream = await self._session.get(url, ssl=self._tls(), allow_redirects=False)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise errors.InternalError(f"Get \"{url}\": {_reason(e)}") from None
        try:
            if upstream.status != 200:
                raise _kubelet_error(upstream.status, await upstream.read())
            response = web.StreamResponse(status=200, headers={
                "Content-Type": upstream.headers.get("Content-Type", "text/plain")})
            response.enable_chunked_encoding()
            await response.prepare(request)

            async def pump() -> None:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)

            pumping = asyncio.ensure_future(pump())
            try:
                while True:     # a follower may be idle for long: notice the client leaving meanwhile
                    done, _ = await asyncio.wait({pumping}, timeout=0.5)
                    if done:
                        break
                    if request.transport is None or request.transport.is_closing():
                        break
            finally:
                if not pumping.done():
                    pumping.cancel()
                await asyncio.gather(pumping, return_exceptions=True)
            if pumping.done() and not pumping.cancelled() and pumping.exception() is None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await response.write_eof()
            return response
        finally:
            upstream.release()
            upstream.close()

    # -- exec / attach / portforward -------------------------------------------------------------------------
    async def exec(self, request: web.Request, t: Target) -> web.StreamResponse:
        return await self._container_stream(request, t, "exec")

    async def attach(self, request: web.Request, t: Target) -> web.StreamResponse:
        return await self._container_stream(request, t, "attach")

    async def _container_stream(self, request: web.Request, t: Target, verb: str) -> web.StreamResponse:
        pod = await self._pod(t)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise errors.BadRequest(f"cannot {verb} into a container in a completed pod; current phase is {phase}")
        container = self.container_name(pod, request.query.get("container", ""))
        if verb == "exec" and not request.query.getall("command", []):
            raise errors.BadRequest("you must specify at least 1 command")
        host, port = await self._pod_kubelet(pod)
        query = [(k, v) for k, v in request.query.items() if k != "container"]
        path = (f"/{verb}/{_q(t.namespace or '')}/{_q(t.name or '')}/{_q(container)}"
                + (f"?{urllib.parse.urlencode(query)}" if query else ""))
        return await self.relay_upgrade(request, host, port, path)

    async def portforward(self, request: web.Request, t: Target) -> web.StreamResponse:
        pod = await self._pod(t)
        host, port = await self._pod_kubelet(pod)
        ports = []
        for value in request.query.getall("ports", []) + request.query.getall("port", []):
            for p in value.split(","):
                if not p.strip().isdigit() or not 0 < int(p) < 65536:
                    raise errors.BadRequest(f"invalid port {p.strip()!r}: must be between 1 and 65535")
                ports.append(("port", p.strip()))
        path = (f"/portForward/{_q(t.namespace or '')}/{_q(t.name or '')}"
                + (f"?{urllib.parse.urlencode(ports)}" if ports else ""))
        return await self.relay_upgrade(request, host, port, path)

    async def node_proxy(self, request: web.Request, node_name: str, rest: str) -> web.StreamResponse:
        """nodes/{name}/proxy/{path}: GETs on the kubelet (healthz, containerLogs...)."""
        if request.method != "GET":
            raise errors.MethodNotAllowed(f"{request.method} is not supported on nodes/proxy")
        host, port = await self._kubelet(node_name)
        path = "/" + rest.lstrip("/") + (f"?{request.query_string}" if request.query_string else "")
        return await self._stream_get(request, host, port, path)

    async def relay_upgrade(self, request: web.Request, host: str, port: int, path: str) -> web.StreamResponse:
        return await self._tracked(self._relay_upgrade(request, host, port, path))

    async def _relay_upgrade(self, request: web.Request, host: str, port: int, path: str) -> web.StreamResponse:
        """Send the upgrade request on to the kubelet; on 101, splice the two connections until either ends."""
        if "upgrade" not in request.headers.get("Connection", "").lower() or not request.headers.get("Upgrade"):
            raise errors.BadRequest("Upgrade request required")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self._tls(), limit=1 << 20), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            raise errors.InternalError(f"error dialing backend: dial tcp {_host(host)}:{port}: {_reason(e)}") from None
        try:
            lines = [f"{request.method} {path} HTTP/1.1".encode(), f"Host: {_host(host)}:{port}".encode()]
            for name, value in request.raw_headers:
                if name.decode("latin-1").lower() not in DROP_REQUEST_HEADERS:
                    lines.append(name + b": " + value)
            if request.method in ("POST", "PUT"):
                lines.append(b"Content-Length: 0")
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
            await writer.drain()
            status, headers, pairs = await asyncio.wait_for(read_http_head(reader), CONNECT_TIMEOUT)
            if status != 101:
                body = await asyncio.wait_for(read_http_body(reader, headers), CONNECT_TIMEOUT)
                raise _kubelet_error(status, body)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError) as e:
            writer.close()
            raise errors.InternalError(f"error talking to the kubelet at {_host(host)}:{port}: {_reason(e)}") from None
        except BaseException:
            writer.close()
            raise
        reply = CIMultiDict((k, v) for k, v in pairs if k.lower() not in DROP_REPLY_HEADERS)
        response, client = await accept_upgrade(request, reply)
        to_kubelet = asyncio.ensure_future(splice(client.reader, writer))
        to_client = asyncio.ensure_future(splice(reader, client))
        try:
            done, _ = await asyncio.wait({to_kubelet, to_client}, return_when=asyncio.FIRST_COMPLETED)
            if to_client not in done:
                # the client went away first: give the kubelet a moment to finish what it was sending
                await asyncio.wait({to_client}, timeout=1.0)
        finally:
            for t in (to_kubelet, to_client):
                t.cancel()
            await asyncio.gather(to_kubelet, to_client, return_exceptions=True)
            writer.close()
            client.close()
        return response


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _kubelet_error(status: int, body: bytes) -> errors.APIError:
    """A kubelet refusal as the API error kube-apiserver would answer with (its message kept)."""
    message = body.decode(errors="replace").strip()
    with contextlib.suppress(ValueError, AttributeError):
        parsed = json.loads(message)
        if isinstance(parsed, dict) and parsed.get("message"):
            message = parsed["message"]
    cls: type[errors.APIError] = {400: errors.BadRequest, 401: errors.Unauthorized, 403: errors.Forbidden,
                                  404: errors.NotFound, 503: errors.ServiceUnavailable}.get(status,
                                                                                            errors.InternalError)
    err = cls(message or f"the kubelet answered {status}")
    if cls is errors.NotFound:
        err.details = {}
    return err


async def serve_subresource(proxy: PodProxy, request: web.Request, t: Target) -> web.StreamResponse | None:
    """The API server's entry point: the response for pods/{log,exec,attach,portforward} and nodes/proxy, or None
    when `t` is none of those."""
    sub = t.subresource
    method = request.method
    if t.rt.group == "" and t.rt.resource == "pods" and t.name:
        if sub == "log" and method == "GET":
            return await proxy.log(request, t)
        if sub in ("exec", "attach", "portforward") and method in ("GET", "POST"):
            return await {"exec": proxy.exec, "attach": proxy.attach, "portforward": proxy.portforward}[sub](
                request, t)
    if t.rt.group == "" and t.rt.resource == "nodes" and t.name and sub.split("/")[0] == "proxy":
        return await proxy.node_proxy(request, t.name, sub[len("proxy"):])
    return None
