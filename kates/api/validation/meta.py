"""User-supplied object metadata, labels, annotations and label selectors.

The API server owns uid, resourceVersion, generation, timestamps and managedFields; what users write — name,
namespace, labels, annotations, finalizers, ownerReferences — is checked here on every create and update, with
Kubernetes' rules (ValidateObjectMeta / ValidateObjectMetaUpdate) and messages.
"""
from __future__ import annotations

from typing import Any, Callable

from kates.api.validation import formats
from kates.api.validation.field import Errs, as_dict, as_list, go_value, is_int

NameFn = Callable[[str], list[str]]

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def validate_labels(labels: Any, path: str, errs: Errs) -> None:
    for key, value in as_dict(labels).items():
        for msg in formats.qualified_name(key):
            errs.invalid(path, key, msg)
        if isinstance(value, str):
            for msg in formats.label_value(value):
                errs.invalid(path, value, msg)


def validate_annotations(annotations: Any, path: str, errs: Errs) -> None:
    annotations = as_dict(annotations)
    total = 0
    for key, value in annotations.items():
        # Same rule as a qualified name, except that case does not matter.
        for msg in formats.qualified_name(key.lower()):
            errs.invalid(path, key, msg)
        total += len(key.encode()) + (len(value.encode()) if isinstance(value, str) else 0)
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT)


def validate_finalizers(finalizers: Any, path: str, errs: Errs) -> None:
    names = [f for f in as_list(finalizers) if isinstance(f, str)]
    for f in names:
        for msg in formats.qualified_name(f):
            errs.invalid(path, f, msg)
    if "orphan" in names and "foregroundDeletion" in names:
        errs.invalid(path, names, "finalizer orphan and foregroundDeletion cannot be both set")


def validate_owner_references(refs: Any, path: str, errs: Errs) -> None:
    controller: str | None = None
    for ref in as_list(refs):
        ref = as_dict(ref)
        api_version = ref.get("apiVersion") or ""
        version = api_version.rsplit("/", 1)[-1] if api_version else ""
        if not version:
            errs.invalid(f"{path}.apiVersion", api_version, "version must not be empty")
        if not ref.get("kind"):
            errs.invalid(f"{path}.kind", ref.get("kind") or "", "must not be empty")
        if not ref.get("name"):
            errs.invalid(f"{path}.name", ref.get("name") or "", "must not be empty")
        if not ref.get("uid"):
            errs.invalid(f"{path}.uid", ref.get("uid") or "", "must not be empty")
        if api_version == "v1" and ref.get("kind") == "Event":
            errs.invalid(path, ref.get("name") or "", "/v1, Kind=Event is disallowed from being an owner")
        if ref.get("controller") is True:
            this = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            if controller is not None:
                errs.invalid(path, refs, "Only one reference can have Controller set to true. Found \"true\" in "
                                         f"references for {controller} and {this}")
            else:
                controller = this


def validate_object_meta(meta: Any, *, namespaced: bool, name_fn: NameFn | None, errs: Errs,
                         path: str = "metadata") -> None:
    """Create-time metadata rules (name generation has already happened)."""
    meta = as_dict(meta)
    name = meta.get("name") or ""
    if not name:
        errs.required(f"{path}.name", "name or generateName is required")
    elif name_fn is not None and isinstance(name, str):
        for msg in name_fn(name):
            errs.invalid(f"{path}.name", name, msg)
    _validate_meta_common(meta, namespaced=namespaced, errs=errs, path=path)


def _validate_meta_common(meta: dict[str, Any], *, namespaced: bool, errs: Errs, path: str) -> None:
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            errs.required(f"{path}.namespace")
        elif isinstance(namespace, str):
            for msg in formats.dns1123_label(namespace):
                errs.invalid(f"{path}.namespace", namespace, msg)
    elif namespace:
        errs.forbidden(f"{path}.namespace", "not allowed on this type")
    generation = meta.get("generation")
    if is_int(generation):
        errs.nonnegative(f"{path}.generation", generation)
    validate_labels(meta.get("labels"), f"{path}.labels", errs)
    validate_annotations(meta.get("annotations"), f"{path}.annotations", errs)
    validate_owner_references(meta.get("ownerReferences"), f"{path}.ownerReferences", errs)
    validate_finalizers(meta.get("finalizers"), f"{path}.finalizers", errs)


