"""OpenAPI documents (`/openapi/v3`, `/openapi/v3/<gv>`, `/openapi/v2`) generated from the resource table.

Why kubectl needs them:
- `kubectl apply/create/replace` (default `--validate=strict`) look, per kind, for a `patch` operation carrying
  `x-kubernetes-group-version-kind` and a `fieldValidation` query parameter; when found they send
  `fieldValidation=Strict` and leave validation to the server (kates/api/fieldvalidation.py). Without the
  documents those commands fail with "failed to download openapi".
- Client-side `kubectl apply` computes strategic merge patches from the kind's schema in `components.schemas`
  (merge keys and strategies), so the schema must be complete (every `$ref` resolvable inside the document).
- `kubectl explain` finds the kind's schema by its `x-kubernetes-group-version-kind` LIST and walks
  `properties` / `allOf` / `$ref` for descriptions and types.

Nothing here is copied from Kubernetes' published documents: schemas come from the 1.32 definitions the
`kubernetes-validate` package ships (kates/api/schemas.py) and are reshaped from JSON Schema (`"type":
["integer","null"]`, `oneOf` for IntOrString/Quantity, `#/$defs/` refs) into the shapes Kubernetes publishes
(single types, `format: int-or-string`, `allOf: [{$ref}]` next to a description). Custom resources get their
CRD's `openAPIV3Schema`, named like Kubernetes names them (group reversed: `com.example.v1.Widget`).

Documents are big (apps/v1 is ~1 MB serialized), so each is built once per (group-version, resource types,
CRD-schema fingerprint) and kept together with its orjson bytes and hash; `v3_document_bytes` serves the bytes.
"""
from __future__ import annotations

import functools
import hashlib
from typing import Any, Iterable, NamedTuple

import orjson

from kates.api import schemas
from kates.api.resources import ResourceType, Subresource

K8S_VERSION = "v1.32.0"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
OBJECT_META = META + "ObjectMeta"
LIST_META = META + "ListMeta"
PATCH = META + "Patch"
STATUS = META + "Status"
DELETE_OPTIONS = META + "DeleteOptions"
API_RESOURCE_LIST = META + "APIResourceList"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

V3_PREFIX = "#/components/schemas/"
V2_PREFIX = "#/definitions/"

PATCH_TYPES_BUILTIN = ("application/apply-patch+yaml", "application/json-patch+json",
                       "application/merge-patch+json", "application/strategic-merge-patch+json")
# Custom resources do not support strategic merge patch (no merge keys), as in Kubernetes.
PATCH_TYPES_CUSTOM = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json")
RESPONSE_TYPES_BUILTIN = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
RESPONSE_TYPES_CUSTOM = ("application/json", "application/yaml")
WATCH_TYPES_BUILTIN = ("application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")
WATCH_TYPES_CUSTOM = ("application/json;stream=watch",)

_API_VERSION_DOC = ("APIVersion defines the versioned schema of this representation of an object. Servers should "
                    "convert recognized schemas to the latest internal value, and may reject unrecognized values.")
_KIND_DOC = ("Kind is a string value representing the REST resource this object represents. Servers may infer "
             "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.")
_METADATA_DOC = "Standard object's metadata."
_LIST_METADATA_DOC = "Standard list metadata."

# Definitions the package expresses as JSON-Schema unions with nullable branches. Kubernetes publishes them in v3
# as a `oneOf` without a top-level type (so `kubectl explain` prints <IntOrString>/<Quantity>) and in v2 as strings.
_INT_OR_STRING_DOC = ("IntOrString is a type that can hold an int32 or a string. When used in JSON or YAML "
                      "marshalling and unmarshalling, it produces or consumes the inner type.")
_QUANTITY_DOC = ("Quantity is a fixed-point representation of a number, written as a string such as \"100m\", "
                 "\"1.5Gi\" or \"2\" (plain numbers are accepted on input).")
_SPECIAL_DEFINITIONS: dict[tuple[str, bool], dict[str, Any]] = {
    (INT_OR_STRING, True): {"description": _INT_OR_STRING_DOC, "format": "int-or-string",
                            "oneOf": [{"type": "integer"}, {"type": "string"}]},
    (INT_OR_STRING, False): {"description": _INT_OR_STRING_DOC, "format": "int-or-string", "type": "string"},
    (QUANTITY, True): {"description": _QUANTITY_DOC, "oneOf": [{"type": "string"}, {"type": "number"}]},
    (QUANTITY, False): {"description": _QUANTITY_DOC, "type": "string"},
}
_SPECIAL_NAMES = frozenset(name for name, _ in _SPECIAL_DEFINITIONS)

