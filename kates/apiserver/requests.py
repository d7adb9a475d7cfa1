"""Reading a request: which resource a URL names, what the body says, and what the client accepts.

Kept apart from the handlers so that every verb parses the same way and bad input fails the same way:
a `Status` with the right code and a message that names what is wrong.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import yaml
from aiohttp import web

from ..api import errors
from ..api.resources import ResourceType
from .catalog import Catalog

MAX_BODY = 3 * 1024 * 1024

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


@dataclasses.dataclass
class Target:
    """What a resource URL names."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str


def parse_path(catalog: Catalog, path: str) -> Target | None:
    """Map /api/v1/... and /apis/G/V/... URLs to a resource; None when the URL names no resource."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3:
        return None
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (group == "" and len(rest) == 3
                                                          and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = "/".join(rest[2:]) if len(rest) > 2 else ""
    rt = catalog.lookup(group, version, resource)
    if rt is None:
        return None
    if rt.namespaced is False and namespace is not None:
        return None
    if sub and rt.subresource(sub.split("/")[0]) is None:
        return None
    return Target(rt, namespace, name, sub)


def content_type(request: web.Request) -> str:
    return (request.headers.get("Content-Type") or JSON).split(";")[0].strip().lower()


async def read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise errors.RequestEntityTooLarge("the request body is too large: limit is 3145728 bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.RequestEntityTooLarge("the request body is too large: limit is 3145728 bytes") from None
    if len(body) > MAX_BODY:
        raise errors.RequestEntityTooLarge("the request body is too large: limit is 3145728 bytes")
    return body


def decode_object(body: bytes, ctype: str) -> dict[str, Any]:
    """A create/update body as a dict, from JSON, YAML or protobuf."""
    if not body.strip():
        raise errors.BadRequest("the request body is empty: an object is required")
    if ctype == PROTOBUF:
        from ..api import protobuf
        return protobuf.decode(body)
    if ctype in (JSON, "*/*", ""):
        obj = parse_json(body)
    elif ctype in (YAML, "application/x-yaml", "text/yaml"):
        obj = parse_yaml(body)
    else:
        raise errors.UnsupportedMediaType(f'the body of the request was in an unknown format - accepted media '
                                          f'types include: application/json, application/yaml, '
                                          f'application/vnd.kubernetes.protobuf')
    if not isinstance(obj, dict):
        raise errors.BadRequest(f"the request body must be an object, not {type(obj).__name__}")
    return obj


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise errors.BadRequest(f"couldn't get version/kind; json parse error: {e}") from None


def parse_yaml(body: bytes) -> Any:
    try:
        return yaml.safe_load(body)
    except yaml.YAMLError as e:
        raise errors.BadRequest(f"error converting YAML to JSON: {str(e).splitlines()[0]}") from None


def check_type(obj: dict[str, Any], rt: ResourceType) -> None:
    """A body's apiVersion/kind, when given, must be the URL's."""
    kind = obj.get("kind")
    api_version = obj.get("apiVersion")
    if kind and kind != rt.kind:
        raise errors.BadRequest(f"the kind of the body ({kind}) does not match the resource {rt.qualified} "
                                f"(expected {rt.kind})")
    if api_version and api_version != rt.api_version:
        raise errors.BadRequest(f'the API version in the data ({api_version}) does not match the expected API '
                                f'version ({rt.api_version})')


@dataclasses.dataclass
class Accept:
    table: bool = False
    metadata_only: bool = False


def parse_accept(request: web.Request) -> Accept:
    header = request.headers.get("Accept", "")
    if "as=Table" not in header and "as=PartialObjectMetadata" not in header:
        return Accept()
    for part in header.split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            if params.get("as") == "Table":
                return Accept(table=True)
            if params.get("as") in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return Accept(metadata_only=True)
    return Accept()


def query_bool(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def query_int(request: web.Request, name: str, default: int = 0) -> int:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise errors.BadRequest(f"invalid value for {name}: {raw!r} is not an integer") from None


def dry_run(request: web.Request, options: dict[str, Any] | None = None) -> bool:
    values = request.query.getall("dryRun", [])
    if options and options.get("dryRun"):
        values = list(values) + list(options["dryRun"])
    for v in values:
        if v != "All":
            raise errors.BadRequest(f'unsupported dry run value "{v}": only "All" is supported')
    return bool(values)


def field_manager(request: web.Request, default_suffix: str = "") -> str:
    manager = request.query.get("fieldManager")
    if manager:
        if len(manager) > 128:
            raise errors.BadRequest("fieldManager: Too long: may not be longer than 128 characters")
        return manager
    agent = request.headers.get("User-Agent", "unknown").split("/")[0]
    return agent or "unknown"


def field_validation(request: web.Request) -> str:
    value = request.query.get("fieldValidation", "Warn") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise errors.BadRequest(f"fieldValidation parameter unsupported: {value}: must be Strict, Warn or Ignore")
    return value
