"""kates.api.protobuf: decoding the protobuf bodies the real kubectl sends.

The fixtures are real kubectl POST bodies (see protobuf_fixtures/README.md; protobuf_fixtures/capture.py makes
them). Where kubectl can also print the object (`--dry-run=client -o json`), the decoding must equal that JSON
form exactly. The rest are small hand-encoded messages for what kubectl never sends (times, managedFields,
raw extensions, malformed bodies).
"""
from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from kates.api.errors import BadRequest, UnsupportedMediaType
from kates.api.protobuf import MAGIC, decode, supported_kinds

FIXTURES = Path(__file__).parent / "protobuf_fixtures"
PB_NAMES = sorted(p.stem for p in FIXTURES.glob("*.pb"))
JSON_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    return decode((FIXTURES / f"{name}.pb").read_bytes())


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def test_fixtures_are_there() -> None:
    assert len(PB_NAMES) >= 30 and len(JSON_NAMES) >= 25
    assert set(JSON_NAMES) <= set(PB_NAMES)


@pytest.mark.parametrize("name", JSON_NAMES)
def test_decoding_equals_kubectls_json_form(name: str) -> None:
    expected = without_nulls(json.loads((FIXTURES / f"{name}.json").read_text()))
    assert load(name) == expected


@pytest.mark.parametrize("name", PB_NAMES)
def test_every_fixture_decodes(name: str) -> None:
    obj = load(name)
    assert obj["apiVersion"] and obj["kind"]
    assert isinstance(obj.get("metadata"), dict)


# ---- the real kubectl's bodies, field by field ----------------------------------------------------------------

