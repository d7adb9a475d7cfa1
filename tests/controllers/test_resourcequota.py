"""ResourceQuota: the controller's status.used on a real server, and the admission check in-process."""
from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest

from harness import Kubectl, Server
from test_endpoints import wait_for


@pytest.fixture(scope="module")
def rq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("quota"), extra=["--disable-scheduler", "--controllers", "resourcequota"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kubectl(rq_server: Server) -> Kubectl:
    return Kubectl(rq_server.kubeconfig)


@pytest.fixture
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = "rq-" + uuid.uuid4().hex[:8]
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def pod(name: str, cpu: str | None = "250m", memory: str | None = "64Mi", limit_cpu: str | None = None,
        phase: str | None = None) -> str:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    resources: dict[str, Any] = {"requests": requests} if requests else {}
    if limit_cpu:
        resources["limits"] = {"cpu": limit_cpu}
    import json
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "c", "image": "nginx", "resources": resources}]}})


QUOTA = """
apiVersion: v1
kind: ResourceQuota
metadata: {name: q}
spec:
  hard:
    pods: "10"
    requests.cpu: "2"
    cpu: "2"
    requests.memory: 1Gi
    limits.cpu: "4"
    configmaps: "5"
    services: "3"
    services.nodeports: "2"
    count/deployments.apps: "2"
    count/secrets: "9"
"""


def used(kubectl: Kubectl, ns: str, name: str = "q") -> dict[str, str]:
    return (kubectl.json("get", "resourcequota", name, "-n", ns).get("status") or {}).get("used") or {}


def test_status_counts_pods_configmaps_services_and_requests(kubectl, ns):
    kubectl.apply(QUOTA, "-n", ns)
    q = wait_for(lambda: (o := kubectl.json("get", "quota", "q", "-n", ns)) and o.get("status", {}).get("used") and o)
    assert q["status"]["hard"] == q["spec"]["hard"]
    assert q["status"]["used"] == {"pods": "0", "requests.cpu": "0", "cpu": "0", "requests.memory": "0",
                                   "limits.cpu": "0", "configmaps": "0", "services": "0", "services.nodeports": "0",
                                   "count/deployments.apps": "0", "count/secrets": "0"}, \
        "every tracked resource shows 0 (only the quota controller runs: no kube-root-ca.crt configmap)"

    # with a quota on limits.cpu, admission wants every container to state one (as Kubernetes' quota admission)
    refused = kubectl.run("apply", "-f", "-", "-n", ns, input=pod("a"), check=False)
    assert refused.returncode != 0 and "must specify limits.cpu for: c" in refused.stderr
    kubectl.run("apply", "-f", "-", "-n", ns, input=pod("a", limit_cpu="500m"))
    kubectl.run("apply", "-f", "-", "-n", ns, input=pod("b", cpu="1", memory="128Mi", limit_cpu="1500m"))
    kubectl.run("create", "configmap", "c1", "-n", ns)
    kubectl.run("create", "service", "nodeport", "np", "--tcp=80:80", "--tcp=443:443", "-n", ns)
    kubectl.run("create", "service", "clusterip", "ip", "--tcp=80:80", "-n", ns)
    kubectl.run("create", "deployment", "d", "--image=nginx", "-n", ns)
    kubectl.run("create", "secret", "generic", "s", "--from-literal=a=b", "-n", ns)

    expected = {"pods": "2", "requests.cpu": "1250m", "cpu": "1250m", "requests.memory": "192Mi",
                "limits.cpu": "2", "configmaps": "1", "services": "2", "services.nodeports": "2",
                "count/deployments.apps": "1", "count/secrets": "1"}
    wait_for(lambda: used(kubectl, ns) == expected)
    out = kubectl.run("describe", "quota", "q", "-n", ns).stdout
    assert "requests.cpu" in out and "1250m" in out

    # a pod that finished no longer uses compute quota; a deleted one nothing at all
    kubectl.run("patch", "pod", "a", "-n", ns, "--subresource=status", "--type=merge",
                "-p", '{"status": {"phase": "Succeeded"}}')
    wait_for(lambda: used(kubectl, ns)["pods"] == "1" and used(kubectl, ns)["requests.cpu"] == "1")
    kubectl.run("delete", "service", "np", "-n", ns)
    wait_for(lambda: used(kubectl, ns)["services"] == "1" and used(kubectl, ns)["services.nodeports"] == "0")


