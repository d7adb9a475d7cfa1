"""Server-side apply and managedFields tracking (kates.api.managedfields)."""
from __future__ import annotations

import copy
import time

import pytest

from kates.api import errors
from kates.api.managedfields import fields_v1_to_paths, server_side_apply, update_managed_fields

CM = "io.k8s.api.core.v1.ConfigMap"
DEPLOY = "io.k8s.api.apps.v1.Deployment"


def cm(data: dict | None = None, labels: dict | None = None, **meta) -> dict:
    obj: dict = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "demo", "namespace": "default", **meta}}
    if labels is not None:
        obj["metadata"]["labels"] = labels
    if data is not None:
        obj["data"] = data
    return obj


def deploy(containers: list[dict], **spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
                     **spec}}


def apply(live, body, manager, force=False, definition=CM, now="2024-05-01T10:00:00Z", **kw):
    return server_side_apply(live, body, manager=manager, force=force, definition=definition, now=now, **kw)


def entry(obj: dict, manager: str, operation: str | None = None) -> dict | None:
    for e in obj["metadata"].get("managedFields", []):
        if e["manager"] == manager and (operation is None or e["operation"] == operation):
            return e
    return None


def owned(obj: dict, manager: str, operation: str | None = None) -> list[str]:
    e = entry(obj, manager, operation)
    return fields_v1_to_paths(e["fieldsV1"]) if e else []


@pytest.fixture
def alice_cm() -> dict:
    return apply(None, cm({"color": "blue"}, {"app": "demo", "tier": "a"}), "alice", now="2024-05-01T09:00:00Z")


# -- the kubectl apply --server-side scenario ------------------------------------------------------------------

def test_apply_create_records_applier_entry(alice_cm):
    assert alice_cm["data"] == {"color": "blue"}
    assert alice_cm["metadata"]["name"] == "demo" and alice_cm["metadata"]["namespace"] == "default"
    assert alice_cm["metadata"]["managedFields"] == [{
        "manager": "alice", "operation": "Apply", "apiVersion": "v1", "time": "2024-05-01T09:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:color": {}}, "f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}}},
    }]


def test_conflicting_apply_names_owner_and_field(alice_cm):
    with pytest.raises(errors.Conflict) as exc:
        apply(alice_cm, cm({"color": "green"}), "bob")
    err = exc.value
    status = err.status()
    assert status["code"] == 409 and status["reason"] == "Conflict"
    assert err.message == 'Apply failed with 1 conflict: conflict with "alice": .data.color'
    assert "conflict" in err.message
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "alice"', "field": ".data.color"}]


def test_force_moves_ownership(alice_cm):
    out = apply(alice_cm, cm({"color": "green"}), "bob", force=True, now="2024-05-01T10:00:00Z")
    assert out["data"] == {"color": "green"}
    assert ".data.color" not in owned(out, "alice")
    assert owned(out, "alice") == [".metadata.labels.app", ".metadata.labels.tier"]
    assert owned(out, "bob") == [".data.color"]
    # the labels alice still owns are untouched and her entry keeps its time
    assert out["metadata"]["labels"] == {"app": "demo", "tier": "a"}
    assert entry(out, "alice")["time"] == "2024-05-01T09:00:00Z"
    assert entry(out, "bob")["time"] == "2024-05-01T10:00:00Z"


def test_same_value_is_shared_ownership_not_conflict(alice_cm):
    out = apply(alice_cm, cm({"color": "blue"}), "bob")
    assert owned(out, "alice") == [".data.color", ".metadata.labels.app", ".metadata.labels.tier"]
    assert owned(out, "bob") == [".data.color"]


def test_reapply_without_field_another_manager_owns_keeps_it(alice_cm):
    forced = apply(alice_cm, cm({"color": "green"}), "bob", force=True)
    out = apply(forced, cm({"size": "L"}, {"app": "demo", "tier": "a"}), "alice")
    assert out["data"] == {"color": "green", "size": "L"}
    assert owned(out, "bob") == [".data.color"]


