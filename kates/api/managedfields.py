"""Server-side apply and `metadata.managedFields`: who owns which field of an object.

Why this exists: `kubectl apply --server-side` sends the whole intended configuration as an
`application/apply-patch+yaml` PATCH and expects the server to merge it by the schema, to refuse (409) changing
a field another manager owns unless `--force-conflicts`, and to delete the fields the applier stops applying.
That needs field ownership, which every write must keep up to date, so that an apply after `kubectl create`,
`kubectl label`, `kubectl edit` or a controller's update sees the earlier owners. Kubernetes does this in
sigs.k8s.io/structured-merge-diff (field sets, merge, compare, prune) driven by
k8s.io/apimachinery/pkg/util/managedfields (meta-field stripping, reset fields, entry encoding, conflict
messages). This module reimplements those semantics over plain JSON dicts and the built-in OpenAPI definitions
(`kates.api.schemas`) or a CRD's structural schema.

Model:

* A *field set* is a trie keyed by serialized path elements, the same strings as the FieldsV1 wire encoding:
  `f:<field>`, `k:<json of the list-map keys, sorted>`, `v:<json value>` (set items) and `i:<index>`; key "."
  marks the node itself as a member. Internally every member node carries "." (`{"f:a": {".": {}}}`); on the wire
  a member without children is written `{}`, exactly like Kubernetes.
* Types come from the schema: maps are granular unless `x-kubernetes-map-type: atomic`; lists are atomic unless
  `x-kubernetes-list-type` is `set`/`map` (falling back, like kube-openapi's schemaconv, to
  `x-kubernetes-patch-strategy: merge` with/without `x-kubernetes-patch-merge-key`); untyped values are
  "deduced" (maps granular, lists atomic); RawExtension is atomic; int-or-string and quantities are scalars.
* Apply = merge(live, applied) -> prune what the applier applied last time, no longer applies and nobody else owns
  -> compare live with the result: fields another manager owns that were added or modified are conflicts (409
  unless force, then ownership moves) and removed fields leave every other manager's set. The applier's entry
  becomes exactly the set of fields in `applied`.
* Update (create/update/patch/subresource writes): fields added or modified between old and new go to the
  manager's entry (unioned with its previous fields, time bumped only if it took something), and leave every
  other entry; removed fields leave every entry; emptied entries are dropped.

Deviations from Kubernetes, on purpose or for lack of information:

* No version conversion: every entry's set is read against the one schema given, whatever its apiVersion.
* The "empty object" a create is compared with has `metadata` and `spec` present (Go structs are never nil) but
  nothing deeper, so a create may mark a few more nested structs with "." than Kubernetes would.
* `metadata.deletionTimestamp`/`deletionGracePeriodSeconds` are stripped from sets too (the server sets them).
* Reset fields are generic: the main resource ignores `status`, the `status` subresource ignores `spec`, unless
  the caller passes `reset_fields`. Apply also puts the live values of reset fields back into its result (what the
  registry strategy would do anyway), so a main-resource apply never changes status.
* An applied `null` removes the field from the result (Kubernetes keeps a null that decoding then drops).
* Malformed apply bodies (list-map item without its key, duplicate keys) are 400 BadRequest; Kubernetes returns
  a 500 with the same wording. Malformed live data is tolerated (bad items are not tracked).
* Sets of maps/lists are encoded with `v:<json>` instead of being rejected.
* The last-applied-configuration annotation interplay (kubectl client-side apply upgrade) is not implemented.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

import orjson

from kates.api import errors
from kates.api.schemas import definitions, ref_name, resolve, types_of

__all__ = ["server_side_apply", "update_managed_fields", "field_set", "fields_v1_to_paths"]

# -- type model --------------------------------------------------------------------------------------------

_SCALAR, _MAP, _LIST, _DEDUCED = range(4)
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"
_SCALAR_TYPES = {"string", "integer", "number", "boolean"}


class _Type:
    """One node of the schema as structured-merge-diff sees it; children are compiled lazily and memoized."""

    __slots__ = ("kind", "atomic", "leaf", "list_type", "keys", "builtin", "_props", "_addl", "_items",
                 "_kids", "_elem", "_key_defaults")

    def __init__(self, kind: int, *, atomic: bool = False, list_type: str = "atomic", keys: tuple[str, ...] = (),
                 props: dict[str, Any] | None = None, addl: dict[str, Any] | None = None,
                 items: dict[str, Any] | None = None, builtin: bool = True) -> None:
        self.kind = kind
        self.atomic = atomic
        self.leaf = kind == _SCALAR or atomic
        self.list_type = list_type
        self.keys = keys
        self.builtin = builtin
        self._props = props
        self._addl = addl
        self._items = items
        self._kids: dict[str, tuple[_Type, bool]] = {}
        self._elem: _Type | None = None
        self._key_defaults: dict[str, Any] | None = None

    def child(self, name: str) -> tuple["_Type", bool]:
        """The type of map entry `name` and whether it is a declared (struct) field."""
        kid = self._kids.get(name)
        if kid is None:
            s = self._props.get(name) if self._props else None
            if s is not None:
                kid = (_compile(s, self.builtin), True)
            elif self._addl is not None:
                kid = (self.elem, False)
            else:
                kid = (_DEDUCED_T, False)
            self._kids[name] = kid
        return kid

    @property
    def elem(self) -> "_Type":
        """List item type, or the value type of a map's additionalProperties."""
        if self._elem is None:
            s = self._items if self.kind == _LIST else self._addl
            self._elem = _compile(s, self.builtin) if s is not None else _DEDUCED_T
        return self._elem

    @property
    def key_defaults(self) -> dict[str, Any]:
        """Defaults for list-map key fields an item may omit (SMD uses the schema default, e.g. protocol TCP)."""
        if self._key_defaults is None:
            out: dict[str, Any] = {}
            item = resolve(self._items or {})
            props = item.get("properties") or {}
            for k in self.keys:
                ps = props.get(k)
                if ps is not None and "default" in resolve(ps):
                    out[k] = resolve(ps)["default"]
                elif ps is not None and "default" in ps:
                    out[k] = ps["default"]
                elif self.builtin and k == "protocol":
                    out[k] = "TCP"   # the built-in OpenAPI carries `default: TCP`; kubernetes-validate drops it
            self._key_defaults = out
        return self._key_defaults

    def with_atomic(self, atomic: bool) -> "_Type":
        t = _Type(self.kind, atomic=atomic, list_type=self.list_type, keys=self.keys, props=self._props,
                  addl=self._addl, items=self._items, builtin=self.builtin)
        return t


