"""Container environments computed against a real API server: services, configMaps and secrets made through the API."""
from __future__ import annotations

import base64
import json
import uuid
from typing import Any, AsyncIterator

import pytest

from kates.client.rest import Client, resource
from kates.kubelet.envvars import CreateContainerConfigError, container_env, expand, format_map, mapping_for
from nodeutil import BUSYBOX, wait_for

SERVICES = resource("services")
CONFIGMAPS = resource("configmaps")
SECRETS = resource("secrets")


@pytest.fixture
async def client(server: Any) -> AsyncIterator[Client]:
    c = Client.from_kubeconfig(server.kubeconfig, user_agent="test-envvars")
    yield c
    await c.close()


def pod(ns: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p1", "namespace": ns, "uid": "0000-uid", "labels": {"app": "web", "tier": "a\"b"},
                         "annotations": {"note": "x"}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "robot", "containers": [container], **spec}}


async def env_of(client: Client, p: dict[str, Any], services: list[dict[str, Any]] | None = None,
                 **kw: Any) -> list[tuple[str, str]]:
    return await container_env(client, p, p["spec"]["containers"][0], services=services or [], node_name="node-a",
                               node_ip="192.0.2.2", pod_ip="10.244.7.9", pod_ips=["10.244.7.9", "fd00::9"], **kw)


def test_expansion_matches_kubernetes() -> None:
    m = mapping_for({"VAR_A": "A", "VAR_B": "B", "VAR_EMPTY": ""}, {"SVC": "s"})
    cases = {
        "$(VAR_A)": "A", "___$(VAR_B)___": "___B___", "$(VAR_A)-$(VAR_B)": "A-B", "$(SVC)": "s",
        "$(VAR_EMPTY)": "", "$(UNKNOWN)": "$(UNKNOWN)", "$$(VAR_A)": "$(VAR_A)", "$$$(VAR_A)": "$A",
        "$$$$(VAR_A)": "$$(VAR_A)", "$(VAR_A": "$(VAR_A", "$VAR_A": "$VAR_A", "foo$": "foo$", "$": "$",
        "$()": "$()", "f000-$$VAR_A": "f000-$VAR_A", "\n$(VAR_A)\n": "\nA\n", "$(VAR_A)$(VAR_A)": "AA",
    }
    for given, want in cases.items():
        assert expand(given, m) == want, given


def test_format_map_is_sorted_and_quoted() -> None:
    assert format_map({"b": "2", "a": 'say "hi"\n'}) == 'a="say \\"hi\\"\\n"\nb="2"'