def test_deployment() -> None:
    d = load("deployment")
    assert (d["apiVersion"], d["kind"]) == ("apps/v1", "Deployment")
    assert d["metadata"] == {"name": "web", "labels": {"app": "web"}}
    spec = d["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    assert spec["strategy"] == {}
    template = spec["template"]
    assert template["metadata"]["labels"] == {"app": "web"}
    [c] = template["spec"]["containers"]
    assert c["name"] == "busybox" and c["image"] == "busybox"
    assert c["ports"] == [{"containerPort": 8080}]
    assert c["resources"] == {}
    assert d["status"] == {}
    assert "creationTimestamp" not in d["metadata"]          # a zero time on the wire: JSON null, left out


def test_deployment_zero_replicas_is_kept() -> None:
    d = load("deployment_zero")
    assert d["metadata"]["namespace"] == "apps"
    assert d["spec"]["replicas"] == 0                       # pointer field: present on the wire, so kept
    [c] = d["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "nginx:1.27" and c["command"] == ["sleep", "3600"]


def test_deployment_two_containers() -> None:
    d = load("deployment_multi")
    assert d["spec"]["replicas"] == 1
    assert [(c["name"], c["image"]) for c in d["spec"]["template"]["spec"]["containers"]] == [
        ("nginx", "nginx"), ("redis", "redis:7")]


def test_configmap_literals() -> None:
    cm = load("configmap_literal")
    assert cm["kind"] == "ConfigMap" and cm["apiVersion"] == "v1"
    assert cm["data"] == {"color": "blue", "size": "10"}
    assert "binaryData" not in cm


def test_configmap_from_files_with_binary_data() -> None:
    cm = load("configmap_file")
    assert cm["data"] == {"hello.txt": "hello, world\n"}
    assert base64.b64decode(cm["binaryData"]["blob.bin"]) == bytes(range(256))


def test_secret_generic() -> None:
    s = load("secret_generic")
    assert s["type"] == "Opaque"
    assert {k: base64.b64decode(v) for k, v in s["data"].items()} == {"username": b"admin", "password": b"s3cr3t"}


def test_secret_from_binary_file() -> None:
    s = load("secret_file")
    assert base64.b64decode(s["data"]["blob.bin"]) == bytes(range(256))
    assert "type" not in s


def test_secret_tls() -> None:
    s = load("secret_tls")
    assert s["type"] == "kubernetes.io/tls"
    assert base64.b64decode(s["data"]["tls.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY-----" in base64.b64decode(s["data"]["tls.key"])


def test_secret_docker_registry() -> None:
    s = load("secret_docker_registry")
    assert s["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(s["data"][".dockerconfigjson"]))
    entry = config["auths"]["registry.example.com"]
    assert (entry["username"], entry["password"], entry["email"]) == ("bob", "hunter2", "bob@example.com")
    assert base64.b64decode(entry["auth"]) == b"bob:hunter2"


def test_service_clusterip() -> None:
    svc = load("service_clusterip")
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["selector"] == {"app": "backend"}
    assert spec["ports"] == [
        {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
        {"name": "443-8443", "protocol": "TCP", "port": 443, "targetPort": 8443},
    ]
    assert svc["status"] == {"loadBalancer": {}}


def test_service_nodeport() -> None:
    spec = load("service_nodeport")["spec"]
    assert spec["type"] == "NodePort"
    assert spec["ports"] == [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080,
                              "nodePort": 30080}]


def test_service_headless_and_externalname() -> None:
    assert load("service_headless")["spec"]["clusterIP"] == "None"
    ext = load("service_externalname")["spec"]
    assert (ext["type"], ext["externalName"]) == ("ExternalName", "example.com")
    assert "ports" not in ext


def test_job() -> None:
    job = load("job")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"] == [{"name": "once", "image": "busybox", "command": ["echo", "hello"], "resources": {}}]


def test_cronjob() -> None:
    cj = load("cronjob")
    assert cj["spec"]["schedule"] == "*/5 * * * *"
    job_template = cj["spec"]["jobTemplate"]
    assert job_template["metadata"] == {"name": "tick"}
    pod = job_template["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["containers"][0]["command"] == ["date"]


def test_job_from_cronjob_carries_a_rich_pod_spec() -> None:
    job = load("job_from_cronjob")
    meta = job["metadata"]
    assert meta["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual", "team": "ops"}
    assert meta["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                                        "uid": "00000000-0000-0000-0000-000000000004", "controller": True}]
    spec = job["spec"]
    assert (spec["parallelism"], spec["completions"], spec["backoffLimit"]) == (2, 3, 0)
    assert spec["suspend"] is False and spec["completionMode"] == "Indexed"
    assert spec["ttlSecondsAfterFinished"] == 100 and spec["activeDeadlineSeconds"] == 600
    assert spec["podFailurePolicy"] == {"rules": [{"action": "FailJob",
                                                   "onExitCodes": {"operator": "In", "values": [42]}}]}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["terminationGracePeriodSeconds"] == 0 and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == 0 and pod["securityContext"]["runAsNonRoot"] is False


def test_debug_copy_pod_spec() -> None:
    pod = load("debug_copy")
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    assert pod["metadata"] == {"name": "rich-debug", "namespace": "default", "annotations": {"note": "rich pod"}}
    spec = pod["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["scratch"] == {"name": "scratch", "emptyDir": {}}
    assert volumes["mem"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    assert volumes["cfg"]["configMap"] == {"name": "settings", "items": [{"key": "color", "path": "color.txt"}],
                                           "defaultMode": 420}
    assert volumes["sec"]["secret"] == {"secretName": "creds", "optional": True}
    assert volumes["host"]["hostPath"] == {"path": "/var/log", "type": "Directory"}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "data-pvc", "readOnly": True}
    assert volumes["info"]["downwardAPI"] == {"items": [{"path": "labels",
                                                         "fieldRef": {"fieldPath": "metadata.labels"}}]}
    assert volumes["all"]["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
        {"configMap": {"name": "settings"}},
        {"secret": {"name": "creds", "items": [{"key": "username", "path": "user", "mode": 256}]}},
    ]
    assert spec["initContainers"][0]["command"] == ["sh", "-c", "true"]
    box, dbg = spec["containers"]
    assert dbg == {"name": "dbg", "image": "busybox", "resources": {}, "terminationMessagePolicy": "File"}
    assert box["env"] == [
        {"name": "B", "value": "two"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password", "optional": False}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
    ]
    assert box["envFrom"] == [{"prefix": "CFG_", "configMapRef": {"name": "settings"}}]
    assert box["resources"] == {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}}
    assert box["volumeMounts"][1] == {"name": "cfg", "readOnly": True, "mountPath": "/etc/cfg", "subPath": "app"}
    assert box["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": 80, "scheme": "HTTP"},
                                    "initialDelaySeconds": 5, "periodSeconds": 10, "failureThreshold": 3}
    assert box["readinessProbe"] == {"tcpSocket": {"port": "http"}, "timeoutSeconds": 2}
    assert box["startupProbe"] == {"exec": {"command": ["cat", "/tmp/ready"]}}
    assert box["lifecycle"] == {"postStart": {"httpGet": {"path": "/started", "port": 8080}},
                                "preStop": {"exec": {"command": ["sh", "-c", "sleep 5"]}}}
    assert box["securityContext"] == {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}, "privileged": False,
                                      "runAsUser": 1000, "readOnlyRootFilesystem": True,
                                      "allowPrivilegeEscalation": False}
    assert (box["stdin"], box["tty"], box["imagePullPolicy"]) == (True, True, "IfNotPresent")
    assert spec["nodeSelector"] == {"disk": "ssd"}
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}
    [term] = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["weight"] == 100 and term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert spec["securityContext"]["sysctls"] == [{"name": "net.core.somaxconn", "value": "1024"}]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert (spec["hostname"], spec["subdomain"], spec["priority"]) == ("box-0", "boxes", 0)


def test_namespace() -> None:
    assert load("namespace") == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"},
                                 "spec": {}, "status": {}}


def test_quota() -> None:
    q = load("quota")
    assert q["spec"] == {"hard": {"cpu": "1", "memory": "1G", "pods": "2"}, "scopes": ["NotTerminating"]}


def test_serviceaccount() -> None:
    assert load("serviceaccount") == {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}


def test_role() -> None:
    role = load("role")
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert role["rules"] == [
        {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"]},
        {"verbs": ["get", "list", "watch"], "apiGroups": ["apps"], "resources": ["deployments"],
         "resourceNames": ["web"]},
    ]


def test_rolebinding() -> None:
    rb = load("rolebinding")
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}
    assert rb["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"},
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"},
        {"kind": "ServiceAccount", "name": "robot", "namespace": "default"},
    ]


def test_clusterrole() -> None:
    cr = load("clusterrole")
    assert cr["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]},
                           {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]


def test_clusterrole_aggregation_rule() -> None:
    cr = load("clusterrole_aggregate")
    assert cr["aggregationRule"] == {"clusterRoleSelectors": [
        {"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]}
    assert "rules" not in cr


def test_clusterrolebinding() -> None:
    crb = load("clusterrolebinding")
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-viewer"}
    assert crb["subjects"] == [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"}]


def test_poddisruptionbudget() -> None:
    spec = load("poddisruptionbudget")["spec"]
    assert spec == {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}
    spec = load("poddisruptionbudget_max")["spec"]
    assert spec["maxUnavailable"] == 0 and "minAvailable" not in spec     # IntOrString 0, present: kept


def test_priorityclass() -> None:
    pc = load("priorityclass")
    assert (pc["value"], pc["description"], pc["preemptionPolicy"]) == (1000, "important pods", "Never")
    assert "globalDefault" not in pc
    assert load("priorityclass_zero")["value"] == 0


def test_ingress() -> None:
    ing = load("ingress")
    assert ing["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/rewrite-target": "/"}
    spec = ing["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["foo.example.com"], "secretName": "my-cert"}]
    assert spec["rules"] == [
        {"host": "foo.example.com", "http": {"paths": [
            {"path": "/bar", "pathType": "Prefix",
             "backend": {"service": {"name": "svc1", "port": {"number": 8080}}}}]}},
        {"http": {"paths": [
            {"path": "/path", "pathType": "Exact",
             "backend": {"service": {"name": "svc2", "port": {"name": "http"}}}}]}},
    ]


def test_autoscale_v1() -> None:
    hpa = load("autoscale")
    assert (hpa["apiVersion"], hpa["kind"]) == ("autoscaling/v1", "HorizontalPodAutoscaler")
    assert hpa["spec"] == {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                           "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80}


def test_autoscale_v2() -> None:
    hpa = load("autoscale_v2")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 5)
    assert spec["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


def test_token_requests() -> None:
    tr = load("token")
    assert (tr["apiVersion"], tr["kind"]) == ("authentication.k8s.io/v1", "TokenRequest")
    assert tr["spec"] == {"audiences": ["api"], "expirationSeconds": 600}
    bound = load("token_bound")["spec"]["boundObjectRef"]
    assert bound == {"kind": "Pod", "apiVersion": "v1", "name": "rich", "uid": "00000000-0000-0000-0000-000000000003"}


def test_auth_reviews() -> None:
    ssar = load("auth_can_i")
    assert ssar["kind"] == "SelfSubjectAccessReview"
    assert ssar["spec"] == {"resourceAttributes": {"namespace": "kube-system", "verb": "list", "resource": "pods",
                                                   "subresource": "log"}}
    assert load("auth_can_i_list")["spec"] == {"namespace": "default"}
    whoami = load("auth_whoami")
    assert (whoami["apiVersion"], whoami["kind"]) == ("authentication.k8s.io/v1", "SelfSubjectReview")


def test_certificate_approve_put() -> None:
    csr = load("certificate_approve")
    assert (csr["apiVersion"], csr["kind"]) == ("certificates.k8s.io/v1", "CertificateSigningRequest")
    spec = csr["spec"]
    assert base64.b64decode(spec["request"]) == b"-----BEGIN CERTIFICATE REQUEST-----\n"
    assert spec["extra"] == {"scopes": ["a", "b"]} and spec["expirationSeconds"] == 86400
    [condition] = csr["status"]["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Approved", "True", "KubectlApprove")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", condition["lastUpdateTime"])   # a real metav1.Time


def test_supported_kinds() -> None:
    kinds = set(supported_kinds())
    for gvk in [("v1", "Pod"), ("v1", "Secret"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"),
                ("apps/v1", "ReplicaSet"), ("batch/v1", "CronJob"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
                ("networking.k8s.io/v1", "Ingress"), ("policy/v1", "PodDisruptionBudget"),
                ("scheduling.k8s.io/v1", "PriorityClass"), ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")]:
        assert gvk in kinds


# ---- hand-encoded messages ------------------------------------------------------------------------------------

def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(data)) + data


def vi(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def envelope(api_version: str, kind: str, raw: bytes, content_type: str = "", encoding: str = "") -> bytes:
    return MAGIC + ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw) + ld(3, encoding) + ld(4, content_type)


def entry(key: str, value: bytes | str) -> bytes:
    return ld(1, key) + ld(2, value)


def test_times_managed_fields_and_owner_references() -> None:
    fields_v1 = b'{"f:metadata":{"f:labels":{"f:app":{}}}}'
    meta = (ld(1, "x") + ld(5, "uid-1") + vi(7, 3) + ld(8, vi(1, 1704164645)) + ld(9, vi(1, 1704164645) + vi(2, 5))
            + vi(10, 0) + ld(11, entry("a", "b")) + ld(13, ld(5, "apps/v1") + ld(1, "ReplicaSet") + ld(3, "rs")
                                                         + ld(4, "u") + vi(6, 1) + vi(7, 0))
            + ld(14, "example.com/f")
            + ld(17, ld(1, "kubectl") + ld(2, "Apply") + ld(3, "v1") + ld(4, vi(1, 0)) + ld(6, "FieldsV1")
                 + ld(7, ld(1, fields_v1))))
    obj = decode(envelope("v1", "ConfigMap", ld(1, meta)))
    assert obj["metadata"] == {
        "name": "x", "uid": "uid-1", "generation": 3,
        "creationTimestamp": "2024-01-02T03:04:05Z",
        "deletionTimestamp": "2024-01-02T03:04:05Z",       # metav1.Time has whole seconds in JSON
        "deletionGracePeriodSeconds": 0,                    # pointer: kept
        "labels": {"a": "b"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u",
                             "controller": True, "blockOwnerDeletion": False}],
        "finalizers": ["example.com/f"],
        "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
                           "time": "1970-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}}],
    }


def test_micro_time() -> None:
    spec = ld(1, "node-1") + vi(2, 15) + ld(3, vi(1, 1704164645) + vi(2, 123456789)) + ld(4, b"") + vi(5, 0)
    lease = decode(envelope("coordination.k8s.io/v1", "Lease", ld(1, ld(1, "l")) + ld(2, spec)))
    assert lease["spec"] == {"holderIdentity": "node-1", "leaseDurationSeconds": 15,
                             "acquireTime": "2024-01-02T03:04:05.123456Z", "leaseTransitions": 0}


def test_raw_extension_json_and_nested_protobuf() -> None:
    rev = decode(envelope("apps/v1", "ControllerRevision",
                          ld(1, ld(1, "r1")) + ld(2, ld(1, b'{"spec":{"template":{}}}')) + vi(3, 7)))
    assert rev == {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r1"},
                   "data": {"spec": {"template": {}}}, "revision": 7}
    nested = envelope("v1", "Namespace", ld(1, ld(1, "inner")))
    rev = decode(envelope("apps/v1", "ControllerRevision", ld(1, ld(1, "r2")) + ld(2, ld(1, nested))))
    assert rev["data"] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "inner"}}


def test_negative_ints_packed_repeated_and_int_or_string() -> None:
    rules = ld(1, ld(1, "FailJob") + ld(2, ld(2, "NotIn") + ld(3, varint(1) + varint(2) + varint(300))))
    update = ld(1, "RollingUpdate") + ld(2, ld(1, vi(1, 1) + ld(3, "25%")) + ld(2, vi(2, 3)))
    job = decode(envelope("batch/v1", "Job", ld(2, vi(3, -5) + ld(11, rules))))
    assert job["spec"]["activeDeadlineSeconds"] == -5
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"] == {"operator": "NotIn", "values": [1, 2, 300]}
    dep = decode(envelope("apps/v1", "Deployment", ld(2, ld(4, update))))
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%",
                                                                                   "maxSurge": 3}}


def test_zero_scalars_are_dropped_unless_kept() -> None:
    port = ld(1, "") + vi(2, 0) + vi(3, 0) + ld(4, "TCP")
    container = ld(1, "c") + ld(2, "") + ld(6, port) + vi(16, 0)
    pod = decode(envelope("v1", "Pod", ld(2, ld(2, container) + vi(4, 0) + vi(21, 0) + ld(10, ""))))
    assert pod["spec"] == {"containers": [{"name": "c", "ports": [{"containerPort": 0, "protocol": "TCP"}]}],
                           "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": False}


def test_user_info_extra() -> None:
    status = ld(1, ld(1, "jane") + ld(3, "devs") + ld(4, entry("scopes", ld(1, "a") + ld(1, "b"))))
    review = decode(envelope("authentication.k8s.io/v1", "SelfSubjectReview", ld(1, b"") + ld(2, status)))
    assert review["status"] == {"userInfo": {"username": "jane", "groups": ["devs"], "extra": {"scopes": ["a", "b"]}}}


def test_unknown_fields_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kates.api.protobuf")
    raw = ld(1, ld(1, "cm") + ld(99, "future")) + vi(50, 7) + ld(2, entry("k", "v")) + varint(51 << 3 | 1) + bytes(8)
    cm = decode(envelope("v1", "ConfigMap", raw))
    assert cm == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}
    assert "unknown field 99" in caplog.text and "unknown field 50" in caplog.text


def test_json_inside_the_envelope() -> None:
    obj = decode(envelope("v1", "ConfigMap", b'{"metadata":{"name":"j"},"data":{"a":"1"}}',
                          content_type="application/json"))
    assert obj == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}, "data": {"a": "1"}}


# ---- errors ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"", b"k8s", b"{\"kind\":\"Pod\"}", b"k9s\x00" + ld(1, b"")])
def test_bad_magic(body: bytes) -> None:
    with pytest.raises(BadRequest, match="magic"):
        decode(body)


def test_truncated_bodies() -> None:
    body = (FIXTURES / "deployment.pb").read_bytes()
    for cut in (5, 10, 30, len(body) // 2, len(body) - 10, len(body) - 1):
        with pytest.raises(BadRequest, match="truncated"):
            decode(body[:cut])


def test_truncated_inner_message() -> None:
    # The envelope is whole but the object's own metadata field claims more bytes than the object has.
    with pytest.raises(BadRequest, match="truncated"):
        decode(envelope("v1", "Namespace", varint(1 << 3 | 2) + varint(50) + b"abc"))


@pytest.mark.parametrize("kind, raw, message", [
    ("Namespace", varint(1 << 3) + bytes([0xFF] * 11), "varint longer than 10 bytes"),
    ("Namespace", varint(0 << 3 | 2) + varint(0), "field number 0"),
    ("Namespace", varint(1 << 3 | 3), "wire type 3"),            # groups: never used by Kubernetes
    ("Namespace", varint(1 << 3 | 7), "wire type 7"),
    ("Namespace", vi(1, 5), "Namespace.metadata .* does not fit"),   # a message sent as a varint
    ("Secret", vi(3, 1), "Secret.type .* does not fit"),              # a string sent as a varint
    ("ConfigMap", vi(2, 1), "ConfigMap.data .* does not fit"),        # a map entry sent as a varint
    ("Pod", ld(2, ld(2, ld(1, "c") + ld(16, b""))), "containers.stdin .* does not fit"),  # a bool as bytes
])
def test_malformed_messages(kind: str, raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        decode(envelope("v1", kind, raw))


def test_deeply_nested_raw_extensions() -> None:
    body = envelope("v1", "Namespace", ld(1, ld(1, "inner")))
    for _ in range(3000):
        body = envelope("apps/v1", "ControllerRevision", ld(2, ld(1, body)))
    with pytest.raises(BadRequest, match="too deeply"):
        decode(body)


def test_bad_fields_v1_json() -> None:
    meta = ld(17, ld(7, ld(1, b"{not json")))
    with pytest.raises(BadRequest, match="valid JSON"):
        decode(envelope("v1", "Namespace", ld(1, meta)))


def test_envelope_without_kind() -> None:
    with pytest.raises(BadRequest, match="kind"):
        decode(MAGIC + ld(1, ld(1, "v1")) + ld(2, b""))
    with pytest.raises(BadRequest, match="apiVersion"):
        decode(MAGIC + ld(1, ld(2, "Pod")) + ld(2, b""))


@pytest.mark.parametrize("api_version, kind", [("v1", "Node"), ("example.com/v1", "Widget"),
                                               ("apps/v1beta1", "Deployment")])
def test_unknown_kind(api_version: str, kind: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=kind):
        decode(envelope(api_version, kind, ld(1, ld(1, "x"))))


def test_content_encoding_is_unsupported() -> None:
    with pytest.raises(UnsupportedMediaType, match="gzip"):
        decode(envelope("v1", "Namespace", b"", encoding="gzip"))
