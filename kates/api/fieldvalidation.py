"""Server-side field validation: type checks, unknown-field pruning and duplicate-field detection.

Why: kubectl 1.32 sees the `fieldValidation` parameter in our OpenAPI documents (kates/api/openapi.py), sends
`fieldValidation=Strict` and skips client-side validation, so the server must catch what Kubernetes' decoder
catches, with the same messages:

- Built-in kinds are decoded into Go structs in Kubernetes. A value of the wrong JSON type is a decode error,
  400 BadRequest: `Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string
  into Go struct field DeploymentSpec.spec.replicas of type int32`. Only the first such error is reported.
- Unknown fields are dropped by the decoder. With Strict they are a 400 too (`strict decoding error: unknown
  field "spec.template.spec.containers[0].imagee"`, all of them, joined by ", " after the duplicates); with Warn
  (the default) each becomes a `Warning: 299` header text; with Ignore they vanish silently. Either way the
  object is pruned in place, as Kubernetes stores it without them.
- Custom resources are checked against their CRD's structural schema: unknown fields are pruned (unless
  `x-kubernetes-preserve-unknown-fields`), and schema violations are a 422 Invalid listing every cause, e.g.
  `spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"`.

Speed matters (every write goes through here): each built-in definition is compiled once into a small tree of
`_Node`s and walked with plain type checks; no jsonschema for built-ins. CRD schemas are compiled once per
distinct schema (looked up by identity, then by content).
"""
from __future__ import annotations

import binascii
import math
import re
from collections import OrderedDict
from typing import Any, Iterable

import orjson

from kates.api import errors, schemas

__all__ = ["validate_against_schema", "find_duplicate_fields", "strict_decoding_error", "decode_error"]

# Node kinds.
ANY, OBJECT, ARRAY, STRING, INTEGER, NUMBER, BOOLEAN, INT_OR_STRING, QUANTITY, TIME, BYTES = range(11)

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_OBJECT_META = _META + "ObjectMeta"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_TIMES = {_META + "Time": "v1.Time", _META + "MicroTime": "v1.MicroTime"}
_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)


class _Node:
    """A compiled schema node. Built-in nodes use kind/props/extra/items/go_*; CRD nodes also the rest."""

    __slots__ = ("kind", "props", "extra", "items", "closed", "go_struct", "go_type", "fmt",
                 "crd", "preserve", "nullable", "required", "embedded", "checks", "type_name")

    def __init__(self, kind: int = ANY, go_type: str = "interface {}", fmt: str | None = None) -> None:
        self.kind = kind
        self.props: dict[str, _Node] | None = None
        self.extra: _Node | None = None       # additionalProperties (maps)
        self.items: _Node | None = None
        self.closed = False                    # prune/report fields not in props
        self.go_struct = ""                    # Go struct name, for decode errors of its fields
        self.go_type = go_type                 # Go type, as encoding/json prints it
        self.fmt = fmt
        self.crd = False
        self.preserve = False
        self.nullable = False
        self.required: tuple[str, ...] = ()
        self.embedded = False
        self.checks: dict[str, Any] | None = None
        self.type_name = ""                    # OpenAPI type name, for CRD messages


class _Key(str):
    """A map key on the path stack: part of field paths, but not of Go's struct field path."""

    __slots__ = ()


def _path_str(path: Iterable[str | int]) -> str:
    out: list[str] = []
    for seg in path:
        if type(seg) is int:
            out.append(f"[{seg}]")
        else:
            out.append(f".{seg}" if out else seg)
    return "".join(out)


def _go_path(path: Iterable[str | int]) -> str:
    return ".".join(seg for seg in path if type(seg) is str)


# -------------------------------------------------------------------------------------------------------------
# Compiling built-in definitions.

_ANY_NODE = _Node(ANY)
_SCALARS: dict[tuple[int, str | None], _Node] = {}


def _scalar(kind: int, go_type: str, fmt: str | None = None) -> _Node:
    key = (kind, fmt)
    node = _SCALARS.get(key)
    if node is None:
        node = _SCALARS[key] = _Node(kind, go_type, fmt)
    return node


_BUILTIN: dict[str, _Node] = {}


