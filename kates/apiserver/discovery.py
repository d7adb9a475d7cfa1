"""Discovery documents: aggregated (apidiscovery.k8s.io/v2, what kubectl 1.32 asks for first) and legacy.

All are derived from the catalog and cached until it changes (a CRD is added or removed).
"""
from __future__ import annotations

from typing import Any

import orjson

from ..api.resources import ResourceType
from .catalog import Catalog

AGGREGATED_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rt.resource,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": sorted(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    if rt.subresources:
        entry["subresources"] = [{
            "subresource": s.name,
            "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
            "verbs": sorted(s.verbs)} for s in rt.subresources]
    return entry


def _legacy_resources(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {"name": rt.resource, "singularName": rt.singular, "namespaced": rt.namespaced,
                            "kind": rt.kind, "verbs": sorted(rt.verbs)}
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    out = [main]
    for s in rt.subresources:
        sub: dict[str, Any] = {"name": f"{rt.resource}/{s.name}", "singularName": "", "namespaced": rt.namespaced,
                               "kind": s.kind, "verbs": sorted(s.verbs)}
        if s.group:
            sub["group"], sub["version"] = s.group, s.version
        out.append(sub)
    return out


class Discovery:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._generation = -1
        self._docs: dict[str, bytes] = {}

    def _fresh(self) -> dict[str, bytes]:
        if self._generation != self.catalog.generation:
            self._docs = self._build()
            self._generation = self.catalog.generation
        return self._docs

    def _build(self) -> dict[str, bytes]:
        docs: dict[str, bytes] = {}
        versions = self.catalog.group_versions()
        by_gv: dict[tuple[str, str], list[ResourceType]] = {}
        for rt in self.catalog.types:
            by_gv.setdefault((rt.group, rt.version), []).append(rt)

        def group_entry(group: str) -> dict[str, Any]:
            return {"metadata": {"name": group, "creationTimestamp": None},
                    "versions": [{"version": v, "freshness": "Current",
                                  "resources": [_aggregated_resource(rt) for rt in by_gv[(group, v)]]}
                                 for v in versions[group]]}

        docs["agg:/api"] = orjson.dumps({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
                                         "metadata": {}, "items": [group_entry("")]})
        groups = [g for g in versions if g]
        docs["agg:/apis"] = orjson.dumps({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
                                          "metadata": {}, "items": [group_entry(g) for g in groups]})
        docs["/api"] = orjson.dumps({"kind": "APIVersions", "versions": ["v1"],
                                     "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                                     "serverAddress": ""}]})
        group_docs = []
        for g in groups:
            gvs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions[g]]
            doc = {"name": g, "versions": gvs, "preferredVersion": gvs[0]}
            group_docs.append(doc)
            docs[f"/apis/{g}"] = orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", **doc})
        docs["/apis"] = orjson.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": group_docs})
        for (group, version), rts in by_gv.items():
            path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
            docs[path] = orjson.dumps({
                "kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": [r for rt in rts for r in _legacy_resources(rt)]})
        return docs

    def aggregated(self, path: str) -> bytes | None:
        return self._fresh().get("agg:" + path)

    def legacy(self, path: str) -> bytes | None:
        return self._fresh().get(path)
