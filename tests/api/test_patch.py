"""JSON patch, merge patch and strategic merge patch, checked on the bodies kubectl really sends."""
from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from kates.api import errors
from kates.api.patch import (PatchRejected, apply_json_patch, apply_merge_patch,
                             apply_strategic_merge_patch)

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
POD = "io.k8s.api.core.v1.Pod"
SERVICE = "io.k8s.api.core.v1.Service"
CONFIGMAP = "io.k8s.api.core.v1.ConfigMap"
PDB = "io.k8s.api.policy.v1.PodDisruptionBudget"
CRD = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"
DIRECTIVE_PREFIXES = ("$patch", "$retainKeys", "$setElementOrder", "$deleteFromPrimitiveList")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "1234", "resourceVersion": "7", "generation": 2,
                     "labels": {"app": "web", "tier": "front"},
                     "annotations": {"deployment.kubernetes.io/revision": "2"},
                     "finalizers": ["example.com/a", "example.com/b"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "busybox:1", "command": ["sleep", "3600"],
                         "env": [{"name": "A", "value": "1"}, {"name": "VERSION", "value": "1"},
                                 {"name": "Z", "value": "z"}],
                         "ports": [{"containerPort": 80, "protocol": "TCP"},
                                   {"containerPort": 443, "protocol": "TCP", "name": "https"}],
                         "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                          {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}],
                         "resources": {"limits": {"cpu": "100m"}}},
                        {"name": "sidecar", "image": "nginx:1"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}],
                    "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
                    "nodeSelector": {"disk": "ssd"},
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {"replicas": 2, "readyReplicas": 2},
    }


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


def smp(obj: dict[str, Any], body: Any, definition: str = DEPLOYMENT) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return apply_strategic_merge_patch(obj, raw, definition)


def directive_keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [k for k in value if k.startswith(DIRECTIVE_PREFIXES)]
        return found + [k for v in value.values() for k in directive_keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in directive_keys(v)]
    return []


# ---------------------------------------------------------------------------------------------------------------
# Strategic merge patch: what kubectl sends

def test_set_image_changes_only_that_container() -> None:
    live = deployment()
    out = smp(live, b'{"spec":{"template":{"spec":{"containers":[{"image":"busybox:2","name":"web"}]}}}}')
    web, sidecar = containers(out)
    assert web["image"] == "busybox:2"
    assert web["command"] == ["sleep", "3600"] and len(web["env"]) == 3 and len(web["ports"]) == 2
    assert sidecar == {"name": "sidecar", "image": "nginx:1"}
    expected = deployment()
    containers(expected)[0]["image"] = "busybox:2"
    assert out == expected


def test_set_env_updates_one_variable_and_keeps_order() -> None:
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "VERSION"}, {"name": "Z"}],
                        "env": [{"name": "VERSION", "value": "2"}], "name": "web"}]}}}}
    out = smp(deployment(), patch)
    assert containers(out)[0]["env"] == [{"name": "A", "value": "1"}, {"name": "VERSION", "value": "2"},
                                         {"name": "Z", "value": "z"}]
    assert [c["name"] for c in containers(out)] == ["web", "sidecar"]
    assert directive_keys(out) == []


def test_set_env_adds_a_variable_where_set_element_order_says() -> None:
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "VERSION"}, {"name": "Z"},
                                                 {"name": "NEW"}],
                        "env": [{"name": "NEW", "value": "n"}], "name": "web"}]}}}}
    out = smp(deployment(), patch)
    assert [e["name"] for e in containers(out)[0]["env"]] == ["A", "VERSION", "Z", "NEW"]


def test_set_env_removal_uses_patch_delete() -> None:
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "Z"}],
                        "env": [{"$patch": "delete", "name": "VERSION"}], "name": "web"}]}}}}
    out = smp(deployment(), patch)
    assert containers(out)[0]["env"] == [{"name": "A", "value": "1"}, {"name": "Z", "value": "z"}]
    assert directive_keys(out) == []


