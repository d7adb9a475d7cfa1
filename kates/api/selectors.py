"""Label and field selectors: parsed once per request, then matched against every object cheaply.

Label selectors follow Kubernetes' grammar (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`);
field selectors support `=`, `==` and `!=` on the fields each kind declares selectable.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

from .errors import BadRequest

_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


@dataclasses.dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str                      # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        # "!=" and "notin" match objects without the label, as in Kubernetes
        return value is None or value not in self.values


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def parse_label_selector(text: str | None) -> LabelSelector:
    if not text or not text.strip():
        return LabelSelector()
    tokens = [t for t in _TOKEN.findall(text)]
    reqs: list[Requirement] = []
    i = 0

    def fail(why: str) -> BadRequest:
        return BadRequest(f"unable to parse requirement: {why} in label selector {text!r}")

    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            if i + 1 >= len(tokens):
                raise fail("missing key after '!'")
            reqs.append(Requirement(tokens[i + 1], "!"))
            i += 2
        else:
            key = tok
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ","
            if nxt == ",":
                reqs.append(Requirement(key, "exists"))
                i += 1
            elif nxt in ("=", "==", "!="):
                if i + 2 >= len(tokens) or tokens[i + 2] in (",", "(", ")"):
                    value = ""
                    i += 2
                else:
                    value = tokens[i + 2]
                    i += 3
                reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", frozenset([value])))
            elif nxt in ("in", "notin"):
                if i + 2 >= len(tokens) or tokens[i + 2] != "(":
                    raise fail(f"expected '(' after {nxt}")
                j = i + 3
                values: list[str] = []
                while j < len(tokens) and tokens[j] != ")":
                    if tokens[j] != ",":
                        values.append(tokens[j])
                    j += 1
                if j >= len(tokens):
                    raise fail("missing ')'")
                reqs.append(Requirement(key, nxt, frozenset(values)))
                i = j + 1
            else:
                raise fail(f"unexpected {nxt!r} after {key!r}")
        for r in reqs[-1:]:
            _check_label_key(r.key, text)
        if i < len(tokens):
            if tokens[i] != ",":
                raise fail(f"expected ',' but found {tokens[i]!r}")
            i += 1
    return LabelSelector(tuple(reqs))


_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _check_label_key(key: str, text: str) -> None:
    if not _KEY.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise BadRequest(f"unable to parse requirement: invalid label key {key!r} in label selector {text!r}")


def selector_from_label_selector(sel: dict[str, Any] | None) -> LabelSelector | None:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as a matcher; None for a nil selector (matches nothing)."""
    if sel is None:
        return None
    reqs = [Requirement(k, "=", frozenset([v])) for k, v in (sel.get("matchLabels") or {}).items()]
    for expr in sel.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}[expr["operator"]]
        reqs.append(Requirement(expr["key"], op, frozenset(expr.get("values") or [])))
    return LabelSelector(tuple(reqs))


def format_label_selector(sel: dict[str, Any] | None) -> str:
    """`kubectl`-style text of a metav1.LabelSelector, e.g. `app=web,tier in (a,b)`."""
    if not sel:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or []:
        op, key, values = expr["operator"], expr["key"], ",".join(sorted(expr.get("values") or []))
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                      "Exists": key, "DoesNotExist": f"!{key}"}[op])
    return ",".join(parts)


# -- field selectors ---------------------------------------------------------------------------------------

# Fields each kind can be selected by, beyond metadata.name and metadata.namespace (as Kubernetes' registries say).
SELECTABLE_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                  "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    ("", "Event"): ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                    "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                    "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    ("events.k8s.io", "Event"): ("regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
                                 "reason", "reportingController", "type"),
    ("", "Secret"): ("type",),
    ("", "Node"): ("spec.unschedulable",),
    ("", "Namespace"): ("status.phase",),
    ("", "Service"): ("spec.clusterIP", "spec.type"),
    ("", "ReplicationController"): ("status.replicas",),
    ("apps", "ReplicaSet"): ("status.replicas",),
    ("batch", "Job"): ("status.successful",),
    ("", "PersistentVolume"): ("name",),
    ("", "PersistentVolumeClaim"): ("name",),
}


@dataclasses.dataclass(frozen=True, slots=True)
class FieldRequirement:
    path: tuple[str, ...]
    value: str
    negate: bool

    def matches(self, obj: dict[str, Any]) -> bool:
        cur: Any = obj
        for part in self.path:
            cur = cur.get(part) if isinstance(cur, dict) else None
        actual = _field_string(cur)
        return (actual != self.value) if self.negate else (actual == self.value)


def _field_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclasses.dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: dict[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def exact(self, field: str) -> str | None:
        """The value an `=` requirement pins `field` to, for index lookups (metadata.name, metadata.namespace)."""
        path = tuple(field.split("."))
        return next((r.value for r in self.requirements if r.path == path and not r.negate), None)


def parse_field_selector(text: str | None, group: str = "", kind: str = "",
                         extra: tuple[str, ...] = ()) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    allowed = {"metadata.name", "metadata.namespace", *SELECTABLE_FIELDS.get((group, kind), ()), *extra}
    reqs = []
    for term in _split_unescaped(text):
        term = term.strip()
        if not term:
            continue
        for op in ("!=", "==", "="):
            if op in term:
                field, value = term.split(op, 1)
                break
        else:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{term}'")
        field = field.strip()
        if field not in allowed:
            raise BadRequest(f'field label not supported: {field}')
        value = value.replace("\\,", ",").replace("\\=", "=").replace("\\\\", "\\")
        path = tuple(field.split("."))
        if (group, kind) in (("", "PersistentVolume"), ("", "PersistentVolumeClaim")) and field == "name":
            path = ("metadata", "name")
        reqs.append(FieldRequirement(path, value, op == "!="))
    return FieldSelector(tuple(reqs))


def _split_unescaped(text: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


Matcher = Callable[[dict[str, Any]], bool]


def matcher(labels: LabelSelector, fields: FieldSelector) -> Matcher | None:
    """One predicate for both selectors; None when nothing filters."""
    if labels.empty and fields.empty:
        return None
    if fields.empty:
        return lambda obj: labels.matches(obj.get("metadata", {}).get("labels"))
    if labels.empty:
        return fields.matches
    return lambda obj: labels.matches(obj.get("metadata", {}).get("labels")) and fields.matches(obj)