def _builtin_node(name: str) -> _Node:
    """The compiled node of a built-in definition (recursive definitions share the placeholder)."""
    node = _BUILTIN.get(name)
    if node is None:
        node = _BUILTIN[name] = _Node()
        _fill_definition(node, name)
    return node


def _fill_definition(node: _Node, name: str) -> None:
    pkg_kind = ".".join(name.rsplit(".", 2)[-2:])
    if name == _INT_OR_STRING:
        node.kind, node.go_type = INT_OR_STRING, "intstr.IntOrString"
        return
    if name == _QUANTITY:
        node.kind, node.go_type = QUANTITY, "resource.Quantity"
        return
    if name in _TIMES:
        node.kind, node.go_type = TIME, _TIMES[name]
        return
    schema = schemas.definitions().get(name)
    if schema is None:
        return   # unknown: accept anything
    types = schemas.types_of(schema)
    if "object" in types or "properties" in schema:
        node.kind = OBJECT
        node.go_type = pkg_kind
        node.go_struct = name.rsplit(".", 1)[-1]
        props = schema.get("properties")
        if props:
            node.closed = True
            node.props = {key: _builtin_schema(sub) for key, sub in props.items()}
        elif isinstance(schema.get("additionalProperties"), dict):
            node.extra = _builtin_schema(schema["additionalProperties"])
        # else: free-form object (RawExtension, FieldsV1, Patch...)
        return
    other = _builtin_schema(schema)
    node.kind, node.go_type, node.fmt = other.kind, other.go_type, other.fmt
    node.items, node.extra = other.items, other.extra


def _builtin_schema(schema: dict[str, Any]) -> _Node:
    ref = schemas.ref_name(schema)
    if ref is not None:
        return _builtin_node(ref)
    types = schemas.types_of(schema)
    fmt = schema.get("format")
    if "object" in types:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            node = _Node(OBJECT)
            node.extra = _builtin_schema(extra)
            node.go_type = f"map[string]{node.extra.go_type}"
            return node
        return _scalar(OBJECT, "map[string]interface {}", "free")
    if "array" in types:
        node = _Node(ARRAY)
        node.items = _builtin_schema(schema["items"]) if isinstance(schema.get("items"), dict) else _ANY_NODE
        node.go_type = f"[]{node.items.go_type}"
        return node
    if "string" in types:
        if fmt == "byte":
            return _scalar(BYTES, "[]uint8", "byte")
        return _scalar(STRING, "string")
    if "integer" in types:
        return _scalar(INTEGER, "int64" if fmt == "int64" else "int32" if fmt == "int32" else "int", fmt)
    if "number" in types:
        return _scalar(NUMBER, "float32" if fmt == "float" else "float64", fmt)
    if "boolean" in types:
        return _scalar(BOOLEAN, "bool")
    return _ANY_NODE


# -------------------------------------------------------------------------------------------------------------
# Walking built-in objects (Go decoder semantics).

class _Ctx:
    __slots__ = ("unknown", "prefix", "causes", "prune", "probe")

    def __init__(self, prefix: str, prune: bool = True, probe: bool = False) -> None:
        self.unknown: list[str] = []
        self.prefix = prefix          # "Deployment in version "v1" cannot be handled as a Deployment: "
        self.causes: list[dict[str, str]] = []
        self.prune = prune
        self.probe = probe            # CRD combinator branches: collect causes only


class _DecodeError(Exception):
    pass


def _json_kind(value: Any) -> str:
    t = type(value)
    if t is str:
        return "string"
    if t is bool:
        return "bool"
    if t is int or t is float:
        return "number"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    return "null" if value is None else t.__name__


def _go_number(value: int | float) -> str:
    if type(value) is float:
        return repr(value) if not value.is_integer() else str(int(value))
    return str(value)


def _mismatch(node: _Node, value: Any, path: list, struct: str, what: str | None = None) -> None:
    what = what or _json_kind(value)
    gopath = _go_path(path)
    if struct and gopath:
        raise _DecodeError(
            f"json: cannot unmarshal {what} into Go struct field {struct}.{gopath} of type {node.go_type}")
    raise _DecodeError(f"json: cannot unmarshal {what} into Go value of type {node.go_type}")


