"""LimitRanger admission (plugin/pkg/admission/limitranger): a namespace's LimitRanges give new pods' containers their
default requests and limits, and refuse pods and PersistentVolumeClaims outside their bounds.

- Mutation (pods, on create only, as Kubernetes): every item of type Container contributes `defaultRequest` to the
  requests and `default` to the limits of each container and init container that states none for that resource; the
  pod is annotated `kubernetes.io/limit-ranger: LimitRanger plugin set: cpu request for container app; ...`.
- Validation: type Container min/max/maxLimitRequestRatio per container and init container; type Pod the same on the
  pod's totals (the larger of the containers' sum and the largest init container); type PersistentVolumeClaim min/max
  on the claim's storage request. Violations are one 403 with Kubernetes' messages (a list in brackets when several).
Runs after defaulting, as Kubernetes' plugin sees decoded-and-defaulted objects (so a container's limit already
became its request before a LimitRange default could), and before object validation.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from ...api.defaulting.pods import qos_class
from ...api.resources import ResourceType, storage_prefix
from ...api.validation.quantity import Quantity, QuantityError, canonical, parse
from . import forbidden

ANNOTATION = "kubernetes.io/limit-ranger"
Obj = dict[str, Any]


def _q(raw: Any) -> Quantity | None:
    try:
        return parse(raw)
    except QuantityError:
        return None


def _text(raw: Any) -> str:
    q = _q(raw)
    return canonical(q) if q is not None else str(raw)


def _containers(spec: Obj) -> list[tuple[str, Obj]]:
    out = []
    for key, prefix in (("containers", "container"), ("initContainers", "init container")):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                out.append((prefix, c))
    return out


class LimitRanger:
    name = "LimitRanger"

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def _limit_ranges(self, namespace: str) -> list[Obj]:
        rt = self.registry.catalog.lookup("", "v1", "limitranges")
        if rt is None:
            return []
        return [lr for _, lr in self.registry.cache.cache(storage_prefix(rt)).list(namespace)]

    def __call__(self, rt: ResourceType, obj: Obj) -> None:
        if rt.group != "" or rt.resource not in ("pods", "persistentvolumeclaims"):
            return
        meta = obj.get("metadata") or {}
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        ranges = self._limit_ranges(meta.get("namespace") or "")
        if not ranges:
            return
        errs: list[str] = []
        for lr in ranges:
            items = [i for i in ((lr.get("spec") or {}).get("limits") or []) if isinstance(i, dict)]
            if rt.resource == "pods":
                self._default_pod(obj, spec, items)
                errs += self._validate_pod(spec, items)
            else:
                errs += self._validate_claim(spec, items)
        if errs:
            raise forbidden(rt, meta.get("name") or "", errs[0] if len(errs) == 1 else f"[{', '.join(errs)}]")

    # -- mutation -----------------------------------------------------------------------------------------------
    @staticmethod
    def _default_pod(pod: Obj, spec: Obj, items: list[Obj]) -> None:
        requests: Obj = {}
        limits: Obj = {}
        for item in items:
            if item.get("type") == "Container":
                requests.update(item.get("defaultRequest") or {})
                limits.update(item.get("default") or {})
        if not requests and not limits:
            return
        notes: list[str] = []
        for prefix, c in _containers(spec):
            resources = c.get("resources") if isinstance(c.get("resources"), dict) else {}
            c["resources"] = resources
            set_limits: list[str] = []
            set_requests: list[str] = []
            for key, defaults, changed in (("limits", limits, set_limits), ("requests", requests, set_requests)):
                have = resources.get(key) if isinstance(resources.get(key), dict) else {}
                for name, value in defaults.items():
                    if name not in have:
                        have[name] = value
                        changed.append(name)
                if have:
                    resources[key] = have
            if set_requests:
                notes.append(f"{', '.join(sorted(set_requests))} request for {prefix} {c.get('name', '')}")
            if set_limits:
                notes.append(f"{', '.join(sorted(set_limits))} limit for {prefix} {c.get('name', '')}")
        if notes:
            meta = pod.setdefault("metadata", {})
            annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
            annotations[ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)
            meta["annotations"] = annotations
            if isinstance(pod.get("status"), dict):   # Kubernetes computes it after admission: it may have changed
                pod["status"]["qosClass"] = qos_class(pod)

    # -- validation ---------------------------------------------------------------------------------------------
    def _validate_pod(self, spec: Obj, items: list[Obj]) -> list[str]:
        errs: list[str] = []
        for item in items:
            kind = item.get("type")
            if kind == "Container":
                for _, c in _containers(spec):
                    res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
                    errs += _check("Container", item, res.get("requests") or {}, res.get("limits") or {})
            elif kind == "Pod":
                errs += _check("Pod", item, *_pod_totals(spec))
        return errs

    @staticmethod
    def _validate_claim(spec: Obj, items: list[Obj]) -> list[str]:
        errs: list[str] = []
        requests = ((spec.get("resources") or {}).get("requests") or {}) if isinstance(spec.get("resources"),
                                                                                         dict) else {}
        for item in items:
            if item.get("type") != "PersistentVolumeClaim":
                continue
            for name, enforced in (item.get("min") or {}).items():
                err = _min(name, "PersistentVolumeClaim", enforced, requests, {})
                if err:
                    errs.append(err)
            for name, enforced in (item.get("max") or {}).items():
                if name not in requests:
                    errs.append(f"maximum {name} usage per PersistentVolumeClaim is {_text(enforced)}.  "
                                "No request is specified")
                elif (q := _q(requests[name])) is not None and (e := _q(enforced)) is not None and q.value > e.value:
                    errs.append(f"maximum {name} usage per PersistentVolumeClaim is {_text(enforced)}, but request "
                                f"is {_text(requests[name])}")
        return errs


def _pod_totals(spec: Obj) -> tuple[Obj, Obj]:
    """Per resource: the larger of the regular containers' sum and the largest init container, as podRequests."""
    out: list[Obj] = []
    for key in ("requests", "limits"):
        total: dict[str, Decimal] = {}
        init_max: dict[str, Decimal] = {}
        for group, acc in (("containers", total), ("initContainers", init_max)):
            for c in spec.get(group) or []:
                res = (c.get("resources") or {}) if isinstance(c, dict) else {}
                for name, raw in (res.get(key) or {}).items():
                    q = _q(raw)
                    if q is None:
                        continue
                    acc[name] = acc.get(name, Decimal(0)) + q.value if group == "containers" else \
                        max(acc.get(name, Decimal(0)), q.value)
        merged = dict(total)
        for name, v in init_max.items():
            merged[name] = max(merged.get(name, Decimal(0)), v)
        out.append({name: Quantity(v, "DecimalSI") for name, v in merged.items()})
    return out[0], out[1]