def test_rollout_restart_adds_template_annotation() -> None:
    out = smp(deployment(), {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}})
    assert out["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}
    assert out["spec"]["template"]["spec"] == deployment()["spec"]["template"]["spec"]


def test_client_side_apply_three_way_patch() -> None:
    last_applied = '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"}}\n'
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
                     "labels": {"tier": None}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "logger"}],
                "containers": [{"name": "web", "$setElementOrder/ports": [{"containerPort": 80},
                                                                           {"containerPort": 8080}],
                                "ports": [{"containerPort": 8080, "protocol": "TCP"},
                                          {"containerPort": 443, "$patch": "delete"}]},
                               {"name": "logger", "image": "fluentd:1"},
                               {"name": "sidecar", "$patch": "delete"}],
                "$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
                "volumes": [{"$retainKeys": ["name", "secret"], "name": "cfg", "configMap": None,
                             "secret": {"secretName": "s"}}],
            }},
        },
    }
    out = smp(deployment(), patch)
    assert out["metadata"]["annotations"] == {
        "deployment.kubernetes.io/revision": "2", "kubectl.kubernetes.io/last-applied-configuration": last_applied}
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert [c["name"] for c in containers(out)] == ["web", "logger"]
    assert containers(out)[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"},
                                           {"containerPort": 8080, "protocol": "TCP"}]
    assert containers(out)[1] == {"name": "logger", "image": "fluentd:1"}
    assert out["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "emptyDir": {}}, {"name": "cfg", "secret": {"secretName": "s"}}]
    assert directive_keys(out) == []


def test_strategy_change_to_recreate_exact_kubectl_body() -> None:
    out = smp(deployment(), b'{"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"}}}')
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_must_list_every_patched_field() -> None:
    with pytest.raises(errors.BadRequest) as e:
        smp(deployment(), {"spec": {"strategy": {"$retainKeys": ["type"], "type": "RollingUpdate",
                                                 "rollingUpdate": {"maxSurge": 1}}}})
    assert e.value.code == 400 and e.value.message == "invalid patch format of retainKeys"
    with pytest.raises(errors.BadRequest):
        smp(deployment(), {"spec": {"strategy": {"$retainKeys": "type"}}})


def test_ports_merge_by_container_port() -> None:
    out = smp(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "ports": [{"containerPort": 443, "name": "tls"}]}]}}}})
    assert containers(out)[0]["ports"] == [{"containerPort": 80, "protocol": "TCP"},
                                           {"containerPort": 443, "protocol": "TCP", "name": "tls"}]


def test_volumes_merge_by_name_and_volume_mounts_by_mount_path() -> None:
    out = smp(deployment(), {"spec": {"template": {"spec": {
        "volumes": [{"name": "data", "emptyDir": {"medium": "Memory"}}],
        "containers": [{"name": "web", "volumeMounts": [{"mountPath": "/etc/cfg", "name": "other"}]}]}}}})
    spec = out["spec"]["template"]["spec"]
    assert spec["volumes"] == [{"name": "data", "emptyDir": {"medium": "Memory"}},
                               {"name": "cfg", "configMap": {"name": "cfg"}}]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"},
                                                     {"name": "other", "mountPath": "/etc/cfg", "readOnly": True}]


def test_new_list_item_without_set_element_order_goes_first_like_kubernetes() -> None:
    # Kubernetes' ordering rule puts an item it cannot place (not in the live list) before the live ones; the
    # kubectl docs show the same for `kubectl patch` adding a container.
    out = smp(deployment(), {"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "redis"}]}}}})
    assert [c["name"] for c in containers(out)] == ["new", "web", "sidecar"]


def test_tolerations_have_no_merge_key_so_they_are_replaced() -> None:
    out = smp(deployment(), {"spec": {"template": {"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}}})
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "c", "operator": "Exists"}]


def test_finalizers_are_a_union_and_delete_from_primitive_list() -> None:
    out = smp(deployment(), {"metadata": {"finalizers": ["example.com/b", "example.com/c"]}})
    assert out["metadata"]["finalizers"] == ["example.com/a", "example.com/b", "example.com/c"]
    out = smp(deployment(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}})
    assert out["metadata"]["finalizers"] == ["example.com/b"]
    out = smp(deployment(), {"metadata": {"$setElementOrder/finalizers": ["example.com/b", "example.com/a"]}})
    assert out["metadata"]["finalizers"] == ["example.com/b", "example.com/a"]
    out = smp(deployment(), {"metadata": {"finalizers": None}})
    assert "finalizers" not in out["metadata"]


def test_labels_merge_and_null_deletes() -> None:
    out = smp(deployment(), {"metadata": {"labels": {"tier": None, "env": "prod"}}})
    assert out["metadata"]["labels"] == {"app": "web", "env": "prod"}


def test_patch_replace_and_delete_directives_on_maps_and_lists() -> None:
    out = smp(deployment(), {"spec": {"template": {"spec": {"nodeSelector": {"$patch": "replace", "zone": "a"}}}}})
    assert out["spec"]["template"]["spec"]["nodeSelector"] == {"zone": "a"}
    out = smp(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "x"}]}}}})
    assert containers(out) == [{"name": "only", "image": "x"}]
    # Kubernetes leaves an emptied map behind for `$patch: delete` on a live map, and drops a new one
    out = smp(deployment(), {"metadata": {"labels": {"$patch": "delete"}, "annotations": None}})
    assert out["metadata"]["labels"] == {} and "annotations" not in out["metadata"]
    out = smp(deployment(), {"spec": {"template": {"spec": {"securityContext": {"$patch": "delete"}}}}})
    assert "securityContext" not in out["spec"]["template"]["spec"]
    assert directive_keys(out) == []


