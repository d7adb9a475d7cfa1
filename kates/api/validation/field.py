"""Field errors as Kubernetes reports them: a path, a reason, and a message users grep.

Kubernetes builds every validation message as `<field>: <type>[: <value>][: <detail>]`, e.g.
`spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive`. Tools and people match on
that text, so `Errs` reproduces the layout (including how Go prints the offending value) and turns the list
into one `errors.Invalid` with a `details.causes` entry per problem.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from kates.api import errors

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
NOT_FOUND = "FieldValueNotFound"

_TITLES = {
    REQUIRED: "Required value", INVALID: "Invalid value", NOT_SUPPORTED: "Unsupported value",
    DUPLICATE: "Duplicate value", FORBIDDEN: "Forbidden", TOO_LONG: "Too long", TOO_MANY: "Too many",
    NOT_FOUND: "Not found",
}


class GoRepr:
    """A value whose Go rendering is already known (e.g. `v1.LabelSelector{...}`); printed verbatim."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def go_quote(s: str) -> str:
    """Approximately Go's %q: a double-quoted string with JSON-like escapes, Unicode kept."""
    return json.dumps(s, ensure_ascii=False)


def go_value(value: Any) -> str:
    """How Kubernetes prints a bad value in a field error (strings quoted, maps as Go map literals)."""
    if isinstance(value, GoRepr):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, dict):
        if all(isinstance(v, str) for v in value.values()):
            inner = ", ".join(f"{go_quote(str(k))}:{go_quote(v)}" for k, v in sorted(value.items()))
            return f"map[string]string{{{inner}}}"
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return "[]string{" + ", ".join(go_quote(v) for v in value) + "}"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return "[]int32{" + ", ".join(str(v) for v in value) + "}"
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def label_selector_repr(selector: Any) -> GoRepr:
    """`v1.LabelSelector{MatchLabels:map[string]string{...}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}`."""
    if not isinstance(selector, dict):
        return GoRepr("(*v1.LabelSelector)(nil)")
    labels = selector.get("matchLabels")
    labels_text = go_value(labels) if isinstance(labels, dict) and labels else \
        ("map[string]string{}" if isinstance(labels, dict) else "map[string]string(nil)")
    exprs = selector.get("matchExpressions")
    if isinstance(exprs, list) and exprs:
        items = []
        for e in exprs:
            e = e if isinstance(e, dict) else {}
            values = e.get("values")
            values_text = go_value(values) if isinstance(values, list) else "[]string(nil)"
            items.append(f"v1.LabelSelectorRequirement{{Key:{go_quote(str(e.get('key', '')))}, "
                         f"Operator:{go_quote(str(e.get('operator', '')))}, Values:{values_text}}}")
        exprs_text = "[]v1.LabelSelectorRequirement{" + ", ".join(items) + "}"
    elif isinstance(exprs, list):
        exprs_text = "[]v1.LabelSelectorRequirement{}"
    else:
        exprs_text = "[]v1.LabelSelectorRequirement(nil)"
    return GoRepr(f"v1.LabelSelector{{MatchLabels:{labels_text}, MatchExpressions:{exprs_text}}}")


def message(reason: str, value: Any = None, detail: str = "", *, show_value: bool = True) -> str:
    """The error body Kubernetes puts after `<field>: `."""
    title = _TITLES[reason]
    if reason in (REQUIRED, FORBIDDEN, TOO_LONG) or not show_value:
        text = title
    else:
        text = f"{title}: {go_value(value)}"
    return f"{text}: {detail}" if detail else text


class Errs:
    """An ordered, de-duplicated list of field errors (Kubernetes' field.ErrorList)."""

    def __init__(self) -> None:
        self.causes: list[dict[str, str]] = []
        self._seen: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self.causes)

    def __bool__(self) -> bool:
        return bool(self.causes)

    def add(self, path: str, reason: str, msg: str) -> None:
        key = (path, msg)
        if key not in self._seen:
            self._seen.add(key)
            self.causes.append(errors.cause(path, msg, reason))

    def required(self, path: str, detail: str = "") -> None:
        self.add(path, REQUIRED, message(REQUIRED, detail=detail))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.add(path, INVALID, message(INVALID, value, detail))

    def invalid_each(self, path: str, value: Any, details: Iterable[str]) -> None:
        for d in details:
            self.invalid(path, value, d)

    def not_supported(self, path: str, value: Any, valid: Iterable[str]) -> None:
        valid = list(valid)
        detail = "supported values: " + ", ".join(go_quote(v) for v in valid) if valid else ""
        self.add(path, NOT_SUPPORTED, message(NOT_SUPPORTED, value, detail))

    def duplicate(self, path: str, value: Any) -> None:
        self.add(path, DUPLICATE, message(DUPLICATE, value))

    def forbidden(self, path: str, detail: str) -> None:
        self.add(path, FORBIDDEN, message(FORBIDDEN, detail=detail))

    def too_long(self, path: str, max_bytes: int) -> None:
        self.add(path, TOO_LONG, message(TOO_LONG, detail=f"must have at most {max_bytes} bytes"))

    def too_many(self, path: str, actual: int, maximum: int) -> None:
        self.add(path, TOO_MANY, message(TOO_MANY, actual, f"must have at most {maximum} items"))

    def not_found(self, path: str, value: Any) -> None:
        self.add(path, NOT_FOUND, message(NOT_FOUND, value))

    def immutable(self, path: str, value: Any) -> None:
        self.invalid(path, value, "field is immutable")

    def nonnegative(self, path: str, value: Any) -> None:
        """Kubernetes' ValidateNonnegativeField."""
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            self.invalid(path, value, "must be greater than or equal to 0")

    def raise_if_any(self, kind: str, name: str, group: str = "") -> None:
        if self.causes:
            raise errors.Invalid(kind, name, list(self.causes), group)


# --- small accessors shared by the per-kind validators -------------------------------------------------------

def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def as_int(value: Any, default: int = 0) -> int:
    return value if is_int(value) else default
