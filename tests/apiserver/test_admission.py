"""Pod admission as Kubernetes' Priority and ServiceAccount plugins do it, through the real kubectl.

One server runs only the serviceaccount controller (so `default` ServiceAccounts exist, as in every real cluster,
and ServiceAccount admission is on); the session `server` fixture (no controllers) shows the other configuration:
no serviceaccount controller, so no ServiceAccount admission (kates.apiserver.admission explains why)."""
from __future__ import annotations

import json
import re
import uuid
from typing import Any, Iterator

import pytest

from harness import Kubectl, Server

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def adm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    s = Server(tmp_path_factory.mktemp("admission"), store="memory://",
               extra=["--controllers", "serviceaccount", "--disable-scheduler", "--disable-agent"])
    s.start()
    yield Kubectl(s.kubeconfig)
    s.stop()


@pytest.fixture
def ans(adm: Kubectl) -> Iterator[str]:
    name = "a-" + uuid.uuid4().hex[:8]
    adm.run("create", "namespace", name)
    yield name
    adm.run("delete", "namespace", name, "--wait=false", check=False)


def pod(name: str, **spec: Any) -> str:
    body = {"containers": [{"name": "app", "image": "busybox"}], **spec}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body})


def create(k: Kubectl, ns: str, manifest: str, check: bool = True) -> Any:
    return k.run("create", "-n", ns, "-f", "-", input=manifest, check=check)


def test_pod_in_a_new_namespace_gets_the_default_service_account_and_its_token_volume(adm: Kubectl,
                                                                                       ans: str) -> None:
    # created right after its namespace: admission waits for the controller's `default` ServiceAccount
    create(adm, ans, pod("p", initContainers=[{"name": "init", "image": "busybox"}]))
    spec = adm.json("get", "pod", "p", "-n", ans)["spec"]
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    [vol] = spec["volumes"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", vol["name"])
    assert vol["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    for c in spec["initContainers"] + spec["containers"]:
        assert c["volumeMounts"] == [{"name": vol["name"], "readOnly": True, "mountPath": MOUNT}]


def test_missing_service_account_is_forbidden(adm: Kubectl, ans: str) -> None:
    out = create(adm, ans, pod("p", serviceAccountName="ghost"), check=False)
    assert out.returncode != 0
    assert (f'pods "p" is forbidden: error looking up service account {ans}/ghost: '
            'serviceaccount "ghost" not found') in out.stderr
    adm.run("create", "serviceaccount", "ghost", "-n", ans)
    create(adm, ans, pod("p", serviceAccountName="ghost"))
    assert adm.json("get", "pod", "p", "-n", ans)["spec"]["serviceAccountName"] == "ghost"


def test_automount_opt_outs_and_existing_mounts(adm: Kubectl, ans: str) -> None:
    adm.apply(json.dumps({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "quiet", "namespace": ans},
                          "automountServiceAccountToken": False,
                          "imagePullSecrets": [{"name": "regcred"}]}))
    create(adm, ans, pod("off", automountServiceAccountToken=False))
    assert "volumes" not in adm.json("get", "pod", "off", "-n", ans)["spec"]
    create(adm, ans, pod("sa-off", serviceAccountName="quiet"))
    spec = adm.json("get", "pod", "sa-off", "-n", ans)["spec"]
    assert "volumes" not in spec and spec["imagePullSecrets"] == [{"name": "regcred"}]
    create(adm, ans, pod("pod-wins", serviceAccountName="quiet", automountServiceAccountToken=True))
    assert adm.json("get", "pod", "pod-wins", "-n", ans)["spec"]["volumes"][0]["name"].startswith("kube-api-access-")
    # a container with its own mount at the path keeps it; the others get the token volume
    create(adm, ans, pod("own", volumes=[{"name": "mine", "emptyDir": {}}], containers=[
        {"name": "a", "image": "busybox", "volumeMounts": [{"name": "mine", "mountPath": MOUNT}]},
        {"name": "b", "image": "busybox"}]))
    spec = adm.json("get", "pod", "own", "-n", ans)["spec"]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "mine", "mountPath": MOUNT}]
    assert spec["containers"][1]["volumeMounts"][0]["name"] == spec["volumes"][1]["name"]


