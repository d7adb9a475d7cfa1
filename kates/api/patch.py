"""The three classic PATCH bodies of the Kubernetes API: JSON patch, JSON merge patch and strategic merge patch.

kubectl leans on all three: `rollout undo` sends a JSON patch (RFC 6902), `label`/`annotate`/`scale` send merge
patches (RFC 7386), and `apply` (client side), `set image`, `set env`, `rollout restart` and `edit` send
strategic merge patches, whose list handling depends on each field's `x-kubernetes-patch-strategy` and
`x-kubernetes-patch-merge-key` in the built-in schemas (see `kates.api.schemas`). This module applies them the way
the 1.32 API server does, so the objects kubectl reads back are the ones it expects.

Every function returns a new object and never mutates (or shares structure with) its inputs.

Errors follow `k8s.io/apiserver/pkg/endpoints/handlers/patch.go` of Kubernetes 1.32:

* a body that is not JSON, or not of the patch type's shape, is a 400 BadRequest;
* a JSON patch that does not apply (failed `test`, missing path, unknown op, ...) is a 422 with reason Invalid and
  the generic message "the server rejected our request due to an error in our request" (Kubernetes loses the
  cause; we keep it in `details.causes`); more than 10000 operations is a 413;
* a merge patch that is not an object is a 400 "Invalid JSON Patch" (an array is accepted by Kubernetes and then
  fails to decode as the object: 422 Invalid on field `patch`);
* strategic merge patch: the malformed-directive errors Kubernetes maps to 400 (`$retainKeys`,
  `$deleteFromPrimitiveList`, `$setElementOrder` format) are 400, "lists of lists are not supported" is 422, and
  the remaining errors, which Kubernetes passes through unconverted (e.g. a merge-list item without its merge
  key), are 500 InternalError with the same wording. Custom resources (no definition) get 415.

Strategic merge patch semantics (from `k8s.io/apimachinery/pkg/util/strategicpatch`):

* maps merge key by key; a null value deletes the key; `$patch: replace` replaces the map with the patch's
  content; `$patch: delete` empties a live map (Kubernetes leaves `{}`) and drops a new one; `$patch: merge` is
  accepted as the default; `$retainKeys: [...]` drops every live key not listed;
* lists whose strategy is `merge` and that have a merge key merge item by item on that key; an item with
  `$patch: delete` removes the matching live items; a `{"$patch": "replace"}` item replaces the list with the
  patch's other items; lists of scalars with strategy `merge` are an ordered union;
  `$deleteFromPrimitiveList/<field>: [...]` removes values from a list of scalars; every other list is replaced;
* order: the patch's items (in patch order) and the live-only items (in live order) are interleaved by their
  positions in the live list, and an item the live list lacks is emitted as soon as it is reached, so an item
  added without `$setElementOrder` lands in front, exactly as in Kubernetes; `$setElementOrder/<field>` (which
  kubectl sends with every list it changes) fixes the order instead;
* fields absent from the schema are plain maps (merged) and lists (replaced). No directive ever reaches the
  result.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import jsonpatch
import jsonpointer
import orjson

from . import errors, schemas

__all__ = [
    "MAX_JSON_PATCH_OPERATIONS",
    "PatchRejected",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
]

MAX_JSON_PATCH_OPERATIONS = 10000
CUSTOM_RESOURCE_PATCH_TYPES = (
    "application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml")

_REJECTED = "the server rejected our request due to an error in our request"

# Strategic merge patch directives.
_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList"


class PatchRejected(errors.Invalid):
    """422 Invalid without a kind or name: what Kubernetes answers when a patch cannot be applied.

    The message is Kubernetes' generic one; the concrete reason travels in `details.causes[0].message`.
    """

    def __init__(self, detail: str) -> None:
        errors.APIError.__init__(self, _REJECTED, details={"causes": [{"message": detail}]})
        self.causes = [{"message": detail}]
        self.detail = detail


# --------------------------------------------------------------------------------------------------------------
# Shared helpers

def _decode(body: Any, what: str) -> Any:
    """Parse a request body (bytes or str); an already-parsed value is deep-copied so nothing is shared."""
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise errors.BadRequest(f"error decoding {what}: {e}") from None
    return _copy(body)


def _copy(value: Any) -> Any:
    """Deep copy of JSON data (dicts and lists; scalars are immutable)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _go(value: Any) -> str:
    """Render a value the way Go's %v does, so messages read like Kubernetes' ones."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(value[k])}" for k in sorted(value, key=str)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)

def apply_json_patch(obj: dict[str, Any], patch: bytes | str | list[Any]) -> dict[str, Any]:
    """Apply an `application/json-patch+json` body to `obj`."""
    ops = _decode(patch, "patch")
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise errors.BadRequest("error decoding patch: a JSON patch must be a JSON array of operation objects")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise errors.RequestEntityTooLarge(
            f"Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
    doc = _copy(obj)
    try:
        result = jsonpatch.JsonPatch(ops).apply(doc, in_place=True)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise PatchRejected(str(e)) from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:  # malformed members (e.g. path: 1)
        raise PatchRejected(f"invalid JSON patch operation: {e}") from None
    if not isinstance(result, dict):
        raise _not_an_object(result)
    return result


def _not_an_object(result: Any) -> errors.Invalid:
    """Kubernetes fails to decode a patched document that is not an object: 422 on field `patch`."""
    text = orjson.dumps(result).decode()
    return errors.Invalid("", "", [errors.cause(
        "patch", f'Invalid value: "{text}": cannot restore object from a JSON document that is not an object')])


# --------------------------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386)

def apply_merge_patch(obj: dict[str, Any], patch: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Apply an `application/merge-patch+json` body: objects merge recursively, null deletes, the rest replaces."""
    if isinstance(patch, (bytes, bytearray, memoryview, str)):
        try:
            body = orjson.loads(patch)
        except orjson.JSONDecodeError:
            raise errors.BadRequest("Invalid JSON Patch") from None
    else:
        body = patch
    if isinstance(body, list):
        raise _not_an_object(body)
    if not isinstance(body, dict):
        raise errors.BadRequest("Invalid JSON Patch")
    doc = _copy(obj)
    _merge_into(doc, body)
    return doc


