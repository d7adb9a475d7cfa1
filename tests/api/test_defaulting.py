"""Defaults as Kubernetes 1.32 shows them in `kubectl get -o yaml`, kind by kind."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from kates.api.defaulting import apply_defaults, prepare_for_create, prepare_for_update
from kates.api.defaulting.pods import image_pull_policy, qos_class
from kates.api.resources import BUILTIN, ResourceType
from kates.api.validation import quantity

RT = {(r.group, r.kind): r for r in BUILTIN}


def defaulted(group: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    apply_defaults(RT[(group, kind)], obj)
    return obj


def container(**extra: Any) -> dict[str, Any]:
    return {"name": "app", "image": "nginx", **extra}


DEFAULTED_POD_TEMPLATE_SPEC = {
    "containers": [{
        "name": "app", "image": "nginx", "imagePullPolicy": "Always", "resources": {},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    }],
    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
    "securityContext": {}, "terminationGracePeriodSeconds": 30,
}


def test_minimal_deployment_gets_everything_kubectl_shows() -> None:
    dep = defaulted("apps", "Deployment", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container()]}}}})
    assert dep["spec"] == {
        "replicas": 1,
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": DEFAULTED_POD_TEMPLATE_SPEC},
    }
    # Templates get PodSpec defaults only, not the Pod-object / admission ones.
    for key in ("enableServiceLinks", "priority", "tolerations", "serviceAccountName", "preemptionPolicy"):
        assert key not in dep["spec"]["template"]["spec"]


def test_deployment_keeps_user_values_and_recreate_has_no_rolling_update() -> None:
    dep = defaulted("apps", "Deployment", {"metadata": {"name": "d"}, "spec": {
        "replicas": 0, "revisionHistoryLimit": 0, "strategy": {"type": "Recreate"},
        "template": {"spec": {"containers": [container()]}}}})
    assert dep["spec"]["replicas"] == 0
    assert dep["spec"]["revisionHistoryLimit"] == 0
    assert dep["spec"]["strategy"] == {"type": "Recreate"}


def test_partial_rolling_update_is_completed() -> None:
    dep = defaulted("apps", "Deployment", {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 3}}}})
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": "25%"}}


def test_pod_gets_spec_pod_and_admission_defaults() -> None:
    pod = defaulted("", "Pod", {"metadata": {"name": "p", "namespace": "default"},
                                "spec": {"containers": [container(image="nginx:1.25", ports=[{"containerPort": 80}])]}})
    spec = pod["spec"]
    assert spec["containers"] == [{
        "name": "app", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent", "resources": {},
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert spec["priority"] == 0
    assert spec["serviceAccountName"] == "default"
    assert spec["serviceAccount"] == "default"
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ]


def test_pod_existing_tolerations_are_respected() -> None:
    pod = defaulted("", "Pod", {"spec": {"containers": [container()], "tolerations": [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}})
    keys = [(t["key"], t.get("tolerationSeconds")) for t in pod["spec"]["tolerations"]]
    assert keys == [("node.kubernetes.io/not-ready", 5), ("dedicated", None), ("node.kubernetes.io/unreachable", 300)]
    everything = defaulted("", "Pod", {"spec": {"containers": [container()], "tolerations": [{"operator": "Exists"}]}})
    assert everything["spec"]["tolerations"] == [{"operator": "Exists"}]


def test_pod_priority_from_system_class_and_service_account_mirror() -> None:
    pod = defaulted("", "Pod", {"spec": {"containers": [container()], "priorityClassName": "system-node-critical",
                                         "serviceAccount": "builder"}})
    assert pod["spec"]["priority"] == 2000001000
    assert pod["spec"]["serviceAccountName"] == "builder"
    assert pod["spec"]["serviceAccount"] == "builder"


def test_pod_requests_default_to_limits_and_quantities_are_canonical() -> None:
    pod = defaulted("", "Pod", {"spec": {"containers": [container(resources={
        "limits": {"cpu": "1000m", "memory": "1.5Gi"}, "requests": {"cpu": 0.25}})]}})
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "1", "memory": "1536Mi"}, "requests": {"cpu": "250m", "memory": "1536Mi"}}
    # In a template, requests are not copied from limits.
    rs = defaulted("apps", "ReplicaSet", {"spec": {"template": {"spec": {"containers": [container(resources={
        "limits": {"cpu": "2"}})]}}}})
    assert rs["spec"]["template"]["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "2"}}


def test_host_network_pods_get_host_ports() -> None:
    pod = defaulted("", "Pod", {"spec": {"hostNetwork": True, "containers": [container(ports=[{"containerPort": 53}])]}})
    assert pod["spec"]["containers"][0]["ports"] == [{"containerPort": 53, "hostPort": 53, "protocol": "TCP"}]


@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.25", "IfNotPresent"),
    ("docker.io/library/nginx:1.25-alpine", "IfNotPresent"),
    ("localhost:5000/app", "Always"),
    ("localhost:5000/app:v1", "IfNotPresent"),
    ("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy


def test_probe_lifecycle_env_and_volume_defaults() -> None:
    pod = defaulted("", "Pod", {"spec": {
        "containers": [container(
            livenessProbe={"httpGet": {"port": 8080}},
            readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 3},
            startupProbe={"grpc": {"port": 9090}},
            lifecycle={"preStop": {"httpGet": {"port": 80, "path": "/quit"}}},
            env=[{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}])],
        "volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "s", "secret": {"secretName": "s"}},
                    {"name": "scratch"}, {"name": "host", "hostPath": {"path": "/tmp"}},
                    {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]}})
    ctr = pod["spec"]["containers"][0]
    assert ctr["livenessProbe"] == {"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                    "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert ctr["readinessProbe"]["periodSeconds"] == 3
    assert ctr["startupProbe"]["grpc"] == {"port": 9090, "service": ""}
    assert ctr["lifecycle"]["preStop"]["httpGet"] == {"port": 80, "path": "/quit", "scheme": "HTTP"}
    assert ctr["env"][0]["valueFrom"]["fieldRef"] == {"apiVersion": "v1", "fieldPath": "spec.nodeName"}
    assert pod["spec"]["volumes"] == [
        {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}},
        {"name": "s", "secret": {"secretName": "s", "defaultMode": 420}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "host", "hostPath": {"path": "/tmp", "type": ""}},
        {"name": "token", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"path": "t", "expirationSeconds": 3600}}]}},
    ]


def test_pod_spec_defaults_reach_every_template() -> None:
    tpl = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [container()]}}
    cases = [
        ("apps", "Deployment", {"spec": {"template": tpl}}, ("spec", "template")),
        ("apps", "ReplicaSet", {"spec": {"template": tpl}}, ("spec", "template")),
        ("apps", "StatefulSet", {"spec": {"template": tpl}}, ("spec", "template")),
        ("apps", "DaemonSet", {"spec": {"template": tpl}}, ("spec", "template")),
        ("", "ReplicationController", {"spec": {"template": tpl}}, ("spec", "template")),
        ("", "PodTemplate", {"template": tpl}, ("template",)),
        ("batch", "Job", {"spec": {"template": tpl}}, ("spec", "template")),
        ("batch", "CronJob", {"spec": {"jobTemplate": {"spec": {"template": tpl}}}},
         ("spec", "jobTemplate", "spec", "template")),
    ]
    for group, kind, obj, path in cases:
        node: Any = defaulted(group, kind, obj)
        for key in path:
            node = node[key]
        assert node["spec"]["containers"][0]["imagePullPolicy"] == "Always", kind
        assert node["spec"]["dnsPolicy"] == "ClusterFirst", kind
        assert node["spec"]["schedulerName"] == "default-scheduler", kind


def test_replica_set_replication_controller_stateful_set_and_daemon_set() -> None:
    rs = defaulted("apps", "ReplicaSet", {"spec": {"template": {"spec": {"containers": [container()]}}}})
    assert rs["spec"]["replicas"] == 1
    rc = defaulted("", "ReplicationController", {"metadata": {"name": "rc"}, "spec": {
        "template": {"metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [container()]}}}})
    assert rc["spec"]["replicas"] == 1
    assert rc["spec"]["selector"] == {"app": "rc"}
    assert rc["metadata"]["labels"] == {"app": "rc"}
    sts = defaulted("apps", "StatefulSet", {"spec": {
        "serviceName": "db", "template": {"spec": {"containers": [container()]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
    spec = sts["spec"]
    assert spec["replicas"] == 1
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"] == [{
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "volumeMode": "Filesystem"},
        "status": {"phase": "Pending"}}]
    on_delete = defaulted("apps", "StatefulSet", {"spec": {"updateStrategy": {"type": "OnDelete"}}})
    assert on_delete["spec"]["updateStrategy"] == {"type": "OnDelete"}
    ds = defaulted("apps", "DaemonSet", {"spec": {"template": {"spec": {"containers": [container()]}}}})
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10


def job_obj(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "pi", "namespace": "default"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container()]}}, **spec}}


def test_job_defaults() -> None:
    job = defaulted("batch", "Job", job_obj())
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert "manualSelector" not in spec and "selector" not in spec
    parallel = defaulted("batch", "Job", job_obj(parallelism=4))
    assert "completions" not in parallel["spec"] and parallel["spec"]["parallelism"] == 4
    only_completions = defaulted("batch", "Job", job_obj(completions=5))
    assert only_completions["spec"]["parallelism"] == 1
    per_index = defaulted("batch", "Job", job_obj(backoffLimitPerIndex=1, completionMode="Indexed", completions=3))
    assert per_index["spec"]["backoffLimit"] == 2147483647
    with_policy = defaulted("batch", "Job", job_obj(podFailurePolicy={"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}))
    assert with_policy["spec"]["podReplacementPolicy"] == "Failed"
    assert with_policy["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"] == [
        {"type": "DisruptionTarget", "status": "True"}]


def test_job_prepare_for_create_generates_selector_and_labels_from_uid() -> None:
    job = defaulted("batch", "Job", job_obj())
    job["metadata"]["uid"] = "1b6a2c3d-0000-4000-8000-000000000001"
    prepare_for_create(RT[("batch", "Job")], job)
    uid = job["metadata"]["uid"]
    expected = {"controller-uid": uid, "batch.kubernetes.io/controller-uid": uid, "job-name": "pi",
                "batch.kubernetes.io/job-name": "pi"}
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert job["spec"]["template"]["metadata"]["labels"] == expected
    assert job["metadata"]["labels"] == expected
    # The Job's own labels are kept when the user set different ones.
    own = defaulted("batch", "Job", {**job_obj(), "metadata": {"name": "pi", "labels": {"team": "a"}}})
    own["metadata"]["uid"] = "u"
    prepare_for_create(RT[("batch", "Job")], own)
    assert own["metadata"]["labels"] == {"team": "a"}


def test_job_manual_selector_is_left_alone() -> None:
    job = defaulted("batch", "Job", job_obj(manualSelector=True, selector={"matchLabels": {"a": "b"}}))
    job["spec"]["template"]["metadata"] = {"labels": {"a": "b"}}
    job["metadata"]["uid"] = "u"
    prepare_for_create(RT[("batch", "Job")], job)
    assert job["spec"]["selector"] == {"matchLabels": {"a": "b"}}
    assert job["spec"]["template"]["metadata"]["labels"] == {"a": "b"}


def test_cron_job_defaults() -> None:
    cj = defaulted("batch", "CronJob", {"spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": {
        "spec": {"restartPolicy": "OnFailure", "containers": [container()]}}}}}})
    spec = cj["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 1
    assert "backoffLimit" not in spec["jobTemplate"]["spec"]


@pytest.mark.parametrize("spec,expected", [
    ({"ports": [{"port": 80}], "selector": {"app": "web"}},
     {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
      "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "selector": {"app": "web"}}),
    ({"type": "NodePort", "ports": [{"port": 80, "targetPort": "http", "protocol": "UDP"}]},
     {"type": "NodePort", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "externalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
      "ports": [{"port": 80, "protocol": "UDP", "targetPort": "http"}]}),
    ({"type": "LoadBalancer", "ports": [{"port": 443, "targetPort": 0}]},
     {"type": "LoadBalancer", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
      "externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": True, "ipFamilyPolicy": "SingleStack",
      "ipFamilies": ["IPv4"], "ports": [{"port": 443, "protocol": "TCP", "targetPort": 443}]}),
    ({"type": "ExternalName", "externalName": "example.com"},
     {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}),
    ({"clusterIP": "None", "ports": [{"port": 5432}]},
     {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "sessionAffinity": "None",
      "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4"],
      "ports": [{"port": 5432, "protocol": "TCP", "targetPort": 5432}]}),
    ({"clusterIP": "fd00::10", "ports": [{"port": 53}], "selector": {"a": "b"}, "sessionAffinity": "ClientIP"},
     {"type": "ClusterIP", "clusterIP": "fd00::10", "clusterIPs": ["fd00::10"], "sessionAffinity": "ClientIP",
      "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}, "internalTrafficPolicy": "Cluster",
      "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"], "selector": {"a": "b"},
      "ports": [{"port": 53, "protocol": "TCP", "targetPort": 53}]}),
])
def test_service_defaults(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    svc = defaulted("", "Service", {"metadata": {"name": "s"}, "spec": spec})
    assert svc["spec"] == expected
    assert svc["status"] == {"loadBalancer": {}}


def test_namespace_defaults_and_create_preparation() -> None:
    ns = defaulted("", "Namespace", {"metadata": {"name": "team-a", "labels": {"x": "y"}}})
    assert ns["metadata"]["labels"] == {"x": "y", "kubernetes.io/metadata.name": "team-a"}
    assert ns["status"] == {"phase": "Active"}
    prepare_for_create(RT[("", "Namespace")], ns)
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    # The finalize subresource removes it; a plain update must not bring it back or drop it.
    old = copy.deepcopy(ns)
    new = defaulted("", "Namespace", {"metadata": {"name": "team-a"}, "spec": {"finalizers": []}})
    prepare_for_update(RT[("", "Namespace")], new, old)
    assert new["spec"]["finalizers"] == ["kubernetes"]


def test_secret_type_and_string_data() -> None:
    secret = defaulted("", "Secret", {"metadata": {"name": "s"}, "data": {"a": "eA=="},
                                      "stringData": {"password": "hunter2", "a": "y"}})
    assert secret == {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eQ==", "password": "aHVudGVyMg=="}}
    typed = defaulted("", "Secret", {"type": "kubernetes.io/tls"})
    assert typed["type"] == "kubernetes.io/tls"


def test_volumes_and_claims() -> None:
    pvc = defaulted("", "PersistentVolumeClaim", {"spec": {"accessModes": ["ReadWriteOnce"],
                                                            "resources": {"requests": {"storage": "1024Mi"}}}})
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert pvc["status"] == {"phase": "Pending"}
    pv = defaulted("", "PersistentVolume", {"spec": {"capacity": {"storage": "5Gi"}, "hostPath": {"path": "/d"}}})
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem"
    assert pv["status"] == {"phase": "Pending"}


def test_node_allocatable_defaults_to_capacity() -> None:
    node = defaulted("", "Node", {"metadata": {"name": "n1"}, "status": {"capacity": {"cpu": "4", "memory": "8Gi"}}})
    assert node["status"]["allocatable"] == {"cpu": "4", "memory": "8Gi"}


def test_limit_range_container_defaults() -> None:
    lr = defaulted("", "LimitRange", {"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"},
                                                            "min": {"memory": "64Mi"}}]}})
    item = lr["spec"]["limits"][0]
    assert item["default"] == {"cpu": "2"}
    assert item["defaultRequest"] == {"cpu": "2", "memory": "64Mi"}


def test_other_groups() -> None:
    hpa = defaulted("autoscaling", "HorizontalPodAutoscaler", {"spec": {"maxReplicas": 5, "behavior": {
        "scaleDown": {"stabilizationWindowSeconds": 60}}}})
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    assert hpa["spec"]["behavior"] == {
        "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                      "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                 {"type": "Percent", "value": 100, "periodSeconds": 15}]}}
    netpol = defaulted("networking.k8s.io", "NetworkPolicy", {"spec": {"podSelector": {}, "egress": [
        {"ports": [{"port": 53}]}]}})
    assert netpol["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert netpol["spec"]["egress"][0]["ports"] == [{"port": 53, "protocol": "TCP"}]
    rb = defaulted("rbac.authorization.k8s.io", "RoleBinding", {"roleRef": {"kind": "Role", "name": "r"}, "subjects": [
        {"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "d"}]})
    assert rb["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert rb["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"
    assert rb["subjects"][1]["apiGroup"] == ""
    assert defaulted("scheduling.k8s.io", "PriorityClass", {"value": 5})["preemptionPolicy"] == "PreemptLowerPriority"
    sc = defaulted("storage.k8s.io", "StorageClass", {"provisioner": "x.io/p"})
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("Delete", "Immediate")
    slice_ = defaulted("discovery.k8s.io", "EndpointSlice", {"addressType": "IPv4", "ports": [{"port": 80}]})
    assert slice_["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    crd = defaulted("apiextensions.k8s.io", "CustomResourceDefinition", {"spec": {"names": {"kind": "Widget",
                                                                                           "plural": "widgets"}}})
    assert crd["spec"]["names"] == {"kind": "Widget", "plural": "widgets", "singular": "widget",
                                    "listKind": "WidgetList"}
    assert crd["spec"]["conversion"] == {"strategy": "None"}


def test_defaults_are_idempotent() -> None:
    objs = [
        ("", "Pod", {"spec": {"containers": [container()]}}),
        ("", "Service", {"spec": {"ports": [{"port": 80}]}}),
        ("apps", "Deployment", {"spec": {"template": {"spec": {"containers": [container()]}}}}),
        ("apps", "StatefulSet", {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "d"}}]}}),
        ("batch", "Job", job_obj()),
        ("", "Secret", {"stringData": {"a": "b"}}),
    ]
    for group, kind, obj in objs:
        once = defaulted(group, kind, obj)
        assert defaulted(group, kind, once) == once, kind


def test_kinds_without_defaults_and_custom_resources_are_untouched() -> None:
    cm = {"metadata": {"name": "c"}, "data": {"a": "b"}}
    assert defaulted("", "ConfigMap", cm) == cm
    cr_type = ResourceType("example.com", "v1", "widgets", "Widget", True)
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    before = copy.deepcopy(widget)
    apply_defaults(cr_type, widget)
    prepare_for_create(cr_type, widget)
    assert widget == before


def test_pod_prepare_for_create_sets_phase_and_qos() -> None:
    pod = defaulted("", "Pod", {"spec": {"containers": [container()]}, "status": {"phase": "Running"}})
    prepare_for_create(RT[("", "Pod")], pod)
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


@pytest.mark.parametrize("resources,qos", [
    ([{}], "BestEffort"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}], "Burstable"),
    ([{"requests": {"cpu": "100m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
    ([{"requests": {"nvidia.com/gpu": "1"}}], "BestEffort"),
])
def test_qos_class(resources: list[dict[str, Any]], qos: str) -> None:
    pod = {"spec": {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}}
    assert qos_class(pod) == qos


def test_service_update_keeps_allocated_values() -> None:
    rt = RT[("", "Service")]
    old = defaulted("", "Service", {"spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
                                             "ports": [{"port": 80, "nodePort": 31000}]}})
    new = defaulted("", "Service", {"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}})
    prepare_for_update(rt, new, old)
    assert new["spec"]["clusterIP"] == "10.96.0.20"
    assert new["spec"]["clusterIPs"] == ["10.96.0.20"]
    assert new["spec"]["ports"][0]["nodePort"] == 31000
    assert "nodePort" not in new["spec"]["ports"][1]
    # Switching to ExternalName releases them.
    ext = defaulted("", "Service", {"spec": {"type": "ExternalName", "externalName": "db.example.com"}})
    prepare_for_update(rt, ext, old)
    assert "clusterIP" not in ext["spec"]


@pytest.mark.parametrize("raw,canonical", [
    ("1000m", "1"), ("1500m", "1500m"), ("0.5", "500m"), (2, "2"), ("3000", "3k"), ("1.5Gi", "1536Mi"),
    ("0.5Gi", "512Mi"), ("1024Mi", "1Gi"), ("512Ki", "512Ki"), ("100Mi", "100Mi"), ("1e3", "1e3"),
    ("0.0001", "1m"), ("128974848", "128974848"), ("129e6", "129e6"), ("0", "0"),
])
def test_quantity_canonical_form(raw: Any, canonical: str) -> None:
    assert quantity.canonicalize(raw) == canonical


def test_service_type_change_drops_what_only_the_old_type_had() -> None:
    rt = RT[("", "Service")]
    old = defaulted("", "Service", {"spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
                                             "ports": [{"port": 80, "nodePort": 31000}]}})
    to_cluster_ip = copy.deepcopy(old)
    to_cluster_ip["spec"]["type"] = "ClusterIP"
    apply_defaults(rt, to_cluster_ip)
    prepare_for_update(rt, to_cluster_ip, old)
    assert "nodePort" not in to_cluster_ip["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in to_cluster_ip["spec"]
    assert to_cluster_ip["spec"]["clusterIP"] == "10.96.0.20"
    to_external = copy.deepcopy(old)
    to_external["spec"].update(type="ExternalName", externalName="db.example.com")
    apply_defaults(rt, to_external)
    prepare_for_update(rt, to_external, old)
    for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy",
                "externalTrafficPolicy"):
        assert key not in to_external["spec"], key