def test_priority_class_sets_priority_and_preemption_policy(adm: Kubectl, ans: str) -> None:
    cls = "pc-" + ans
    out = create(adm, ans, pod("p", priorityClassName=cls), check=False)
    assert out.returncode != 0 and f'pods "p" is forbidden: no PriorityClass with name {cls} was found' in out.stderr
    adm.apply(json.dumps({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": cls},
                          "value": 1000, "preemptionPolicy": "Never"}))
    try:
        create(adm, ans, pod("p", priorityClassName=cls))
        spec = adm.json("get", "pod", "p", "-n", ans)["spec"]
        assert (spec["priority"], spec["preemptionPolicy"]) == (1000, "Never")
        out = create(adm, ans, pod("q", priorityClassName=cls, priority=5), check=False)
        assert out.returncode != 0 and ("the integer value of priority (5) must not be provided in pod spec; priority "
                                        "admission controller computed 1000 from the given PriorityClass name"
                                        ) in out.stderr
        out = create(adm, ans, pod("r", priorityClassName=cls, preemptionPolicy="PreemptLowerPriority"), check=False)
        assert out.returncode != 0 and "the string value of PreemptionPolicy (PreemptLowerPriority)" in out.stderr
        # an update that omits priority keeps the admitted one (validation would refuse a change)
        live = adm.json("get", "pod", "p", "-n", ans)
        live["metadata"]["labels"] = {"x": "y"}
        del live["spec"]["priority"], live["spec"]["preemptionPolicy"]
        adm.run("replace", "-f", "-", input=json.dumps(live))
        spec = adm.json("get", "pod", "p", "-n", ans)["spec"]
        assert (spec["priority"], spec["preemptionPolicy"]) == (1000, "Never")
        create(adm, ans, pod("sys", priorityClassName="system-node-critical"))
        assert adm.json("get", "pod", "sys", "-n", ans)["spec"]["priority"] == 2000001000
        create(adm, ans, pod("plain"))
        spec = adm.json("get", "pod", "plain", "-n", ans)["spec"]
        assert (spec["priority"], spec["preemptionPolicy"]) == (0, "PreemptLowerPriority")
        assert "priorityClassName" not in spec
    finally:
        adm.run("delete", "priorityclass", cls, check=False)


def test_global_default_priority_class(adm: Kubectl, ans: str) -> None:
    first, second = "def-" + ans, "def2-" + ans
    adm.apply(json.dumps({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": first},
                          "value": 77, "globalDefault": True}))
    try:
        out = adm.run("create", "-f", "-", check=False, input=json.dumps({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": second},
            "value": 78, "globalDefault": True}))
        assert out.returncode != 0 and (f"PriorityClass {first} is already marked as default. Only one default can "
                                        "exist") in out.stderr
        create(adm, ans, pod("p"))
        spec = adm.json("get", "pod", "p", "-n", ans)["spec"]
        assert (spec["priorityClassName"], spec["priority"], spec["preemptionPolicy"]) == \
            (first, 77, "PreemptLowerPriority")
    finally:
        adm.run("delete", "priorityclass", first, second, "--ignore-not-found", check=False)


def test_without_the_serviceaccount_controller_pods_need_no_service_account(kubectl: Kubectl, ns: str) -> None:
    """The `server` fixture runs no controllers: ServiceAccount admission is off (nothing would ever create the
    `default` account it requires), Priority admission still runs."""
    create(kubectl, ns, pod("p"))
    spec = kubectl.json("get", "pod", "p", "-n", ns)["spec"]
    assert spec["serviceAccountName"] == "default" and "volumes" not in spec
    assert (spec["priority"], spec["preemptionPolicy"]) == (0, "PreemptLowerPriority")
    out = create(kubectl, ns, pod("q", priorityClassName="nope"), check=False)
    assert out.returncode != 0 and "no PriorityClass with name nope was found" in out.stderr


async def test_concurrent_creates_cannot_overrun_a_quota(adm: Kubectl, ans: str) -> None:
    """Quota admission is serialized per namespace: of 12 configmaps created at once against a quota of 3, exactly 3
    are admitted (without the lock, all of them counted the same usage and passed). Secrets: the serviceaccount
    controller adds a ConfigMap (kube-root-ca.crt) of its own to every namespace."""
    import asyncio
    from kates.api import errors
    from kates.client.rest import Client, resource
    adm.apply(json.dumps({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": ans},
                          "spec": {"hard": {"count/secrets": "3"}}}))
    client = Client.from_kubeconfig(adm.kubeconfig)
    secrets = resource("secrets")

    async def make(i: int) -> bool:
        try:
            await client.create(secrets, {"metadata": {"name": f"s-{i}"}, "stringData": {"i": str(i)}}, ans)
            return True
        except errors.Forbidden as e:
            assert "exceeded quota: q, requested: count/secrets=1, used: count/secrets=3, limited: " \
                   "count/secrets=3" in str(e)
            return False
    try:
        results = await asyncio.gather(*(make(i) for i in range(12)))
    finally:
        await client.close()
    assert sum(results) == 3
    assert len(adm.json("get", "secrets", "-n", ans)["items"]) == 3