def _merge_into(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        elif isinstance(value, dict) and isinstance(doc.get(key), dict):
            _merge_into(doc[key], value)
        else:
            doc[key] = _without_nulls(value)


def _without_nulls(value: Any) -> Any:
    """A copy of a patch value with null members of objects dropped, at any depth (as json-patch does)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------------------
# Strategic merge patch: schema metadata

class _Field:
    """How one field patches: its list/map strategy, merge key, and the schema of its value (items for lists)."""

    __slots__ = ("strategy", "merge_key", "meta")

    def __init__(self, strategy: str, merge_key: str | None, meta: "_Meta") -> None:
        self.strategy = strategy      # "merge", "replace" or "" (retainKeys only matters through $retainKeys)
        self.merge_key = merge_key
        self.meta = meta


class _Meta:
    """Patch metadata of one (resolved) schema node; field lookups are computed once and cached."""

    __slots__ = ("schema", "name", "_fields")

    def __init__(self, schema: dict[str, Any] | None, name: str = "") -> None:
        self.schema = schema
        self.name = name
        self._fields: dict[str, _Field] = {}

    def field(self, key: str) -> _Field:
        found = self._fields.get(key)
        if found is None:
            found = self._fields[key] = self._compute(key)
        return found

    def _compute(self, key: str) -> _Field:
        schema = self.schema
        if schema is None:
            return _UNKNOWN_FIELD
        prop = (schema.get("properties") or {}).get(key)
        if prop is None:
            extra = schema.get("additionalProperties")
            prop = extra if isinstance(extra, dict) else None
        if prop is None:
            return _UNKNOWN_FIELD
        target = schemas.resolve(prop)
        strategies = prop.get("x-kubernetes-patch-strategy") or target.get("x-kubernetes-patch-strategy") or ""
        strategy = next((s for s in strategies.split(",") if s and s != "retainKeys"), "")
        merge_key = prop.get("x-kubernetes-patch-merge-key") or target.get("x-kubernetes-patch-merge-key")
        items = target.get("items")
        if isinstance(items, dict):
            return _Field(strategy, merge_key, _meta_of(items))
        return _Field(strategy, merge_key, _meta_of(prop))


_NO_META = _Meta(None)
_UNKNOWN_FIELD = _Field("", None, _NO_META)
# Resolved schema dict -> its metadata, keyed by identity; the dict is kept alongside so its id stays unique.
_METAS: dict[int, tuple[dict[str, Any], _Meta]] = {}


def _meta_of(schema: dict[str, Any]) -> _Meta:
    """The cached metadata of a schema, after following `$ref`."""
    resolved = schemas.resolve(schema)
    cached = _METAS.get(id(resolved))
    if cached is not None:
        return cached[1]
    if "properties" in resolved or isinstance(resolved.get("additionalProperties"), dict):
        meta = _Meta(resolved, schemas.ref_name(schema) or "")
    else:
        meta = _NO_META   # scalars and free-form objects: nothing to look up
    _METAS[id(resolved)] = (resolved, meta)
    return meta


@functools.cache
def _root_meta(definition: str) -> _Meta:
    schema = schemas.definitions().get(definition)
    if schema is None:
        raise errors.InternalError(f"no schema is known for {definition}")
    return _meta_of({"$ref": schemas.REF_PREFIX + definition})


# --------------------------------------------------------------------------------------------------------------
# Strategic merge patch: application

def apply_strategic_merge_patch(obj: dict[str, Any], patch: bytes | str | dict[str, Any],
                                definition: str | None) -> dict[str, Any]:
    """Apply an `application/strategic-merge-patch+json` body to `obj`, whose kind's OpenAPI definition is
    `definition` (e.g. "io.k8s.api.apps.v1.Deployment"); None means a custom resource, which has no strategy."""
    if definition is None:
        raise errors.UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(CUSTOM_RESOURCE_PATCH_TYPES))
    if isinstance(patch, (bytes, bytearray, memoryview, str)):
        try:
            body = orjson.loads(patch)
        except orjson.JSONDecodeError as e:
            raise errors.BadRequest(f"error decoding strategic merge patch: {e}") from None
    else:
        body = patch
    if body is None:          # Go decodes `null` into a nil map: nothing to do
        body = {}
    if not isinstance(body, dict):
        raise errors.BadRequest(f"error decoding strategic merge patch: cannot unmarshal "
                                f"{_json_kind(body)} into an object")
    merged = _merge_map(_copy(obj), body, _root_meta(definition))
    return {} if merged is _DROP else merged


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


class _Drop:
    """Result of merging a map that carries `$patch: delete` (the caller empties or drops the map)."""

    def __repr__(self) -> str:
        return "<drop>"


_DROP: Any = _Drop()


def _internal(message: str) -> errors.APIError:
    return errors.InternalError(message)


def _no_merge_key(item: Any, merge_key: str) -> errors.APIError:
    return _internal(f"map: {_go(item)} does not contain declared merge key: {merge_key}")


def _merge_map(original: dict[str, Any], patch: dict[str, Any], meta: _Meta) -> Any:
    """Merge `patch` (read only) into `original` (ours to mutate); returns the result or `_DROP`."""
    if _PATCH in patch:
        directive = patch[_PATCH]
        if directive == "replace":
            rest = {k: v for k, v in patch.items() if k != _PATCH}
            return _merge_map({}, rest, meta)
        if directive == "delete":
            return _DROP
        if directive != "merge":   # `merge` is the default behaviour; Kubernetes names no other directive
            raise _internal(f"unknown patch type: {_go(directive)} in map: {_go(patch)}")

    if _RETAIN_KEYS in patch:
        _retain_keys(original, patch)

    handled: set[str] = set()
    for key, value in patch.items():
        if key.startswith(_SET_ORDER):
            handled.add(_set_element_order(original, patch, key, value, meta))

    for key, value in patch.items():
        if key in handled or key == _PATCH or key == _RETAIN_KEYS or key.startswith(_SET_ORDER):
            continue
        deleting = False
        if key.startswith(_DELETE_PRIMITIVE):
            prefix, sep, key = key.partition("/")
            if not sep or prefix != _DELETE_PRIMITIVE:
                raise errors.BadRequest("invalid patch format of primitive list")
            deleting = True
        if value is None:
            original.pop(key, None)
            continue
        if key not in original:
            if not deleting:
                fresh = _fresh(value, meta.field(key))
                if fresh is not _DROP:
                    original[key] = fresh
            continue
        current = original[key]
        if isinstance(current, dict) and isinstance(value, dict):
            if deleting:
                continue
            field = meta.field(key)
            if field.strategy == "replace":
                merged = _merge_map({}, value, field.meta)
            else:
                merged = _merge_map(current, value, field.meta)
            original[key] = {} if merged is _DROP else merged   # Kubernetes empties a deleted live map
        elif isinstance(current, list) and isinstance(value, list):
            field = meta.field(key)
            if field.strategy == "merge" or deleting:
                original[key] = _merge_list(current, value, field, deleting)
            else:
                original[key] = _fresh_list(value, field)
        elif not deleting:
            fresh = _fresh(value, meta.field(key))
            if fresh is _DROP:
                del original[key]
            else:
                original[key] = fresh
    return original


def _fresh(value: Any, field: _Field) -> Any:
    """A patch value that lands where the live object has nothing comparable: directives applied, nulls gone."""
    if isinstance(value, dict):
        return _merge_map({}, value, field.meta)
    if isinstance(value, list):
        return _fresh_list(value, field)
    return value


def _fresh_list(items: list[Any], field: _Field) -> list[Any]:
    """A list taken from the patch as a whole: directive items (`$patch: ...`) dropped, maps cleaned."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            if _PATCH in item:
                continue
            cleaned = _merge_map({}, item, field.meta)
            if cleaned is not _DROP:
                out.append(cleaned)
        elif isinstance(item, list):
            out.append(_fresh_list(item, _UNKNOWN_FIELD))
        else:
            out.append(item)
    return out


def _retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    keep = patch[_RETAIN_KEYS]
    if not isinstance(keep, list):
        raise errors.BadRequest("invalid patch format of retainKeys")
    try:
        allowed = set(keep)
    except TypeError:
        raise errors.BadRequest("invalid patch format of retainKeys") from None
    for key, value in patch.items():
        if value is None or key in (_RETAIN_KEYS, _PATCH) or key.startswith(_DELETE_PRIMITIVE) \
                or key.startswith(_SET_ORDER):
            continue
        if key not in allowed:
            raise errors.BadRequest("invalid patch format of retainKeys")
    for key in [k for k in original if k not in allowed]:
        del original[key]


def _elem_kind(*lists: list[Any]) -> str | None:
    """"map" or "scalar" for the elements of the lists (all must agree), None when they are all empty."""
    first: type | None = None
    for items in lists:
        for item in items:
            t = type(item)
            if first is None:
                if isinstance(item, list):
                    raise PatchRejected("lists of lists are not supported")
                first = t
            elif t is not first and not (isinstance(item, dict) and issubclass(first, dict)):
                raise _internal("list element types are not identical: "
                                + " ".join(_go(each) for each in lists))
    if first is None:
        return None
    return "map" if issubclass(first, dict) else "scalar"


def _merge_list(original: list[Any], patch: list[Any], field: _Field, deleting: bool) -> list[Any]:
    """Merge a patch list into a live list whose strategy is `merge` (or apply a `$deleteFromPrimitiveList`)."""
    return _merge_list_with_view(original, patch, field, deleting)[0]


def _merge_list_with_view(original: list[Any], patch: list[Any], field: _Field,
                          deleting: bool) -> tuple[list[Any], list[Any]]:
    """`_merge_list`, plus the live list as Kubernetes' `$setElementOrder` step then sees it.

    Go deletes merge-list items in place (shifting the live slice's backing array) and appends new items into
    the freed slots, so the live order used to place server-only items is the shifted list with the first
    appended items in its tail. Reproducing that keeps list order identical to Kubernetes for 3-way patches
    that delete and add items at once.
    """
    if not original and not patch:
        return original, original
    kind = _elem_kind(original, patch)
    if kind == "scalar":
        if deleting:
            gone = _Lookup(patch, None)
            return [v for v in original if gone.index(v) < 0], original
        merged = _unique(original + patch)
        return _normalize(merged, patch, original, None), original

    merge_key = field.merge_key
    if deleting:
        raise errors.BadRequest("invalid patch format of primitive list")
    if not merge_key:
        raise _internal(f"cannot merge lists without merge key for {field.meta.name or 'this field'}")

    # Directive items first: `$patch: delete` removes matching live items, `$patch: replace` drops the live list.
    size = len(original)
    backing = list(original)          # Go's backing array of the live slice (capacity == length server side)
    length = size
    rest: list[dict[str, Any]] = []
    replace = False
    for item in patch:
        if _PATCH not in item:
            rest.append(item)
            continue
        directive = item[_PATCH]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            target = item[merge_key]
            i = 0
            while i < length:
                live = backing[i]
                if merge_key in live and live[merge_key] == target:
                    backing[i:length - 1] = backing[i + 1:length]
                    length -= 1
                else:
                    i += 1
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            if merge_key in item:
                rest.append(item)
        else:
            raise _internal(f"unknown patch type: {_go(directive)} in map: {_go(item)}")

    if replace:
        replaced = [_merge_map({}, item, field.meta) for item in rest]
        for item in replaced:
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
        return replaced, backing

    remaining = backing[:length]
    merged = list(remaining)
    for item in rest:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        wanted = item[merge_key]
        for i, live in enumerate(merged):
            if merge_key in live and live[merge_key] == wanted:
                merged[i] = _merge_map(live, item, field.meta)
                break
        else:
            merged.append(_merge_map({}, item, field.meta))
    view = merged[:size] + backing[len(merged):size]
    return _normalize(merged, rest, remaining, merge_key), view


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    seen = _Lookup((), None)
    for v in values:
        if seen.index(v) < 0:
            seen.add(v, len(out))
            out.append(v)
    return out


class _Lookup:
    """First position of each item (by merge key for maps) in a list; unhashable keys fall back to a scan."""

    __slots__ = ("merge_key", "_table", "_slow")

    def __init__(self, items: Iterable[Any], merge_key: str | None) -> None:
        self.merge_key = merge_key
        self._table: dict[Any, int] = {}
        self._slow: list[tuple[Any, int]] = []
        for i, item in enumerate(items):
            self.add(item, i)

    def key(self, item: Any) -> Any:
        if self.merge_key is None:
            return _hashable_scalar(item)
        return _hashable_scalar(item.get(self.merge_key)) if isinstance(item, dict) else None

    def add(self, item: Any, position: int) -> None:
        k = self.key(item)
        try:
            self._table.setdefault(k, position)
        except TypeError:
            self._slow.append((k, position))

    def index(self, item: Any) -> int:
        k = self.key(item)
        try:
            found = self._table.get(k, -1)
        except TypeError:
            found = -1
        for other, position in self._slow:
            if other == k and (found < 0 or position < found):
                found = position
                break
        return found


def _hashable_scalar(value: Any) -> Any:
    """Keep true/1 and 1/1.0 apart as Go does (different dynamic types never compare equal)."""
    if isinstance(value, bool):
        return (bool, value)
    if isinstance(value, float):
        return (float, value)
    return value


def _normalize(merged: list[Any], order: list[Any], live: list[Any], merge_key: str | None) -> list[Any]:
    """Kubernetes' ordering rule: items named in `order` (the patch list or `$setElementOrder`) follow that order,
    the others keep their live order, and the two are interleaved by their positions in the live list."""
    if merge_key is not None:
        for items in (merged, order, live):
            for item in items:
                if not isinstance(item, dict):
                    raise _internal(f"expected a map[string]interface {{}}, but received a {_json_kind(item)}")
                if merge_key not in item:
                    raise _no_merge_key(item, merge_key)
    in_order = _Lookup(order, merge_key)
    in_live = _Lookup(live, merge_key)
    ordered: list[Any] = []
    server_only: list[Any] = []
    for item in merged:
        (ordered if in_order.index(item) >= 0 else server_only).append(item)
    ordered.sort(key=in_order.index)
    server_only.sort(key=lambda item: _last_if_missing(in_live.index(item)))
    return _interleave(server_only, ordered, in_live.index)


def _last_if_missing(position: int) -> int:
    return position if position >= 0 else 1 << 62


def _interleave(left: list[Any], right: list[Any], live_index: Callable[[Any], int]) -> list[Any]:
    out: list[Any] = []
    i = j = 0
    while i < len(left) and j < len(right):
        li, ri = live_index(left[i]), live_index(right[j])
        if li >= 0 and ri >= 0 and li < ri:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    out.extend(left[i:])
    out.extend(right[j:])
    return out


def _set_element_order(original: dict[str, Any], patch: dict[str, Any], directive: str, order: Any,
                       meta: _Meta) -> str:
    """Handle `$setElementOrder/<field>`: merge the field's patch list, then impose the order. Returns <field>."""
    prefix, sep, key = directive.partition("/")
    if not sep or prefix != _SET_ORDER:
        raise errors.BadRequest("invalid patch format of setElementOrder list")
    if not isinstance(order, list):
        raise _internal(f"expected a []interface {{}}, but received a {_json_kind(order)}")
    live = original.get(key)
    in_original, in_patch = live is not None, key in patch   # a stored null list counts as absent
    patch_list = patch.get(key)
    if in_original and not isinstance(live, list):
        raise _internal(f"expected a []interface {{}}, but received a {type(live).__name__}")
    if in_patch and not isinstance(patch_list, list):
        raise _internal(f"expected a []interface {{}}, but received a {type(patch_list).__name__}")
    field = meta.field(key)
    merge_key = field.merge_key
    _check_order(patch_list or [], order, merge_key)
    if not in_original and not in_patch:
        return key
    if in_original and not in_patch:
        merged = live
    elif not in_original:
        merged = _fresh_list(patch_list, field)
    elif field.strategy == "merge":
        merged, live = _merge_list_with_view(live, patch_list, field, False)
    else:
        merged = _fresh_list(patch_list, field)
    kind = _elem_kind(live or [], patch_list or [])
    if kind is None or not merged:
        original[key] = merged
        return key
    original[key] = _normalize(merged, order, live or [], merge_key if kind == "map" else None)
    return key


def _check_order(patch_list: list[Any], order: list[Any], merge_key: str | None) -> None:
    """The patch list's items must appear in `$setElementOrder` in the same relative order."""
    if not order or not patch_list:
        return
    if merge_key:
        for item in patch_list:
            if not isinstance(item, dict):
                raise _internal(f"expected a map[string]interface {{}}, but received a {_json_kind(item)}")
        items = [item for item in patch_list if item.get(_PATCH) != "delete"]
    else:
        items = patch_list
    p = s = 0
    while p < len(items) and s < len(order):
        item = items[p]
        if isinstance(item, dict) and _PATCH in item:
            p += 1
            continue
        if merge_key:
            if not isinstance(order[s], dict):
                raise _internal(f"expected a map[string]interface {{}}, but received a {_json_kind(order[s])}")
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            if merge_key not in order[s]:
                raise _no_merge_key(order[s], merge_key)
            equal = item[merge_key] == order[s][merge_key]
        else:
            equal = item == order[s]
        if equal:
            p += 1
        s += 1
    if p < len(items) and s >= len(order):
        raise _internal(f"The order in patch list:\n{_go(patch_list)}\n doesn't match {_SET_ORDER} list:\n"
                        f"{_go(order)}\n")
