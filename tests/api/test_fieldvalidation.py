"""Field validation: Kubernetes 1.32 decode errors, strict/warn unknown fields, CRD schema checks, duplicates."""
from __future__ import annotations

import copy
import json
import time

import orjson
import pytest

from kates.api import errors
from kates.api.fieldvalidation import find_duplicate_fields, validate_against_schema

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "nginx", "image": "nginx:1.27", "imagePullPolicy": "Always",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": 0.1}},
                    "env": [{"name": "A", "value": "1"},
                            {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 5},
                }]},
            },
        },
    }


def check_deployment(obj: dict, strict: bool = True, **kw) -> list[str]:
    return validate_against_schema(obj, definition=DEPLOYMENT, strict=strict, kind="Deployment", name="web", **kw)


# ---------------------------------------------------------------------------------------------- built-ins

def test_valid_deployment_passes_unchanged():
    obj = deployment()
    assert check_deployment(obj) == []
    assert obj == deployment()


def test_configmap_unknown_field_strict_is_bad_request_naming_it():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "dta": {"a": "b"}}
    with pytest.raises(errors.BadRequest) as info:
        validate_against_schema(cm, definition="io.k8s.api.core.v1.ConfigMap", strict=True, kind="ConfigMap", name="c")
    assert info.value.code == 400
    assert info.value.message == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                                  'strict decoding error: unknown field "dta"')


def test_configmap_unknown_field_warn_returns_warning_and_prunes():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "dta": {"a": "b"}, "data": {"x": "y"}}
    warnings = validate_against_schema(cm, definition="io.k8s.api.core.v1.ConfigMap", strict=False,
                                       kind="ConfigMap", name="c")
    assert warnings == ['unknown field "dta"']
    assert "dta" not in cm and cm["data"] == {"x": "y"}


def test_nested_unknown_fields_are_path_qualified_in_document_order():
    obj = deployment()
    obj["metadata"]["unknownMeta"] = 1
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    obj["spec"]["unknown1"] = "x"
    with pytest.raises(errors.BadRequest) as info:
        check_deployment(obj)
    assert info.value.message.endswith(
        'strict decoding error: unknown field "metadata.unknownMeta", '
        'unknown field "spec.template.spec.containers[0].imagee", unknown field "spec.unknown1"')
    # pruned in place even when rejected
    assert "imagee" not in obj["spec"]["template"]["spec"]["containers"][0]


def test_wrong_type_replicas_is_decode_error():
    obj = deployment()
    obj["spec"]["replicas"] = "three"
    with pytest.raises(errors.BadRequest) as info:
        check_deployment(obj, strict=False)
    assert info.value.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go '
        'struct field DeploymentSpec.spec.replicas of type int32')


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["metadata"]["labels"].update(x=1),
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
    (lambda d: d["spec"].update(replicas=3.5),
     "json: cannot unmarshal number 3.5 into Go struct field DeploymentSpec.spec.replicas of type int32"),
    (lambda d: d["spec"].update(replicas=2 ** 31),
     "json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec.replicas of type int32"),
    (lambda d: d.update(spec="x"),
     "json: cannot unmarshal string into Go struct field Deployment.spec of type v1.DeploymentSpec"),
    (lambda d: d["spec"]["template"]["spec"].update(containers=["nginx"]),
     "json: cannot unmarshal string into Go struct field PodSpec.spec.template.spec.containers of type v1.Container"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image=5),
     "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string"),
    (lambda d: d["spec"].update(paused="yes"),
     "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool"),
    (lambda d: d["spec"]["strategy"]["rollingUpdate"].update(maxSurge=True),
     "json: cannot unmarshal bool into Go value of type int32"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].update(cpu="lots"),
     "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
    (lambda d: d["metadata"].update(creationTimestamp="yesterday"),
     'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"'),
])
def test_type_errors_follow_go_decoder_wording(mutate, expected):
    obj = deployment()
    mutate(obj)
    with pytest.raises(errors.BadRequest) as info:
        check_deployment(obj)
    assert info.value.message == f'Deployment in version "v1" cannot be handled as a Deployment: {expected}'


def test_int_or_string_quantity_and_null_values_accepted():
    obj = deployment()
    obj["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": 1, "maxUnavailable": "10%"}
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": 2, "memory": "1.5Gi"},
                                                                      "requests": {"cpu": "100m"}}
    obj["spec"]["revisionHistoryLimit"] = None
    obj["metadata"]["creationTimestamp"] = "2024-05-01T10:00:00Z"
    assert check_deployment(obj) == []


def test_free_form_fields_are_not_pruned():
    rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"},
           "revision": 1, "data": {"spec": {"anything": ["goes", {"deep": True}]}}}
    before = copy.deepcopy(rev)
    assert validate_against_schema(rev, definition="io.k8s.api.apps.v1.ControllerRevision", strict=True,
                                   kind="ControllerRevision", name="r") == []
    assert rev == before


