"""Validation with Kubernetes' rules and wording: each case names the field and the message users would see."""
from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from kates.api import errors
from kates.api.defaulting import apply_defaults, prepare_for_create
from kates.api.resources import BUILTIN, ResourceType
from kates.api.validation import cron, formats, validate_create, validate_status_update, validate_update

RT = {(r.group, r.kind): r for r in BUILTIN}
KIND = {kind: (group, kind) for group, kind in RT if group not in ("events.k8s.io",)}

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
               "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
               "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def rt_of(kind: str) -> ResourceType:
    return RT[KIND[kind]]


def prepared(kind: str, obj: dict[str, Any], uid: str = "5f0c-uid") -> dict[str, Any]:
    """What the server hands to validation: defaults applied, uid assigned, create hooks run."""
    obj = copy.deepcopy(obj)
    rt = rt_of(kind)
    apply_defaults(rt, obj)
    obj.setdefault("metadata", {})["uid"] = uid
    prepare_for_create(rt, obj)
    return obj


def create_errors(kind: str, obj: dict[str, Any], *, defaults: bool = True) -> list[str]:
    """`field: message` for every cause, [] when valid."""
    obj = prepared(kind, obj) if defaults else obj
    try:
        validate_create(rt_of(kind), obj)
    except errors.Invalid as e:
        return [f"{c['field']}: {c['message']}" for c in e.causes]
    return []


def update_errors(kind: str, new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    new = copy.deepcopy(new)
    apply_defaults(rt_of(kind), new)
    try:
        validate_update(rt_of(kind), new, old)
    except errors.Invalid as e:
        return [f"{c['field']}: {c['message']}" for c in e.causes]
    return []


def meta(name: str = "x", namespace: str | None = "default") -> dict[str, Any]:
    return {"name": name, "namespace": namespace} if namespace else {"name": name}


def ctr(**extra: Any) -> dict[str, Any]:
    return {"name": "app", "image": "nginx:1.25", **extra}


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": meta("p"), "spec": {"containers": [ctr()], **spec}}


def deployment(**spec: Any) -> dict[str, Any]:
    base = {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [ctr()]}}}
    return {"metadata": meta("web"), "spec": {**base, **spec}}


def service(**spec: Any) -> dict[str, Any]:
    return {"metadata": meta("svc"), "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}


def job(**spec: Any) -> dict[str, Any]:
    base = {"template": {"spec": {"restartPolicy": "Never", "containers": [ctr()]}}}
    return {"metadata": meta("pi"), "spec": {**base, **spec}}


def cronjob(schedule: str = "*/5 * * * *", name: str = "nightly", **spec: Any) -> dict[str, Any]:
    return {"metadata": meta(name), "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {
        "spec": {"restartPolicy": "OnFailure", "containers": [ctr()]}}}}, **spec}}


# --- the Invalid error itself -----------------------------------------------------------------------------------------

def test_invalid_configmap_name_uses_kubernetes_wording() -> None:
    with pytest.raises(errors.Invalid) as info:
        validate_create(rt_of("ConfigMap"), {"metadata": {"name": "Not_Valid", "namespace": "default"}})
    err = info.value
    assert err.code == 422
    assert err.causes == [{"reason": "FieldValueInvalid", "field": "metadata.name",
                           "message": f'Invalid value: "Not_Valid": {SUBDOMAIN_MSG}'}]
    assert err.message == f'ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value: "Not_Valid": {SUBDOMAIN_MSG}'
    status = err.status()
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "ConfigMap"