_SCALAR_T = _Type(_SCALAR)
_DEDUCED_T = _Type(_DEDUCED)
_DEDUCED_MAP_T = _Type(_MAP, addl={})          # children deduced, every entry undeclared
_ATOMIC_LIST_T = _Type(_LIST, atomic=True)
_NAMED: dict[str, _Type] = {}


def _named(name: str) -> _Type:
    t = _NAMED.get(name)
    if t is None:
        if name == _RAW_EXTENSION:
            t = _SCALAR_T            # SMD: "__untyped_atomic_"
        else:
            d = definitions().get(name)
            t = _compile(d, True) if d is not None else _DEDUCED_T
        _NAMED[name] = t
    return t


def _compile(s: dict[str, Any], builtin: bool) -> _Type:
    if not isinstance(s, dict):
        return _DEDUCED_T
    name = ref_name(s)
    if name is not None:
        t = _named(name)
        mt = s.get("x-kubernetes-map-type")
        if mt in ("atomic", "granular") and t.kind == _MAP and (mt == "atomic") != t.atomic:
            t = t.with_atomic(mt == "atomic")
        return t
    all_of = s.get("allOf")
    if all_of and len(all_of) == 1 and "properties" not in s and "items" not in s:
        return _compile(all_of[0], builtin)
    if s.get("x-kubernetes-int-or-string"):
        return _SCALAR_T
    types = types_of(s)
    if not types:
        alts = s.get("oneOf") or s.get("anyOf")
        if alts and all(types_of(a) and types_of(a) <= _SCALAR_TYPES for a in alts if isinstance(a, dict)):
            return _SCALAR_T
    if "object" in types or (not types and ("properties" in s or "additionalProperties" in s)):
        props = s.get("properties") or None
        addl = s.get("additionalProperties")
        if addl is True:
            addl = {}
        elif not isinstance(addl, dict):
            addl = None
        if props is None and addl is None:
            addl = {}                # free-form object: entries are deduced
        return _Type(_MAP, atomic=s.get("x-kubernetes-map-type") == "atomic", props=props, addl=addl,
                     builtin=builtin)
    if "array" in types or (not types and "items" in s):
        items = s.get("items") if isinstance(s.get("items"), dict) else {}
        lt = s.get("x-kubernetes-list-type")
        keys: tuple[str, ...] = ()
        if lt is None:
            strategy = s.get("x-kubernetes-patch-strategy", "")
            if "merge" in strategy.split(","):
                mk = s.get("x-kubernetes-patch-merge-key")
                lt, keys = ("map", (mk,)) if isinstance(mk, str) else ("set", ())
            else:
                lt = "atomic"
        elif lt == "map":
            keys = tuple(k for k in (s.get("x-kubernetes-list-map-keys") or ()) if isinstance(k, str))
            if not keys:
                lt = "atomic"
        elif lt != "set":
            lt = "atomic"
        return _Type(_LIST, atomic=lt == "atomic", list_type=lt, keys=keys, items=items, builtin=builtin)
    if types:
        return _SCALAR_T
    return _DEDUCED_T


_CR_ROOTS: dict[int, tuple[dict[str, Any], _Type]] = {}
_META_REF = {"$ref": "#/$defs/" + _OBJECT_META}
_STRING = {"type": "string"}


