"""The API server: HTTPS, authentication, routing of every URL kubectl uses, and first-start bootstrap.

Assembles the store, the watch cache, the registry and the handlers; serves /version, health, discovery,
OpenAPI and every resource URL. Everything else in kates is a client of this server.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import platform
import ssl
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from .. import KUBERNETES_VERSION, __version__
from ..api import errors
from ..api.resources import object_key
from ..store.interface import KeyExists, Store
from . import requests as rq
from .allocators import ServiceAllocator
from .catalog import Catalog
from .crds import CRDController
from .discovery import AGGREGATED_TYPE, Discovery
from .handlers import ResourceHandlers, json_response, status_response
from .registry import Registry
from .watchcache import WatchCache

log = logging.getLogger(__name__)

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
ANONYMOUS_PATHS = ("/version", "/healthz", "/livez", "/readyz")
SYSTEM_PRIORITY_CLASSES = (
    ("system-node-critical", 2000001000,
     "Used for system critical pods that must not be moved from their current node."),
    ("system-cluster-critical", 2000000000, "Used for system critical pods that must run in the cluster, but can be "
                                            "moved to another node if necessary."),
)


@dataclasses.dataclass
class ServerConfig:
    bind: str = "127.0.0.1"
    port: int = 6443
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    event_ttl: float = 3600.0
    watch_cache_size: int = 10_000
    default_toleration_seconds: int = 300
    # kates.apiserver.admission. ServiceAccount admission needs the serviceaccount controller's `default` accounts:
    # `kates server` adds it when it runs that controller; an APIServer embedded alone goes without
    admission_plugins: tuple[str, ...] = ("LimitRanger", "Priority")
    service_account_key_file: str | None = None   # ServiceAccount token signing key (kates.apiserver.tokens)


def version_info() -> dict[str, str]:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return {"major": major, "minor": minor, "gitVersion": f"{KUBERNETES_VERSION}+kates",
            "gitCommit": __version__, "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
            "platform": f"linux/{'amd64' if platform.machine() == 'x86_64' else platform.machine()}"}


class APIServer:
    def __init__(self, store: Store, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.store = store
        self.catalog = Catalog()
        self.cache = WatchCache(store, self.config.watch_cache_size)
        self.allocator = ServiceAllocator(store, self.config.service_cidr, self.config.node_port_range)
        self.registry = Registry(store, self.cache, self.catalog, self.allocator, event_ttl=self.config.event_ttl)
        self.handlers = ResourceHandlers(self.registry, self.cache)
        from .podproxy import PodProxy
        self.podproxy = PodProxy(self.registry, self.catalog)   # .tls: PKI.kubelet_client_context(), set by the caller
        from . import admission
        self.registry.admission = admission.build(self.registry, self.config.admission_plugins)
        self.registry.after_defaults.extend(admission.build_after_defaults(self.registry,
                                                                           self.config.admission_plugins))
        from ..api.validation import services as service_validation
        service_validation.NODE_PORT_RANGE = self.config.node_port_range   # one range per process, as flags are
        from ..api.defaulting import pods as pod_defaulting
        pod_defaulting.DEFAULT_TOLERATION_SECONDS = self.config.default_toleration_seconds
        self.discovery = Discovery(self.catalog)
        self.crds = CRDController(self.registry, self.catalog)
        self.ready = False
        self._runner: web.AppRunner | None = None
        self.tokens: dict[str, str] = {}
        self.sa_tokens: Any = None   # kates.apiserver.tokens.ServiceAccountTokens, once started with a key file

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self, ssl_context: ssl.SSLContext | None) -> None:
        if self.config.service_account_key_file:
            from .tokens import ServiceAccountTokens, load_or_create_key
            key = await asyncio.to_thread(load_or_create_key, Path(self.config.service_account_key_file))
            self.sa_tokens = ServiceAccountTokens(self.registry, key)
        await self.cache.start()
        await self.crds.start()
        await self.bootstrap()
        app = self.app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.bind, self.config.port, ssl_context=ssl_context,
                           backlog=1024, reuse_address=True)
        await site.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.crds.stop()
        await self.cache.stop()    # ends every watch stream, so the HTTP shutdown does not wait on them
        await self.podproxy.close()
        if self._runner:
            await self._runner.cleanup()

    async def bootstrap(self) -> None:
        """Objects every cluster has from its first start: the default namespaces and the `kubernetes` service."""
        ns_rt = self.catalog.lookup("", "v1", "namespaces")
        assert ns_rt is not None
        for name in DEFAULT_NAMESPACES:
            if await self.store.get(object_key(ns_rt, None, name)) is None:
                try:
                    await self.registry.create(ns_rt, None, {"metadata": {"name": name}}, manager="kates")
                except errors.AlreadyExists:
                    pass
        # the built-in PriorityClasses, as kube-apiserver's scheduling post-start hook makes them
        pc_rt = self.catalog.lookup("scheduling.k8s.io", "v1", "priorityclasses")
        for name, value, description in SYSTEM_PRIORITY_CLASSES:
            if pc_rt is not None and await self.store.get(object_key(pc_rt, None, name)) is None:
                try:
                    await self.registry.create(pc_rt, None, {"metadata": {"name": name}, "value": value,
                                                             "description": description}, manager="kates")
                except errors.AlreadyExists:
                    pass
        svc_rt = self.catalog.lookup("", "v1", "services")
        assert svc_rt is not None
        if await self.store.get(object_key(svc_rt, "default", "kubernetes")) is None:
            try:
                await self.registry.create(svc_rt, "default", {
                    "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"clusterIP": self.allocator.first_ip, "type": "ClusterIP", "sessionAffinity": "None",
                             "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                        "targetPort": self.config.port}]}}, manager="kates")
            except errors.AlreadyExists:
                pass

    # -- HTTP ------------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=rq.MAX_BODY + 1)
        r = app.router
        r.add_get("/version", self.version)
        r.add_get("/version/", self.version)
        for path in ("/healthz", "/livez", "/readyz"):
            r.add_get(path, self.health)
            r.add_get(path + "/{check:.*}", self.health)
        r.add_get("/api", self.discovery_root)
        r.add_get("/apis", self.discovery_root)
        r.add_get("/openapi/v2", self.openapi_v2)
        r.add_get("/openapi/v3", self.openapi_v3_index)
        r.add_get("/openapi/v3/{path:.*}", self.openapi_v3)
        r.add_route("*", "/{path:.*}", self.resource)
        return app

    def authenticate(self, request: web.Request) -> str | None:
        """The user a request comes from: a bearer token from the token file, or a client certificate's CN."""
        auth = request.headers.get("Authorization")
        if auth and auth.startswith("Bearer "):
            token = auth[7:].strip()
            user = self.tokens.get(token)
            if user is None and self.sa_tokens is not None:
                info = self.sa_tokens.authenticate(token)
                if info is not None:
                    request["user"] = info   # groups and extra, for whatever authorizes or audits later
                    return info.username
            return user
        transport = request.transport
        if transport is None:
            return None
        if transport.get_extra_info("sslcontext") is None:
            return "system:anonymous-insecure"   # plain HTTP is only for tests that opt in
        cert = transport.get_extra_info("peercert")
        if not cert:
            return None
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
        try:
            if self.authenticate(request) is None and not request.path.startswith(ANONYMOUS_PATHS):
                raise errors.Unauthorized("Unauthorized")
            return await handler(request)
        except errors.APIError as e:
            return status_response(e)
        except web.HTTPException as e:
            if e.status == 413:
                return status_response(errors.RequestEntityTooLarge(
                    "the request body is too large: limit is 3145728 bytes"))
            if e.status == 404:
                return status_response(errors.NotFound("the server could not find the requested resource",
                                                       details={}))
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return status_response(errors.InternalError(f"Internal error occurred: {e}"))

    async def version(self, request: web.Request) -> web.Response:
        return json_response(version_info())

    async def health(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.Response(text="not ready", status=503)
        return web.Response(text="ok")

    async def discovery_root(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "as=APIGroupDiscoveryList" in accept and "apidiscovery.k8s.io" in accept:
            body = self.discovery.aggregated(request.path)
            assert body is not None
            return web.Response(body=body, headers={"Content-Type": AGGREGATED_TYPE, "Vary": "Accept"})
        body = self.discovery.legacy(request.path)
        assert body is not None
        return web.Response(body=body, headers={"Content-Type": "application/json", "Vary": "Accept"})

    def _crd_schemas(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {(rt.group, rt.version, rt.kind): info.schema
                for rt in self.catalog.types if (info := self.catalog.custom(rt)) and info.schema}

    async def openapi_v2(self, request: web.Request) -> web.Response:
        from ..api import openapi
        accept = request.headers.get("Accept", "")
        if "protobuf" in accept and "json" not in accept:
            return web.Response(body=openapi.v2_protobuf_stub(),
                                headers={"Content-Type": "application/octet-stream"})
        doc = openapi.v2_document(self.catalog.types, self._crd_schemas())
        return json_response(doc)

    async def openapi_v3_index(self, request: web.Request) -> web.Response:
        from ..api import openapi
        return json_response(openapi.v3_index(self.catalog.types, self._crd_schemas()))

    async def openapi_v3(self, request: web.Request) -> web.Response:
        from ..api import openapi
        body = openapi.v3_document_bytes(request.match_info["path"], self.catalog.types, self._crd_schemas())
        if body is None:
            raise errors.NotFound("the server could not find the requested resource", details={})
        return web.Response(body=body, headers={"Content-Type": "application/json",
                                                "Cache-Control": "public, immutable" if "hash" in request.query
                                                else "no-cache, private"})

    async def resource(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        legacy = self.discovery.legacy(path.rstrip("/"))
        if legacy is not None and request.method == "GET":
            return web.Response(body=legacy, headers={"Content-Type": "application/json"})
        t = rq.parse_path(self.catalog, path)
        if t is None:
            # POST /api/v1/namespaces/NS/bindings is the old form of pods/NAME/binding
            raise errors.NotFound("the server could not find the requested resource", details={})
        method = request.method
        h = self.handlers
        rt = t.rt
        if rt.namespaced and t.namespace is None and (t.name is not None or method == "POST"):
            raise errors.NotFound("the server could not find the requested resource", details={})
        if rt.resource == "bindings" and method == "POST":
            assert t.namespace is not None
            return await h.bind(request, t.namespace, None)
        if t.subresource:
            sub = t.subresource
            if sub == "binding" and method == "POST":
                assert t.namespace is not None
                return await h.bind(request, t.namespace, t.name)
            if sub == "scale":
                if method == "GET":
                    return await h.get_scale(request, t)
                if method == "PUT":
                    return await h.update(request, t)
                if method == "PATCH":
                    return await h.patch(request, t)
            if sub in ("status", "finalize", "ephemeralcontainers"):
                if method == "GET":
                    return await h.get(request, t)
                if method == "PUT":
                    return await h.update(request, t)
                if method == "PATCH":
                    return await h.patch(request, t)
            if sub == "eviction" and method == "POST":
                return await h.delete(request, t)
            from .podproxy import serve_subresource
            proxied = await serve_subresource(self.podproxy, request, t)
            if proxied is not None:
                return proxied
            if sub == "token" and method == "POST" and rt.resource == "serviceaccounts" and self.sa_tokens:
                assert t.namespace is not None and t.name is not None
                body = rq.decode_object(await rq.read_body(request), rq.content_type(request))
                issued = await self.sa_tokens.token_request(t.namespace, t.name, body)
                return json_response(issued, 201)
            raise errors.MethodNotAllowed(f"{method} is not supported on {rt.resource}/{sub} yet")
        if t.name is None:
            if method == "GET":
                return await h.list(request, t)
            if method == "POST":
                return await h.create(request, t)
            if method == "DELETE" and "deletecollection" in rt.verbs:
                return await h.delete_collection(request, t)
        else:
            if method == "GET":
                if rq.query_bool(request, "watch"):
                    return await h.watch(request, t)
                return await h.get(request, t)
            if method == "PUT":
                return await h.update(request, t)
            if method == "PATCH":
                return await h.patch(request, t)
            if method == "DELETE":
                return await h.delete(request, t)
        raise errors.MethodNotAllowed(f"the server does not allow this method on the requested resource",
                                      details={})