def test_scopes_select_pods(kubectl, ns):
    kubectl.apply("""
apiVersion: v1
kind: ResourceQuota
metadata: {name: besteffort}
spec:
  hard: {pods: "5"}
  scopes: [BestEffort]
""", "-n", ns)
    kubectl.apply("""
apiVersion: v1
kind: ResourceQuota
metadata: {name: terminating}
spec:
  hard: {pods: "5", requests.cpu: "1"}
  scopes: [Terminating]
""", "-n", ns)
    kubectl.run("apply", "-f", "-", "-n", ns, input=pod("be", cpu=None, memory=None))
    kubectl.run("apply", "-f", "-", "-n", ns, input=pod("burst"))
    import json
    job_pod = json.loads(pod("deadline", cpu="100m"))
    job_pod["spec"]["activeDeadlineSeconds"] = 60
    kubectl.run("apply", "-f", "-", "-n", ns, input=json.dumps(job_pod))
    wait_for(lambda: used(kubectl, ns, "besteffort") == {"pods": "1"})
    wait_for(lambda: used(kubectl, ns, "terminating") == {"pods": "1", "requests.cpu": "100m"})


# -- admission, in-process against a real registry ----------------------------------------------------------

@pytest.fixture
async def registry() -> Any:
    from kates.apiserver.server import APIServer
    from kates.store import open_store
    store = open_store("memory://")
    await store.start()
    server = APIServer(store)
    await server.cache.start()
    await server.bootstrap()
    yield server.registry
    await server.cache.stop()
    await store.close()


async def create(registry: Any, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The registry's create, which runs quota admission as the API server does."""
    from kates.client.rest import resource as rt_of
    obj["metadata"].setdefault("namespace", "default")
    return await registry.create(rt_of(resource), "default", obj)


def container(cpu: str | None = None) -> dict[str, Any]:
    return {"name": "c", "image": "x", **({"resources": {"requests": {"cpu": cpu}}} if cpu else {})}


async def test_admission_rejects_creates_over_quota(registry):
    from kates.api import errors
    await create(registry, "resourcequotas", {"metadata": {"name": "q"},
                                              "spec": {"hard": {"pods": "2", "requests.cpu": "1", "configmaps": "1"}}})
    await create(registry, "pods", {"metadata": {"name": "p1"}, "spec": {"containers": [container("600m")]}})
    with pytest.raises(errors.Forbidden) as e:
        await create(registry, "pods", {"metadata": {"name": "p2"}, "spec": {"containers": [container("500m")]}})
    assert e.value.message == ('pods "p2" is forbidden: exceeded quota: q, requested: requests.cpu=500m, '
                               'used: requests.cpu=600m, limited: requests.cpu=1')
    assert e.value.code == 403
    # a quota on cpu makes every container say how much it wants
    with pytest.raises(errors.Forbidden, match='pods "p3" is forbidden: failed quota: q: must specify requests.cpu '
                                               'for: c'):
        await create(registry, "pods", {"metadata": {"name": "p3"}, "spec": {"containers": [container()]}})
    await create(registry, "pods", {"metadata": {"name": "p4"}, "spec": {"containers": [container("400m")]}})
    with pytest.raises(errors.Forbidden, match=r"exceeded quota: q, requested: pods=1,requests.cpu=100m, "
                                               r"used: pods=2,requests.cpu=1, limited: pods=2,requests.cpu=1"):
        await create(registry, "pods", {"metadata": {"name": "p5"}, "spec": {"containers": [container("100m")]}})
    await create(registry, "configmaps", {"metadata": {"name": "c1"}})
    with pytest.raises(errors.Forbidden, match='configmaps "c2" is forbidden: exceeded quota: q, requested: '
                                               'configmaps=1, used: configmaps=1, limited: configmaps=1'):
        await create(registry, "configmaps", {"metadata": {"name": "c2"}})
    # what no quota limits is never refused
    await create(registry, "secrets", {"metadata": {"name": "s1"}})


async def test_admission_counts_by_group_and_ignores_other_scopes(registry):
    from kates.api import errors
    await create(registry, "resourcequotas", {"metadata": {"name": "apps"},
                                              "spec": {"hard": {"count/deployments.apps": "1"}}})
    await create(registry, "resourcequotas", {"metadata": {"name": "be"},
                                              "spec": {"hard": {"pods": "0"}, "scopes": ["BestEffort"]}})
    deployment = {"metadata": {"name": "d1"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [container()]}}}}
    await create(registry, "deployments.apps", deployment)
    with pytest.raises(errors.Forbidden, match=r'deployments.apps "d2" is forbidden: exceeded quota: apps, '
                                               r'requested: count/deployments.apps=1'):
        await create(registry, "deployments.apps", {**deployment, "metadata": {"name": "d2"}})
    # the BestEffort quota admits no best-effort pod, but a pod with requests is out of its scope
    with pytest.raises(errors.Forbidden, match="exceeded quota: be"):
        await create(registry, "pods", {"metadata": {"name": "be"}, "spec": {"containers": [container()]}})
    await create(registry, "pods", {"metadata": {"name": "burstable"}, "spec": {"containers": [container("10m")]}})