# -------------------------------------------------------------------------------------------------------------
# Query parameters (descriptions are short summaries; clients only look at names and locations).

_PARAMS: dict[str, tuple[str, str]] = {   # name -> (type, description)
    "allowWatchBookmarks": ("boolean", "Ask for BOOKMARK watch events."),
    "continue": ("string", "Continue token from a previous chunked list."),
    "dryRun": ("string", "When present (All), modifications are not persisted."),
    "fieldManager": ("string", "Name of the actor making the change, used for field management."),
    "fieldSelector": ("string", "Restrict returned objects by their fields."),
    "fieldValidation": ("string", "How to handle unknown or duplicate fields in the request body: Ignore, "
                                  "Warn (default) or Strict."),
    "force": ("boolean", "Force an apply request, taking ownership of conflicting fields."),
    "gracePeriodSeconds": ("integer", "Seconds before the object should be deleted."),
    "ignoreStoreReadErrorWithClusterBreakingPotential": ("boolean", "Unsafe deletion of corrupt objects."),
    "labelSelector": ("string", "Restrict returned objects by their labels."),
    "limit": ("integer", "Maximum number of items to return in a list call."),
    "orphanDependents": ("boolean", "Deprecated: use propagationPolicy."),
    "propagationPolicy": ("string", "Garbage collection policy: Orphan, Background or Foreground."),
    "resourceVersion": ("string", "Constraint on the resource versions a request may be served from."),
    "resourceVersionMatch": ("string", "How resourceVersion applies to list calls."),
    "sendInitialEvents": ("boolean", "Start a watch with synthetic events for the current state."),
    "timeoutSeconds": ("integer", "Timeout for the list/watch call."),
    "watch": ("boolean", "Watch for changes to the described resources."),
    "pretty": ("string", "If 'true', the output is pretty printed."),
    # connect / log options
    "command": ("string", "Command to execute."),
    "container": ("string", "Container name."),
    "stdin": ("boolean", "Redirect standard input."),
    "stdout": ("boolean", "Redirect standard output."),
    "stderr": ("boolean", "Redirect standard error."),
    "tty": ("boolean", "Allocate a TTY."),
    "ports": ("integer", "Ports to forward."),
    "path": ("string", "Path to proxy to."),
    "follow": ("boolean", "Follow the log stream."),
    "insecureSkipTLSVerifyBackend": ("boolean", "Skip TLS verification of the serving kubelet."),
    "limitBytes": ("integer", "Maximum bytes of logs to return."),
    "previous": ("boolean", "Logs of the previous terminated container."),
    "sinceSeconds": ("integer", "Relative time in seconds before now to show logs from."),
    "tailLines": ("integer", "Number of lines from the end of the log to show."),
    "timestamps": ("boolean", "Prefix each log line with a timestamp."),
}

_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
                "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_PATCH_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "ignoreStoreReadErrorWithClusterBreakingPotential",
                  "orphanDependents", "propagationPolicy")
_DELETECOLLECTION_PARAMS = ("continue", "dryRun", "fieldSelector", "gracePeriodSeconds",
                            "ignoreStoreReadErrorWithClusterBreakingPotential", "labelSelector", "limit",
                            "orphanDependents", "propagationPolicy", "resourceVersion", "resourceVersionMatch",
                            "sendInitialEvents", "timeoutSeconds")
_CONNECT_PARAMS: dict[str, tuple[str, ...]] = {
    "exec": ("command", "container", "stderr", "stdin", "stdout", "tty"),
    "attach": ("container", "stderr", "stdin", "stdout", "tty"),
    "portforward": ("ports",),
    "proxy": ("path",),
}
_LOG_PARAMS = ("container", "follow", "insecureSkipTLSVerifyBackend", "limitBytes", "previous", "sinceSeconds",
               "tailLines", "timestamps")


# -------------------------------------------------------------------------------------------------------------
# Schema conversion: package JSON Schema -> Kubernetes-shaped OpenAPI.

def _first_type(t: Any) -> str | None:
    if isinstance(t, str):
        return None if t == "null" else t
    for x in t:
        if x != "null":
            return x
    return None