def test_reapply_without_shared_field_keeps_it(alice_cm):
    shared = apply(alice_cm, cm({"color": "blue"}), "bob")
    out = apply(shared, cm({}, {"app": "demo", "tier": "a"}), "alice")
    assert out["data"] == {"color": "blue"}
    assert owned(out, "bob") == [".data.color"]
    assert owned(out, "alice") == [".metadata.labels.app", ".metadata.labels.tier"]


def test_stop_applying_a_label_removes_it(alice_cm):
    out = apply(alice_cm, cm({"color": "blue"}, {"app": "demo"}), "alice")
    assert out["metadata"]["labels"] == {"app": "demo"}
    assert owned(out, "alice") == [".data.color", ".metadata.labels.app"]


def test_stop_applying_everything_in_a_map_removes_the_map(alice_cm):
    out = apply(alice_cm, cm({"color": "blue"}), "alice")
    assert "labels" not in out["metadata"]
    assert out["data"] == {"color": "blue"}


def test_stop_applying_a_field_an_updater_also_owns_keeps_it(alice_cm):
    # kubectl edit sets tier to the same value alice applied... then changes it: the updater owns it now
    edited = copy.deepcopy(alice_cm)
    edited["metadata"]["labels"]["tier"] = "b"
    edited = update_managed_fields(alice_cm, edited, manager="kubectl-edit", definition=CM, now="t")
    out = apply(edited, cm({"color": "blue"}, {"app": "demo"}), "alice")
    assert out["metadata"]["labels"] == {"app": "demo", "tier": "b"}