def test_several_causes_are_reported_together_with_group_qualified_kind() -> None:
    with pytest.raises(errors.Invalid) as info:
        validate_create(rt_of("Deployment"), prepared("Deployment", deployment(
            replicas=-1, template={"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}})))
    err = info.value
    assert err.message.startswith('Deployment.apps "web" is invalid: [')
    assert {c["field"] for c in err.causes} == {"spec.replicas", "spec.template.spec.containers[0].image"}
    assert err.status()["details"]["group"] == "apps"


# --- metadata -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,name,namespace,expected", [
    ("ConfigMap", "my.config-1", "default", []),
    ("ConfigMap", "Not_Valid", "default", [f'metadata.name: Invalid value: "Not_Valid": {SUBDOMAIN_MSG}']),
    ("ConfigMap", "a" * 254, "default", ['metadata.name: Invalid value: "' + "a" * 254
                                         + '": must be no more than 253 characters']),
    ("Pod", "web-0.sub", "default", []),
    ("Namespace", "Team", None, [f'metadata.name: Invalid value: "Team": {LABEL_MSG}']),
    ("Namespace", "a.b", None, ['metadata.name: Invalid value: "a.b": must not contain dots']),
    ("Service", "1web", "default", [f'metadata.name: Invalid value: "1web": {DNS1035_MSG}']),
    ("Node", "node-1.example.com", None, []),
    ("ClusterRole", "system:controller:job-controller", None, []),
    ("ClusterRole", "a/b", None, ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]),
    ("Role", "..", "default", ["metadata.name: Invalid value: \"..\": may not be '..'"]),
])
def test_name_formats(kind: str, name: str, namespace: str | None, expected: list[str]) -> None:
    obj = {"metadata": meta(name, namespace)}
    if kind == "Pod":
        obj["spec"] = {"containers": [ctr()]}
    if kind == "Service":
        obj["spec"] = {"ports": [{"port": 80}]}
    if kind == "ClusterRole" or kind == "Role":
        obj["rules"] = []
    assert create_errors(kind, obj) == expected


def test_name_required_namespace_required_and_forbidden() -> None:
    assert create_errors("ConfigMap", {"metadata": {"namespace": "default"}}) == [
        "metadata.name: Required value: name or generateName is required"]
    assert create_errors("ConfigMap", {"metadata": {"name": "c"}}) == ["metadata.namespace: Required value"]
    assert create_errors("Node", {"metadata": {"name": "n", "namespace": "default"}}) == [
        "metadata.namespace: Forbidden: not allowed on this type"]


def test_labels_and_annotations() -> None:
    errs = create_errors("ConfigMap", {"metadata": {**meta("c"), "labels": {
        "app": "ok", "example.com/role": "db", "bad key": "v", "k": "x" * 64, "Example.com/x": "v"}}})
    assert errs == [
        'metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric characters, \'-\', \'_\' '
        "or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
        "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        f'metadata.labels: Invalid value: "{"x" * 64}": must be no more than 63 characters',
        'metadata.labels: Invalid value: "Example.com/x": prefix part ' + SUBDOMAIN_MSG,
    ]
    assert create_errors("ConfigMap", {"metadata": {**meta("c"), "annotations": {"Example.com/Note": "x"}}}) == []
    big = {"a": "x" * (256 * 1024)}
    assert create_errors("ConfigMap", {"metadata": {**meta("c"), "annotations": big}}) == [
        "metadata.annotations: Too long: must have at most 262144 bytes"]


def test_owner_references_and_finalizers() -> None:
    errs = create_errors("ConfigMap", {"metadata": {**meta("c"), "finalizers": ["example.com/cleanup", "a/b/c"],
                                                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                                         "name": "d"}]}})
    assert errs[0].startswith('metadata.ownerReferences.uid: Invalid value: "": must not be empty')
    assert errs[1].startswith('metadata.finalizers: Invalid value: "a/b/c": a qualified name must consist of')


def test_metadata_update_rules() -> None:
    old = prepared("ConfigMap", {"metadata": meta("c")})
    renamed = copy.deepcopy(old)
    renamed["metadata"]["name"] = "d"
    assert update_errors("ConfigMap", renamed, old) == ['metadata.name: Invalid value: "d": field is immutable']
    deleting = copy.deepcopy(old)
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    more = copy.deepcopy(deleting)
    more["metadata"]["finalizers"] = ["example.com/f"]
    assert update_errors("ConfigMap", more, deleting) == [
        'metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new '
        'finalizers []string{"example.com/f"}']


# --- workloads ------------------------------------------------------------------------------------------------------