_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_QUANTITY_SUFFIXES = frozenset(["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
_QUANTITY_FORMAT_ERR = ("quantities must match the regular expression "
                        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
_EXP_SUFFIX = re.compile(r"^[eE][-+]?[0-9]+$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_B64 = re.compile(r"[^A-Za-z0-9+/=\r\n]")


def quantity_error(text: str) -> str | None:
    """Why `text` is not a Kubernetes quantity (resource.ParseQuantity's messages), or None."""
    text = text.strip()
    m = _QUANTITY_RE.match(text)
    if not m or text.count(".") > 1 or not any(c.isdigit() for c in m.group(1)):
        return _QUANTITY_FORMAT_ERR
    suffix = m.group(2)
    if suffix not in _QUANTITY_SUFFIXES and not _EXP_SUFFIX.match(suffix):
        return "unable to parse quantity's suffix"
    return None


def _base64_error(text: str) -> str | None:
    bad = _B64.search(text)
    if bad:
        return f"illegal base64 data at input byte {bad.start()}"
    compact = text.replace("\r", "").replace("\n", "")
    try:
        binascii.a2b_base64(compact.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError):
        return f"illegal base64 data at input byte {max(len(compact) - len(compact) % 4, 0)}"
    return None


def _check_scalar(node: _Node, kind: int, value: Any, path: list, struct: str) -> None:
    t = type(value)
    if kind is STRING:
        if t is not str:
            _mismatch(node, value, path, struct)
    elif kind is INTEGER:
        if t is int:
            lo, hi = _INT64 if node.fmt != "int32" else _INT32
            if not lo <= value <= hi:
                _mismatch(node, value, path, struct, f"number {value}")
        elif t is float:
            if not value.is_integer() or not (_INT32 if node.fmt == "int32" else _INT64)[0] <= value <= \
                    (_INT32 if node.fmt == "int32" else _INT64)[1]:
                _mismatch(node, value, path, struct, f"number {_go_number(value)}")
        else:
            _mismatch(node, value, path, struct)
    elif kind is BOOLEAN:
        if t is not bool:
            _mismatch(node, value, path, struct)
    elif kind is NUMBER:
        if t is not int and t is not float:
            _mismatch(node, value, path, struct)
    elif kind is INT_OR_STRING:
        if t is str or t is int:
            return
        if t is float and value.is_integer():
            return
        # intstr.IntOrString.UnmarshalJSON decodes non-strings into its int32, without field context.
        what = f"number {_go_number(value)}" if t is float else _json_kind(value)
        raise _DecodeError(f"json: cannot unmarshal {what} into Go value of type int32")
    elif kind is QUANTITY:
        if t is str:
            problem = quantity_error(value)
        elif t is int or t is float:
            problem = None if math.isfinite(value) else _QUANTITY_FORMAT_ERR
        else:
            problem = _QUANTITY_FORMAT_ERR
        if problem:
            raise _DecodeError(problem)
    elif kind is TIME:
        if t is not str:
            raise _DecodeError(f"json: cannot unmarshal {_json_kind(value)} into Go value of type string")
        if not _RFC3339.match(value):
            raise _DecodeError(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse '
                               f'"{value}" as "2006"')
    elif kind is BYTES:
        if t is not str:
            _mismatch(node, value, path, struct)
        problem = _base64_error(value)
        if problem:
            raise _DecodeError(problem)


def _walk(node: _Node, value: Any, path: list, struct: str, ctx: _Ctx) -> None:
    """Check `value` (not None) against a built-in node; prune unknown fields; raise _DecodeError on type errors."""
    kind = node.kind
    if kind is OBJECT:
        if type(value) is not dict:
            _mismatch(node, value, path, struct)
        props = node.props
        if props is None:
            extra = node.extra
            if extra is None:
                return
            ek = extra.kind
            if ek is ANY:
                return
            for key, item in value.items():
                if item is None:
                    continue
                path.append(_Key(key))
                if ek is OBJECT or ek is ARRAY:
                    _walk(extra, item, path, struct, ctx)
                else:
                    _check_scalar(extra, ek, item, path, struct)
                path.pop()
            return
        own = node.go_struct
        unknown: list[str] | None = None
        for key, item in value.items():
            child = props.get(key)
            if child is None:
                if unknown is None:
                    unknown = []
                unknown.append(key)
                path.append(key)
                ctx.unknown.append(_path_str(path))   # reported in document order
                path.pop()
                continue
            if item is None:
                continue
            ck = child.kind
            if ck is ANY:
                continue
            path.append(key)
            if ck is OBJECT or ck is ARRAY:
                _walk(child, item, path, own, ctx)
            else:
                _check_scalar(child, ck, item, path, own)
            path.pop()
        if unknown and ctx.prune:
            for key in unknown:
                del value[key]
    elif kind is ARRAY:
        if type(value) is not list:
            _mismatch(node, value, path, struct)
        items = node.items
        ik = items.kind
        if ik is ANY:
            return
        for i, item in enumerate(value):
            if item is None:
                continue
            path.append(i)
            if ik is OBJECT or ik is ARRAY:
                _walk(items, item, path, struct, ctx)
            else:
                _check_scalar(items, ik, item, path, struct)
            path.pop()
    elif kind is not ANY:
        _check_scalar(node, kind, value, path, struct)


# -------------------------------------------------------------------------------------------------------------
# Compiling CRD structural schemas (OpenAPI v3 form).

_CHECK_KEYS = ("enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "pattern",
               "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
               "format", "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "allOf", "anyOf", "oneOf", "not")


def _compile_crd(schema: dict[str, Any], *, root: bool = False) -> _Node:
    node = _Node()
    node.crd = True
    t = schema.get("type")
    node.preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    node.nullable = bool(schema.get("nullable"))
    node.embedded = bool(schema.get("x-kubernetes-embedded-resource"))
    node.required = tuple(schema.get("required") or ())
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    if schema.get("x-kubernetes-int-or-string"):
        node.kind, node.type_name = INT_OR_STRING, "integer or string"
    elif t == "object" or (t is None and (props is not None or isinstance(extra, dict) or node.embedded or root)):
        node.kind, node.type_name = OBJECT, "object"
        node.props = {key: _compile_crd(sub) for key, sub in (props or {}).items()}
        if isinstance(extra, dict):
            node.extra = _compile_crd(extra)
        elif extra is True:
            node.extra = _ANY_NODE
        node.closed = node.extra is None and not node.preserve
        if node.embedded or root:
            node.props.setdefault("apiVersion", _crd_string())
            node.props.setdefault("kind", _crd_string())
            node.props["metadata"] = _builtin_node(_OBJECT_META)
        if node.extra is None and not node.props and node.preserve:
            node.props = None   # anything goes
    elif t == "array":
        node.kind, node.type_name = ARRAY, "array"
        node.items = _compile_crd(schema["items"]) if isinstance(schema.get("items"), dict) else _ANY_NODE
    elif t == "string":
        node.kind, node.type_name = STRING, "string"
    elif t == "integer":
        node.kind, node.type_name = INTEGER, "integer"
    elif t == "number":
        node.kind, node.type_name = NUMBER, "number"
    elif t == "boolean":
        node.kind, node.type_name = BOOLEAN, "boolean"
    else:
        node.kind = ANY
    checks: dict[str, Any] = {}
    for key in _CHECK_KEYS:
        if key not in schema:
            continue
        value = schema[key]
        if key == "pattern":
            try:
                checks[key] = (value, re.compile(value))
            except re.error:
                continue
        elif key in ("allOf", "anyOf", "oneOf"):
            checks[key] = [_compile_crd(sub) for sub in value if isinstance(sub, dict)]
        elif key == "not":
            if isinstance(value, dict):
                checks[key] = _compile_crd(value)
        else:
            checks[key] = value
    node.checks = checks or None
    return node


def _crd_string() -> _Node:
    node = _Node(STRING)
    node.crd, node.type_name = True, "string"
    return node


_CRD_CACHE: OrderedDict[Any, tuple[dict[str, Any], _Node]] = OrderedDict()
_CRD_CACHE_SIZE = 256


def _crd_root(schema: dict[str, Any]) -> _Node:
    """Compile a CRD schema once: found by identity when the caller reuses the dict, else by content.

    Schemas are treated as immutable: replace the dict when a CRD changes, do not edit it in place.
    """
    hit = _CRD_CACHE.get(id(schema))
    if hit is not None and hit[0] is schema:   # the entry keeps `schema` alive, so its id is not reused
        _CRD_CACHE.move_to_end(id(schema))
        return hit[1]
    content = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    hit = _CRD_CACHE.get(content)
    if hit is None:
        hit = (schema, _compile_crd(schema, root=True))
        _CRD_CACHE[content] = hit
    else:
        _CRD_CACHE.move_to_end(content)
    _CRD_CACHE[id(schema)] = (schema, hit[1])
    while len(_CRD_CACHE) > _CRD_CACHE_SIZE:
        _CRD_CACHE.popitem(last=False)
    return hit[1]


# -------------------------------------------------------------------------------------------------------------
# Walking custom resources (structural pruning + OpenAPI value validation, Kubernetes messages).

def _value_str(value: Any) -> str:
    """How field.Error prints a value: strings quoted, numbers and bools bare, the rest as JSON."""
    t = type(value)
    if t is str:
        return orjson.dumps(value).decode()
    if t is bool:
        return "true" if value else "false"
    if t is int or t is float:
        return _go_number(value)
    if value is None:
        return "null"
    return orjson.dumps(value).decode()


def _openapi_type(value: Any) -> str:
    t = type(value)
    if t is str:
        return "string"
    if t is bool:
        return "boolean"
    if t is int:
        return "integer"
    if t is float:
        return "integer" if value.is_integer() else "number"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    return "null"


def _add(ctx: _Ctx, path: list, reason: str, message: str) -> None:
    ctx.causes.append(errors.cause(_path_str(path), message, reason))


def _invalid(ctx: _Ctx, path: list, value: Any, detail: str) -> None:
    field = _path_str(path)
    ctx.causes.append(errors.cause(field, f"Invalid value: {_value_str(value)}: {field} in body {detail}",
                                   "FieldValueInvalid"))


def _type_error(ctx: _Ctx, node: _Node, value: Any, path: list) -> None:
    field = _path_str(path)
    actual = _openapi_type(value)
    ctx.causes.append(errors.cause(
        field, f'Invalid value: "{actual}": {field} in body must be of type {node.type_name}: "{actual}"',
        "FieldValueTypeInvalid"))


def _type_ok(node: _Node, value: Any) -> bool:
    kind, t = node.kind, type(value)
    if kind is OBJECT:
        return t is dict
    if kind is ARRAY:
        return t is list
    if kind is STRING:
        return t is str
    if kind is INTEGER:
        return t is int or (t is float and value.is_integer())
    if kind is NUMBER:
        return t is int or t is float
    if kind is BOOLEAN:
        return t is bool
    if kind is INT_OR_STRING:
        return t is str or t is int or (t is float and value.is_integer())
    return True


def _walk_crd(node: _Node, value: Any, path: list, ctx: _Ctx) -> None:
    """Validate `value` (not None) against a CRD node, collecting causes and pruning unknown fields."""
    if not node.crd:   # metadata of the root or of embedded resources: a built-in
        _walk(node, value, path, "", ctx)
        return
    if not _type_ok(node, value):
        _type_error(ctx, node, value, path)
        return
    kind = node.kind
    if kind is OBJECT:
        props = node.props
        unknown: list[str] | None = None
        nulls: list[str] | None = None
        for key, item in value.items():
            child = props.get(key) if props is not None else None
            if child is None:
                if node.extra is not None:
                    if item is None:
                        continue
                    path.append(_Key(key))
                    _walk_crd(node.extra, item, path, ctx)
                    path.pop()
                elif node.closed and not ctx.probe:
                    if unknown is None:
                        unknown = []
                    unknown.append(key)
                    path.append(key)
                    ctx.unknown.append(_path_str(path))
                    path.pop()
                continue
            if item is None:
                if child.crd and not child.nullable and child.kind is not ANY:
                    if nulls is None:
                        nulls = []
                    nulls.append(key)   # Kubernetes drops nulls of non-nullable fields
                continue
            path.append(key)
            _walk_crd(child, item, path, ctx)
            path.pop()
        if unknown and ctx.prune:
            for key in unknown:
                del value[key]
        if nulls and ctx.prune and not ctx.probe:
            for key in nulls:
                del value[key]
        for key in node.required:
            if key not in value:
                path.append(key)
                _add(ctx, path, "FieldValueRequired", "Required value")
                path.pop()
    elif kind is ARRAY:
        items = node.items
        if items is not None and (items.kind is not ANY or items.checks):
            for i, item in enumerate(value):
                path.append(i)
                if item is None:
                    if not items.nullable:
                        _type_error(ctx, items, item, path)
                else:
                    _walk_crd(items, item, path, ctx)
                path.pop()
    if node.checks:
        _crd_checks(node, value, path, ctx)


def _crd_checks(node: _Node, value: Any, path: list, ctx: _Ctx) -> None:
    c = node.checks
    assert c is not None
    t = type(value)
    enum = c.get("enum")
    if enum is not None and value not in enum:
        field = _path_str(path)
        supported = ", ".join(_value_str(e) for e in enum)
        ctx.causes.append(errors.cause(field, f"Unsupported value: {_value_str(value)}: supported values: {supported}",
                                       "FieldValueNotSupported"))
    if (t is int or t is float) and t is not bool:
        if "maximum" in c:
            if c.get("exclusiveMaximum") is True:
                if value >= c["maximum"]:
                    _invalid(ctx, path, value, f"should be less than {_go_number(c['maximum'])}")
            elif value > c["maximum"]:
                _invalid(ctx, path, value, f"should be less than or equal to {_go_number(c['maximum'])}")
        if "minimum" in c:
            if c.get("exclusiveMinimum") is True:
                if value <= c["minimum"]:
                    _invalid(ctx, path, value, f"should be greater than {_go_number(c['minimum'])}")
            elif value < c["minimum"]:
                _invalid(ctx, path, value, f"should be greater than or equal to {_go_number(c['minimum'])}")
        multiple = c.get("multipleOf")
        if multiple and (value / multiple) != int(value / multiple):
            _invalid(ctx, path, value, f"should be a multiple of {_go_number(multiple)}")
        fmt = c.get("format")
        if fmt in ("int32", "int64") and t is int:
            lo, hi = _INT32 if fmt == "int32" else _INT64
            if not lo <= value <= hi:
                _invalid(ctx, path, value, f"must be of type {fmt}: {_value_str(value)}")
    elif t is str:
        if "maxLength" in c and len(value) > c["maxLength"]:
            _add(ctx, path, "FieldValueTooLong",
                 f"Too long: may not be more than {c['maxLength']} byte{'' if c['maxLength'] == 1 else 's'}")
        if "minLength" in c and len(value) < c["minLength"]:
            _invalid(ctx, path, value, f"should be at least {c['minLength']} chars long")
        pattern = c.get("pattern")
        if pattern is not None and not pattern[1].search(value):
            _invalid(ctx, path, value, f"should match '{pattern[0]}'")
        fmt = c.get("format")
        if fmt and not _format_ok(fmt, value):
            _invalid(ctx, path, value, f"must be of type {fmt}: {_value_str(value)}")
    elif t is list:
        if "maxItems" in c and len(value) > c["maxItems"]:
            _add(ctx, path, "FieldValueTooMany", f"Too many: {len(value)}: must have at most {c['maxItems']} items")
        if "minItems" in c and len(value) < c["minItems"]:
            _invalid(ctx, path, value, f"should have at least {c['minItems']} items")
        list_type = c.get("x-kubernetes-list-type")
        if c.get("uniqueItems") or list_type == "set":
            _check_unique(value, path, ctx, None)
        elif list_type == "map":
            _check_unique(value, path, ctx, tuple(c.get("x-kubernetes-list-map-keys") or ()))
    elif t is dict:
        if "maxProperties" in c and len(value) > c["maxProperties"]:
            _add(ctx, path, "FieldValueTooMany",
                 f"Too many: {len(value)}: must have at most {c['maxProperties']} items")
        if "minProperties" in c and len(value) < c["minProperties"]:
            _invalid(ctx, path, value, f"should have at least {c['minProperties']} properties")
    for key in ("allOf", "anyOf", "oneOf"):
        branches = c.get(key)
        if branches:
            results = [_probe(b, value, path) for b in branches]
            if key == "allOf":
                for causes in results:
                    ctx.causes.extend(causes)
            elif key == "anyOf" and all(results):
                _invalid(ctx, path, value, "must validate at least one schema (anyOf)")
            elif key == "oneOf" and sum(1 for r in results if not r) != 1:
                _invalid(ctx, path, value, "must validate one and only one schema (oneOf)")
    negated = c.get("not")
    if negated is not None and not _probe(negated, value, path):
        _invalid(ctx, path, value, "must not validate the schema (not)")


def _probe(node: _Node, value: Any, path: list) -> list[dict[str, str]]:
    """Causes of `value` against a combinator branch, without pruning or reporting unknown fields."""
    ctx = _Ctx("", prune=False, probe=True)
    if value is not None:
        try:
            _walk_crd(node, value, list(path), ctx)
        except _DecodeError as exc:
            return [errors.cause(_path_str(path), str(exc))]
    return ctx.causes


def _check_unique(items: list, path: list, ctx: _Ctx, keys: tuple[str, ...] | None) -> None:
    seen: set[bytes] = set()
    for i, item in enumerate(items):
        if keys and isinstance(item, dict):
            ident = orjson.dumps([item.get(k) for k in keys])
            shown: Any = {k: item.get(k) for k in keys if k in item}
        else:
            ident = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            shown = item
        if ident in seen:
            path.append(i)
            _add(ctx, path, "FieldValueDuplicate", f"Duplicate value: {_value_str(shown)}")
            path.pop()
        else:
            seen.add(ident)


_FORMATS: dict[str, re.Pattern[str]] = {
    "date-time": _RFC3339,
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"),
    "ipv4": re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"),
    "email": re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    "hostname": re.compile(
        r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$"),
}


def _format_ok(fmt: str, value: str) -> bool:
    pattern = _FORMATS.get(fmt)
    if pattern is not None:
        return bool(pattern.match(value))
    if fmt == "byte":
        return _base64_error(value) is None
    if fmt in ("ipv6", "cidr"):
        import ipaddress
        try:
            (ipaddress.IPv6Address if fmt == "ipv6" else ipaddress.ip_network)(value)
        except ValueError:
            return False
    return True   # unknown formats are not checked, as in Kubernetes


# -------------------------------------------------------------------------------------------------------------
# Public API.

def decode_error(kind: str, version: str, detail: str) -> errors.BadRequest:
    """The 400 Kubernetes returns when a body cannot be decoded into the kind."""
    return errors.BadRequest(f'{kind} in version "{version}" cannot be handled as a {kind}: {detail}')


def strict_decoding_error(kind: str, version: str, problems: list[str]) -> errors.BadRequest:
    """The 400 for fieldValidation=Strict: every duplicate and unknown field, in one message."""
    return decode_error(kind, version, "strict decoding error: " + ", ".join(problems))


def _duplicate_path(message: str) -> str:
    start = message.find('"')
    return message[start + 1:-1] if start >= 0 and message.endswith('"') else message


def _under(path: str, parents: set[str]) -> bool:
    if path in parents:
        return True
    for i, ch in enumerate(path):
        if (ch == "." or ch == "[") and path[:i] in parents:
            return True
    return False


def validate_against_schema(obj: dict[str, Any], *, definition: str | None = None,
                            schema: dict[str, Any] | None = None, strict: bool, kind: str, name: str,
                            group: str = "", ignore_status: bool = False, version: str | None = None,
                            duplicates: list[str] | None = None, prune: bool = True) -> list[str]:
    """Type-check `obj`, prune its unknown fields in place, and return the field warnings.

    definition: a built-in definition name (`io.k8s.api.apps.v1.Deployment`); schema: a CRD's openAPIV3Schema.
    With neither, the built-in definition for (group, version, kind) is used if there is one.
    duplicates: `find_duplicate_fields` messages for the request body; reported with the unknown fields
    (Kubernetes lists the duplicates first). For built-ins, duplicates inside unknown fields are only reported
    as unknown, as Kubernetes' typed decoder does.
    ignore_status: leave `status` alone (writes to the main resource of a kind with a status subresource).
    prune=False reports unknown fields without removing them. `obj` must hold JSON types only (YAML bodies
    decoded so that timestamps stay strings, as Kubernetes' YAML-to-JSON conversion does).

    Raises errors.BadRequest for decode errors (wrong types in built-ins) and, with strict, for any unknown or
    duplicate field; errors.Invalid (422) for CRD schema violations. Otherwise returns the warning texts
    (`unknown field "spec.foo"`, `duplicate field "spec.replicas"`) for `Warning: 299` headers.
    """
    if version is None:
        api_version = obj.get("apiVersion")
        version = api_version.rsplit("/", 1)[-1] if isinstance(api_version, str) and api_version else "v1"
    if definition is None and schema is None:
        definition = schemas.definition_for_kind(group, version, kind)
    ctx = _Ctx("", prune=prune)
    saved_status = obj.pop("status", _MISSING) if ignore_status else _MISSING
    try:
        if schema is not None:
            root = _crd_root(schema)
            try:
                _walk_crd(root, obj, [], ctx)
            except _DecodeError as exc:
                raise decode_error(kind, version, str(exc)) from None
        elif definition is not None:
            try:
                _walk(_builtin_node(definition), obj, [], "", ctx)
            except _DecodeError as exc:
                raise decode_error(kind, version, str(exc)) from None
    finally:
        if saved_status is not _MISSING:
            obj["status"] = saved_status
    dups = list(duplicates or ())
    if dups and ctx.unknown and schema is None:
        unknown_paths = set(ctx.unknown)
        dups = [d for d in dups if not _under(_duplicate_path(d), unknown_paths)]
    problems = dups + [f'unknown field "{p}"' for p in ctx.unknown]
    if strict and problems:
        raise strict_decoding_error(kind, version, problems)
    if ctx.causes:
        raise errors.Invalid(kind, name, ctx.causes, group)
    return problems


_MISSING: Any = object()

# Every JSON string token; the group is ":" when the string is an object key.
_STRING_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"\s*(:)?')
_SPACED_COLON = re.compile(rb'"\s+:')


class _Pairs(list):
    """An object as decoded with its key order and duplicates intact."""

    __slots__ = ()


def _count_keys(value: Any) -> int:
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            total += len(v)
            stack.extend(x for x in v.values() if type(x) is dict or type(x) is list)
        elif type(v) is list:
            stack.extend(x for x in v if type(x) is dict or type(x) is list)
    return total


def _collect_duplicates(value: Any, path: list, out: list[str]) -> None:
    if isinstance(value, _Pairs):
        seen: set[str] = set()
        reported: set[str] = set()
        for key, item in value:
            if key in seen and key not in reported:
                reported.add(key)
                path.append(key)
                out.append(f'duplicate field "{_path_str(path)}"')
                path.pop()
            seen.add(key)
            if isinstance(item, list):
                path.append(key)
                _collect_duplicates(item, path, out)
                path.pop()
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, list):
                path.append(i)
                _collect_duplicates(item, path, out)
                path.pop()


def find_duplicate_fields(body: bytes | str, parsed: Any = _MISSING) -> list[str]:
    """Messages for keys repeated within one JSON object, path-qualified as in Kubernetes 1.32
    (`duplicate field "spec.template.spec.containers[0].imagePullPolicy"`), in document order.

    Fast path: the number of object keys in the text (one regex pass over the string tokens) equals the number of
    keys after decoding exactly when there are no duplicates; only otherwise is the body decoded again keeping
    pairs. Pass `parsed` (the body already decoded) to skip a second decode. Invalid JSON yields [].
    """
    data = body.encode() if isinstance(body, str) else bytes(body)
    if b":" not in data:
        return []
    if parsed is _MISSING:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
    if b'\\":' not in data and not _SPACED_COLON.search(data):
        # Inside strings a quote is always escaped, so each unescaped `":` ends a key.
        text_keys = data.count(b'":')
    else:
        text_keys = _STRING_TOKEN.findall(data).count(b":")
    if text_keys == _count_keys(parsed):
        return []
    import json
    try:
        tree = json.loads(data, object_pairs_hook=_Pairs)
    except ValueError:
        return []
    out: list[str] = []
    _collect_duplicates(tree, [], out)
    return out


def warm() -> None:
    """Compile the common definitions ahead of the first request (optional; otherwise done lazily)."""
    for name in ("io.k8s.api.core.v1.Pod", "io.k8s.api.apps.v1.Deployment", "io.k8s.api.core.v1.ConfigMap"):
        _builtin_node(name)
