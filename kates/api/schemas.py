"""The built-in Kubernetes 1.32 schemas, read from the maintained `kubernetes-validate` package.

We never hand-write Kubernetes' schema set: every definition (descriptions, types, enums, and the list metadata
strategic merge patch and server-side apply need) comes from that package's `_definitions.json`, keyed by the
OpenAPI definition name, e.g. `io.k8s.api.apps.v1.Deployment`.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import orjson

SCHEMA_VERSION = "v1.32.0"
REF_PREFIX = "#/$defs/"


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    """All definitions by name; loaded once per process."""
    import kubernetes_validate

    base = os.path.dirname(kubernetes_validate.__file__)
    path = os.path.join(base, "kubernetes-json-schema", f"{SCHEMA_VERSION}-local", "_definitions.json")
    with open(path, "rb") as f:
        return orjson.loads(f.read())["$defs"]


def ref_name(schema: dict[str, Any]) -> str | None:
    """The definition name a `$ref` schema points at, or None."""
    ref = schema.get("$ref")
    return ref[len(REF_PREFIX):] if ref and ref.startswith(REF_PREFIX) else None


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref` (possibly chained) to the schema it names."""
    while True:
        name = ref_name(schema)
        if name is None:
            return schema
        schema = definitions()[name]


def types_of(schema: dict[str, Any]) -> set[str]:
    """JSON types a schema allows ("null" dropped: the package marks most fields nullable)."""
    t = schema.get("type")
    if t is None:
        return set()
    return ({t} if isinstance(t, str) else set(t)) - {"null"}


@functools.cache
def definition_for_kind(group: str, version: str, kind: str) -> str | None:
    """The definition name whose x-kubernetes-group-version-kind matches, e.g. ("apps","v1","Deployment")."""
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            if gvk.get("group", "") == group and gvk["version"] == version and gvk["kind"] == kind:
                return name
    return None