def _value(raw: Any) -> Decimal | None:
    if isinstance(raw, Quantity):
        return raw.value
    q = _q(raw)
    return q.value if q is not None else None


def _shown(raw: Any) -> str:
    return canonical(raw) if isinstance(raw, Quantity) else _text(raw)


def _min(name: str, kind: str, enforced: Any, requests: Obj, limits: Obj) -> str | None:
    e = _value(enforced)
    if e is None:
        return None
    if name not in requests:
        return f"minimum {name} usage per {kind} is {_text(enforced)}.  No request is specified"
    r = _value(requests[name])
    if r is not None and r < e:
        return f"minimum {name} usage per {kind} is {_text(enforced)}, but request is {_shown(requests[name])}"
    if name in limits and (lim := _value(limits[name])) is not None and lim < e:
        return f"minimum {name} usage per {kind} is {_text(enforced)}, but limit is {_shown(limits[name])}"
    return None


def _check(kind: str, item: Obj, requests: Obj, limits: Obj) -> list[str]:
    errs: list[str] = []
    for name, enforced in (item.get("min") or {}).items():
        err = _min(name, kind, enforced, requests, limits)
        if err:
            errs.append(err)
    for name, enforced in (item.get("max") or {}).items():
        e = _value(enforced)
        if e is None:
            continue
        if name not in limits:
            errs.append(f"maximum {name} usage per {kind} is {_text(enforced)}.  No limit is specified")
        elif (lim := _value(limits[name])) is not None and lim > e:
            errs.append(f"maximum {name} usage per {kind} is {_text(enforced)}, but limit is {_shown(limits[name])}")
        elif name in requests and (r := _value(requests[name])) is not None and r > e:
            errs.append(f"maximum {name} usage per {kind} is {_text(enforced)}, but request is "
                        f"{_shown(requests[name])}")
    for name, enforced in (item.get("maxLimitRequestRatio") or {}).items():
        e = _value(enforced)
        if e is None:
            continue
        r = _value(requests[name]) if name in requests else None
        lim = _value(limits[name]) if name in limits else None
        if not r:
            errs.append(f"{name} max limit to request ratio per {kind} is {_text(enforced)}, but no request is "
                        "specified or request is 0")
        elif not lim:
            errs.append(f"{name} max limit to request ratio per {kind} is {_text(enforced)}, but no limit is "
                        "specified or limit is 0")
        elif lim / r > e:
            errs.append(f"{name} max limit to request ratio per {kind} is {_text(enforced)}, but provided ratio is "
                        f"{float(lim / r):f}")
    return errs