def test_secret_data_must_be_base64():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "not base64!"}}
    with pytest.raises(errors.BadRequest) as info:
        validate_against_schema(secret, definition="io.k8s.api.core.v1.Secret", strict=True, kind="Secret", name="s")
    assert "illegal base64 data at input byte 3" in info.value.message
    ok = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "aGVsbG8="},
          "stringData": {"plain": "text"}}
    assert validate_against_schema(ok, definition="io.k8s.api.core.v1.Secret", strict=True, kind="Secret",
                                   name="s") == []


def test_definition_looked_up_from_kind_when_not_given():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "dta": {}}
    assert validate_against_schema(cm, strict=False, kind="ConfigMap", name="c") == ['unknown field "dta"']


def test_ignore_status_leaves_status_alone():
    obj = deployment()
    obj["status"] = {"replicas": "many", "whatever": 1}
    assert check_deployment(obj, ignore_status=True) == []
    assert obj["status"] == {"replicas": "many", "whatever": 1}


def test_validating_a_deployment_is_fast():
    objs = [deployment() for _ in range(300)]
    check_deployment(deployment())    # compile once
    start = time.perf_counter()
    for obj in objs:
        check_deployment(obj)
    per_object = (time.perf_counter() - start) / len(objs)
    assert per_object < 0.001, f"{per_object * 1e6:.0f} µs per Deployment"


# ---------------------------------------------------------------------------------------------- custom resources

WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "x-kubernetes-list-type": "set"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "x-kubernetes-preserve-unknown-fields": True},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                          "items": {"type": "object", "required": ["containerPort", "protocol"],
                                    "properties": {"containerPort": {"type": "integer", "format": "int32"},
                                                   "protocol": {"type": "string"}}}},
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def widget(**spec) -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"},
            "spec": {"size": 3, **spec}}


def check_widget(obj: dict, strict: bool = True, **kw) -> list[str]:
    return validate_against_schema(obj, schema=WIDGET_SCHEMA, strict=strict, kind="Widget", name="w",
                                   group="example.com", **kw)


def test_crd_valid_object_passes():
    obj = widget(name="abc", mode="A", port="http", tags=["a", "b"], labels={"x": "y"},
                 ports=[{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 80, "protocol": "UDP"}])
    before = copy.deepcopy(obj)
    assert check_widget(obj) == []
    assert obj == before


def test_crd_wrong_type_is_invalid_naming_field():
    with pytest.raises(errors.Invalid) as info:
        check_widget(widget(size="big"))
    err = info.value
    assert err.code == 422
    assert err.message == ('Widget.example.com "w" is invalid: spec.size: Invalid value: "string": '
                           'spec.size in body must be of type integer: "string"')
    assert err.causes == [{"reason": "FieldValueTypeInvalid", "field": "spec.size",
                           "message": 'Invalid value: "string": spec.size in body must be of type integer: "string"'}]
    assert err.status()["details"]["group"] == "example.com"


def test_crd_value_constraints():
    obj = widget(name="TOOLONG", mode="C", tags=["a", "a", "b"],
                 ports=[{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 80, "protocol": "TCP"}])
    obj["spec"]["size"] = 11
    with pytest.raises(errors.Invalid) as info:
        check_widget(obj)
    by_field = {(c["field"], c["reason"]): c["message"] for c in info.value.causes}
    assert by_field[("spec.size", "FieldValueInvalid")] == \
        "Invalid value: 11: spec.size in body should be less than or equal to 10"
    assert by_field[("spec.name", "FieldValueTooLong")] == "Too long: may not be more than 5 bytes"
    assert by_field[("spec.name", "FieldValueInvalid")] == \
        "Invalid value: \"TOOLONG\": spec.name in body should match '^[a-z]+$'"
    assert by_field[("spec.mode", "FieldValueNotSupported")] == \
        'Unsupported value: "C": supported values: "A", "B"'
    assert by_field[("spec.tags", "FieldValueTooMany")] == "Too many: 3: must have at most 2 items"
    assert ("spec.tags[1]", "FieldValueDuplicate") in by_field
    assert ("spec.ports[1]", "FieldValueDuplicate") in by_field


def test_crd_required_field():
    obj = widget()
    del obj["spec"]["size"]
    with pytest.raises(errors.Invalid) as info:
        check_widget(obj)
    assert info.value.causes == [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.size"}]


def test_crd_unknown_fields_strict_and_warn():
    with pytest.raises(errors.BadRequest) as info:
        check_widget(widget(extra=1, ports=[{"containerPort": 1, "protocol": "TCP", "unknownNested": "v"}]))
    assert info.value.message == ('Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
                                  'unknown field "spec.extra", unknown field "spec.ports[0].unknownNested"')
    obj = widget(extra=1)
    assert check_widget(obj, strict=False) == ['unknown field "spec.extra"']
    assert "extra" not in obj["spec"]


def test_crd_preserve_unknown_fields_keeps_data():
    obj = widget(config={"anything": {"nested": [1, {"deep": True}]}},
                 template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}})
    before = copy.deepcopy(obj)
    assert check_widget(obj) == []
    assert obj == before