def _root_type(definition: str | None, schema: dict[str, Any] | None) -> _Type:
    if definition and definition in definitions():
        return _named(definition)
    if schema is None:
        schema = _NO_SCHEMA
    hit = _CR_ROOTS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    # A custom resource's metadata is always ObjectMeta, whatever its schema says.
    props = dict(schema.get("properties") or {})
    props["metadata"] = _META_REF
    props.setdefault("apiVersion", _STRING)
    props.setdefault("kind", _STRING)
    addl = schema.get("additionalProperties")
    t = _Type(_MAP, props=props, addl=addl if isinstance(addl, dict) else None, builtin=False)
    if len(_CR_ROOTS) >= 256:
        _CR_ROOTS.pop(next(iter(_CR_ROOTS)))
    _CR_ROOTS[id(schema)] = (schema, t)
    return t


_NO_SCHEMA: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _eff(t: _Type, v: Any) -> _Type:
    """Resolve a deduced type from the value at hand."""
    if t.kind != _DEDUCED:
        return t
    if isinstance(v, dict):
        return _DEDUCED_MAP_T
    if isinstance(v, list):
        return _ATOMIC_LIST_T
    return _SCALAR_T


# -- path elements -----------------------------------------------------------------------------------------

_ABSENT: Any = object()
_E: dict[str, Any] = {}          # the shared (never mutated) value under "."
_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                             "\u2029": "\\u2029"})


def _canon(v: Any) -> str:
    """JSON as Go's encoding/json writes it (compact, sorted keys, HTML-safe escapes)."""
    s = json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if "<" in s or ">" in s or "&" in s or "\u2028" in s or "\u2029" in s:
        s = s.translate(_GO_ESCAPES)
    return s


class _PathError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _item_pe(t: _Type, item: Any) -> str:
    """Path element of a set/list-map item (raises _PathError when the item cannot be keyed)."""
    if t.list_type == "map":
        if not isinstance(item, dict):
            raise _PathError("associative list with keys may not have non-map elements")
        keys = t.keys
        if len(keys) == 1:
            k = keys[0]
            if k in item:
                v = item[k]
            elif k in t.key_defaults:
                v = t.key_defaults[k]
            else:
                raise _PathError(f'associative list with keys has an element that omits key field "{k}" '
                                 "(and doesn't have default value)")
            return "k:{" + _canon(k) + ":" + _canon(v) + "}"
        kv: dict[str, Any] = {}
        for k in keys:
            if k in item:
                kv[k] = item[k]
            elif k in t.key_defaults:
                kv[k] = t.key_defaults[k]
            else:
                raise _PathError(f'associative list with keys has an element that omits key field "{k}" '
                                 "(and doesn't have default value)")
        return "k:" + _canon(kv)
    if item is None:
        raise _PathError("associative list without keys has an element that's an explicit null")
    return "v:" + _canon(item)


def _pe_sort_key(pe: str) -> tuple[int, str, int]:
    c = pe[0]
    if c == "f":
        return (0, pe[2:], 0)
    if c == "k":
        return (1, pe[2:], 0)
    if c == "v":
        return (2, pe[2:], 0)
    try:
        return (3, "", int(pe[2:]))
    except ValueError:
        return (4, pe, 0)