def test_gated_pod_starts_scheduling_gated_without_a_scheduler(kubectl: Kubectl, ns: str) -> None:
    """As Kubernetes' pod strategy: the API server itself sets PodScheduled=False/SchedulingGated at create."""
    create(kubectl, ns, pod("gated", schedulingGates=[{"name": "example.com/wait"}]))
    [cond] = kubectl.json("get", "pod", "gated", "-n", ns)["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == \
        ("PodScheduled", "False", "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates")
    assert "SchedulingGated" in kubectl.run("get", "pod", "gated", "-n", ns).stdout


def test_system_priority_classes_exist(kubectl: Kubectl) -> None:
    pcs = {pc["metadata"]["name"]: pc for pc in kubectl.json("get", "priorityclasses")["items"]}
    assert pcs["system-node-critical"]["value"] == 2000001000
    assert pcs["system-cluster-critical"]["value"] == 2000000000
    assert pcs["system-cluster-critical"]["preemptionPolicy"] == "PreemptLowerPriority"
    assert not pcs["system-node-critical"].get("globalDefault")


def test_limit_range_defaults_and_bounds(kubectl: Kubectl, ns: str) -> None:
    """LimitRanger: container defaults fill what a container does not state (annotated), bounds refuse with
    Kubernetes' messages; a claim's storage request is bounded too."""
    kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr", "namespace": ns},
                              "spec": {"limits": [
                                  {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
                                   "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "1", "memory": "1Gi"},
                                   "min": {"cpu": "50m"}, "maxLimitRequestRatio": {"cpu": "10"}},
                                  {"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}}]}}))
    create(kubectl, ns, pod("d", initContainers=[{"name": "init", "image": "busybox",
                                                   "resources": {"limits": {"cpu": "200m"}}}]))
    live = kubectl.json("get", "pod", "d", "-n", ns)
    app, init = live["spec"]["containers"][0], live["spec"]["initContainers"][0]
    assert app["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"},
                                "requests": {"cpu": "100m", "memory": "256Mi"}}
    # the init container's limit had already become its request (defaulting runs first, as in Kubernetes)
    assert init["resources"] == {"limits": {"cpu": "200m", "memory": "256Mi"},
                                 "requests": {"cpu": "200m", "memory": "256Mi"}}
    assert live["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app; "
        "memory request for init container init; memory limit for init container init")
    assert live["status"]["qosClass"] == "Burstable"
    out = create(kubectl, ns, pod("big", containers=[{"name": "app", "image": "busybox", "resources": {
        "limits": {"cpu": "2"}, "requests": {"cpu": "100m"}}}]), check=False)
    assert out.returncode != 0 and ('pods "big" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, '
                                    "cpu max limit to request ratio per Container is 10, but provided ratio is "
                                    "20.000000]") in out.stderr
    out = create(kubectl, ns, pod("tiny", containers=[{"name": "app", "image": "busybox", "resources": {
        "requests": {"cpu": "10m"}, "limits": {"cpu": "20m"}}}]), check=False)
    assert out.returncode != 0 and ('pods "tiny" is forbidden: minimum cpu usage per Container is 50m, but request '
                                    "is 10m") in out.stderr
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}
    out = create(kubectl, ns, json.dumps(claim), check=False)
    assert out.returncode != 0 and ('persistentvolumeclaims "c" is forbidden: maximum storage usage per '
                                    "PersistentVolumeClaim is 2Gi, but request is 5Gi") in out.stderr


def test_mirror_pods_are_not_given_a_service_account(adm: Kubectl, ans: str) -> None:
    mirror = {"kubernetes.io/config.mirror": "abc", "kubernetes.io/config.source": "file"}
    create(adm, ans, json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "m", "annotations": mirror},
                                 "spec": {"containers": [{"name": "app", "image": "busybox"}]}}))
    assert "volumes" not in adm.json("get", "pod", "m", "-n", ans)["spec"]
    out = create(adm, ans, json.dumps({"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": "m2", "annotations": mirror},
                                       "spec": {"serviceAccountName": "default",
                                                "containers": [{"name": "app", "image": "busybox"}]}}), check=False)
    assert out.returncode != 0 and 'pods "m2" is forbidden: a mirror pod may not reference service accounts' \
        in out.stderr