def test_apply_ignores_managed_fields_in_body_and_keeps_metadata(alice_cm):
    body = cm({"color": "blue"}, {"app": "demo", "tier": "a"})
    body["metadata"]["managedFields"] = [{"manager": "mallory", "operation": "Apply", "apiVersion": "v1",
                                          "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}]
    del body["metadata"]["namespace"]
    out = apply(alice_cm, body, "alice")
    assert [e["manager"] for e in out["metadata"]["managedFields"]] == ["alice"]
    assert out["metadata"]["namespace"] == "default"


def test_no_op_apply_keeps_time(alice_cm):
    out = apply(alice_cm, cm({"color": "blue"}, {"app": "demo", "tier": "a"}), "alice", now="2030-01-01T00:00:00Z")
    assert out["metadata"]["managedFields"] == alice_cm["metadata"]["managedFields"]


def test_inputs_are_not_mutated_and_result_is_new(alice_cm):
    before = copy.deepcopy(alice_cm)
    body = cm({"color": "green"}, {"app": "demo"})
    body_before = copy.deepcopy(body)
    out = apply(alice_cm, body, "bob", force=True)
    out["data"]["color"] = "red"
    out["metadata"]["labels"]["x"] = "y"
    assert alice_cm == before and body == body_before


def test_several_conflicts_grouped_by_manager(alice_cm):
    with pytest.raises(errors.Conflict) as exc:
        apply(alice_cm, cm({"color": "red"}, {"app": "other", "tier": "b"}), "bob")
    assert exc.value.message == (
        'Apply failed with 3 conflicts: conflicts with "alice":\n'
        "- .data.color\n- .metadata.labels.app\n- .metadata.labels.tier")
    assert [c["field"] for c in exc.value.details["causes"]] == [
        ".data.color", ".metadata.labels.app", ".metadata.labels.tier"]


# -- updates (create / update / patch) ------------------------------------------------------------------------

def test_imperative_label_change_gives_kubectl_label_ownership(alice_cm):
    new = copy.deepcopy(alice_cm)
    new["metadata"]["labels"]["tier"] = "b"
    new["metadata"]["labels"]["env"] = "prod"
    out = update_managed_fields(alice_cm, new, manager="kubectl-label", definition=CM, now="2024-05-02T00:00:00Z")
    label = entry(out, "kubectl-label")
    assert label["operation"] == "Update" and label["apiVersion"] == "v1" and label["time"] == "2024-05-02T00:00:00Z"
    assert owned(out, "kubectl-label") == [".metadata.labels.env", ".metadata.labels.tier"]
    assert owned(out, "alice") == [".data.color", ".metadata.labels.app"]
    # a later apply by alice of her old tier value now conflicts with the updater
    with pytest.raises(errors.Conflict) as exc:
        apply(out, cm({"color": "blue"}, {"app": "demo", "tier": "a"}), "alice")
    assert exc.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-label" using v1: .metadata.labels.tier')


def test_create_tracks_every_field_like_kubernetes():
    out = update_managed_fields(None, cm({"color": "blue"}, {"app": "demo"}), manager="kubectl-create",
                                definition=CM, now="t0")
    assert out["metadata"]["managedFields"] == [{
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": "t0",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {".": {}, "f:color": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
    }]
    with pytest.raises(errors.Conflict) as exc:
        apply(out, cm({"color": "green"}), "kubectl")
    assert exc.value.message == 'Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .data.color'


def test_update_that_changes_nothing_records_nothing(alice_cm):
    out = update_managed_fields(alice_cm, copy.deepcopy(alice_cm), manager="kubectl-edit", definition=CM, now="t")
    assert out["metadata"]["managedFields"] == alice_cm["metadata"]["managedFields"]


def test_removed_fields_leave_their_owners_and_empty_entries_go(alice_cm):
    new = copy.deepcopy(alice_cm)
    del new["data"]
    del new["metadata"]["labels"]
    out = update_managed_fields(alice_cm, new, manager="kubectl-edit", definition=CM, now="t")
    assert "managedFields" not in out["metadata"]


def test_updater_fields_merge_with_its_previous_entry(alice_cm):
    one = copy.deepcopy(alice_cm)
    one["data"]["a"] = "1"
    one = update_managed_fields(alice_cm, one, manager="kubectl-edit", definition=CM, now="t1")
    two = copy.deepcopy(one)
    two["data"]["b"] = "2"
    two = update_managed_fields(one, two, manager="kubectl-edit", definition=CM, now="t2")
    assert owned(two, "kubectl-edit") == [".data.a", ".data.b"]
    assert entry(two, "kubectl-edit")["time"] == "t2"


def test_existing_untracked_object_stays_untracked_until_applied():
    old = cm({"color": "blue"}, uid="u1")
    new = cm({"color": "green"}, uid="u1")
    out = update_managed_fields(old, new, manager="kubectl-edit", definition=CM, now="t")
    assert "managedFields" not in out["metadata"]
    with pytest.raises(errors.Conflict) as exc:
        apply(out, cm({"color": "red"}), "alice")
    assert 'conflict with "before-first-apply" using v1: .data.color' in exc.value.message


@pytest.mark.parametrize("reset", [[], [{}]])
def test_empty_managed_fields_in_request_strips_them(alice_cm, reset):
    new = copy.deepcopy(alice_cm)
    new["metadata"]["managedFields"] = reset
    new["data"]["size"] = "L"
    out = update_managed_fields(alice_cm, new, manager="kubectl-edit", definition=CM, now="t")
    assert "managedFields" not in out["metadata"]     # and the object stays untracked until the next apply


def test_request_managed_fields_win_on_update_but_not_on_subresources(alice_cm):
    new = copy.deepcopy(alice_cm)
    new["metadata"]["managedFields"][0]["manager"] = "carol"
    out = update_managed_fields(alice_cm, new, manager="kubectl-edit", definition=CM, now="t")
    assert [e["manager"] for e in out["metadata"]["managedFields"]] == ["carol"]
    out = update_managed_fields(alice_cm, new, manager="kubectl-edit", definition=CM, now="t", subresource="status")
    assert [e["manager"] for e in out["metadata"]["managedFields"]] == ["alice"]


def test_status_belongs_to_the_status_subresource():
    created = apply(None, deploy([{"name": "web", "image": "nginx:1"}]), "alice", definition=DEPLOY)
    body = deploy([{"name": "web", "image": "nginx:1"}])
    body["status"] = {"replicas": 7}
    out = apply(created, body, "alice", definition=DEPLOY)
    assert "status" not in out
    assert not any(p.startswith(".status") for p in owned(out, "alice"))

    new = copy.deepcopy(out)
    new["status"] = {"replicas": 2, "readyReplicas": 2}
    new["spec"]["replicas"] = 9         # the status endpoint ignores spec
    out2 = update_managed_fields(out, new, manager="kube-controller-manager", definition=DEPLOY, now="t",
                                 subresource="status")
    e = entry(out2, "kube-controller-manager")
    assert e["subresource"] == "status" and e["apiVersion"] == "apps/v1"
    assert fields_v1_to_paths(e["fieldsV1"]) == [".status", ".status.readyReplicas", ".status.replicas"]
    assert ".spec.replicas" in owned(out2, "alice")


def test_too_many_updaters_are_capped():
    obj = cm({})
    obj = update_managed_fields(None, obj, manager="m0", definition=CM, now="t00")
    for i in range(1, 13):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        obj = update_managed_fields(obj, new, manager=f"m{i}", definition=CM, now=f"t{i:02d}")
    managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(managers) == 10 and managers[0] == "ancient-changes" and managers[1:] == [f"m{i}" for i in range(4, 13)]
    bucket = entry(obj, "ancient-changes")
    assert bucket["time"] == "t03"
    assert fields_v1_to_paths(bucket["fieldsV1"]) == [".data", ".data.k1", ".data.k2", ".data.k3"]


# -- schema-driven merge ---------------------------------------------------------------------------------------

def test_deployment_container_fields_v1_encoding():
    out = apply(None, deploy([{"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}]), "alice",
                definition=DEPLOY)
    assert entry(out, "alice")["fieldsV1"] == {"f:spec": {
        "f:replicas": {},
        "f:selector": {},
        "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"web"}': {
                ".": {}, "f:image": {}, "f:name": {},
                "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
            }}},
        },
    }}
    assert '.spec.template.spec.containers[name="web"].image' in owned(out, "alice")


def test_deployment_containers_merge_by_name():
    alice = deploy([{"name": "web", "image": "nginx:1", "args": ["-a"]}])
    live = apply(None, alice, "alice", definition=DEPLOY)
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}}
    live = apply(live, sidecar, "bob", definition=DEPLOY)
    containers = live["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "sidecar"]
    assert live["spec"]["replicas"] == 2 and live["spec"]["selector"] == {"matchLabels": {"app": "web"}}

    # alice bumps her image: no conflict, bob's container untouched
    live = apply(live, deploy([{"name": "web", "image": "nginx:2", "args": ["-a"]}]), "alice", definition=DEPLOY)
    assert live["spec"]["template"]["spec"]["containers"] == [
        {"name": "web", "image": "nginx:2", "args": ["-a"]}, {"name": "sidecar", "image": "busybox"}]

    # bob touching alice's image or atomic args conflicts
    with pytest.raises(errors.Conflict) as exc:
        apply(live, {**sidecar, "spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:3", "args": ["-b"]}]}}}}, "bob", definition=DEPLOY)
    assert [c["field"] for c in exc.value.details["causes"]] == [
        '.spec.template.spec.containers[name="web"].args', '.spec.template.spec.containers[name="web"].image']

    # alice replaces web by api: web (hers only) goes, bob's sidecar stays
    live = apply(live, deploy([{"name": "api", "image": "api:1"}]), "alice", definition=DEPLOY)
    assert [c["name"] for c in live["spec"]["template"]["spec"]["containers"]] == ["sidecar", "api"]
    assert not any("web" in p for p in owned(live, "alice"))


