"""Bad input over raw HTTPS: each gets a Status with the right code and a message naming what is wrong,
and the store is left unchanged."""
from __future__ import annotations

import json
import uuid

import pytest
import urllib3


@pytest.fixture(scope="module")
def http(server):
    pki = server.data_dir / "pki"
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", server.port, ca_certs=str(pki / "ca.crt"),
                                       cert_file=str(pki / "admin.crt"), key_file=str(pki / "admin.key"),
                                       assert_hostname="127.0.0.1")

    def call(method, path, body=None, content_type="application/json", headers=None):
        h = {"Content-Type": content_type, **(headers or {})}
        r = pool.request(method, path, body=body, headers=h)
        return r.status, json.loads(r.data) if r.data[:1] == b"{" else r.data
    return call


@pytest.fixture
def space(http):
    name = "bad-" + uuid.uuid4().hex[:6]
    status, _ = http("POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": name}}))
    assert status == 201
    return name


def names(http, space):
    status, body = http("GET", f"/api/v1/namespaces/{space}/configmaps")
    assert status == 200
    return [i["metadata"]["name"] for i in body["items"]]


def expect(result, code, reason, *words):
    status, body = result
    assert status == code, body
    assert body["kind"] == "Status" and body["reason"] == reason and body["code"] == code, body
    for w in words:
        assert w in body["message"], body["message"]
    return body


def test_malformed_json_and_yaml(http, space):
    expect(http("POST", f"/api/v1/namespaces/{space}/configmaps", b'{"metadata": {"name": "x"'), 400,
           "BadRequest", "json")
    expect(http("POST", f"/api/v1/namespaces/{space}/configmaps", b"metadata: [unclosed", "application/yaml"),
           400, "BadRequest", "YAML")
    expect(http("POST", f"/api/v1/namespaces/{space}/configmaps", b"[1, 2]"), 400, "BadRequest")
    expect(http("POST", f"/api/v1/namespaces/{space}/configmaps", b"\x00\x01", "application/octet-stream"),
           415, "UnsupportedMediaType")
    assert names(http, space) == []


def test_wrong_types(http, space):
    body = expect(http("POST", f"/api/v1/namespaces/{space}/configmaps",
                       json.dumps({"metadata": {"name": "x"}, "data": {"a": 1}})), 400, "BadRequest")
    assert "data" in body["message"]
    body = expect(http("POST", f"/apis/apps/v1/namespaces/{space}/deployments", json.dumps({
        "metadata": {"name": "d"}, "spec": {"replicas": "three", "selector": {"matchLabels": {"a": "b"}},
                                            "template": {"metadata": {"labels": {"a": "b"}},
                                                         "spec": {"containers": [{"name": "c", "image": "i"}]}}}})),
        400, "BadRequest")
    assert "replicas" in body["message"]
    assert names(http, space) == []


def test_oversized_body_is_413(http, space):
    huge = json.dumps({"metadata": {"name": "big"}, "data": {"a": "x" * (3 * 1024 * 1024 + 10)}})
    expect(http("POST", f"/api/v1/namespaces/{space}/configmaps", huge), 413, "RequestEntityTooLarge")
    assert names(http, space) == []


def test_unknown_kinds_and_paths_are_404(http, space):
    expect(http("GET", f"/api/v1/namespaces/{space}/gizmos"), 404, "NotFound")
    expect(http("POST", f"/apis/example.com/v1/namespaces/{space}/widgets", b"{}"), 404, "NotFound")
    expect(http("GET", "/apis/nope/v9/things"), 404, "NotFound")


def test_invalid_names_and_mismatched_kind(http, space):
    body = expect(http("POST", f"/api/v1/namespaces/{space}/configmaps",
                       json.dumps({"metadata": {"name": "UPPER_case"}})), 422, "Invalid", "metadata.name")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    expect(http("POST", f"/api/v1/namespaces/{space}/configmaps",
                json.dumps({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "x"}})), 400, "BadRequest",
           "kind")
    expect(http("POST", f"/api/v1/namespaces/{space}/configmaps", json.dumps({"metadata": {}})), 422, "Invalid",
           "name")
    assert names(http, space) == []


def test_strict_field_validation(http, space):
    path = f"/api/v1/namespaces/{space}/configmaps?fieldValidation=Strict"
    expect(http("POST", path, json.dumps({"metadata": {"name": "x"}, "dta": {}})), 400, "BadRequest", "dta")
    expect(http("POST", path, b'{"metadata": {"name": "x"}, "data": {}, "data": {}}'), 400, "BadRequest",
           "duplicate")
    assert names(http, space) == []
    # the default (Warn) accepts, drops the unknown field, and says so in a Warning header
    status, body = http("POST", f"/api/v1/namespaces/{space}/configmaps",
                        json.dumps({"metadata": {"name": "x"}, "dta": {}}))
    assert status == 201 and "dta" not in body


def test_bad_selectors_and_params(http, space):
    expect(http("GET", f"/api/v1/namespaces/{space}/configmaps?labelSelector=a%20in%20(b"), 400, "BadRequest")
    expect(http("GET", f"/api/v1/namespaces/{space}/configmaps?fieldSelector=spec.x%3Dy"), 400, "BadRequest",
           "field label not supported")
    expect(http("GET", f"/api/v1/namespaces/{space}/configmaps?limit=abc"), 400, "BadRequest", "limit")
    expect(http("GET", f"/api/v1/namespaces/{space}/configmaps?continue=garbage"), 400, "BadRequest", "continue")
    expect(http("POST", f"/api/v1/namespaces/{space}/configmaps?dryRun=Some",
                json.dumps({"metadata": {"name": "x"}})), 400, "BadRequest", "dry run")


def test_unauthenticated_requests_get_401(server):
    pool = urllib3.HTTPSConnectionPool("127.0.0.1", server.port, cert_reqs="CERT_NONE")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = pool.request("GET", "/api/v1/namespaces")
        assert r.status == 401 and json.loads(r.data)["reason"] == "Unauthorized"
        assert pool.request("GET", "/version").status == 200