def _value_string(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _pe_string(pe: str) -> str:
    """A path element as fieldpath prints it: `.name`, `[name="web"]`, `[="x"]`, `[3]`."""
    kind, body = pe[0], pe[2:]
    if kind == "f":
        return "." + body
    if kind == "k":
        try:
            kv = json.loads(body)
            return "[" + ",".join(f"{k}={_value_string(v)}" for k, v in kv.items()) + "]"
        except (ValueError, AttributeError):
            return "[" + body + "]"
    if kind == "v":
        return "[=" + body + "]"
    return "[" + body + "]"


def _path_string(path: Iterable[str]) -> str:
    return "".join(_pe_string(pe) for pe in path)


# -- field sets (tries) ------------------------------------------------------------------------------------

Node = dict  # dict[str, Node]; "." present = the path itself is a member


def _union(a: Node, b: Node) -> Node:
    if not a:
        return b
    if not b:
        return a
    out = dict(a)
    for k, bv in b.items():
        av = out.get(k)
        if av is None:
            out[k] = bv
        elif k != ".":
            out[k] = _union(av, bv)
    return out


def _difference(a: Node, b: Node) -> Node:
    """Members of a that are not members of b."""
    if not b or not a:
        return a
    out: Node = {}
    for k, av in a.items():
        if k == ".":
            if "." not in b:
                out["."] = _E
            continue
        bv = b.get(k)
        if bv is None:
            out[k] = av
        else:
            dv = _difference(av, bv)
            if dv:
                out[k] = dv
    return out


def _intersection(a: Node, b: Node) -> Node:
    out: Node = {}
    if not a or not b:
        return out
    if len(b) < len(a):
        pairs = ((k, a.get(k), bv) for k, bv in b.items())
    else:
        pairs = ((k, av, b.get(k)) for k, av in a.items())
    for k, av, bv in pairs:
        if av is None or bv is None:
            continue
        if k == ".":
            out["."] = _E
            continue
        iv = _intersection(av, bv)
        if iv:
            out[k] = iv
    return out


def _recursive_difference(a: Node, b: Node) -> Node:
    """a without the members of b and everything below them."""
    if not b or not a:
        return a
    out: Node = {}
    for k, av in a.items():
        if k == ".":
            out["."] = _E
            continue
        bv = b.get(k)
        if bv is None:
            out[k] = av
        elif "." in bv:
            continue
        else:
            rv = _recursive_difference(av, bv)
            if rv:
                out[k] = rv
    return out


def _members(node: Node, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Member paths in fieldpath's order (a node before its children, siblings sorted)."""
    if "." in node and prefix:
        yield prefix
    for k in sorted((k for k in node if k != "."), key=_pe_sort_key):
        yield from _members(node[k], prefix + (k,))


def _from_v1(d: Any) -> Node:
    if not isinstance(d, dict) or not d:
        return {".": _E}
    out: Node = {}
    for k, v in d.items():
        if k == ".":
            out["."] = _E
        elif isinstance(k, str) and len(k) > 1 and k[1] == ":":
            out[k] = _from_v1(v)
    return out


def _to_v1(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "." in node and len(node) > 1:
        out["."] = {}
    for k in sorted((k for k in node if k != "."), key=_pe_sort_key):
        out[k] = _to_v1(node[k])
    return out


def _paths_node(paths: Iterable[Iterable[str]]) -> Node:
    """A set from field-name paths, e.g. [("status",), ("metadata", "labels")]."""
    out: Node = {}
    for path in paths:
        names = list(path)
        if not names:
            continue
        node = out
        for name in names[:-1]:
            node = node.setdefault("f:" + name, {})
        node["f:" + names[-1]] = {".": _E}
    return out


# Paths Kubernetes never records in managedFields (stripmeta.go), plus two the server alone sets.
_STRIP: Node = {
    "f:apiVersion": {".": _E},
    "f:kind": {".": _E},
    "f:metadata": {".": _E, **{"f:" + n: {".": _E} for n in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
        "managedFields", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds")}},
}


# -- walks over values -------------------------------------------------------------------------------------

def _fs(v: Any, t: _Type, strict: bool) -> Node:
    """ToFieldSet: leaves, list items and map entries (not struct fields) of v are members."""
    if t.kind == _DEDUCED:
        t = _eff(t, v)
    if t.leaf:
        return {".": _E}
    if t.kind == _MAP:
        if not isinstance(v, dict):
            return {} if v is None else {".": _E}
        node: Node = {}
        for k, val in v.items():
            ct, declared = t.child(k)
            try:
                c = _fs(val, ct, strict)
            except _PathError as e:
                e.path.append("f:" + k)
                raise
            if not declared:
                c["."] = _E
            if c:
                node["f:" + k] = c
        return node
    if not isinstance(v, list):
        return {} if v is None else {".": _E}
    node = {}
    et = t.elem
    for i, item in enumerate(v):
        try:
            pe = _item_pe(t, item)
        except _PathError as e:
            if strict:
                e.message = f"element {i}: {e.message}"
                raise
            continue
        if pe in node:
            if strict:
                raise _PathError(f"duplicate entries for key {_pe_string(pe)}")
            continue
        try:
            c = _fs(item, et, strict)
        except _PathError as e:
            e.path.append(pe)
            raise
        c["."] = _E
        node[pe] = c
    return node


def _index(t: _Type, items: list[Any]) -> dict[str, Any]:
    """List items by path element; unkeyable items are skipped and the first duplicate wins."""
    out: dict[str, Any] = {}
    for item in items:
        try:
            pe = _item_pe(t, item)
        except _PathError:
            continue
        if pe not in out:
            out[pe] = item
    return out


_NONE3: tuple[None, None, None] = (None, None, None)


def _cmp(l: Any, r: Any, t: _Type) -> tuple[Node | None, Node | None, Node | None]:
    """Compare: (added, modified, removed) sets below/at this path; l or r may be _ABSENT."""
    if l is not _ABSENT and r is not _ABSENT and l == r and type(l) is type(r):
        return _NONE3
    if t.kind == _DEDUCED:
        tl = _eff(t, l) if l is not _ABSENT else None
        tr = _eff(t, r) if r is not _ABSENT else None
        if tl is not None and tr is not None and tl is not tr:
            return None, {".": _E}, None
        t = tr or tl  # type: ignore[assignment]
    leaf = t.leaf
    if not leaf:
        want = dict if t.kind == _MAP else list
        lc = l if isinstance(l, want) else None
        rc = r if isinstance(r, want) else None
        if (lc is None and l is not _ABSENT and l is not None) or (rc is None and r is not _ABSENT and r is not None):
            leaf = True          # value of the wrong shape: compare as a whole
        elif not lc and not rc:
            leaf = True          # both empty/null: keeps the empty/null distinction
    if leaf:
        if l is _ABSENT:
            return {".": _E}, None, None
        if r is _ABSENT:
            return None, None, {".": _E}
        return None, {".": _E}, None
    a: Node | None = None
    m: Node | None = None
    d: Node | None = None
    if t.kind == _MAP:
        lm: dict[str, Any] = lc or {}
        rm: dict[str, Any] = rc or {}
        for k, lv in lm.items():
            ca, cm, cd = _cmp(lv, rm.get(k, _ABSENT), t.child(k)[0])
            if ca:
                a = a if a is not None else {}
                a["f:" + k] = ca
            if cm:
                m = m if m is not None else {}
                m["f:" + k] = cm
            if cd:
                d = d if d is not None else {}
                d["f:" + k] = cd
        for k, rv in rm.items():
            if k in lm:
                continue
            ca, cm, cd = _cmp(_ABSENT, rv, t.child(k)[0])
            if ca:
                a = a if a is not None else {}
                a["f:" + k] = ca
    else:
        et = t.elem
        li = _index(t, lc or [])
        ri = _index(t, rc or [])
        for pe, rv in ri.items():
            ca, cm, cd = _cmp(li.get(pe, _ABSENT), rv, et)
            if ca:
                a = a if a is not None else {}
                a[pe] = ca
            if cm:
                m = m if m is not None else {}
                m[pe] = cm
            if cd:
                d = d if d is not None else {}
                d[pe] = cd
        for pe, lv in li.items():
            if pe in ri:
                continue
            ca, cm, cd = _cmp(lv, _ABSENT, et)
            if cd:
                d = d if d is not None else {}
                d[pe] = cd
    if l is _ABSENT:
        a = a if a is not None else {}
        a["."] = _E
    elif r is _ABSENT:
        d = d if d is not None else {}
        d["."] = _E
    return a, m, d


def _merge(l: Any, r: Any, t: _Type) -> Any:
    """Merge the applied configuration r into the live value l (structure may be shared with inputs)."""
    if r is _ABSENT:
        return l
    if l is _ABSENT:
        return r
    if t.kind == _DEDUCED:
        tl, tr = _eff(t, l), _eff(t, r)
        if tl is not tr:
            return r
        t = tr
    if t.leaf:
        return r
    if t.kind == _MAP:
        if not isinstance(r, dict):
            return r
        if not isinstance(l, dict):
            l = {}
        if not l and not r:
            return r
        out: dict[str, Any] = {}
        for k, lv in l.items():
            rv = r.get(k, _ABSENT)
            if rv is _ABSENT:
                out[k] = lv
            elif rv is not None:
                out[k] = _merge(lv, rv, t.child(k)[0])
        for k, rv in r.items():
            if k not in l and rv is not None:
                out[k] = rv
        return out
    if not isinstance(r, list):
        return r
    if not isinstance(l, list):
        l = []
    if not l and not r:
        return r
    et = t.elem
    rpes = [(_item_pe(t, item), item) for item in r]   # validated by _fs beforehand
    rmap = dict(rpes)
    lmap = _index(t, l)
    result: list[Any] = []
    emitted: set[str] = set()
    ri = 0

    def emit_rhs_until(stop: str | None) -> None:
        nonlocal ri
        while ri < len(rpes):
            pe, item = rpes[ri]
            ri += 1
            if pe in emitted:
                continue
            emitted.add(pe)
            result.append(_merge(lmap.get(pe, _ABSENT), item, et))
            if pe == stop:
                return

    # Live order is kept; shared items move to where the applied order puts them relative to each other, and
    # items only the applier has go just before the next shared item (or at the end).
    for item in l:
        try:
            pe = _item_pe(t, item)
        except _PathError:
            result.append(item)
            continue
        if pe not in rmap:
            result.append(item)
        elif pe not in emitted:
            emit_rhs_until(pe)
    emit_rhs_until(None)
    return result


def _remove(v: Any, t: _Type, rm: Node) -> Any:
    """RemoveItems: v without the member paths of rm; containers emptied by the removal are dropped."""
    if t.kind == _DEDUCED:
        t = _eff(t, v)
    if t.leaf or not v:
        return v
    if t.kind == _MAP:
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        changed = False
        for k, val in v.items():
            c = rm.get("f:" + k)
            if c is None:
                out[k] = val
                continue
            if "." in c:
                changed = True
                continue
            nv = _remove(val, t.child(k)[0], c)
            if nv is not val:
                changed = True
                if not nv and isinstance(nv, (dict, list)):
                    continue
            out[k] = nv
        return out if changed else v
    if not isinstance(v, list):
        return v
    et = t.elem
    items: list[Any] = []
    changed = False
    for item in v:
        try:
            pe = _item_pe(t, item)
        except _PathError:
            items.append(item)
            continue
        c = rm.get(pe)
        if c is None:
            items.append(item)
            continue
        if "." in c:
            changed = True
            continue
        ni = _remove(item, et, c)
        changed = changed or ni is not item
        items.append(ni)
    return items if changed else v


def _ensure_named(node: Node, t: _Type) -> Node:
    """EnsureNamedFieldsAreMembers: struct fields on a path also count as members (used for pruning)."""
    out: Node | None = None
    for k, c in node.items():
        if k == ".":
            continue
        if k[0] == "f" and t.kind == _MAP:
            ct, declared = t.child(k[2:])
        elif t.kind == _LIST:
            ct, declared = t.elem, False
        else:
            continue
        nc = _ensure_named(c, ct) if len(c) > 1 or "." not in c else c
        if declared and "." not in nc:
            nc = {".": _E, **nc}
        if nc is not c:
            if out is None:
                out = dict(node)
            out[k] = nc
    return out if out is not None else node


# -- managedFields entries ---------------------------------------------------------------------------------

class _Entry:
    __slots__ = ("manager", "operation", "api_version", "subresource", "time", "fields")

    def __init__(self, manager: str, operation: str, api_version: str, subresource: str, time: str | None,
                 fields: Node) -> None:
        self.manager = manager
        self.operation = operation
        self.api_version = api_version
        self.subresource = subresource
        self.time = time
        self.fields = fields

    @property
    def applied(self) -> bool:
        return self.operation == "Apply"


_Key = tuple[str, str, str, str]


def _key(manager: str, operation: str, api_version: str, subresource: str) -> _Key:
    """Kubernetes' manager identifier: appliers are one entry whatever apiVersion they applied with."""
    return (manager, operation, "" if operation == "Apply" else api_version, subresource)


def _identifier_json(key: _Key) -> str:
    d: dict[str, str] = {}
    if key[0]:
        d["manager"] = key[0]
    if key[1]:
        d["operation"] = key[1]
    if key[2]:
        d["apiVersion"] = key[2]
    if key[3]:
        d["subresource"] = key[3]
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


def _decode(raw: Any) -> dict[_Key, _Entry] | None:
    """Entries by identifier; None when the list is malformed (Kubernetes then ignores it)."""
    out: dict[_Key, _Entry] = {}
    if not raw:
        return out
    if not isinstance(raw, list):
        return None
    for e in raw:
        if not isinstance(e, dict):
            return None
        op = e.get("operation")
        api_version = e.get("apiVersion")
        if op not in ("Apply", "Update") or not api_version or e.get("fieldsType") != "FieldsV1":
            return None
        manager = e.get("manager") or ""
        sub = e.get("subresource") or ""
        time = e.get("time")
        out[_key(manager, op, api_version, sub)] = _Entry(manager, op, api_version, sub,
                                                          time if isinstance(time, str) else None,
                                                          _from_v1(e.get("fieldsV1") or {}))
    return out


def _encode(managers: dict[_Key, _Entry]) -> list[dict[str, Any]]:
    entries = [e for e in managers.values() if e.fields]
    entries.sort(key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource))
    out: list[dict[str, Any]] = []
    for e in entries:
        d: dict[str, Any] = {"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version}
        if e.time:
            d["time"] = e.time
        d["fieldsType"] = "FieldsV1"
        d["fieldsV1"] = _to_v1(e.fields)
        if e.subresource:
            d["subresource"] = e.subresource
        out.append(d)
    return out


_MAX_UPDATE_MANAGERS = 10
_ANCIENT = "ancient-changes"


def _cap_update_managers(managers: dict[_Key, _Entry]) -> None:
    """capmanagers.go: beyond 10 Update entries, the oldest merge into an "ancient-changes" entry per version."""
    updaters = [k for k, e in managers.items() if not e.applied]
    if len(updaters) <= _MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda k: (managers[k].time or "", _identifier_json(k)))
    count = len(updaters)
    first_of_version: dict[str, _Key] = {}
    for k in updaters:
        if count <= _MAX_UPDATE_MANAGERS:
            break
        e = managers[k]
        version = e.api_version
        bucket = _key(_ANCIENT, "Update", version, "")
        first = first_of_version.get(version)
        if first is None:
            first_of_version[version] = k
            continue
        if bucket not in managers:
            f = managers.pop(first)
            managers[bucket] = _Entry(_ANCIENT, "Update", version, "", f.time, f.fields)
        b = managers[bucket]
        managers[bucket] = _Entry(_ANCIENT, "Update", version, "", e.time, _union(b.fields, e.fields))
        if k != bucket:
            managers.pop(k, None)
        count -= 1


def _print_manager(key: _Key) -> str:
    s = json.dumps(key[0], ensure_ascii=False)
    if key[3]:
        s += f" with subresource {json.dumps(key[3], ensure_ascii=False)}"
    if key[1] == "Update":
        s += f" using {key[2]}"
    return s


def _conflict_error(conflicts: dict[_Key, Node]) -> errors.Conflict:
    """NewConflictError in Kubernetes' conflict.go: the message kubectl prints, one cause per field."""
    ordered = sorted(conflicts, key=_identifier_json)
    causes: list[dict[str, str]] = []
    grouped: list[tuple[str, list[str]]] = []
    for key in ordered:
        who = _print_manager(key)
        paths = [_path_string(p) for p in _members(conflicts[key])]
        grouped.append((who, paths))
        for p in paths:
            causes.append({"reason": "FieldManagerConflict", "message": f"conflict with {who}", "field": p})
    if len(causes) == 1:
        message = f"Apply failed with 1 conflict: conflict with {grouped[0][0]}: {grouped[0][1][0]}"
    else:
        lines: list[str] = []
        for who, paths in grouped:
            lines.append(f"conflicts with {who}:")
            lines.extend(f"- {p}" for p in paths)
        message = f"Apply failed with {len(causes)} conflicts: " + "\n".join(lines)
    return errors.Conflict(message, details={"causes": causes})


# -- helpers over objects ----------------------------------------------------------------------------------

def _without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        meta = dict(meta)
        del meta["managedFields"]
        obj = dict(obj)
        obj["metadata"] = meta
    return obj


def _get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(obj, dict) or name not in obj:
            return _ABSENT
        obj = obj[name]
    return obj


def _set_path(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of obj (copied along the path only) with path set to value, or removed for _ABSENT."""
    name = path[0]
    out = dict(obj)
    if len(path) == 1:
        if value is _ABSENT:
            out.pop(name, None)
        else:
            out[name] = value
        return out
    child = obj.get(name)
    if not isinstance(child, dict):
        if value is _ABSENT:
            return obj
        child = {}
    out[name] = _set_path(child, path[1:], value)
    return out


def _reset_paths(subresource: str, reset_fields: Iterable[Iterable[str]] | None) -> list[tuple[str, ...]]:
    if reset_fields is not None:
        return [tuple(p) for p in reset_fields if tuple(p)]
    if subresource == "status":
        return [("spec",)]
    return [("status",)]


def _empty_object(root: _Type, definition: str | None) -> dict[str, Any]:
    """What a create is compared with: Kubernetes' empty typed object has its top-level structs present."""
    if not definition or definition not in definitions():
        return {}
    return {name: {} for name in ("metadata", "spec") if root._props and name in root._props}


def _deep_copy(v: Any) -> Any:
    try:
        return orjson.loads(orjson.dumps(v))
    except (TypeError, orjson.JSONEncodeError):
        import copy
        return copy.deepcopy(v)


def _api_version(*objs: dict[str, Any] | None) -> str:
    for o in objs:
        if isinstance(o, dict) and isinstance(o.get("apiVersion"), str) and o["apiVersion"]:
            return o["apiVersion"]
    return ""


def _with_managed_fields(obj: dict[str, Any], managers: dict[_Key, _Entry]) -> dict[str, Any]:
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    encoded = _encode(managers)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


def _track_update(old: dict[str, Any], new: dict[str, Any], managers: dict[_Key, _Entry], key: _Key,
                  api_version: str, root: _Type, ignored: Node, now: str) -> None:
    """Update in managedfields terms (in place): the manager takes what changed; removed fields leave everyone."""
    added, modified, removed = _cmp(old, new, root)
    changed = _union(added or {}, modified or {})
    if ignored:
        changed = _recursive_difference(changed, ignored)
    removed = _recursive_difference(removed or {}, ignored) if ignored else (removed or {})
    took = _difference(_difference(changed, removed), _STRIP)
    for k in list(managers):
        e = managers[k]
        fields = _difference(_difference(e.fields, took), removed)
        if fields is not e.fields:
            if fields:
                managers[k] = _Entry(e.manager, e.operation, e.api_version, e.subresource, e.time, fields)
            else:
                del managers[k]
    if took:
        prev = managers.get(key)
        managers[key] = _Entry(key[0], key[1], api_version, key[3], now,
                               _union(prev.fields, took) if prev else took)


# -- public API --------------------------------------------------------------------------------------------

def field_set(obj: dict[str, Any], *, definition: str | None, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The FieldsV1 encoding of every field set in obj (what an applier of obj would own)."""
    root = _root_type(definition, schema)
    try:
        node = _fs(_without_managed_fields(obj), root, False)
    except _PathError:
        node = {}
    return _to_v1(_difference(node, _STRIP))


def fields_v1_to_paths(fields_v1: dict[str, Any]) -> list[str]:
    """The member paths of a FieldsV1 set as Kubernetes prints them (`.spec.containers[name="web"].image`)."""
    return [_path_string(p) for p in _members(_from_v1(fields_v1))]


def server_side_apply(live: dict[str, Any] | None, applied: dict[str, Any], *, manager: str, force: bool,
                      definition: str | None, schema: dict[str, Any] | None = None, now: str,
                      subresource: str = "", reset_fields: Iterable[Iterable[str]] | None = None) -> dict[str, Any]:
    """PATCH application/apply-patch+yaml: the merged object (a new dict) with metadata.managedFields updated.

    The applier's Apply entry becomes the set of fields in `applied`; fields another manager owns and `applied`
    changes raise errors.Conflict (409) unless `force`, which moves them to the applier; fields the applier applied
    last time, no longer applies and no other manager owns are removed. `live` None is a create. `reset_fields`
    (paths of field names) overrides which fields this endpoint ignores: by default `status` on the main resource
    and `spec` on the status subresource.
    """
    if not isinstance(applied, dict):
        raise errors.BadRequest("the apply patch must be an object")
    root = _root_type(definition, schema)
    reset = _reset_paths(subresource, reset_fields)
    ignored = _paths_node(reset)
    config = _without_managed_fields(applied)
    live_clean = _without_managed_fields(live) if live is not None else {}
    api_version = _api_version(config, live)

    try:
        config_set = _fs(config, root, True)
    except _PathError as e:
        where = _path_string(reversed(e.path))
        raise errors.BadRequest(f"failed to create typed patch object: {where}: {e.message}" if where else
                                f"failed to create typed patch object: {e.message}") from None

    managers: dict[_Key, _Entry] = {}
    if live is not None:
        managers = _decode((live.get("metadata") or {}).get("managedFields")) or {}
        if not managers:
            # Objects nobody tracked yet: their existing fields belong to "before-first-apply" (skipnonapplied.go).
            _track_update(_empty_object(root, definition), live_clean, managers,
                          _key("before-first-apply", "Update", _api_version(live), ""), _api_version(live), root,
                          ignored, now)

    me = _key(manager, "Apply", api_version, subresource)
    last = managers.get(me)
    new_set = _recursive_difference(config_set, ignored) if ignored else config_set
    managers[me] = _Entry(manager, "Apply", api_version, subresource, last.time if last else None, new_set)

    merged = _merge(live_clean, config, root)
    if last is not None and last.fields:
        # Prune: what the applier owned last time, no longer applies and nobody else (applier or updater) owns.
        owned: Node = {}
        for e in managers.values():
            owned = _union(owned, _ensure_named(e.fields, root))
        stale = _difference(_ensure_named(last.fields, root), owned)
        if stale:
            merged = _remove(merged, root, stale)
    for path in reset:
        lv = _get_path(live_clean, path)
        if _get_path(merged, path) is not lv:
            merged = _set_path(merged, path, lv)

    added, modified, removed = _cmp(live_clean, merged, root)
    changed = _union(added or {}, modified or {})
    removed = removed or {}
    if ignored:
        changed = _recursive_difference(changed, ignored)
        removed = _recursive_difference(removed, ignored)
    conflicts: dict[_Key, Node] = {}
    for k, e in managers.items():
        if k != me:
            c = _intersection(e.fields, changed)
            if c:
                conflicts[k] = c
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for k in list(managers):
        if k == me:
            continue
        e = managers[k]
        fields = e.fields
        if k in conflicts:
            fields = _difference(fields, conflicts[k])
        fields = _difference(fields, removed)
        if fields is not e.fields:
            if fields:
                managers[k] = _Entry(e.manager, e.operation, e.api_version, e.subresource, e.time, fields)
            else:
                del managers[k]

    mine = _difference(new_set, _STRIP)
    if mine:
        object_changed = merged != live_clean
        unchanged = last is not None and last.fields == mine and last.api_version == api_version
        managers[me] = _Entry(manager, "Apply", api_version, subresource,
                              last.time if unchanged and not object_changed and last.time else now, mine)
    else:
        del managers[me]

    result = _deep_copy(merged)
    if not isinstance(result.get("metadata"), dict):
        result["metadata"] = {}
    return _with_managed_fields(result, managers)


def update_managed_fields(old: dict[str, Any] | None, new: dict[str, Any], *, manager: str,
                          operation: str = "Update", definition: str | None, schema: dict[str, Any] | None = None,
                          now: str, subresource: str = "",
                          reset_fields: Iterable[Iterable[str]] | None = None) -> dict[str, Any]:
    """Create/update/patch (non-apply): `new` (copied at the top) with metadata.managedFields brought up to date.

    Fields added or modified between old and new are recorded for `manager` (with `operation`) and taken from
    every other manager without conflict; removed fields leave every manager; emptied entries are dropped. As in
    Kubernetes, managedFields the request itself carries win when they differ from the live ones (an empty list
    resets them), except on subresources; an existing object with no managedFields stays untracked until applied.
    """
    root = _root_type(definition, schema)
    ignored = _paths_node(_reset_paths(subresource, reset_fields))
    new_clean = _without_managed_fields(new)
    api_version = _api_version(new, old)

    old_raw = ((old or {}).get("metadata") or {}).get("managedFields")
    new_raw = (new.get("metadata") or {}).get("managedFields")
    if subresource:
        managers = _decode(old_raw) or {}
    elif isinstance(new_raw, list) and (not new_raw or (len(new_raw) == 1 and new_raw[0] == {})):
        managers = {}        # isResetManagedFields
    else:
        managers = _decode(new_raw) or {}
        if not managers:
            managers = _decode(old_raw) or {}
    if old is not None and not managers:
        return _with_managed_fields(new_clean, {})

    old_clean = _without_managed_fields(old) if old is not None else _empty_object(root, definition)
    key = _key(manager, operation, api_version, subresource)
    _track_update(old_clean, new_clean, managers, key, api_version, root, ignored, now)
    _cap_update_managers(managers)
    return _with_managed_fields(new_clean, managers)