def test_valid_workloads_pass() -> None:
    assert create_errors("Deployment", deployment()) == []
    assert create_errors("ReplicaSet", deployment()) == []
    assert create_errors("DaemonSet", deployment()) == []
    assert create_errors("StatefulSet", deployment(serviceName="web", volumeClaimTemplates=[
        {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                 "resources": {"requests": {"storage": "1Gi"}}}}],
        template={"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            ctr(volumeMounts=[{"name": "data", "mountPath": "/data"}])]}})) == []
    assert create_errors("ReplicationController", {"metadata": meta("rc"), "spec": {"template": {
        "metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [ctr()]}}}}) == []
    assert create_errors("Job", job()) == []
    assert create_errors("CronJob", cronjob()) == []
    assert create_errors("PodTemplate", {"metadata": meta("t"), "template": {"spec": {"containers": [ctr()]}}}) == []


@pytest.mark.parametrize("spec,expected", [
    ({"template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [ctr()]}}},
     ['spec.template.metadata.labels: Invalid value: map[string]string{"app":"api"}: `selector` does not match '
      'template `labels`']),
    ({"selector": None}, ["spec.selector: Required value"]),
    ({"selector": {}}, ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
                        "deployment"]),
    ({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
     ["spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or "
      "'NotIn'",
      'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:'
      '[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"app", Operator:"In", Values:[]string(nil)}}}: '
      'invalid label selector']),
    ({"replicas": -1}, ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]),
    ({"strategy": {"type": "BlueGreen"}},
     ['spec.strategy.type: Unsupported value: "BlueGreen": supported values: "Recreate", "RollingUpdate"']),
    ({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}},
     ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]),
    ({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}},
     ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0"]),
    ({"strategy": {"rollingUpdate": {"maxSurge": "x%", "maxUnavailable": "150%"}}},
     ["spec.strategy.rollingUpdate.maxSurge: Invalid value: x%: a valid percent string must be a numeric string "
      "followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
      "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be greater than 100%"]),
    ({"progressDeadlineSeconds": 10, "minReadySeconds": 10},
     ["spec.progressDeadlineSeconds: Invalid value: 10: must be greater than minReadySeconds"]),
    ({"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"restartPolicy": "Never",
                                                                     "containers": [ctr()]}}},
     ['spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']),
])
def test_deployment_rules(spec: dict[str, Any], expected: list[str]) -> None:
    assert create_errors("Deployment", deployment(**spec)) == expected


def test_deployment_selector_is_immutable() -> None:
    old = prepared("Deployment", deployment())
    new = deployment(selector={"matchLabels": {"app": "web", "tier": "fe"}},
                     template={"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"containers": [ctr()]}})
    new["metadata"] = old["metadata"]
    assert update_errors("Deployment", new, old) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "tier":"fe"}, '
        'MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable']
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 5
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    assert update_errors("Deployment", scaled, old) == []


def test_replica_set_daemon_set_and_rc_rules() -> None:
    assert create_errors("ReplicaSet", deployment(selector={})) == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]
    assert create_errors("DaemonSet", deployment(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": 1, "maxSurge": 1}})) == [
        "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"]
    assert create_errors("DaemonSet", deployment(updateStrategy={"type": "Sometimes"})) == [
        'spec.updateStrategy.type: Unsupported value: "Sometimes": supported values: "OnDelete", "RollingUpdate"']
    old = prepared("DaemonSet", deployment())
    moved = copy.deepcopy(old)
    moved["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    moved["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    assert update_errors("DaemonSet", moved, old)[0].endswith("field is immutable")
    rc = {"metadata": meta("rc"), "spec": {"selector": {"app": "a"}, "template": {
        "metadata": {"labels": {"app": "b"}}, "spec": {"containers": [ctr()]}}}}
    assert create_errors("ReplicationController", rc) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"b"}: `selector` does not match '
        'template `labels`']


def test_stateful_set_rules() -> None:
    assert create_errors("StatefulSet", deployment(podManagementPolicy="Random")) == [
        "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"]
    assert create_errors("StatefulSet", deployment(template={"metadata": {"labels": {"app": "web"}}, "spec": {
        "containers": [ctr(volumeMounts=[{"name": "data", "mountPath": "/d"}])]}})) == [
        'spec.template.spec.containers[0].volumeMounts[0].name: Not found: "data"']
    old = prepared("StatefulSet", deployment(serviceName="web"))
    renamed = copy.deepcopy(old)
    renamed["spec"]["serviceName"] = "other"
    assert update_errors("StatefulSet", renamed, old) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
        "forbidden"]
    scaled = copy.deepcopy(old)
    scaled["spec"]["replicas"] = 3
    assert update_errors("StatefulSet", scaled, old) == []


@pytest.mark.parametrize("spec,expected", [
    ({"template": {"spec": {"restartPolicy": "Always", "containers": [ctr()]}}},
     ['spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"']),
    ({"completionMode": "Indexed", "completions": None, "parallelism": 2},
     ["spec.completions: Required value: when completion mode is Indexed"]),
    ({"backoffLimit": -1}, ["spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"]),
    ({"manualSelector": True}, ["spec.selector: Required value"]),
])
def test_job_rules(spec: dict[str, Any], expected: list[str]) -> None:
    assert create_errors("Job", job(**spec)) == expected


def test_job_selector_is_generated_not_user_supplied() -> None:
    errs = create_errors("Job", job(selector={"matchLabels": {"app": "pi"}}))
    assert 'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"pi", ' \
           '"batch.kubernetes.io/controller-uid":"5f0c-uid"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: ' \
           '`selector` not auto-generated' in errs
    manual = job(manualSelector=True, selector={"matchLabels": {"app": "pi"}},
                 template={"metadata": {"labels": {"app": "pi"}},
                           "spec": {"restartPolicy": "Never", "containers": [ctr()]}})
    assert create_errors("Job", manual) == []


def test_job_validated_before_uid_assignment_accepts_missing_selector() -> None:
    obj = job()
    apply_defaults(rt_of("Job"), obj)
    validate_create(rt_of("Job"), obj)


def test_job_selector_and_template_are_immutable() -> None:
    old = prepared("Job", job())
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox"
    assert update_errors("Job", new, old) == [
        "spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"]
    new = copy.deepcopy(old)
    new["spec"]["selector"]["matchLabels"]["extra"] = "x"
    assert any(e.startswith("spec.selector: Invalid value: v1.LabelSelector") and e.endswith("field is immutable")
               for e in update_errors("Job", new, old))
    new = copy.deepcopy(old)
    new["spec"]["suspend"] = True
    new["spec"]["parallelism"] = 3
    assert update_errors("Job", new, old) == []


