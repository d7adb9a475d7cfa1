"""The REST verbs on resources: get, list, watch, create, update, patch, delete, deletecollection.

Each handler parses the request (requests.py), calls the registry, and renders the answer in the form the
client asked for: the object, a List, a meta.k8s.io Table, or PartialObjectMetadata.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import orjson
from aiohttp import web

from ..api import errors, fieldvalidation, managedfields, patch as patches, tables
from ..api.resources import ResourceType, storage_prefix
from ..api.selectors import matcher, parse_field_selector, parse_label_selector
from . import requests as rq
from . import strategy
from .registry import Registry, deep_copy, now_rfc3339
from .requests import Accept, Target
from .watchcache import WatchCache

log = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json"}
DIRECT_LIMIT = 1 << 20   # bytes a watch connection may have unsent before events queue instead


def json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = dict(JSON_HEADERS)
    resp = web.Response(body=orjson.dumps(body) if not isinstance(body, bytes) else body, status=status,
                        headers=headers)
    for w in warnings or []:
        resp.headers.add("Warning", '299 - "' + w.replace('"', '\\"') + '"')
    return resp


def status_response(err: errors.APIError) -> web.Response:
    return web.Response(body=orjson.dumps(err.status()), status=err.code, headers=JSON_HEADERS)


def unpinned(live: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A patch result that still carries the live resourceVersion did not ask for one: drop it, so the registry
    retries a lost race instead of answering 409 (Kubernetes retries such patches too)."""
    meta = new.get("metadata")
    if isinstance(meta, dict) and meta.get("resourceVersion") == live.get("metadata", {}).get("resourceVersion"):
        meta.pop("resourceVersion", None)
    return new


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