def validate_object_meta_update(new: Any, old: Any, *, namespaced: bool, errs: Errs,
                                path: str = "metadata") -> None:
    """Update-time metadata rules: name and namespace are fixed, no new finalizers while deleting."""
    new, old = as_dict(new), as_dict(old)
    if old.get("deletionTimestamp"):
        extra = sorted(set(as_list(new.get("finalizers"))) - set(as_list(old.get("finalizers"))))
        if extra:
            errs.forbidden(f"{path}.finalizers", "no new finalizers can be added if the object is being deleted, "
                                                 f"found new finalizers {go_value(extra)}")
    for key in ("name", "namespace"):
        if (new.get(key) or "") != (old.get(key) or ""):
            errs.immutable(f"{path}.{key}", new.get(key) or "")
    new_gen, old_gen = new.get("generation"), old.get("generation")
    if is_int(new_gen) and is_int(old_gen) and new_gen < old_gen:
        errs.invalid(f"{path}.generation", new_gen, "must not be decremented")
    _validate_meta_common(new, namespaced=namespaced, errs=errs, path=path)


# --- label selectors ---------------------------------------------------------------------------------------------

_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(selector: Any, path: str, errs: Errs) -> None:
    """metav1.LabelSelector: matchLabels are labels; matchExpressions need a known operator and fitting values."""
    if not isinstance(selector, dict):
        return
    validate_labels(selector.get("matchLabels"), f"{path}.matchLabels", errs)
    for i, req in enumerate(as_list(selector.get("matchExpressions"))):
        req = as_dict(req)
        rpath = f"{path}.matchExpressions[{i}]"
        op = req.get("operator") or ""
        values = as_list(req.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.required(f"{rpath}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.forbidden(f"{rpath}.values", "may not be specified when `operator` is 'Exists' or "
                                                  "'DoesNotExist'")
        else:
            errs.invalid(f"{rpath}.operator", op, "not a valid selector operator")
        key = req.get("key") or ""
        for msg in formats.qualified_name(key):
            errs.invalid(f"{rpath}.key", key, msg)
        for j, v in enumerate(values):
            if isinstance(v, str):
                for msg in formats.label_value(v):
                    errs.invalid(f"{rpath}.values[{j}]", v, msg)


def selector_is_parsable(selector: Any) -> bool:
    """Whether Kubernetes could turn the selector into a labels.Selector (LabelSelectorAsSelector)."""
    if not isinstance(selector, dict):
        return True
    for k, v in as_dict(selector.get("matchLabels")).items():
        if formats.qualified_name(k) or not isinstance(v, str) or formats.label_value(v):
            return False
    for req in as_list(selector.get("matchExpressions")):
        req = as_dict(req)
        op, values = req.get("operator"), as_list(req.get("values"))
        if op not in _SELECTOR_OPERATORS or formats.qualified_name(req.get("key") or ""):
            return False
        if (op in ("In", "NotIn")) != bool(values):
            return False
        if any(not isinstance(v, str) or formats.label_value(v) for v in values):
            return False
    return True


def selector_is_empty(selector: Any) -> bool:
    s = as_dict(selector)
    return not as_dict(s.get("matchLabels")) and not as_list(s.get("matchExpressions"))


def selector_matches(selector: Any, labels: Any) -> bool:
    """Whether a metav1.LabelSelector selects a label set (an empty selector matches everything;
    a missing selector matches nothing, like `LabelSelectorAsSelector(nil)`)."""
    if not isinstance(selector, dict):
        return False
    labels = as_dict(labels)
    for k, v in as_dict(selector.get("matchLabels")).items():
        if labels.get(k) != v:
            return False
    for req in as_list(selector.get("matchExpressions")):
        req = as_dict(req)
        key, op, values = req.get("key"), req.get("operator"), as_list(req.get("values"))
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in _SELECTOR_OPERATORS:
            return False
    return True


def map_selector_matches(selector: Any, labels: Any) -> bool:
    """A plain `map[string]string` selector (Services, ReplicationControllers)."""
    labels = as_dict(labels)
    return all(labels.get(k) == v for k, v in as_dict(selector).items())