async def test_service_links_as_the_kubelet_makes_them(client: Client, ns: str) -> None:
    web = await client.create(SERVICES, {"metadata": {"name": "my-web"}, "spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}, ns)
    await client.create(SERVICES, {"metadata": {"name": "headless"}, "spec": {
        "clusterIP": "None", "ports": [{"port": 80}]}}, ns)
    await client.create(SERVICES, {"metadata": {"name": "ext"}, "spec": {
        "type": "ExternalName", "externalName": "example.invalid"}}, ns)
    ip = web["spec"]["clusterIP"]
    services = (await client.list(SERVICES, ns))["items"] + (await client.list(SERVICES, "default"))["items"]
    kube_ip = next(s for s in services if s["metadata"]["name"] == "kubernetes")["spec"]["clusterIP"]

    env = dict(await env_of(client, pod(ns, {"name": "c", "image": "x"}), services))
    assert env["MY_WEB_SERVICE_HOST"] == ip
    assert env["MY_WEB_SERVICE_PORT"] == "80"
    assert env["MY_WEB_SERVICE_PORT_HTTP"] == "80"
    assert env["MY_WEB_SERVICE_PORT_DNS"] == "53"
    assert env["MY_WEB_PORT"] == f"tcp://{ip}:80"
    assert env["MY_WEB_PORT_80_TCP"] == f"tcp://{ip}:80"
    assert env["MY_WEB_PORT_80_TCP_PROTO"] == "tcp"
    assert env["MY_WEB_PORT_80_TCP_PORT"] == "80"
    assert env["MY_WEB_PORT_80_TCP_ADDR"] == ip
    assert env["MY_WEB_PORT_53_UDP"] == f"udp://{ip}:53"
    assert env["KUBERNETES_SERVICE_HOST"] == kube_ip
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert not any(k.startswith(("HEADLESS_", "EXT_")) for k in env)

    # enableServiceLinks: false keeps only the master service; a declared variable wins over a service variable
    env2 = dict(await env_of(client, pod(ns, {"name": "c", "image": "x", "env": [
        {"name": "KUBERNETES_SERVICE_HOST", "value": "mine"}]}, enableServiceLinks=False), services))
    assert not any(k.startswith("MY_WEB_") for k in env2)
    assert env2["KUBERNETES_SERVICE_HOST"] == "mine" and env2["KUBERNETES_SERVICE_PORT"] == "443"


async def test_env_from_value_from_and_expansion(client: Client, ns: str) -> None:
    await client.create(CONFIGMAPS, {"metadata": {"name": "cfg"}, "data": {
        "greeting": "hello", "COLOR": "blue", "2x": "skipped", "1starts": "skipped"}}, ns)
    await client.create(SECRETS, {"metadata": {"name": "sec"}, "data": {
        "token": base64.b64encode(b"t0ps3cret").decode(), "COLOR": base64.b64encode(b"red").decode()}}, ns)
    warnings: list[tuple[str, str]] = []
    c = {"name": "main", "image": "x",
         "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
         "envFrom": [{"configMapRef": {"name": "cfg"}},
                     {"secretRef": {"name": "sec"}, "prefix": "S_"},
                     {"configMapRef": {"name": "absent", "optional": True}}],
         "env": [
             {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
             {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
             {"name": "MSG", "value": "$(GREETING) $(MY_POD) $(COLOR) $$(COLOR) $(NOPE)"},
             {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "LATE", "value": "$(MY_POD)"},
             {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
             {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
             {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
             {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
             {"name": "LABELS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}},
             {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
             {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
             {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
             {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
             {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
             {"name": "CPU_REQ_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
             {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
             {"name": "CPU_LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
             {"name": "MEM_LIM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
             {"name": "MEM_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}},
             {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": True}}},
             {"name": "COLOR", "value": "green"},
         ]}
    env = await env_of(client, pod(ns, c), node_allocatable={"cpu": "2", "memory": "4Gi"},
                       warn=lambda r, m: warnings.append((r, m)))
    d = dict(env)
    assert d["greeting"] == "hello" and d["S_token"] == "t0ps3cret" and d["S_COLOR"] == "red"
    assert "2x" not in d and "1starts" not in d
    assert warnings == [("InvalidEnvironmentVariableNames", f"Keys [1starts, 2x] from the EnvFrom configMap "
                         f"{ns}/cfg were skipped since they are considered invalid environment variable names.")]
    assert d["GREETING"] == "hello" and d["TOKEN"] == "t0ps3cret"
    # MY_POD is declared after MSG: not yet defined there, so it stays as written; COLOR comes from envFrom
    assert d["MSG"] == "hello $(MY_POD) blue $(COLOR) $(NOPE)"
    assert d["LATE"] == "p1" and d["COLOR"] == "green"
    assert (d["NS"], d["UID"], d["APP"], d["NOTE"], d["NODE"], d["SA"]) == (ns, "0000-uid", "web", "x", "node-a",
                                                                             "robot")
    assert d["LABELS"] == 'app="web"\ntier="a\\"b"'
    assert (d["HOST_IP"], d["POD_IP"], d["POD_IPS"]) == ("192.0.2.2", "10.244.7.9", "10.244.7.9,fd00::9")
    assert (d["CPU_REQ_M"], d["CPU_REQ"], d["CPU_LIM"]) == ("250", "1", "2")   # limits.cpu: node allocatable
    assert (d["MEM_LIM_MI"], d["MEM_REQ"]) == ("128", str(64 << 20))
    assert "OPT" not in d
    names = [k for k, _ in env]
    assert names.index("greeting") < names.index("GREETING") < names.index("MSG") < names.index("LATE")
    assert len(names) == len(set(names))


async def test_node_allocatable_is_read_from_the_node(client: Client, ns: str) -> None:
    nodes = resource("nodes")
    name = "envnode-" + uuid.uuid4().hex[:6]
    await client.create(nodes, {"metadata": {"name": name}})
    node = await client.get(nodes, name)
    node["status"] = {"allocatable": {"cpu": "3", "memory": "1Gi"}, "capacity": {"cpu": "3", "memory": "1Gi"}}
    await client.update_status(nodes, node)
    try:
        p = pod(ns, {"name": "c", "image": "x", "env": [
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}]})
        env = await container_env(client, p, p["spec"]["containers"][0], services=[], node_name=name,
                                  node_ip="192.0.2.2", pod_ip="", pod_ips=[])
        assert dict(env)["CPU"] == "3000"
    finally:
        await client.delete(nodes, name)


@pytest.mark.parametrize("env, message", [
    ([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}], 'configmap "cfg" not found'),
    ([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}], 'secret "s" not found'),
    ([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "have", "key": "greeting"}}}],
     "couldn't find key greeting in ConfigMap {ns}/have"),
    ([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "have-s", "key": "nope"}}}],
     "couldn't find key nope in Secret {ns}/have-s"),
])
async def test_missing_sources_fail_like_kubernetes(client: Client, ns: str, env: list[Any], message: str) -> None:
    await client.create(CONFIGMAPS, {"metadata": {"name": "have"}, "data": {"other": "1"}}, ns)
    await client.create(SECRETS, {"metadata": {"name": "have-s"}, "data": {}}, ns)
    with pytest.raises(CreateContainerConfigError) as e:
        await env_of(client, pod(ns, {"name": "c", "image": "x", "env": env}))
    assert str(e.value) == message.format(ns=ns)


async def test_missing_env_from_fails_unless_optional(client: Client, ns: str) -> None:
    with pytest.raises(CreateContainerConfigError, match='^configmap "gone" not found$'):
        await env_of(client, pod(ns, {"name": "c", "image": "x", "envFrom": [{"configMapRef": {"name": "gone"}}]}))
    with pytest.raises(CreateContainerConfigError, match='^secret "gone" not found$'):
        await env_of(client, pod(ns, {"name": "c", "image": "x", "envFrom": [{"secretRef": {"name": "gone"}}]}))
    env = await env_of(client, pod(ns, {"name": "c", "image": "x", "envFrom": [
        {"secretRef": {"name": "gone", "optional": True}}], "env": [{"name": "A", "value": "1"}]},
        enableServiceLinks=False))
    assert [k for k, _ in env if not k.startswith("KUBERNETES_")] == ["A"]


# -- on a real node ------------------------------------------------------------------------------------------------


def _pod_json(ns: str, name: str, container: dict[str, Any], **spec: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                       "spec": {"terminationGracePeriodSeconds": 1,
                                "containers": [{"name": "main", "image": BUSYBOX, **container}], **spec}})


async def cri_exec(cri: Any, ns: str, pod: str, *cmd: str, container: str = "main") -> str:
    """Run a command in a pod's container straight through the node's containerd (independent of kubectl exec)."""
    from kates.kubelet.lookup import find_container
    c = await find_container(cri, ns, pod, container)
    code, out, err = await cri.exec_sync(c.id, list(cmd), 10)
    assert code == 0, (cmd, code, err)
    return out.decode()


@pytest.mark.node
async def test_environment_of_a_real_container(node: Any, node_kubectl: Any, node_ns: str, node_cri: Any) -> None:
    k, ns = node_kubectl, node_ns
    k.run("create", "configmap", "cfg", "--from-literal=greeting=hello", "--from-literal=COLOR=blue", "-n", ns)
    k.run("create", "secret", "generic", "sec", "--from-literal=token=t0ps3cret", "-n", ns)
    k.run("create", "service", "clusterip", "my-web", "--tcp=80:8080", "-n", ns)
    k.apply(_pod_json(ns, "envy", {
        "command": ["sh", "-c", "env > /tmp/env; echo started; exec sleep 3600"],
        "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"}, "prefix": "S_"}],
        "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                {"name": "MSG", "value": "$(GREETING) from $(MY_POD)"},
                {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "SAYS", "value": "$(GREETING), $(MY_POD) on $(MY_NODE)"},
                {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                      "divisor": "1Mi"}}},
                {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu",
                                                                     "divisor": "1m"}}}]}))
    k.run("wait", "--for=condition=Ready", "pod/envy", "-n", ns, "--timeout=60s")
    pod = k.json("get", "pod", "envy", "-n", ns)
    env = dict(line.split("=", 1) for line in (await cri_exec(node_cri, ns, "envy", "cat", "/tmp/env")).splitlines()
               if "=" in line)
    svc_ip = k.json("get", "service", "my-web", "-n", ns)["spec"]["clusterIP"]
    assert env["greeting"] == "hello" and env["COLOR"] == "blue" and env["S_token"] == "t0ps3cret"
    assert env["GREETING"] == "hello" and env["MSG"] == "hello from $(MY_POD)"
    assert env["SAYS"] == "hello, envy on $(MY_NODE)" and env["MY_NODE"] == node.node_name
    assert env["MEM_MI"] == "64" and env["CPU_M"] == "100"
    assert env["MY_WEB_SERVICE_HOST"] == svc_ip and env["MY_WEB_PORT_80_TCP"] == f"tcp://{svc_ip}:80"
    assert env["KUBERNETES_SERVICE_PORT"] == "443" and env["KUBERNETES_SERVICE_HOST"]
    assert env["HOST_IP"] == pod["status"]["hostIP"]
    assert env["MY_IP"] == pod["status"]["podIP"], "status.podIP must be known when the container's env is made"


@pytest.mark.node
async def test_missing_configmap_waits_as_create_container_config_error(node_kubectl: Any, node_ns: str,
                                                                        node_cri: Any) -> None:
    k, ns = node_kubectl, node_ns
    k.apply(_pod_json(ns, "waiting", {"command": ["sleep", "3600"], "env": [
        {"name": "G", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "greeting"}}}]}))

    def waiting() -> dict[str, Any] | None:
        statuses = k.json("get", "pod", "waiting", "-n", ns)["status"].get("containerStatuses") or []
        return (statuses[0]["state"].get("waiting") or None) if statuses else None
    state = wait_for("CreateContainerConfigError", lambda: (w := waiting()) and
                     w.get("reason") == "CreateContainerConfigError" and w)
    assert state["message"] == 'configmap "later" not found'
    k.run("create", "configmap", "later", "--from-literal=other=1", "-n", ns)
    wait_for("the missing key", lambda: (w := waiting()) and w.get("message") ==
             f"couldn't find key greeting in ConfigMap {ns}/later", timeout=60)
    k.run("patch", "configmap", "later", "-n", ns, "-p", '{"data": {"greeting": "hi"}}')
    k.run("wait", "--for=condition=Ready", "pod/waiting", "-n", ns, "--timeout=60s")
    assert (await cri_exec(node_cri, ns, "waiting", "sh", "-c", "echo $G")).strip() == "hi"