@pytest.mark.parametrize("schedule,expected", [
    ("0 * * * *", []),
    ("@daily", []),
    ("@every 1h30m", []),
    ("*/15 9-17 * JAN-MAR mon-fri", []),
    ("", ["spec.schedule: Required value"]),
    ("* * * *", ['spec.schedule: Invalid value: "* * * *": expected exactly 5 fields, found 4: [* * * *]']),
    ("0 0 * * * *", ['spec.schedule: Invalid value: "0 0 * * * *": expected exactly 5 fields, found 6: '
                     '[0 0 * * * *]']),
    ("60 * * * *", ['spec.schedule: Invalid value: "60 * * * *": end of range (60) above maximum (59): 60']),
    ("@fortnightly", ['spec.schedule: Invalid value: "@fortnightly": unrecognized descriptor: @fortnightly']),
    ("x * * * *", ['spec.schedule: Invalid value: "x * * * *": failed to parse int from x: strconv.Atoi: parsing '
                   '"x": invalid syntax']),
    ("TZ=UTC 0 * * * *", ['spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in '
                          'schedule, use timeZone field instead']),
])
def test_cron_job_schedule(schedule: str, expected: list[str]) -> None:
    assert create_errors("CronJob", cronjob(schedule)) == expected


def test_cron_job_other_rules() -> None:
    long_name = "n" * 53
    assert create_errors("CronJob", cronjob(name=long_name)) == [
        f'metadata.name: Invalid value: "{long_name}": must be no more than 52 characters']
    assert create_errors("CronJob", cronjob(concurrencyPolicy="Sometimes")) == [
        'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"']
    assert create_errors("CronJob", cronjob(timeZone="Mars/Olympus")) == [
        'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus']
    assert create_errors("CronJob", cronjob(timeZone="Europe/Paris")) == []


def test_cron_schedule_next_activation() -> None:
    sched = cron.parse("30 2 * * 1")
    after = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)  # a Wednesday
    assert sched.next_after(after) == dt.datetime(2024, 5, 6, 2, 30, tzinfo=dt.timezone.utc)
    assert cron.parse("@hourly").next_after(after) == dt.datetime(2024, 5, 1, 13, 0, tzinfo=dt.timezone.utc)
    # day-of-month and day-of-week both restricted: either matches.
    either = cron.parse("0 0 13 * 5")
    assert either.next_after(after) == dt.datetime(2024, 5, 3, 0, 0, tzinfo=dt.timezone.utc)


# --- pods -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,expected", [
    ({"containers": []}, ["spec.containers: Required value"]),
    ({"containers": [ctr(), ctr()]}, ['spec.containers[1].name: Duplicate value: "app"']),
    ({"containers": [ctr(name="App_1")]}, [f'spec.containers[0].name: Invalid value: "App_1": {LABEL_MSG}']),
    ({"containers": [{"name": "app"}]}, ["spec.containers[0].image: Required value"]),
    ({"containers": [ctr(ports=[{"containerPort": 70000}])]},
     ["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
    ({"containers": [ctr(ports=[{"containerPort": 0}])]}, ["spec.containers[0].ports[0].containerPort: Required value"]),
    ({"containers": [ctr(ports=[{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}])]},
     ['spec.containers[0].ports[1].name: Duplicate value: "http"']),
    ({"containers": [ctr(ports=[{"containerPort": 80, "protocol": "HTTP"}])]},
     ['spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"']),
    ({"restartPolicy": "Sometimes"},
     ['spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"']),
    ({"dnsPolicy": "Google"}, ['spec.dnsPolicy: Unsupported value: "Google": supported values: '
                               '"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"']),
    ({"containers": [ctr(imagePullPolicy="Sometimes")]},
     ['spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", '
      '"IfNotPresent", "Never"']),
    ({"containers": [ctr(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}})]},
     ['spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1']),
    ({"containers": [ctr(resources={"requests": {"memory": "-1Gi"}})]},
     ['spec.containers[0].resources.requests[memory]: Invalid value: "-1Gi": must be greater than or equal to 0']),
    ({"containers": [ctr(resources={"requests": {"cpu": "lots"}})]},
     ['spec.containers[0].resources.requests[cpu]: Invalid value: "lots": quantities must match the regular '
      "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"]),
    ({"containers": [ctr(volumeMounts=[{"name": "data", "mountPath": "/data"}])]},
     ['spec.containers[0].volumeMounts[0].name: Not found: "data"']),
    ({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]},
     ['spec.volumes[1].name: Duplicate value: "v"']),
    ({"volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]},
     ["spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"]),
    ({"volumes": [{"name": "v", "configMap": {"name": "c", "defaultMode": 0o1000}}]},
     ["spec.volumes[0].configMap.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), "
      "both inclusive"]),
    ({"containers": [ctr(livenessProbe={"exec": {"command": ["true"]}, "httpGet": {"port": 80}})]},
     ["spec.containers[0].livenessProbe.httpGet: Forbidden: may not specify more than 1 handler type"]),
    ({"containers": [ctr(livenessProbe={"tcpSocket": {"port": 80}, "successThreshold": 2})]},
     ["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"]),
    ({"containers": [ctr(readinessProbe={"periodSeconds": 5})]},
     ["spec.containers[0].readinessProbe: Required value: must specify a handler type"]),
    ({"containers": [ctr(env=[{"name": "A=B", "value": "x"}])]},
     ['spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only '
      "of printable ASCII characters other than '='"]),
    ({"containers": [ctr(env=[{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])]},
     ['spec.containers[0].env[0].valueFrom: Invalid value: "": may not be specified when `value` is not empty']),
    ({"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
     ['spec.tolerations[0].operator: Invalid value: core.Toleration{Key:"k", Operator:"Exists", Value:"v", '
      "Effect:\"\", TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is 'Exists'"]),
    ({"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]},
     ["spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when "
      "`tolerationSeconds` is set"]),
    ({"activeDeadlineSeconds": 0},
     ["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"]),
    ({"nodeSelector": {"disk": "fast ssd"}},
     ['spec.nodeSelector: Invalid value: "fast ssd": a valid label must be an empty string or consist of '
      "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
      "'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?"
      "[A-Za-z0-9])?')"]),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}},
     ["spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required value: "
      "must have at least one node selector term"]),
    ({"initContainers": [ctr(name="init", livenessProbe={"exec": {"command": ["x"]}})]},
     ["spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without "
      "restartPolicy=Always"]),
    ({"initContainers": [ctr(name="app")]}, ['spec.containers[0].name: Duplicate value: "app"']),
    ({"ephemeralContainers": [{"name": "debug", "image": "busybox"}]},
     ["spec.ephemeralContainers: Forbidden: cannot be set on create"]),
])
def test_pod_rules(spec: dict[str, Any], expected: list[str]) -> None:
    assert create_errors("Pod", pod(**spec)) == expected