class ResourceHandlers:
    def __init__(self, registry: Registry, cache: WatchCache) -> None:
        self.registry = registry
        self.cache = cache

    # -- rendering -------------------------------------------------------------------------------------------
    def _custom_columns(self, rt: ResourceType) -> list[dict[str, Any]] | None:
        info = self.registry.catalog.custom(rt)
        return info.printer_columns if info else None

    def render_one(self, rt: ResourceType, obj: dict[str, Any], accept: Accept, request: web.Request,
                   status: int = 200, warnings: list[str] | None = None) -> web.Response:
        if accept.table:
            include = request.query.get("includeObject", "Metadata")
            return json_response(tables.to_table(rt, [obj], include_object=include,
                                                 custom_columns=self._custom_columns(rt)), status, warnings)
        if accept.metadata_only:
            return json_response(partial_metadata(obj), status, warnings)
        return json_response(obj, status, warnings)

    # -- read ------------------------------------------------------------------------------------------------
    async def get(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        obj = await self.registry.get(t.rt, t.namespace, t.name)
        return self.render_one(t.rt, obj, rq.parse_accept(request), request)

    async def list(self, request: web.Request, t: Target) -> web.StreamResponse:
        rt = t.rt
        if rq.query_bool(request, "watch"):
            return await self.watch(request, t)
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"), rt.group, rt.kind)
        result = await self.registry.list(rt, t.namespace, labels, fields,
                                          limit=rq.query_int(request, "limit"),
                                          continue_token=request.query.get("continue", ""),
                                          resource_version=request.query.get("resourceVersion", ""))
        list_meta: dict[str, Any] = {"resourceVersion": str(result.revision)}
        if result.continue_token:
            list_meta["continue"] = result.continue_token
            list_meta["remainingItemCount"] = result.remaining
        accept = rq.parse_accept(request)
        if accept.table:
            include = request.query.get("includeObject", "Metadata")
            body = tables.to_table(rt, result.items, include_object=include, list_metadata=list_meta,
                                   custom_columns=self._custom_columns(rt))
            return json_response(body)
        if accept.metadata_only:
            return json_response({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                  "metadata": list_meta, "items": [partial_metadata(o) for o in result.items]})
        return json_response({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": list_meta,
                              "items": result.items})

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        rt = t.rt
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"), rt.group, rt.kind)
        name = t.name or fields.exact("metadata.name")
        match = matcher(labels, fields)
        rv = request.query.get("resourceVersion", "")
        send_initial = request.query.get("sendInitialEvents", "").lower() == "true"
        bookmarks = rq.query_bool(request, "allowWatchBookmarks")
        timeout = rq.query_int(request, "timeoutSeconds", 0) or random.randint(1800, 3600)
        accept = rq.parse_accept(request)
        cache = self.cache.cache(storage_prefix(rt))
        if rv in ("", "0") or send_initial:
            if rv == "":
                await self.cache.fresh()
            start_rev = self.cache.revision
            watcher = cache.watch(None, t.namespace, name, match, initial=True)
        else:
            try:
                after = int(rv)
            except ValueError:
                raise errors.BadRequest(f'invalid resource version "{rv}"') from None
            await self.cache.wait_for(after)
            start_rev = after
            try:
                watcher = cache.watch(after, t.namespace, name, match, initial=False)
            except errors.Expired as e:
                resp = web.StreamResponse(headers=JSON_HEADERS)
                await resp.prepare(request)
                await resp.write(orjson.dumps({"type": "ERROR", "object": e.status()}) + b"\n")
                await resp.write_eof()
                return resp
        resp = web.StreamResponse(headers=JSON_HEADERS)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        include = request.query.get("includeObject", "Metadata")
        columns = self._custom_columns(rt)

        def line(ev: Any) -> bytes:
            if accept.table:
                obj = tables.to_table(rt, [ev.obj], include_object=include, custom_columns=columns)
            elif accept.metadata_only:
                obj = partial_metadata(ev.obj)
            else:
                return ev.json_line()
            return orjson.dumps({"type": ev.type, "object": obj}) + b"\n"

        def bookmark(rev: int, initial_end: bool = False) -> bytes:
            meta: dict[str, Any] = {"resourceVersion": str(rev)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return orjson.dumps({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version,
                                                                "metadata": meta}}) + b"\n"

        deadline = time.monotonic() + timeout
        queue = watcher.queue
        last_rev = start_rev
        pending_initial_end = send_initial and bookmarks
        transport = request.transport
        plain = not accept.table and not accept.metadata_only

        def direct(ev: Any) -> bool:
            """Write a live event now, in the cache's dispatch, without waking this task (see Watcher.direct)."""
            if transport is None or transport.is_closing() or transport.get_write_buffer_size() > DIRECT_LIMIT:
                return False
            data = ev.json_line()
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))   # one HTTP/1.1 chunk
            return True
        try:
            while True:
                if pending_initial_end and queue.empty():
                    await resp.write(bookmark(start_rev, True))
                    pending_initial_end = False
                if plain and queue.empty() and not pending_initial_end:
                    watcher.direct = direct
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    ev = await asyncio.wait_for(queue.get(), min(remaining, 60.0))
                except asyncio.TimeoutError:
                    if bookmarks and time.monotonic() < deadline and queue.empty():
                        watcher.direct = None   # the bookmark goes through aiohttp's writer: keep one writer at a time
                        await resp.write(bookmark(max(last_rev, self.cache.revision)))
                    continue
                watcher.direct = None
                chunk = []
                while True:
                    if ev.type == "CLOSED":
                        if chunk:
                            await resp.write(b"".join(chunk))
                        return resp
                    if ev.revision:
                        last_rev = ev.revision
                    chunk.append(line(ev))
                    if queue.empty() or len(chunk) >= 256:
                        break
                    ev = queue.get_nowait()
                await resp.write(b"".join(chunk))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            watcher.close()
        return resp

    # -- write -----------------------------------------------------------------------------------------------
    def _validate_fields(self, request: web.Request, rt: ResourceType, obj: dict[str, Any], body: bytes,
                         ctype: str, name: str) -> list[str]:
        mode = rq.field_validation(request)
        if mode == "Ignore" and rt.definition is not None:
            strict = False
        else:
            strict = mode == "Strict"
        warnings: list[str] = []
        if mode != "Ignore" and ctype == rq.JSON:
            dups = fieldvalidation.find_duplicate_fields(body)
            if dups and strict:
                raise errors.BadRequest("strict decoding error: " + ", ".join(dups))
            warnings.extend(dups)
        info = self.registry.catalog.custom(rt)
        found = fieldvalidation.validate_against_schema(
            obj, definition=rt.definition, schema=info.schema if info else None, strict=strict, kind=rt.kind,
            name=name, group=rt.group)
        if mode == "Warn":
            warnings.extend(found)
        return warnings

    async def create(self, request: web.Request, t: Target) -> web.Response:
        rt = t.rt
        body = await rq.read_body(request)
        ctype = rq.content_type(request)
        obj = rq.decode_object(body, ctype)
        rq.check_type(obj, rt)
        name = (obj.get("metadata") or {}).get("name") or ""
        warnings = self._validate_fields(request, rt, obj, body, ctype, name)
        created = await self.registry.create(rt, t.namespace, obj, dry_run=rq.dry_run(request),
                                             manager=rq.field_manager(request))
        return self.render_one(rt, created, rq.parse_accept(request), request, 201, warnings)

    async def update(self, request: web.Request, t: Target) -> web.Response:
        rt = t.rt
        assert t.name is not None
        body = await rq.read_body(request)
        ctype = rq.content_type(request)
        obj = rq.decode_object(body, ctype)
        if t.subresource == "scale":
            return await self._write_scale(request, t, lambda scale: obj)
        rq.check_type(obj, rt)
        warnings = self._validate_fields(request, rt, obj, body, ctype, t.name)
        if t.subresource == "finalize":
            finalizers = (obj.get("spec") or {}).get("finalizers") or []

            def mutate(live: dict[str, Any]) -> dict[str, Any]:
                live.setdefault("spec", {})["finalizers"] = finalizers
                if not finalizers:
                    live["spec"].pop("finalizers")
                live["metadata"].pop("resourceVersion", None)
                return live
            updated = await self.registry.update(rt, t.namespace, t.name, mutate, subresource="finalize",
                                                 dry_run=rq.dry_run(request), manager=rq.field_manager(request))
        else:
            updated = await self.registry.update(rt, t.namespace, t.name, lambda live: obj,
                                                 subresource=t.subresource, dry_run=rq.dry_run(request),
                                                 manager=rq.field_manager(request))
        return self.render_one(rt, updated, rq.parse_accept(request), request, 200, warnings)

    async def patch(self, request: web.Request, t: Target) -> web.Response:
        rt = t.rt
        assert t.name is not None
        ctype = rq.content_type(request)
        if ctype not in rq.PATCH_TYPES:
            raise errors.UnsupportedMediaType(f"the body of the request was in an unknown format - accepted media "
                                              f"types include: {', '.join(rq.PATCH_TYPES)}")
        body = await rq.read_body(request)
        dry = rq.dry_run(request)
        manager = rq.field_manager(request)
        mode = rq.field_validation(request)
        info = self.registry.catalog.custom(rt)
        schema = info.schema if info else None
        if t.subresource == "scale":
            return await self._write_scale(
                request, t, lambda scale: unpinned(scale, self._patched(rt, scale, body, ctype, None)))
        if ctype == rq.APPLY_PATCH:
            return await self._apply(request, t, body, manager, dry, mode)
        if ctype == rq.STRATEGIC_PATCH and rt.definition is None:
            raise errors.UnsupportedMediaType("the body of the request was in an unknown format - accepted media "
                                              "types include: application/json-patch+json, "
                                              "application/merge-patch+json, application/apply-patch+yaml")
        warnings: list[str] = []

        def mutate(live: dict[str, Any]) -> dict[str, Any]:
            new = unpinned(live, self._patched(rt, live, body, ctype, rt.definition))
            warnings[:] = fieldvalidation.validate_against_schema(
                new, definition=rt.definition, schema=schema, strict=mode == "Strict", kind=rt.kind, name=t.name or "",
                group=rt.group) if mode != "Ignore" or rt.definition is None else []
            return new
        updated = await self.registry.update(rt, t.namespace, t.name, mutate, subresource=t.subresource,
                                             dry_run=dry, manager=manager)
        return self.render_one(rt, updated, rq.parse_accept(request), request, 200,
                               warnings if mode == "Warn" else None)

    @staticmethod
    def _patched(rt: ResourceType, live: dict[str, Any], body: bytes, ctype: str,
                 definition: str | None) -> dict[str, Any]:
        if ctype == rq.JSON_PATCH:
            return patches.apply_json_patch(live, body)
        if ctype == rq.MERGE_PATCH:
            return patches.apply_merge_patch(live, body)
        return patches.apply_strategic_merge_patch(live, body, definition or rt.definition)

    async def _apply(self, request: web.Request, t: Target, body: bytes, manager: str, dry: bool,
                     mode: str) -> web.Response:
        rt = t.rt
        assert t.name is not None
        if not request.query.get("fieldManager"):
            raise errors.BadRequest("PATCH apply requires fieldManager to be set (e.g. ?fieldManager=kubectl)")
        applied = rq.parse_yaml(body) if not body.lstrip().startswith(b"{") else rq.parse_json(body)
        if not isinstance(applied, dict):
            raise errors.BadRequest("the apply patch must be an object")
        rq.check_type(applied, rt)
        force = rq.query_bool(request, "force")
        info = self.registry.catalog.custom(rt)
        schema = info.schema if info else None
        warnings = fieldvalidation.validate_against_schema(
            applied, definition=rt.definition, schema=schema, strict=mode == "Strict", kind=rt.kind, name=t.name,
            group=rt.group) if mode != "Ignore" else []
        applied.setdefault("metadata", {})
        if applied["metadata"].get("name", t.name) != t.name:
            raise errors.BadRequest(f"the name of the object ({applied['metadata'].get('name')}) does not match the "
                                    f"name on the URL ({t.name})")
        applied["metadata"]["name"] = t.name
        if rt.namespaced:
            applied["metadata"]["namespace"] = t.namespace
        applied["apiVersion"], applied["kind"] = rt.api_version, rt.kind
        stamp = now_rfc3339(self.registry.clock)

        def ssa(live: dict[str, Any] | None) -> dict[str, Any]:
            merged = managedfields.server_side_apply(live, deep_copy(applied), manager=manager, force=force,
                                                   definition=rt.definition, schema=schema, now=stamp,
                                                   subresource=t.subresource,
                                                   reset_fields=strategy.reset_fields(rt, t.subresource))
            return unpinned(live, merged) if live is not None else merged
        updated = await self.registry.update(
            rt, t.namespace, t.name, ssa, subresource=t.subresource, dry_run=dry, manager=manager,
            operation="Apply", create=lambda: ssa(None), managed=lambda old, new: new)
        return self.render_one(rt, updated, rq.parse_accept(request), request, 200,
                               warnings if mode == "Warn" else None)

    # -- scale -----------------------------------------------------------------------------------------------
    @staticmethod
    def scale_of(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        from ..api.selectors import format_label_selector
        meta = obj["metadata"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        selector = spec.get("selector")
        if rt.kind == "ReplicationController":
            selector_text = ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items()))
        else:
            selector_text = format_label_selector(selector)
        scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                      if k in meta}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta,
                "spec": {"replicas": spec.get("replicas", 0)},
                "status": {"replicas": status.get("replicas", 0), "selector": selector_text}}

    async def get_scale(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        obj = await self.registry.get(t.rt, t.namespace, t.name)
        return json_response(self.scale_of(t.rt, obj))

    async def _write_scale(self, request: web.Request, t: Target, change: Any) -> web.Response:
        assert t.name is not None
        rt = t.rt

        def mutate(live: dict[str, Any]) -> dict[str, Any]:
            scale = change(self.scale_of(rt, live))
            replicas = (scale.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.Invalid("Scale", t.name or "", [errors.cause(
                    "spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0")],
                    "autoscaling")
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            live.setdefault("spec", {})["replicas"] = replicas
            if rv:
                live["metadata"]["resourceVersion"] = rv      # the caller pinned it: a lost race is a 409
            else:
                live["metadata"].pop("resourceVersion", None)
            return live
        updated = await self.registry.update(rt, t.namespace, t.name, mutate, dry_run=rq.dry_run(request),
                                             manager=rq.field_manager(request))
        return json_response(self.scale_of(rt, updated))

    # -- binding ---------------------------------------------------------------------------------------------
    async def bind(self, request: web.Request, namespace: str, pod_name: str | None) -> web.Response:
        body = rq.decode_object(await rq.read_body(request), rq.content_type(request))
        name = pod_name or (body.get("metadata") or {}).get("name")
        node = (body.get("target") or {}).get("name")
        if not name or not node:
            raise errors.Invalid("Binding", name or "", [errors.cause("target.name", "Required value",
                                                                      "FieldValueRequired")])
        pods = self.registry.catalog.lookup("", "v1", "pods")
        assert pods is not None
        stamp = now_rfc3339(self.registry.clock)

        def mutate(pod: dict[str, Any]) -> dict[str, Any]:
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.Conflict(f"pod {name} is being deleted, cannot be assigned to a host")
            if (pod.get("spec") or {}).get("nodeName"):
                raise errors.Conflict(f"pod {name} is already assigned to node \"{pod['spec']['nodeName']}\"")
            pod["spec"]["nodeName"] = node
            conditions = [c for c in (pod.setdefault("status", {}).get("conditions") or [])
                          if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                               "lastTransitionTime": stamp})
            pod["status"]["conditions"] = conditions
            pod["metadata"].pop("resourceVersion", None)
            return pod

        def bypass_status(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
            return managedfields.update_managed_fields(old, new, manager=rq.field_manager(request),
                                                       definition=pods.definition, now=stamp, subresource="binding",
                                                       reset_fields=())
        await self.registry.update(pods, namespace, name, mutate, subresource="binding", dry_run=rq.dry_run(request),
                                   managed=bypass_status)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, 201)

    # -- delete ----------------------------------------------------------------------------------------------
    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        body = await rq.read_body(request)
        options: dict[str, Any] = {}
        if body.strip():
            parsed = rq.decode_object(body, rq.content_type(request))
            options.update(parsed)
        for name in ("propagationPolicy",):
            if name in request.query:
                options[name] = request.query[name]
        if "gracePeriodSeconds" in request.query:
            options["gracePeriodSeconds"] = rq.query_int(request, "gracePeriodSeconds")
        if "orphanDependents" in request.query:
            options["orphanDependents"] = rq.query_bool(request, "orphanDependents")
        policy = options.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.Invalid("DeleteOptions", "", [errors.cause(
                "propagationPolicy", f'Unsupported value: "{policy}": supported values: "Foreground", '
                '"Background", "Orphan", "nil"', "FieldValueNotSupported")])
        return options

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        options = await self._delete_options(request)
        obj = await self.registry.delete(t.rt, t.namespace, t.name, options, dry_run=rq.dry_run(request, options))
        still_there = bool(obj["metadata"].get("deletionTimestamp"))
        return self.render_one(t.rt, obj, rq.parse_accept(request), request, 202 if still_there else 200)

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        rt = t.rt
        options = await self._delete_options(request)
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"), rt.group, rt.kind)
        result = await self.registry.list(rt, t.namespace, labels, fields)
        deleted = []
        for obj in result.items:
            meta = obj["metadata"]
            try:
                deleted.append(await self.registry.delete(rt, meta.get("namespace"), meta["name"], options,
                                                          dry_run=rq.dry_run(request, options)))
            except errors.NotFound:
                continue
        return json_response({"kind": rt.list_kind, "apiVersion": rt.api_version,
                              "metadata": {"resourceVersion": str(self.cache.revision)}, "items": deleted})