def test_crd_metadata_checked_as_object_meta():
    obj = widget()
    obj["metadata"]["bogus"] = 1
    assert check_widget(obj, strict=False) == ['unknown field "metadata.bogus"']
    obj = widget()
    obj["metadata"]["labels"] = {"a": 1}
    with pytest.raises(errors.BadRequest):
        check_widget(obj)


def test_crd_int_or_string_and_nulls():
    with pytest.raises(errors.Invalid) as info:
        check_widget(widget(port=True))
    assert info.value.causes[0]["field"] == "spec.port"
    obj = widget(mode=None, port=8080)
    assert check_widget(obj) == []
    assert "mode" not in obj["spec"]      # nulls of non-nullable fields are dropped


def test_crd_schemaless_root_preserves_everything_but_checks_metadata():
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    obj = {"apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "t", "oops": 1}, "spec": {"a": [1]}}
    warnings = validate_against_schema(obj, schema=schema, strict=False, kind="Thing", name="t", group="x.io")
    assert warnings == ['unknown field "metadata.oops"']
    assert obj["spec"] == {"a": [1]}


def test_crd_schema_compiled_once_for_equal_schemas():
    first = copy.deepcopy(WIDGET_SCHEMA)
    second = copy.deepcopy(WIDGET_SCHEMA)
    validate_against_schema(widget(), schema=first, strict=True, kind="Widget", name="w")
    start = time.perf_counter()
    for _ in range(200):
        validate_against_schema(widget(), schema=second, strict=True, kind="Widget", name="w")
    assert (time.perf_counter() - start) / 200 < 0.001


# ---------------------------------------------------------------------------------------------- duplicates

DUP_BODY = b"""{
  "apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "web", "name": "web2"},
  "spec": {
    "unknownDupe": "a", "unknownDupe": "b",
    "paused": true, "paused": false,
    "template": {"spec": {"containers": [
      {"name": "n", "image": "i", "imagePullPolicy": "Always", "imagePullPolicy": "Never", "args": ["a\\":b", "c"]}
    ]}}
  }
}"""


def test_find_duplicate_fields_path_qualified():
    assert find_duplicate_fields(DUP_BODY) == [
        'duplicate field "metadata.name"',
        'duplicate field "spec.unknownDupe"',
        'duplicate field "spec.paused"',
        'duplicate field "spec.template.spec.containers[0].imagePullPolicy"',
    ]


@pytest.mark.parametrize("body", [
    b'{"a": "x\\":", "b": {"c": 1}, "d": [{"a": 1}, {"a": 2}]}',
    b'[{"a": 1}, {"a": 2}]',
    json.dumps(deployment(), indent=2).encode(),
    b"not json",
    b"",
])
def test_find_duplicate_fields_none(body):
    assert find_duplicate_fields(body) == []


def test_find_duplicate_fields_tricky_spellings():
    assert find_duplicate_fields(b'{"a":1, "a" :2}') == ['duplicate field "a"']
    assert find_duplicate_fields(b'{"a\\u0062":1,"ab":2}') == ['duplicate field "ab"']
    assert find_duplicate_fields('{"x":"\\":","x":1}') == ['duplicate field "x"']


def test_duplicates_join_the_strict_error_but_not_inside_unknown_fields():
    obj = orjson.loads(DUP_BODY)
    with pytest.raises(errors.BadRequest) as info:
        check_deployment(obj, duplicates=find_duplicate_fields(DUP_BODY, obj))
    assert info.value.message.endswith(
        'strict decoding error: duplicate field "metadata.name", duplicate field "spec.paused", '
        'duplicate field "spec.template.spec.containers[0].imagePullPolicy", unknown field "spec.unknownDupe"')
    obj = orjson.loads(DUP_BODY)
    warnings = check_deployment(obj, strict=False, duplicates=find_duplicate_fields(DUP_BODY, obj))
    assert 'duplicate field "spec.paused"' in warnings and 'unknown field "spec.unknownDupe"' in warnings


def test_duplicate_check_is_fast_on_big_bodies():
    data = {f"key{i}": "v" * 30 for i in range(80_000)}
    body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": data})
    assert len(body) > 3_000_000
    parsed = orjson.loads(body)
    start = time.perf_counter()
    assert find_duplicate_fields(body, parsed) == []
    assert time.perf_counter() - start < 0.25