def test_valid_pod_with_the_usual_features_passes() -> None:
    assert create_errors("Pod", pod(
        containers=[ctr(ports=[{"name": "http", "containerPort": 8080}],
                        env=[{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                             {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                        envFrom=[{"configMapRef": {"name": "settings"}}],
                        resources={"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                        readinessProbe={"httpGet": {"path": "/ready", "port": "http"}},
                        volumeMounts=[{"name": "cfg", "mountPath": "/etc/app", "subPath": "app.conf"}])],
        initContainers=[ctr(name="proxy", restartPolicy="Always", readinessProbe={"tcpSocket": {"port": 15000}})],
        volumes=[{"name": "cfg", "configMap": {"name": "settings", "items": [{"key": "a", "path": "app.conf"}]}}],
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
        affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50,
                  "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                      "labelSelector": {"matchLabels": {"app": "x"}}}}]}},
        topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
    )) == []


def test_pod_update_rules() -> None:
    old = prepared("Pod", pod(activeDeadlineSeconds=100, tolerations=[{"key": "gpu", "operator": "Exists"}]))
    image = copy.deepcopy(old)
    image["spec"]["containers"][0]["image"] = "nginx:1.26"
    image["metadata"]["labels"] = {"new": "label"}
    assert update_errors("Pod", image, old) == []
    tolerate = copy.deepcopy(old)
    tolerate["spec"]["tolerations"].append({"key": "k", "operator": "Exists", "effect": "NoSchedule"})
    assert update_errors("Pod", tolerate, old) == []
    shorter = copy.deepcopy(old)
    shorter["spec"]["activeDeadlineSeconds"] = 50
    assert update_errors("Pod", shorter, old) == []
    longer = copy.deepcopy(old)
    longer["spec"]["activeDeadlineSeconds"] = 200
    assert update_errors("Pod", longer, old) == [
        "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"]
    untolerate = copy.deepcopy(old)
    untolerate["spec"]["tolerations"] = untolerate["spec"]["tolerations"][1:]
    assert update_errors("Pod", untolerate, old) == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
    ports = copy.deepcopy(old)
    ports["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    [err] = update_errors("Pod", ports, old)
    assert err.startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
        "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n")
    assert "spec.containers" in err
    more = copy.deepcopy(old)
    more["spec"]["containers"].append(ctr(name="sidecar"))
    assert update_errors("Pod", more, old) == ["spec.containers: Forbidden: pod updates may not add or remove containers"]


def test_pod_status_update_is_light() -> None:
    old = prepared("Pod", pod())
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}]}
    validate_status_update(rt_of("Pod"), new, old)
    new["status"]["podIP"] = "nope"
    with pytest.raises(errors.Invalid) as info:
        validate_status_update(rt_of("Pod"), new, old)
    assert info.value.causes[0]["field"] == "status.podIP"


# --- services -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,expected", [
    ({}, []),
    ({"ports": [{"port": 70000}]},
     ["spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
      "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
    ({"ports": []}, ["spec.ports: Required value"]),
    ({"ports": [], "clusterIP": "None"}, []),
    ({"type": "ExternalName", "ports": [], "selector": None}, ["spec.externalName: Required value"]),
    ({"type": "ExternalName", "externalName": "db.example.com.", "ports": []}, []),
    ({"type": "Magic"}, ['spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", '
                         '"LoadBalancer", "NodePort"']),
    ({"ports": [{"port": 80, "nodePort": 30080}]},
     ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
    ({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]},
     ["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports "
      "is 30000-32767"]),
    ({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, []),
    ({"ports": [{"port": 80}, {"port": 443}]},
     ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]),
    ({"ports": [{"name": "web", "port": 80}, {"name": "web", "port": 443}]},
     ['spec.ports[1].name: Duplicate value: "web"']),
    ({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]},
     ['spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
      'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}']),
    ({"ports": [{"port": 80, "targetPort": "HTTP"}]},
     ['spec.ports[0].targetPort: Invalid value: "HTTP": must contain only alpha-numeric characters (a-z, 0-9), and '
      'hyphens (-)', 'spec.ports[0].targetPort: Invalid value: "HTTP": must contain at least one letter (a-z)']),
    ({"externalTrafficPolicy": "Local"},
     ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services']),
    ({"clusterIP": "10.0.0.300"},
     ['spec.clusterIPs[0]: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or '
      '2001:db8::ffff)']),
    ({"sessionAffinity": "Cookie"},
     ['spec.sessionAffinity: Unsupported value: "Cookie": supported values: "ClientIP", "None"']),
])
def test_service_rules(spec: dict[str, Any], expected: list[str]) -> None:
    assert create_errors("Service", service(**spec)) == expected


def test_service_cluster_ip_is_immutable_except_via_external_name() -> None:
    old = prepared("Service", service(clusterIP="10.96.0.10"))
    moved = copy.deepcopy(old)
    moved["spec"]["clusterIP"] = "10.96.0.11"
    moved["spec"]["clusterIPs"] = ["10.96.0.11"]
    assert update_errors("Service", moved, old) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.11"}: may not change once set']
    omitted = copy.deepcopy(old)   # `kubectl replace` of the original manifest: the allocated IP is kept
    del omitted["spec"]["clusterIP"], omitted["spec"]["clusterIPs"]
    assert update_errors("Service", omitted, old) == []
    dual = prepared("Service", service(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10", "fd00::10"],
                                       ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv4", "IPv6"]))
    single = copy.deepcopy(dual)
    single["spec"]["clusterIPs"] = ["10.96.0.10"]
    assert update_errors("Service", single, dual) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.10"}: `ipFamilyPolicy` must be set to '
        "'SingleStack' when releasing the secondary clusterIP"]
    external = {"metadata": old["metadata"], "spec": {"type": "ExternalName", "externalName": "db.example.com"}}
    assert update_errors("Service", external, old) == []
    ports = copy.deepcopy(old)
    ports["spec"]["ports"][0]["port"] = 8080
    assert update_errors("Service", ports, old) == []


# --- networking -----------------------------------------------------------------------------------------------------

def ingress(path: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": meta("ing"), "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [path]}}]}}


