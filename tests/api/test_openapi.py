"""OpenAPI v3/v2 documents: the shapes kubectl 1.32 relies on, and real kubectl consuming them."""
from __future__ import annotations

import asyncio
import os
import shutil
from typing import Any

import orjson
import pytest
from aiohttp import web

from kates.api import openapi
from kates.api.resources import ALL_VERBS, BUILTIN, ResourceType, Subresource

TYPES = BUILTIN
SCHEMAS = "#/components/schemas/"

WIDGET = ResourceType("stable.example.com", "v1", "widgets", "Widget", True, ("wd",), (), ALL_VERBS,
                      (Subresource("status", "Widget", "stable.example.com", "v1"),), None)
WIDGET_SCHEMA = {
    "type": "object",
    "description": "Widget is a test resource.",
    "properties": {
        "spec": {"type": "object", "description": "Desired widget.",
                 "properties": {"size": {"type": "integer", "description": "How big the widget is."},
                                "color": {"type": "string", "enum": ["red", "blue"]}}},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}
CRDS = {("stable.example.com", "v1", "Widget"): WIDGET_SCHEMA}


def refs(node: Any, acc: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                acc.add(value)
            else:
                refs(value, acc)
    elif isinstance(node, list):
        for value in node:
            refs(value, acc)
    return acc


def test_index_lists_group_versions_with_hashes():
    index = openapi.v3_index(TYPES)
    paths = index["paths"]
    assert "api/v1" in paths and "apis/apps/v1" in paths and "apis/batch/v1" in paths
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    assert url.split("hash=")[1] == openapi.v3_document_hash("apis/apps/v1", TYPES)
    assert openapi.v3_index(TYPES) == index   # stable


def test_apps_v1_patch_operation_for_deployments():
    doc = openapi.v3_document("apis/apps/v1", TYPES)
    assert doc["openapi"] == "3.0.0"
    assert doc["info"] == {"title": "Kubernetes", "version": "v1.32.0"}
    item = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    patch = item["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert patch["x-kubernetes-action"] == "patch"
    params = {p["name"]: p for p in patch["parameters"]}
    assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= set(params)
    assert params["fieldValidation"]["in"] == "query"
    content = patch["requestBody"]["content"]
    assert set(content) == {"application/json-patch+json", "application/merge-patch+json",
                            "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
    for media in content.values():
        assert media["schema"] == {"$ref": SCHEMAS + "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}
    for method in ("get", "put", "delete"):
        assert item[method]["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    collection = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert collection["get"]["x-kubernetes-action"] == "list"
    assert collection["post"]["x-kubernetes-action"] == "post"
    assert {p["name"] for p in collection["post"]["parameters"]} >= {"fieldValidation", "dryRun", "fieldManager"}
    assert doc["paths"]["/apis/apps/v1/deployments"]["get"]["operationId"] == "listAppsV1DeploymentForAllNamespaces"
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert {"name", "namespace", "pretty"} == {p["name"] for p in item["parameters"]}


def test_deployment_schema_shape():
    schemas = openapi.v3_document("apis/apps/v1", TYPES)["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["type"] == "object"
    assert deployment["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    api_version = deployment["properties"]["apiVersion"]
    assert api_version == {"description": api_version["description"], "type": "string"}   # no enum
    assert deployment["properties"]["spec"]["allOf"] == [{"$ref": SCHEMAS + "io.k8s.api.apps.v1.DeploymentSpec"}]
    replicas = schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]
    assert replicas["type"] == "integer" and replicas["format"] == "int32" and replicas["description"]
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert "type" not in schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"] == {
        "description": schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["description"],
        "format": "date-time", "type": "string"}
    # no JSON-Schema-only shapes left anywhere
    blob = orjson.dumps(schemas)
    assert b'"null"' not in blob and b"#/$defs/" not in blob


@pytest.mark.parametrize("path", sorted(openapi.v3_index(BUILTIN)["paths"]))
def test_every_ref_resolves_inside_its_document(path):
    doc = openapi.v3_document(path, TYPES)
    schemas = doc["components"]["schemas"]
    for ref in refs(doc, set()):
        assert ref.startswith(SCHEMAS), ref
        assert ref[len(SCHEMAS):] in schemas, ref
    for item in doc["paths"].values():
        patch = item.get("patch")
        if patch and patch["x-kubernetes-action"] == "patch":
            assert any(p["name"] == "fieldValidation" for p in patch["parameters"])


def test_unknown_group_version():
    assert openapi.v3_document("apis/nope/v1", TYPES) is None
    assert openapi.v3_document_bytes("apis/nope/v1", TYPES) is None
    assert openapi.v3_document("/openapi/v3/api/v1", TYPES) is openapi.v3_document("api/v1", TYPES)


def test_documents_are_memoized_bytes():
    first = openapi.v3_document_bytes("apis/apps/v1", TYPES)
    assert openapi.v3_document_bytes("apis/apps/v1", list(TYPES)) is first
    assert orjson.loads(first) == openapi.v3_document("apis/apps/v1", TYPES)


def test_custom_resource_document():
    types = TYPES + (WIDGET,)
    doc = openapi.v3_document("apis/stable.example.com/v1", types, CRDS)
    schemas = doc["components"]["schemas"]
    widget = schemas["com.example.stable.v1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "kind": "Widget", "version": "v1"}]
    assert widget["properties"]["metadata"]["allOf"] == [
        {"$ref": SCHEMAS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert widget["properties"]["spec"]["properties"]["size"]["type"] == "integer"
    assert schemas["com.example.stable.v1.WidgetList"]["properties"]["items"]["items"] == {
        "$ref": SCHEMAS + "com.example.stable.v1.Widget"}
    patch = doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Widget"
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    assert "/apis/stable.example.com/v1/namespaces/{namespace}/widgets/{name}/status" in doc["paths"]
    for ref in refs(doc, set()):
        assert ref[len(SCHEMAS):] in schemas
    # CRD edits change that document's hash, and only that one
    before = openapi.v3_index(types, CRDS)["paths"]
    changed = {("stable.example.com", "v1", "Widget"): {**WIDGET_SCHEMA, "description": "changed"}}
    after = openapi.v3_index(types, changed)["paths"]
    assert before["apis/stable.example.com/v1"] != after["apis/stable.example.com/v1"]
    assert before["apis/apps/v1"] == after["apis/apps/v1"]


def test_custom_resource_without_schema_preserves_unknown_fields():
    doc = openapi.v3_document("apis/stable.example.com/v1", TYPES + (WIDGET,))
    widget = doc["components"]["schemas"]["com.example.stable.v1.Widget"]
    assert widget["x-kubernetes-preserve-unknown-fields"] is True


def test_v2_document():
    doc = openapi.v2_document(TYPES + (WIDGET,), CRDS)
    assert doc["swagger"] == "2.0"
    definitions = doc["definitions"]
    assert definitions["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"][0]["kind"] == "Deployment"
    assert definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] == {
        "description": definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["description"],
        "format": "int-or-string", "type": "string"}
    assert "com.example.stable.v1.Widget" in definitions
    for ref in refs(doc, set()):
        assert ref.startswith("#/definitions/") and ref[len("#/definitions/"):] in definitions, ref
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in patch["parameters"])
    assert patch["parameters"][0] == {"in": "body", "name": "body", "required": True,
                                      "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}
    assert openapi.v2_document_bytes(TYPES + (WIDGET,), CRDS) is openapi.v2_document_bytes(TYPES + (WIDGET,), CRDS)


# ---------------------------------------------------------------------------------------------- real kubectl

def _fake_apiserver(types: tuple[ResourceType, ...], crds: dict, seen: list[tuple[str, str]]) -> web.Application:
    """Just enough of an API server for kubectl: /version, legacy discovery, the OpenAPI documents, echo writes."""
    by_gv: dict[tuple[str, str], list[ResourceType]] = {}
    for rt in types:
        by_gv.setdefault((rt.group, rt.version), []).append(rt)

    def resource_list(group: str, version: str) -> web.Response:
        rts = by_gv.get((group, version))
        if not rts:
            raise web.HTTPNotFound()
        resources = []
        for rt in rts:
            resources.append({"name": rt.resource, "singularName": rt.singular, "namespaced": rt.namespaced,
                              "kind": rt.kind, "verbs": list(rt.verbs), "shortNames": list(rt.short_names)})
            resources += [{"name": f"{rt.resource}/{s.name}", "singularName": "", "namespaced": rt.namespaced,
                           "kind": s.kind, "verbs": list(s.verbs)} for s in rt.subresources]
        return web.json_response({"kind": "APIResourceList", "apiVersion": "v1",
                                  "groupVersion": f"{group}/{version}" if group else version, "resources": resources})

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "32", "gitVersion": "v1.32.0+kates", "gitCommit": "0",
                                  "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                                  "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"})

    async def api(_: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})

    async def apis(_: web.Request) -> web.Response:
        groups: dict[str, list[str]] = {}
        for group, ver in by_gv:
            if group:
                groups.setdefault(group, []).append(ver)
        items = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                  "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}} for g, vs in groups.items()]
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": items})

    async def core(request: web.Request) -> web.Response:
        return resource_list("", request.match_info["v"])

    async def group(request: web.Request) -> web.Response:
        return resource_list(request.match_info["g"], request.match_info["v"])

    async def index(_: web.Request) -> web.Response:
        return web.json_response(openapi.v3_index(types, crds))

    async def document(request: web.Request) -> web.Response:
        data = openapi.v3_document_bytes(request.match_info["gv"], types, crds)
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/json")

    async def other(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.method, str(request.rel_url)))
        if request.method == "POST":
            return web.json_response(orjson.loads(body), status=201)
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/{v}", core)
    app.router.add_get("/apis/{g}/{v}", group)
    app.router.add_get("/openapi/v3", index)
    app.router.add_get("/openapi/v3/{gv:.*}", document)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


async def _kubectl(tmp_path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    home = tmp_path / f"home{len(list(tmp_path.iterdir()))}"   # fresh HOME: no cached discovery/openapi
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBECACHEDIR")}
    env["HOME"] = str(home)
    proc = await asyncio.create_subprocess_exec(
        "kubectl", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
async def test_real_kubectl_explain_and_strict_create(tmp_path):
    seen: list[tuple[str, str]] = []
    runner = web.AppRunner(_fake_apiserver(TYPES + (WIDGET,), CRDS, seen))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server = f"http://127.0.0.1:{port}"
    try:
        code, out, err = await _kubectl(tmp_path, "explain", "deployments.spec.replicas", "--server", server)
        assert code == 0, err
        assert "integer" in out and "Number of desired pods" in out

        code, out, err = await _kubectl(tmp_path, "explain", "deployment.spec.strategy.rollingUpdate",
                                        "--server", server)
        assert code == 0, err
        assert "<IntOrString>" in out

        code, out, err = await _kubectl(tmp_path, "explain", "widgets.spec", "--server", server)
        assert code == 0, err
        assert "How big the widget is." in out and "<integer>" in out

        manifest = b"""apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: nginx, image: nginx}]}
"""
        code, out, err = await _kubectl(tmp_path, "create", "-f", "-", "--server", server, stdin=manifest)
        assert code == 0, err
        posts = [url for method, url in seen if method == "POST"]
        assert posts and "fieldValidation=Strict" in posts[-1], seen
    finally:
        await runner.cleanup()
