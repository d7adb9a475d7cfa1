"""An asyncio client of the Kubernetes API: what every kates component uses to talk to the API server.

Components never share memory; they read and write through this client, over HTTPS, like client-go. Errors come
back as the same `kates.api.errors` classes the server raised (a `Status` turned back into its exception).
"""
from __future__ import annotations

import base64
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import aiohttp
import orjson
import yaml

from ..api import errors
from ..api.resources import BUILTIN, ResourceType

PATCH_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}

_BY_NAME: dict[str, ResourceType] = {}
for _rt in BUILTIN:
    _BY_NAME.setdefault(_rt.qualified, _rt)


def resource(name: str) -> ResourceType:
    """A built-in resource by its qualified name: `pods`, `deployments.apps`, `leases.coordination.k8s.io`."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown resource {name!r}") from None


def object_key(obj: dict[str, Any]) -> str:
    """The cache key client-go uses: `namespace/name`, or `name` for cluster-scoped objects."""
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name


class Connection:
    """Where the API server is and how to authenticate: from a kubeconfig file."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext, token: str | None = None,
                 ca_data: str | None = None) -> None:
        self.server = server.rstrip("/")
        self.ssl_context = ssl_context
        self.token = token
        self.ca_data = ca_data   # the cluster CA (PEM) the kubeconfig trusts, e.g. for kube-root-ca.crt

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], context: str | None = None) -> "Connection":
        config = yaml.safe_load(Path(path).read_text())
        ctx_name = context or config.get("current-context")
        ctx = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == ctx["user"])
        ca_data = None
        if "certificate-authority-data" in cluster:
            ca_data = base64.b64decode(cluster["certificate-authority-data"]).decode()
        elif "certificate-authority" in cluster:
            ca_data = Path(cluster["certificate-authority"]).read_text()
        if ca_data:
            # as kubectl: the kubeconfig's CA alone vouches for the server (and the system bundle is not loaded)
            sslctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            sslctx.load_verify_locations(cadata=ca_data)
        else:
            sslctx = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            sslctx.check_hostname = False
            sslctx.verify_mode = ssl.CERT_NONE
        if "client-certificate-data" in user:
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = Path(tmp) / "c.crt", Path(tmp) / "c.key"
                cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
                key.write_bytes(base64.b64decode(user["client-key-data"]))
                sslctx.load_cert_chain(cert, key)
        elif "client-certificate" in user:
            sslctx.load_cert_chain(user["client-certificate"], user["client-key"])
        return cls(cluster["server"], sslctx, user.get("token"), ca_data)


class Client:
    """REST verbs on resources. One aiohttp session (a connection pool) per client."""

    def __init__(self, connection: Connection, user_agent: str = "kates", field_manager: str | None = None,
                 timeout: float = 30.0) -> None:
        self.connection = connection
        self.user_agent = user_agent
        self.field_manager = field_manager or user_agent
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], **kw: Any) -> "Client":
        return cls(Connection.from_kubeconfig(path), **kw)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
            if self.connection.token:
                headers["Authorization"] = f"Bearer {self.connection.token}"
            self._session = aiohttp.ClientSession(
                # no pool limit: every informer's watch holds a connection for as long as it runs
                headers=headers, connector=aiohttp.TCPConnector(ssl=self.connection.ssl_context, limit=0),
                json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- URLs ----------------------------------------------------------------------------------------------
    def path(self, rt: ResourceType, namespace: str | None = None, name: str | None = None,
             subresource: str = "") -> str:
        base = f"/api/{rt.version}" if not rt.group else f"/apis/{rt.group}/{rt.version}"
        if rt.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{rt.resource}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
                      content_type: str = "application/json", accept: str | None = None) -> Any:
        url = self.connection.server + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None and v != ""})
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        try:
            async with self.session().request(method, url, data=data, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _error(resp.status, raw)
                return orjson.loads(raw) if raw else None
        except aiohttp.ClientError as e:
            raise errors.ServiceUnavailable(f"cannot reach the API server: {e}") from e

    # -- verbs ---------------------------------------------------------------------------------------------
    async def get(self, rt: ResourceType, name: str, namespace: str | None = None,
                  subresource: str = "") -> dict[str, Any]:
        return await self.request("GET", self.path(rt, namespace, name, subresource))

    async def list(self, rt: ResourceType, namespace: str | None = None, *, label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_token: str = "",
                   resource_version: str = "", accept: str | None = None) -> dict[str, Any]:
        return await self.request("GET", self.path(rt, namespace), params={
            "labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit or None,
            "continue": continue_token, "resourceVersion": resource_version}, accept=accept)

    async def create(self, rt: ResourceType, obj: dict[str, Any], namespace: str | None = None,
                     subresource: str = "", name: str | None = None) -> dict[str, Any]:
        ns = namespace or obj.get("metadata", {}).get("namespace")
        return await self.request("POST", self.path(rt, ns, name, subresource), body=obj,
                                  params={"fieldManager": self.field_manager})

    async def update(self, rt: ResourceType, obj: dict[str, Any], subresource: str = "") -> dict[str, Any]:
        meta = obj["metadata"]
        return await self.request("PUT", self.path(rt, meta.get("namespace"), meta["name"], subresource), body=obj,
                                  params={"fieldManager": self.field_manager})

    async def update_status(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.update(rt, obj, "status")

    async def patch(self, rt: ResourceType, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge", subresource: str = "", force: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {"fieldManager": self.field_manager}
        if force:
            params["force"] = "true"
        return await self.request("PATCH", self.path(rt, namespace, name, subresource), body=patch,
                                  content_type=PATCH_TYPES[patch_type], params=params)

    async def delete(self, rt: ResourceType, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     preconditions: dict[str, str] | None = None) -> dict[str, Any] | None:
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = preconditions
        return await self.request("DELETE", self.path(rt, namespace, name), body=options)

    async def watch(self, rt: ResourceType, namespace: str | None = None, *, resource_version: str = "",
                    label_selector: str = "", field_selector: str = "", timeout_seconds: int = 300,
                    bookmarks: bool = True, accept: str | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) pairs: ADDED, MODIFIED, DELETED, BOOKMARK. An ERROR event raises its error (410 Expired).

        `accept` asks for another representation of the objects, e.g. PartialObjectMetadata."""
        params = {"watch": "true", "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if bookmarks else None}
        url = self.connection.server + self.path(rt, namespace) + "?" + urlencode(
            {k: v for k, v in params.items() if v not in (None, "")})
        try:
            async with self.session().get(url, headers={"Accept": accept} if accept else None,
                                          timeout=aiohttp.ClientTimeout(total=None,
                                                                        sock_read=timeout_seconds + 30)) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.read())
                async for line in resp.content:
                    if not line.strip():
                        continue
                    ev = orjson.loads(line)
                    if ev["type"] == "ERROR":
                        raise errors.from_status(ev["object"])
                    yield ev["type"], ev["object"]
        except aiohttp.ClientError as e:
            raise errors.ServiceUnavailable(f"watch of {rt.qualified} broke: {e}") from e


def _error(status: int, raw: bytes) -> errors.APIError:
    try:
        body = orjson.loads(raw)
        if isinstance(body, dict) and body.get("kind") == "Status":
            return errors.from_status(body)
    except orjson.JSONDecodeError:
        pass
    err = errors.APIError(raw.decode(errors="replace")[:500] or f"HTTP {status}")
    err.code = status
    return err