def _convert(schema: dict[str, Any], prefix: str, v3: bool) -> dict[str, Any]:
    """One schema node, recursively: single types, rewritten refs, no JSON-Schema-only keywords."""
    out: dict[str, Any] = {}
    ref: str | None = None
    for key, value in schema.items():
        if key == "$ref":
            ref = value
        elif key == "type":
            t = _first_type(value)
            if t is not None:
                out["type"] = t
        elif key == "properties":
            props = {}
            for name, sub in value.items():
                conv = _convert(sub, prefix, v3)
                if name in ("apiVersion", "kind"):
                    conv.pop("enum", None)   # added by the package; Kubernetes does not publish it
                props[name] = conv
            out["properties"] = props
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value, prefix, v3) if isinstance(value, dict) else value
        elif key in ("oneOf", "anyOf", "allOf", "not", "$schema", "$id", "nullable"):
            continue   # only IntOrString/Quantity use unions here; handled as special definitions
        else:
            out[key] = value
    if ref is not None:
        target = prefix + ref[len(schemas.REF_PREFIX):] if ref.startswith(schemas.REF_PREFIX) else ref
        if v3 and out:
            out["allOf"] = [{"$ref": target}]
        else:
            out["$ref"] = target
    return out


@functools.cache
def _converted_definition(name: str, v3: bool) -> dict[str, Any]:
    special = _SPECIAL_DEFINITIONS.get((name, v3))
    if special is not None:
        return special
    return _convert(schemas.definitions()[name], V3_PREFIX if v3 else V2_PREFIX, v3)