def test_replace_strategy_map_is_replaced_whole() -> None:
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web", "tier": "front"}}}}
    out = smp(pdb, {"spec": {"selector": {"matchLabels": {"app": "api"}}}}, PDB)
    assert out["spec"]["selector"] == {"matchLabels": {"app": "api"}}


def test_service_ports_merge_by_port() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}], "selector": {"app": "web"}}}
    out = smp(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, SERVICE)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090, "protocol": "TCP"}]


def test_new_fields_get_directives_applied_and_nulls_dropped() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    out = smp(pod, {"metadata": {"labels": {"a": "1", "b": None}},
                    "spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "gone", "$patch": "delete"}],
                             "containers": [{"name": "c", "env": [{"name": "E", "value": "1", "valueFrom": None}]}]}},
              POD)
    assert out["metadata"]["labels"] == {"a": "1"}
    assert out["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]
    assert out["spec"]["containers"] == [{"name": "c", "image": "i", "env": [{"name": "E", "value": "1"}]}]


def test_unknown_fields_are_plain_maps_and_replaced_lists() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"},
          "extra": {"keep": 1, "list": [1, 2]}}
    out = smp(cm, {"data": {"b": "2"}, "extra": {"list": [3], "new": True}}, CONFIGMAP)
    assert out["data"] == {"a": "1", "b": "2"}
    assert out["extra"] == {"keep": 1, "list": [3], "new": True}


def test_dollar_keys_that_are_not_directives_survive() -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "foos.example.com"},
           "spec": {"group": "example.com", "names": {"kind": "Foo", "plural": "foos"}, "scope": "Namespaced",
                    "versions": [{"name": "v1", "served": True, "storage": True}]}}
    schema = {"openAPIV3Schema": {"type": "object", "properties": {"x": {"$ref": "#/definitions/x"}}}}
    out = smp(crd, {"spec": {"versions": [{"name": "v1", "served": True, "storage": True, "schema": schema}]}}, CRD)
    assert out["spec"]["versions"][0]["schema"] == schema


def test_strategic_merge_patch_never_mutates_or_shares_its_inputs() -> None:
    live = deployment()
    patch = {"metadata": {"labels": {"x": "y"}}, "spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "NEW", "value": "1"}]}], "extra": {"a": [1]}}}}}
    live_before, patch_before = copy.deepcopy(live), copy.deepcopy(patch)
    out = apply_strategic_merge_patch(live, patch, DEPLOYMENT)
    assert live == live_before and patch == patch_before
    out["spec"]["template"]["spec"]["extra"]["a"].append(2)
    containers(out)[1]["image"] = "changed"
    out["status"]["replicas"] = 99
    assert live == live_before and patch == patch_before


def test_strategic_merge_patch_errors() -> None:
    with pytest.raises(errors.BadRequest):
        smp(deployment(), b"{not json")
    with pytest.raises(errors.BadRequest):
        smp(deployment(), b"[1, 2]")
    with pytest.raises(errors.UnsupportedMediaType) as e:
        apply_strategic_merge_patch({"kind": "Foo"}, b"{}", None)
    assert e.value.code == 415 and "application/merge-patch+json" in e.value.message
    with pytest.raises(errors.InternalError) as e:     # Kubernetes passes this one through: 500
        smp(deployment(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})
    assert "does not contain declared merge key: name" in e.value.message
    with pytest.raises(PatchRejected) as e:
        smp({"metadata": {"finalizers": [["a"]]}}, {"metadata": {"finalizers": [["nested"]]}})
    assert e.value.code == 422 and e.value.detail == "lists of lists are not supported"
    with pytest.raises(errors.InternalError):
        smp(deployment(), {"metadata": {"finalizers": [["nested"]]}})
    with pytest.raises(errors.InternalError) as e:   # patch list items out of $setElementOrder's order
        smp(deployment(), {"metadata": {"$setElementOrder/finalizers": ["example.com/a", "example.com/b"],
                                        "finalizers": ["example.com/b", "example.com/a"]}})
    assert "doesn't match $setElementOrder list" in e.value.message
    with pytest.raises(errors.BadRequest):
        smp(deployment(), {"metadata": {"$setElementOrderfinalizers": []}})
    assert smp(deployment(), b"null") == deployment()


def test_strategic_merge_patch_of_a_deployment_is_fast() -> None:
    live = deployment()
    body = json.dumps({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "VERSION"}, {"name": "Z"}],
                        "env": [{"name": "VERSION", "value": "2"}], "name": "web", "image": "busybox:2"}]}}}}).encode()
    apply_strategic_merge_patch(live, body, DEPLOYMENT)
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        apply_strategic_merge_patch(live, body, DEPLOYMENT)
    assert (time.perf_counter() - start) / n < 0.002