def test_atomic_list_is_replaced_whole():
    live = apply(None, deploy([{"name": "web", "image": "x", "args": ["-a", "-b"]}]), "alice", definition=DEPLOY)
    live = apply(live, deploy([{"name": "web", "image": "x", "args": ["-c"]}]), "alice", definition=DEPLOY)
    assert live["spec"]["template"]["spec"]["containers"][0]["args"] == ["-c"]
    assert '.spec.template.spec.containers[name="web"].args' in owned(live, "alice")


def test_set_list_union_and_value_path_elements():
    live = apply(None, cm({}, finalizers=["a.example/one"]), "alice")
    live = apply(live, {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "demo", "finalizers": ["b.example/two"]}}, "bob")
    assert live["metadata"]["finalizers"] == ["a.example/one", "b.example/two"]
    assert entry(live, "bob")["fieldsV1"] == {"f:metadata": {"f:finalizers": {'v:"b.example/two"': {}}}}
    live = apply(live, cm({}), "alice")
    assert live["metadata"]["finalizers"] == ["b.example/two"]


def test_apply_item_without_its_key_is_bad_request():
    with pytest.raises(errors.BadRequest) as exc:
        apply(None, deploy([{"image": "nginx"}]), "alice", definition=DEPLOY)
    assert 'omits key field "name"' in exc.value.message
    assert ".spec.template.spec.containers" in exc.value.message


