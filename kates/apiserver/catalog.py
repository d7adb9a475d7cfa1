"""The resource types served right now: the built-ins plus those that CustomResourceDefinitions add.

Routing, discovery and OpenAPI all read this one catalog, so a CRD becomes visible everywhere at once.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from ..api.resources import BUILTIN, ResourceType


@dataclasses.dataclass(frozen=True)
class CustomInfo:
    """What a CRD says beyond the ResourceType: its schema and printer columns, per version."""

    schema: dict[str, Any] | None
    printer_columns: list[dict[str, Any]]
    storage: bool
    crd_name: str


class Catalog:
    def __init__(self, builtin: Iterable[ResourceType] = BUILTIN) -> None:
        self._builtin = list(builtin)
        self._custom: dict[str, list[tuple[ResourceType, CustomInfo]]] = {}   # by CRD name
        self.generation = 0   # bumped on every change: caches of discovery/OpenAPI key on it
        self._rebuild()

    def _rebuild(self) -> None:
        self.types: list[ResourceType] = list(self._builtin)
        self.custom_info: dict[tuple[str, str, str], CustomInfo] = {}
        for entries in self._custom.values():
            for rt, info in entries:
                self.types.append(rt)
                self.custom_info[(rt.group, rt.version, rt.resource)] = info
        self._by_path = {(rt.group, rt.version, rt.resource): rt for rt in self.types}
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        for rt in self.types:
            self._by_kind.setdefault((rt.group, rt.kind), rt)
        self.generation += 1

    def lookup(self, group: str, version: str, resource: str) -> ResourceType | None:
        return self._by_path.get((group, version, resource))

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((group, kind))

    def custom(self, rt: ResourceType) -> CustomInfo | None:
        return self.custom_info.get((rt.group, rt.version, rt.resource))

    def set_custom(self, crd_name: str, entries: list[tuple[ResourceType, CustomInfo]]) -> None:
        if entries:
            self._custom[crd_name] = entries
        else:
            self._custom.pop(crd_name, None)
        self._rebuild()

    def group_versions(self) -> dict[str, list[str]]:
        """Group → its versions, preferred first, in the order Kubernetes lists them."""
        out: dict[str, list[str]] = {}
        for rt in self.types:
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        for group, versions in out.items():
            versions.sort(key=_version_priority)
        return out


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version order: GA > beta > alpha, higher numbers first."""
    import re
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor)