# ---------------------------------------------------------------------------------------------------------------
# JSON merge patch

def test_merge_patch_label_annotate_scale_shapes() -> None:
    live = deployment()
    out = apply_merge_patch(live, b'{"metadata":{"labels":{"env":"prod","tier":null}}}')
    assert out["metadata"]["labels"] == {"app": "web", "env": "prod"}
    out = apply_merge_patch(live, b'{"metadata":{"annotations":{"note":"hi"}}}')
    assert out["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "2", "note": "hi"}
    out = apply_merge_patch(live, {"spec": {"replicas": 5}})
    assert out["spec"]["replicas"] == 5 and out["spec"]["template"] == live["spec"]["template"]
    assert live == deployment()


def test_merge_patch_replaces_lists_whole_and_prunes_nulls_in_new_values() -> None:
    out = apply_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [{"name": "only"}]}}},
                                           "metadata": {"ownerReferences": None},
                                           "extra": {"a": 1, "b": None}})
    assert containers(out) == [{"name": "only"}]
    assert out["extra"] == {"a": 1}
    out = apply_merge_patch({"a": "scalar"}, {"a": {"b": {"c": None, "d": 1}}})
    assert out == {"a": {"b": {"d": 1}}}


def test_merge_patch_errors() -> None:
    for body in (b"{oops", b"null", b'"text"', b"3"):
        with pytest.raises(errors.BadRequest) as e:
            apply_merge_patch(deployment(), body)
        assert e.value.message == "Invalid JSON Patch"
    with pytest.raises(errors.Invalid) as e:
        apply_merge_patch(deployment(), b"[]")
    assert e.value.code == 422


def test_merge_patch_does_not_share_structure() -> None:
    patch = {"spec": {"template": {"spec": {"tolerations": [{"key": "x"}]}}}}
    out = apply_merge_patch(deployment(), patch)
    out["spec"]["template"]["spec"]["tolerations"][0]["key"] = "changed"
    assert patch["spec"]["template"]["spec"]["tolerations"][0]["key"] == "x"


# ---------------------------------------------------------------------------------------------------------------
# JSON patch

def test_rollout_undo_json_patch() -> None:
    live = deployment()
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "busybox:0"}]}}
    body = json.dumps([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "3"}},
    ]).encode()
    out = apply_json_patch(live, body)
    assert out["spec"]["template"] == template
    assert out["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "3"}
    assert live == deployment()


def test_json_patch_operations_and_escapes() -> None:
    live = {"metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "web", "a~b": "1"}},
            "spec": {"items": [1, 2, 3]}}
    out = apply_json_patch(live, [
        {"op": "test", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "web"},
        {"op": "add", "path": "/metadata/labels/example.com~1team", "value": "core"},
        {"op": "remove", "path": "/metadata/labels/a~0b"},
        {"op": "replace", "path": "/spec/items/0", "value": 10},
        {"op": "add", "path": "/spec/items/-", "value": 4},
        {"op": "add", "path": "/spec/items/1", "value": 15},
        {"op": "copy", "from": "/metadata/name", "path": "/metadata/generateName"},
        {"op": "move", "from": "/spec/items", "path": "/spec/values"},
    ])
    assert out == {"metadata": {"name": "x", "generateName": "x",
                                "labels": {"app.kubernetes.io/name": "web", "example.com/team": "core"}},
                   "spec": {"values": [10, 15, 2, 3, 4]}}
    assert live["spec"]["items"] == [1, 2, 3]


def test_json_patch_failures_are_422_invalid() -> None:
    for ops in ([{"op": "test", "path": "/metadata/name", "value": "other"}],
                [{"op": "remove", "path": "/metadata/missing"}],
                [{"op": "replace", "path": "/nope/deeper", "value": 1}],
                [{"op": "frobnicate", "path": "/metadata"}]):
        with pytest.raises(PatchRejected) as e:
            apply_json_patch(deployment(), json.dumps(ops).encode())
        status = e.value.status()
        assert status["code"] == 422 and status["reason"] == "Invalid"
        assert status["message"] == "the server rejected our request due to an error in our request"
        assert status["details"]["causes"][0]["message"]
        assert isinstance(e.value, errors.Invalid)


def test_json_patch_malformed_bodies() -> None:
    for body in (b"{not json", b'{"op": "add"}', b'["add"]'):
        with pytest.raises(errors.BadRequest):
            apply_json_patch(deployment(), body)
    with pytest.raises(errors.RequestEntityTooLarge):
        apply_json_patch({}, [{"op": "test", "path": "", "value": {}}] * 10001)
    with pytest.raises(errors.Invalid):
        apply_json_patch(deployment(), [{"op": "replace", "path": "", "value": [1]}])