BACKEND = {"service": {"name": "web", "port": {"number": 80}}}


@pytest.mark.parametrize("path,expected", [
    ({"path": "/", "pathType": "Prefix", "backend": BACKEND}, []),
    ({"path": "/", "backend": BACKEND}, ["spec.rules[0].http.paths[0].pathType: Required value: pathType must be "
                                         "specified"]),
    ({"path": "/", "pathType": "Regex", "backend": BACKEND},
     ['spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: "Exact", '
      '"ImplementationSpecific", "Prefix"']),
    ({"path": "api", "pathType": "Exact", "backend": BACKEND},
     ['spec.rules[0].http.paths[0].path: Invalid value: "api": must be an absolute path']),
    ({"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80,
                                                                                          "name": "http"}}}},
     ['spec.rules[0].http.paths[0].backend: Invalid value: "": cannot set both port name & port number']),
    ({"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web"}}},
     ["spec.rules[0].http.paths[0].backend: Required value: port name or number is required"]),
    ({"path": "/", "pathType": "Prefix", "backend": {}},
     ['spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is required']),
])
def test_ingress_rules(path: dict[str, Any], expected: list[str]) -> None:
    assert create_errors("Ingress", ingress(path)) == expected


def test_ingress_host_and_network_policy() -> None:
    bad = ingress({"path": "/", "pathType": "Prefix", "backend": BACKEND})
    bad["spec"]["rules"][0]["host"] = "10.0.0.1"
    assert create_errors("Ingress", bad)[0] == \
        'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address'
    wildcard = ingress({"path": "/", "pathType": "Prefix", "backend": BACKEND})
    wildcard["spec"]["rules"][0]["host"] = "*.example.com"
    assert create_errors("Ingress", wildcard) == []
    netpol = {"metadata": meta("np"), "spec": {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}, "podSelector": {}}],
        "ports": [{"port": 80, "endPort": 70}]}]}}
    assert create_errors("NetworkPolicy", netpol) == [
        "spec.ingress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`",
        'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "192.168.0.0/16": must be a strict subset of '
        '`cidr`',
        "spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer"]