def _refs_in(node: Any, acc: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(schemas.REF_PREFIX):
            acc.add(ref[len(schemas.REF_PREFIX):])
        for value in node.values():
            if isinstance(value, (dict, list)):
                _refs_in(value, acc)
    elif isinstance(node, list):
        for value in node:
            _refs_in(value, acc)


@functools.cache
def _direct_refs(name: str) -> frozenset[str]:
    if name in _SPECIAL_NAMES:
        return frozenset()
    acc: set[str] = set()
    _refs_in(schemas.definitions()[name], acc)
    return frozenset(acc)


def _closure(roots: Iterable[str]) -> list[str]:
    """Every built-in definition reachable from `roots` (sorted, so documents serialize stably)."""
    defs = schemas.definitions()
    seen: set[str] = set()
    stack = [r for r in roots if r in defs]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(r for r in _direct_refs(name) if r not in seen and r in defs)
    return sorted(seen)


# -------------------------------------------------------------------------------------------------------------
# Custom resources.

def crd_definition_name(group: str, version: str, kind: str) -> str:
    """How Kubernetes names a custom resource's schema.

    `stable.example.com/v1 CronTab` -> `com.example.stable.v1.CronTab` (group reversed, then version and kind).
    """
    return ".".join([*reversed(group.split(".")), version, kind]) if group else f"{version}.{kind}"


def _strip_for_v2(node: Any) -> Any:
    """Swagger 2.0 has no oneOf/anyOf/not/nullable; drop them (Kubernetes does the same for its v2 document)."""
    if isinstance(node, dict):
        return {k: _strip_for_v2(v) for k, v in node.items()
                if k not in ("oneOf", "anyOf", "allOf", "not", "nullable")}
    if isinstance(node, list):
        return [_strip_for_v2(v) for v in node]
    return node


def _custom_definitions(group: str, version: str, kind: str, schema: dict[str, Any] | None,
                        v3: bool) -> dict[str, dict[str, Any]]:
    """The kind's and its List's definitions, with apiVersion/kind/metadata wired like Kubernetes publishes them."""
    prefix = V3_PREFIX if v3 else V2_PREFIX
    name = crd_definition_name(group, version, kind)
    body: dict[str, Any] = orjson.loads(orjson.dumps(schema)) if schema else {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if not v3:
        body = _strip_for_v2(body)
    body["type"] = "object"
    props = dict(body.get("properties") or {})
    props["apiVersion"] = {"description": _API_VERSION_DOC, "type": "string"}
    props["kind"] = {"description": _KIND_DOC, "type": "string"}
    meta_ref = prefix + OBJECT_META
    props["metadata"] = ({"allOf": [{"$ref": meta_ref}], "description": _METADATA_DOC} if v3
                         else {"$ref": meta_ref, "description": _METADATA_DOC})
    body["properties"] = dict(sorted(props.items()))
    body["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    list_meta_ref = prefix + LIST_META
    listing = {
        "description": f"{kind}List is a list of {kind}",
        "properties": {
            "apiVersion": {"description": _API_VERSION_DOC, "type": "string"},
            "items": {"description": f"List of {kind.lower()}s.", "items": {"$ref": prefix + name}, "type": "array"},
            "kind": {"description": _KIND_DOC, "type": "string"},
            "metadata": ({"allOf": [{"$ref": list_meta_ref}], "description": _LIST_METADATA_DOC} if v3
                         else {"$ref": list_meta_ref, "description": _LIST_METADATA_DOC}),
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [{"group": group, "kind": kind + "List", "version": version}],
    }
    return {name: body, name + "List": listing}


# -------------------------------------------------------------------------------------------------------------
# Paths and operations, described once and rendered as OpenAPI 3.0 or Swagger 2.0.

class _Op(NamedTuple):
    method: str                      # get/put/post/patch/delete
    action: str                      # x-kubernetes-action
    operation_id: str
    description: str
    gvk: dict[str, str] | None
    params: tuple[str, ...]
    request: str | None              # definition name of the body, or PATCH, or None
    request_types: tuple[str, ...]   # content types accepted
    responses: tuple[tuple[str, str | None], ...]   # (code, definition name | "string" | None)
    response_types: tuple[str, ...]


class _Path(NamedTuple):
    path: str
    path_params: tuple[str, ...]     # ("name", "namespace", "path")
    ops: tuple[_Op, ...]


def _camel_group(group: str) -> str:
    if not group:
        return "Core"
    trimmed = group[:-len(".k8s.io")] if group.endswith(".k8s.io") else group
    return "".join(part[:1].upper() + part[1:] for part in trimmed.replace("-", ".").split("."))


def _tag(group: str, version: str) -> str:
    camel = _camel_group(group)
    return f"{camel[:1].lower()}{camel[1:]}_{version}"


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


class _Kind(NamedTuple):
    rt: ResourceType
    definition: str               # schema name in the document
    list_definition: str | None
    custom: bool


def _subresource_definition(sub: Subresource) -> str | None:
    return schemas.definition_for_kind(sub.group, sub.version, sub.kind)


def _paths_for(k: _Kind) -> list[_Path]:
    rt = k.rt
    prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    op_prefix = _camel_group(rt.group) + rt.version[:1].upper() + rt.version[1:]
    scope = "Namespaced" if rt.namespaced else ""
    collection = (f"{prefix}/namespaces/{{namespace}}/{rt.resource}" if rt.namespaced
                  else f"{prefix}/{rt.resource}")
    item = collection + "/{name}"
    base_params = ("namespace",) if rt.namespaced else ()
    gvk = _gvk(rt.group, rt.version, rt.kind)
    resp = RESPONSE_TYPES_CUSTOM if k.custom else RESPONSE_TYPES_BUILTIN
    watch_types = WATCH_TYPES_CUSTOM if k.custom else WATCH_TYPES_BUILTIN
    patch_types = PATCH_TYPES_CUSTOM if k.custom else PATCH_TYPES_BUILTIN
    verbs = set(rt.verbs)
    kind_def, list_def = k.definition, k.list_definition
    paths: list[_Path] = []

    coll_ops: list[_Op] = []
    if "list" in verbs and list_def:
        coll_ops.append(_Op("get", "list", f"list{op_prefix}{scope}{rt.kind}",
                            f"list or watch objects of kind {rt.kind}", gvk, _LIST_PARAMS, None, (),
                            (("200", list_def),), resp + watch_types))
    if "create" in verbs:
        coll_ops.append(_Op("post", "post", f"create{op_prefix}{scope}{rt.kind}", f"create a {rt.kind}", gvk,
                            _WRITE_PARAMS, kind_def, ("*/*",),
                            (("200", kind_def), ("201", kind_def), ("202", kind_def)), resp))
    if "deletecollection" in verbs:
        coll_ops.append(_Op("delete", "deletecollection", f"delete{op_prefix}Collection{scope}{rt.kind}",
                            f"delete collection of {rt.kind}", gvk, _DELETECOLLECTION_PARAMS, DELETE_OPTIONS,
                            ("*/*",), (("200", STATUS),), resp))
    if coll_ops:
        paths.append(_Path(collection, base_params, tuple(coll_ops)))

    item_ops: list[_Op] = []
    if "get" in verbs:
        item_ops.append(_Op("get", "get", f"read{op_prefix}{scope}{rt.kind}", f"read the specified {rt.kind}",
                            gvk, (), None, (), (("200", kind_def),), resp))
    if "update" in verbs:
        item_ops.append(_Op("put", "put", f"replace{op_prefix}{scope}{rt.kind}",
                            f"replace the specified {rt.kind}", gvk, _WRITE_PARAMS, kind_def, ("*/*",),
                            (("200", kind_def), ("201", kind_def)), resp))
    if "patch" in verbs:
        item_ops.append(_Op("patch", "patch", f"patch{op_prefix}{scope}{rt.kind}",
                            f"partially update the specified {rt.kind}", gvk, _PATCH_PARAMS, PATCH, patch_types,
                            (("200", kind_def), ("201", kind_def)), resp))
    if "delete" in verbs:
        item_ops.append(_Op("delete", "delete", f"delete{op_prefix}{scope}{rt.kind}", f"delete a {rt.kind}", gvk,
                            _DELETE_PARAMS, DELETE_OPTIONS, ("*/*",), (("200", STATUS), ("202", STATUS)), resp))
    if item_ops:
        paths.append(_Path(item, base_params + ("name",), tuple(item_ops)))

    if rt.namespaced and "list" in verbs and list_def:
        paths.append(_Path(f"{prefix}/{rt.resource}", (), (
            _Op("get", "list", f"list{op_prefix}{rt.kind}ForAllNamespaces",
                f"list or watch objects of kind {rt.kind}", gvk, _LIST_PARAMS, None, (), (("200", list_def),),
                resp + watch_types),)))

    for sub in rt.subresources:
        paths.extend(_subresource_paths(k, sub, item, base_params + ("name",), op_prefix, scope))
    return paths


def _subresource_paths(k: _Kind, sub: Subresource, item: str, params: tuple[str, ...], op_prefix: str,
                       scope: str) -> list[_Path]:
    rt = k.rt
    resp = RESPONSE_TYPES_CUSTOM if k.custom else RESPONSE_TYPES_BUILTIN
    patch_types = PATCH_TYPES_CUSTOM if k.custom else PATCH_TYPES_BUILTIN
    path = f"{item}/{sub.name}"
    suffix = sub.name[:1].upper() + sub.name[1:]
    base_id = f"{op_prefix}{scope}{rt.kind}{suffix}"
    if sub.name in _CONNECT_PARAMS:
        gvk = _gvk(sub.group, sub.version, sub.kind)
        ops = []
        for verb, method in (("get", "get"), ("create", "post"), ("update", "put"), ("patch", "patch"),
                             ("delete", "delete")):
            if verb in sub.verbs:
                ops.append(_Op(method, "connect", f"connect{op_prefix}{method.capitalize()}{scope}{rt.kind}{suffix}",
                               f"connect {method.upper()} requests to {sub.name} of {rt.kind}", gvk,
                               _CONNECT_PARAMS[sub.name], None, (), (("200", "string"),), ("*/*",)))
        return [_Path(path, params, tuple(ops))] if ops else []
    if sub.name == "log":
        return [_Path(path, params, (
            _Op("get", "get", f"read{base_id}", f"read log of the specified {rt.kind}",
                _gvk(rt.group, rt.version, rt.kind), _LOG_PARAMS, None, (), (("200", "string"),),
                ("text/plain", "application/json", "application/yaml", "application/vnd.kubernetes.protobuf")),))]
    # A subresource with an object body: status/scale/ephemeralcontainers/eviction/binding/token/finalize.
    if sub.kind == rt.kind and sub.group == rt.group:
        definition = k.definition
    else:
        definition = _subresource_definition(sub)
    gvk = _gvk(sub.group, sub.version, sub.kind)
    ops = []
    if "get" in sub.verbs and definition:
        ops.append(_Op("get", "get", f"read{base_id}", f"read {sub.name} of the specified {rt.kind}", gvk, (),
                       None, (), (("200", definition),), resp))
    if "update" in sub.verbs and definition:
        ops.append(_Op("put", "put", f"replace{base_id}", f"replace {sub.name} of the specified {rt.kind}", gvk,
                       _WRITE_PARAMS, definition, ("*/*",), (("200", definition), ("201", definition)), resp))
    if "patch" in sub.verbs and definition:
        ops.append(_Op("patch", "patch", f"patch{base_id}", f"partially update {sub.name} of the specified {rt.kind}",
                       gvk, _PATCH_PARAMS, PATCH, patch_types, (("200", definition), ("201", definition)), resp))
    if "create" in sub.verbs and definition:
        ops.append(_Op("post", "post", f"create{base_id}", f"create {sub.name} of a {rt.kind}", gvk,
                       _WRITE_PARAMS, definition, ("*/*",),
                       (("200", definition), ("201", definition), ("202", definition)), resp))
    return [_Path(path, params, tuple(ops))] if ops else []


def _param_v3(name: str, location: str = "query") -> dict[str, Any]:
    typ, desc = _PARAMS.get(name, ("string", ""))
    out: dict[str, Any] = {"description": desc, "in": location, "name": name,
                           "schema": {"type": typ, "uniqueItems": True}}
    if location == "path":
        out["required"] = True
    return out


def _param_v2(name: str, location: str = "query") -> dict[str, Any]:
    typ, desc = _PARAMS.get(name, ("string", ""))
    out: dict[str, Any] = {"description": desc, "in": location, "name": name, "type": typ, "uniqueItems": True}
    if location == "path":
        out["required"] = True
    return out


_PATH_PARAM_DOC = {"name": "name of the object",
                   "namespace": "object name and auth scope, such as for teams and projects",
                   "path": "path to the resource"}
_RESPONSE_DESC = {"200": "OK", "201": "Created", "202": "Accepted"}


def _schema_ref(definition: str, prefix: str) -> dict[str, Any]:
    if definition == "string":
        return {"type": "string"}
    return {"$ref": prefix + definition}


def _render_v3(p: _Path) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for op in p.ops:
        body: dict[str, Any] = {"description": op.description, "operationId": op.operation_id}
        if op.params:
            body["parameters"] = [_param_v3(n) for n in op.params]
        if op.request:
            body["requestBody"] = {
                "content": {ct: {"schema": {"$ref": V3_PREFIX + op.request}} for ct in op.request_types},
                "required": op.method in ("post", "put", "patch"),
            }
        responses: dict[str, Any] = {}
        for code, definition in op.responses:
            entry: dict[str, Any] = {"description": _RESPONSE_DESC.get(code, "OK")}
            if definition:
                schema = _schema_ref(definition, V3_PREFIX)
                entry["content"] = {ct: {"schema": schema} for ct in op.response_types}
            responses[code] = entry
        responses["401"] = {"description": "Unauthorized"}
        body["responses"] = responses
        body["tags"] = [_tag(op.gvk["group"], op.gvk["version"]) if op.gvk else "core"]
        body["x-kubernetes-action"] = op.action
        if op.gvk is not None:
            body["x-kubernetes-group-version-kind"] = op.gvk
        item[op.method] = body
    params = [{"description": _PATH_PARAM_DOC[n], "in": "path", "name": n, "required": True,
               "schema": {"type": "string", "uniqueItems": True}} for n in reversed(p.path_params)]
    params.append(_param_v3("pretty"))
    item["parameters"] = params
    return item


def _render_v2(p: _Path) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for op in p.ops:
        body: dict[str, Any] = {"description": op.description, "operationId": op.operation_id}
        params = [_param_v2(n) for n in op.params]
        if op.request:
            params.insert(0, {"in": "body", "name": "body", "required": op.method in ("post", "put", "patch"),
                              "schema": {"$ref": V2_PREFIX + op.request}})
            body["consumes"] = list(op.request_types)
        else:
            body["consumes"] = ["*/*"]
        if params:
            body["parameters"] = params
        body["produces"] = list(op.response_types)
        responses: dict[str, Any] = {}
        for code, definition in op.responses:
            entry: dict[str, Any] = {"description": _RESPONSE_DESC.get(code, "OK")}
            if definition:
                entry["schema"] = _schema_ref(definition, V2_PREFIX)
            responses[code] = entry
        responses["401"] = {"description": "Unauthorized"}
        body["responses"] = responses
        body["schemes"] = ["https"]
        body["tags"] = [_tag(op.gvk["group"], op.gvk["version"]) if op.gvk else "core"]
        body["x-kubernetes-action"] = op.action
        if op.gvk is not None:
            body["x-kubernetes-group-version-kind"] = op.gvk
        item[op.method] = body
    params = [{"description": _PATH_PARAM_DOC[n], "in": "path", "name": n, "required": True, "type": "string",
               "uniqueItems": True} for n in reversed(p.path_params)]
    params.append(_param_v2("pretty"))
    item["parameters"] = params
    return item


# -------------------------------------------------------------------------------------------------------------
# Assembling documents.

CRDSchemas = dict[tuple[str, str, str], dict[str, Any]]
_CRDItems = tuple[tuple[tuple[str, str, str], bytes], ...]


def gv_path(group: str, version: str) -> str:
    """The key of a group-version in the `/openapi/v3` index: `api/v1`, `apis/apps/v1`."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _normalize_gv_path(path: str) -> str:
    path = path.strip("/")
    if path.startswith("openapi/v3/"):
        path = path[len("openapi/v3/"):]
    return path


def _kinds(rts: Iterable[ResourceType]) -> list[_Kind]:
    defs = schemas.definitions()
    out = []
    for rt in rts:
        definition = rt.definition if rt.definition in defs else None
        if definition is None and rt.definition is None:
            definition = schemas.definition_for_kind(rt.group, rt.version, rt.kind)
        if definition is not None:
            list_def = definition + "List"
            out.append(_Kind(rt, definition, list_def if list_def in defs else None, False))
        else:
            name = crd_definition_name(rt.group, rt.version, rt.kind)
            out.append(_Kind(rt, name, name + "List", True))
    return out


def _crd_items(rts: Iterable[ResourceType], crd_schemas: CRDSchemas | None) -> _CRDItems:
    """A hashable, order-independent fingerprint of the CRD schemas that matter for `rts`."""
    if not crd_schemas:
        return ()
    wanted = {(rt.group, rt.version, rt.kind) for rt in rts}
    return tuple(sorted((gvk, orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
                        for gvk, schema in crd_schemas.items() if gvk in wanted and schema))


def _schemas_for(kinds: list[_Kind], crds: _CRDItems, v3: bool, extra: Iterable[str] = ()) -> dict[str, Any]:
    by_gvk = dict(crds)
    roots: set[str] = {STATUS, DELETE_OPTIONS, PATCH, OBJECT_META, LIST_META, *extra}
    custom: dict[str, Any] = {}
    for k in kinds:
        if k.custom:
            rt = k.rt
            raw = by_gvk.get((rt.group, rt.version, rt.kind))
            custom.update(_custom_definitions(rt.group, rt.version, rt.kind,
                                              orjson.loads(raw) if raw else None, v3))
        else:
            roots.add(k.definition)
            if k.list_definition:
                roots.add(k.list_definition)
        for sub in k.rt.subresources:
            if sub.name not in _CONNECT_PARAMS and sub.name != "log":
                d = _subresource_definition(sub)
                if d:
                    roots.add(d)
    out = {name: _converted_definition(name, v3) for name in _closure(roots)}
    out.update(custom)
    return dict(sorted(out.items()))


class _Built(NamedTuple):
    document: dict[str, Any]
    data: bytes
    hash: str


def _finish(document: dict[str, Any]) -> _Built:
    data = orjson.dumps(document)
    return _Built(document, data, hashlib.sha512(data).hexdigest().upper())


@functools.lru_cache(maxsize=128)   # ~13 built-in group-versions plus CRD ones; old CRD revisions age out
def _build_v3(path: str, rts: tuple[ResourceType, ...], crds: _CRDItems) -> _Built:
    kinds = _kinds(rts)
    paths: dict[str, Any] = {}
    first = rts[0]
    prefix = f"/apis/{first.group}/{first.version}/" if first.group else f"/api/{first.version}/"
    paths[prefix] = {"get": {
        "description": "get available resources", "operationId": f"get{_camel_group(first.group)}"
        f"{first.version[:1].upper()}{first.version[1:]}APIResources",
        "responses": {"200": {"content": {ct: {"schema": {"$ref": V3_PREFIX + API_RESOURCE_LIST}}
                                          for ct in ("application/json", "application/yaml",
                                                     "application/vnd.kubernetes.protobuf")},
                              "description": "OK"},
                      "401": {"description": "Unauthorized"}},
        "tags": [_tag(first.group, first.version)]}}
    for k in kinds:
        for p in _paths_for(k):
            paths[p.path] = _render_v3(p)
    components = _schemas_for(kinds, crds, v3=True, extra=(API_RESOURCE_LIST,))
    document = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": K8S_VERSION},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {"BearerToken": {"description": "Bearer Token authentication", "in": "header",
                                                "name": "authorization", "type": "apiKey"}},
        },
    }
    return _finish(document)


def _grouped(types: Iterable[ResourceType]) -> dict[str, tuple[ResourceType, ...]]:
    out: dict[str, list[ResourceType]] = {}
    for rt in types:
        out.setdefault(gv_path(rt.group, rt.version), []).append(rt)
    return {k: tuple(v) for k, v in out.items()}


def _built_v3(group_version_path: str, types: Iterable[ResourceType],
              crd_schemas: CRDSchemas | None) -> _Built | None:
    path = _normalize_gv_path(group_version_path)
    rts = _grouped(types).get(path)
    if not rts:
        return None
    return _build_v3(path, rts, _crd_items(rts, crd_schemas))


def v3_index(types: Iterable[ResourceType], crd_schemas: CRDSchemas | None = None) -> dict[str, Any]:
    """`GET /openapi/v3`: one entry per group-version, its URL carrying the document's hash.

    kubectl caches each document by that URL, so the hash changes whenever the document does (CRD edits).
    """
    paths: dict[str, Any] = {}
    for path, rts in sorted(_grouped(types).items()):
        built = _build_v3(path, rts, _crd_items(rts, crd_schemas))
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={built.hash}"}
    return {"paths": paths}


def v3_document(group_version_path: str, types: Iterable[ResourceType],
                crd_schemas: CRDSchemas | None = None) -> dict[str, Any] | None:
    """`GET /openapi/v3/apis/apps/v1`: the group-version's OpenAPI 3.0 document, or None if unknown.

    The returned dict is cached and shared: treat it as read-only.
    """
    built = _built_v3(group_version_path, types, crd_schemas)
    return built.document if built else None


def v3_document_bytes(group_version_path: str, types: Iterable[ResourceType],
                      crd_schemas: CRDSchemas | None = None) -> bytes | None:
    """The serialized document (memoized), ready to send as `application/json`."""
    built = _built_v3(group_version_path, types, crd_schemas)
    return built.data if built else None


def v3_document_hash(group_version_path: str, types: Iterable[ResourceType],
                     crd_schemas: CRDSchemas | None = None) -> str | None:
    """The hash the index advertises for this document (compare with a request's `?hash=` for caching headers)."""
    built = _built_v3(group_version_path, types, crd_schemas)
    return built.hash if built else None


@functools.lru_cache(maxsize=8)
def _build_v2(rts: tuple[ResourceType, ...], crds: _CRDItems) -> _Built:
    kinds = _kinds(rts)
    paths: dict[str, Any] = {}
    for k in kinds:
        for p in _paths_for(k):
            paths[p.path] = _render_v2(p)
    definitions = _schemas_for(kinds, crds, v3=False)
    document = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": K8S_VERSION},
        "paths": dict(sorted(paths.items())),
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication", "in": "header",
                                                "name": "authorization", "type": "apiKey"}},
        "security": [{"BearerToken": []}],
    }
    return _finish(document)


def v2_document(types: Iterable[ResourceType], crd_schemas: CRDSchemas | None = None) -> dict[str, Any]:
    """`GET /openapi/v2` as JSON: Swagger 2.0 with every served kind's paths and `definitions` (read-only, cached)."""
    rts = tuple(types)
    return _build_v2(rts, _crd_items(rts, crd_schemas)).document


def v2_document_bytes(types: Iterable[ResourceType], crd_schemas: CRDSchemas | None = None) -> bytes:
    rts = tuple(types)
    return _build_v2(rts, _crd_items(rts, crd_schemas)).data


def _pb_string(field: int, value: str) -> bytes:
    data = value.encode()
    return bytes([(field << 3) | 2, len(data)]) + data


def v2_protobuf_stub() -> bytes:
    """/openapi/v2 in protobuf (gnostic `openapi_v2.Document`), with no paths or definitions yet.

    kubectl 1.32 validates against /openapi/v3 and asks for this only for kinds v3 does not list; an empty
    document makes it report such kinds the way it does on Kubernetes ("no matches for kind ...") rather than
    failing to download. Field numbers: Document{swagger=1, info=2, paths=8}, Info{title=1, version=2}.
    """
    info = _pb_string(1, "Kubernetes") + _pb_string(2, "v1.32.0")
    return _pb_string(1, "2.0") + bytes([(2 << 3) | 2, len(info)]) + info + bytes([(8 << 3) | 2, 0])