def test_duplicate_keys_in_apply_are_bad_request():
    with pytest.raises(errors.BadRequest):
        apply(None, deploy([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]), "alice", definition=DEPLOY)


# -- custom resources ------------------------------------------------------------------------------------------

def widget(spec: dict) -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"},
            "spec": spec}


def test_custom_resource_without_schema_maps_granular_lists_atomic():
    live = apply(None, widget({"size": 1, "tags": ["a"], "opts": {"x": 1}}), "alice", definition=None)
    assert entry(live, "alice")["fieldsV1"] == {"f:spec": {
        ".": {}, "f:opts": {".": {}, "f:x": {}}, "f:size": {}, "f:tags": {}}}
    live = apply(live, widget({"opts": {"y": 2}, "tags": ["b"]}), "bob", definition=None, force=True)
    assert live["spec"] == {"size": 1, "tags": ["b"], "opts": {"x": 1, "y": 2}}
    assert '.spec.tags' in owned(live, "bob") and '.spec.tags' not in owned(live, "alice")


def test_custom_resource_with_structural_schema_list_map():
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                  "items": {"type": "object", "properties": {"id": {"type": "string"}, "v": {"type": "integer"}}}},
    }}, "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    live = apply(None, widget({"items": [{"id": "a", "v": 1}]}), "alice", definition=None, schema=schema)
    assert entry(live, "alice")["fieldsV1"] == {
        "f:spec": {"f:items": {'k:{"id":"a"}': {".": {}, "f:id": {}, "f:v": {}}}}}
    live = apply(live, widget({"items": [{"id": "b", "v": 2}]}), "bob", definition=None, schema=schema)
    assert live["spec"]["items"] == [{"id": "a", "v": 1}, {"id": "b", "v": 2}]


# -- performance -----------------------------------------------------------------------------------------------

def test_deployment_apply_is_fast():
    live = apply(None, deploy([{"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}],
                                "env": [{"name": f"E{i}", "value": str(i)} for i in range(20)]}]),
                 "alice", definition=DEPLOY)
    body = deploy([{"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}],
                    "env": [{"name": f"E{i}", "value": str(i)} for i in range(20)]}])
    apply(live, body, "alice", definition=DEPLOY)   # warm the schema caches
    n = 50
    start = time.perf_counter()
    for _ in range(n):
        apply(live, body, "alice", definition=DEPLOY)
    assert (time.perf_counter() - start) / n < 0.005