# --- config and secrets ---------------------------------------------------------------------------------------------

def test_config_map_rules() -> None:
    assert create_errors("ConfigMap", {"metadata": meta("c"), "data": {"app.conf": "x", "bad key": "y"},
                                       "binaryData": {"app.conf": "eA=="}}) == [
        "data[app.conf]: Invalid value: \"app.conf\": duplicate of key present in binaryData",
        "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', "
        "'_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
        "'[-._a-zA-Z0-9]+')"]
    assert create_errors("ConfigMap", {"metadata": meta("c"), "data": {"big": "x" * (1024 * 1024 + 1)}}) == [
        "[]: Too long: must have at most 1048576 bytes"]
    old = prepared("ConfigMap", {"metadata": meta("c"), "data": {"a": "1"}, "immutable": True})
    changed = copy.deepcopy(old)
    changed["data"]["a"] = "2"
    assert update_errors("ConfigMap", changed, old) == ["data: Forbidden: field is immutable when `immutable` is set"]
    thawed = copy.deepcopy(old)
    thawed["immutable"] = False
    assert update_errors("ConfigMap", thawed, old) == [
        "immutable: Forbidden: field is immutable when `immutable` is set"]
    mutable = prepared("ConfigMap", {"metadata": meta("c"), "data": {"a": "1"}})
    edited = copy.deepcopy(mutable)
    edited["data"]["a"] = "2"
    assert update_errors("ConfigMap", edited, mutable) == []


def test_secret_rules() -> None:
    assert create_errors("Secret", {"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}) \
        == ["data[tls.key]: Required value"]
    assert create_errors("Secret", {"metadata": meta("s"), "type": "kubernetes.io/service-account-token"}) == [
        "metadata.annotations[kubernetes.io/service-account.name]: Required value"]
    assert create_errors("Secret", {"metadata": meta("s"), "type": "kubernetes.io/dockerconfigjson",
                                    "stringData": {".dockerconfigjson": '{"auths": {}}'}}) == []
    assert create_errors("Secret", {"metadata": meta("s"), "data": {"k": "not base64!"}}) == [
        'data[k]: Invalid value: "<secret contents redacted>": illegal base64 data']
    old = prepared("Secret", {"metadata": meta("s"), "stringData": {"a": "b"}})
    retyped = copy.deepcopy(old)
    retyped["type"] = "kubernetes.io/basic-auth"
    retyped["data"]["username"] = "dQ=="
    assert update_errors("Secret", retyped, old) == ['type: Invalid value: "kubernetes.io/basic-auth": field is '
                                                     'immutable']
    frozen = prepared("Secret", {"metadata": meta("s"), "stringData": {"a": "b"}, "immutable": True})
    edited = {**copy.deepcopy(frozen), "stringData": {"a": "c"}}
    assert update_errors("Secret", edited, frozen) == ["data: Forbidden: field is immutable when `immutable` is set"]


# --- other kinds ----------------------------------------------------------------------------------------------------

def test_rbac_rules() -> None:
    binding = {"metadata": meta("rb"), "roleRef": {"kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"},
                            {"kind": "Robot", "name": "r2"}]}
    assert create_errors("RoleBinding", binding) == [
        'subjects[1].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"']
    crb = {"metadata": meta("crb", None), "roleRef": {"kind": "Role", "name": "r"},
           "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}
    assert create_errors("ClusterRoleBinding", crb) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
        "subjects[0].namespace: Required value"]
    old = prepared("RoleBinding", {**binding, "subjects": binding["subjects"][:1]})
    moved = copy.deepcopy(old)
    moved["roleRef"]["name"] = "edit"
    assert update_errors("RoleBinding", moved, old) == [
        'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", '
        'Name:"edit"}: cannot change roleRef']
    role = {"metadata": meta("r"), "rules": [{"verbs": ["get"], "resources": ["pods"]},
                                             {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}
    assert create_errors("Role", role) == [
        "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        'rules[1].nonResourceURLs: Invalid value: []string{"/healthz"}: namespaced rules cannot apply to '
        'non-resource URLs']


def test_node_namespace_and_claims() -> None:
    node = {"metadata": meta("n1", None), "spec": {"taints": [
        {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "cpu", "effect": "NoSchedule"}, {"key": "x", "effect": "Sometimes"}]}}
    assert create_errors("Node", node) == [
        'metadata.taints[1]: Duplicate value: core.Taint{Key:"dedicated", Value:"cpu", Effect:"NoSchedule", '
        'TimeAdded:<nil>}: taints must be unique by key and effect pair',
        'metadata.taints[2].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", '
        '"PreferNoSchedule", "NoExecute"']
    old_node = prepared("Node", {"metadata": meta("n1", None), "spec": {"podCIDRs": ["10.244.1.0/24"]}})
    moved = copy.deepcopy(old_node)
    moved["spec"]["podCIDRs"] = ["10.244.2.0/24"]
    assert update_errors("Node", moved, old_node) == [
        'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid']
    assert create_errors("Namespace", {"metadata": meta("ns", None), "spec": {"finalizers": ["custom"]}}) == [
        'spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully '
        'qualified']
    claim = {"metadata": meta("data"), "spec": {"accessModes": ["ReadWriteOnce"],
                                                "resources": {"requests": {"storage": "1Gi"}}}}
    assert create_errors("PersistentVolumeClaim", claim) == []
    assert create_errors("PersistentVolumeClaim", {"metadata": meta("data"), "spec": {}}) == [
        "spec.accessModes: Required value: at least 1 access mode is required", "spec.resources[storage]: Required value"]
    old = prepared("PersistentVolumeClaim", claim)
    bigger = copy.deepcopy(old)
    bigger["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert update_errors("PersistentVolumeClaim", bigger, old) == [
        "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName "
        "for bound claims"]
    bound_old = {**copy.deepcopy(old), "status": {"phase": "Bound"}}
    bound_new = {**copy.deepcopy(bigger), "status": {"phase": "Bound"}}
    assert update_errors("PersistentVolumeClaim", bound_new, bound_old) == []


def test_scaling_policy_scheduling_storage_and_crds() -> None:
    hpa = {"metadata": meta("h"), "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                              "name": "web"}, "minReplicas": 5, "maxReplicas": 2}}
    assert create_errors("HorizontalPodAutoscaler", hpa) == [
        "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"]
    pdb = {"metadata": meta("pdb"), "spec": {"minAvailable": 1, "maxUnavailable": "50%",
                                             "selector": {"matchLabels": {"app": "web"}}}}
    assert create_errors("PodDisruptionBudget", pdb) == [
        "spec: Invalid value: policy.PodDisruptionBudgetSpec{...}: minAvailable and maxUnavailable cannot be both set"]
    assert create_errors("PriorityClass", {"metadata": meta("high", None), "value": 2_000_000_000}) == [
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    assert create_errors("PriorityClass", {"metadata": meta("system-node-critical", None),
                                           "value": 2000001000}) == []
    sc = prepared("StorageClass", {"metadata": meta("fast", None), "provisioner": "rancher.io/local-path"})
    assert create_errors("StorageClass", sc, defaults=False) == []
    changed = copy.deepcopy(sc)
    changed["parameters"] = {"type": "ssd"}
    assert update_errors("StorageClass", changed, sc) == ["parameters: Forbidden: updates to parameters are forbidden."]
    lease = {"metadata": meta("l"), "spec": {"leaseDurationSeconds": 0}}
    assert create_errors("Lease", lease) == ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    crd = {"metadata": meta("widgets.example.com", None), "spec": {
        "group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
        "versions": [{"name": "v1", "served": True, "storage": True}]}}
    assert create_errors("CustomResourceDefinition", crd) == []
    wrong = {**crd, "metadata": meta("gadgets.example.com", None)}
    assert create_errors("CustomResourceDefinition", wrong) == [
        'metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group']
    slice_ = {"metadata": meta("web-abc"), "addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}],
              "ports": [{"port": 80}]}
    assert create_errors("EndpointSlice", slice_) == [
        'endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address']


def test_custom_resources_get_metadata_checks_only() -> None:
    rt = ResourceType("example.com", "v1", "widgets", "Widget", True)
    validate_create(rt, {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta("w1"),
                         "spec": {"anything": ["goes", 1]}})
    with pytest.raises(errors.Invalid) as info:
        validate_create(rt, {"metadata": {**meta("W1"), "labels": {"ok": "not ok!"}}})
    assert info.value.message.startswith('Widget.example.com "W1" is invalid: [metadata.name: Invalid value: "W1"')
    assert [c["field"] for c in info.value.causes] == ["metadata.name", "metadata.labels"]


@pytest.mark.parametrize("check,value,ok", [
    (formats.dns1123_label, "a" * 63, True),
    (formats.dns1123_label, "a" * 64, False),
    (formats.dns1123_subdomain, "a.b-c.d", True),
    (formats.dns1035_label, "a1", True),
    (formats.dns1035_label, "1a", False),
    (formats.qualified_name, "kubernetes.io/hostname", True),
    (formats.qualified_name, "/x", False),
    (formats.label_value, "", True),
    (formats.config_map_key, "..data", False),
    (formats.port_name, "http-alt", True),
    (formats.port_name, "a-very-long-port-name", False),
])
def test_formats(check: Any, value: str, ok: bool) -> None:
    assert (check(value) == []) is ok


def test_service_type_change_validates_once_prepared() -> None:
    from kates.api.defaulting import prepare_for_update
    old = prepared("Service", service(type="NodePort", clusterIP="10.96.0.30",
                                      ports=[{"port": 80, "nodePort": 30080}]))
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    apply_defaults(rt_of("Service"), new)
    prepare_for_update(rt_of("Service"), new, old)
    validate_update(rt_of("Service"), new, old)
