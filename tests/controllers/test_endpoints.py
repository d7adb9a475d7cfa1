"""The Endpoints controller against a real `kates server`: pods made ready by hand (no scheduler, no kubelet)."""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import pytest
import yaml

from harness import Kubectl, Server


@pytest.fixture(scope="module")
def ep_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("endpoints"), extra=["--disable-scheduler", "--controllers", "endpoints"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def core(ep_server: Server) -> Any:
    from kubernetes import client, config
    return client.CoreV1Api(config.new_client_from_config(str(ep_server.kubeconfig)))


@pytest.fixture
def ns(core: Any) -> Iterator[str]:
    name = "ep-" + uuid.uuid4().hex[:8]
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def wait_for(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:   # noqa: BLE001 - not there yet
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out; last: {last!r}")


def make_pod(core: Any, ns: str, name: str, ip: str, *, ready: bool = True, labels: dict[str, str] | None = None,
             ports: list[dict[str, Any]] | None = None, node: str = "n1") -> None:
    """A pod as the scheduler and kubelet would leave it: bound to `node`, running, with an IP."""
    core.create_namespaced_pod(ns, {
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx",
                                 "ports": ports or [{"name": "http", "containerPort": 8080}]}]}})
    core.create_namespaced_pod_binding(name, ns, {"metadata": {"name": name},
                                                  "target": {"kind": "Node", "name": node}},
                                       _preload_content=False)
    set_ready(core, ns, name, ip, ready)


def set_ready(core: Any, ns: str, name: str, ip: str, ready: bool) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = "True" if ready else "False"
    core.patch_namespaced_pod_status(name, ns, {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": status, "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": status, "lastTransitionTime": now}]}})


def endpoints(core: Any, ns: str, name: str) -> dict[str, Any]:
    return core.api_client.sanitize_for_serialization(core.read_namespaced_endpoints(name, ns))


def addresses(ep: dict[str, Any], field: str = "addresses") -> list[str]:
    return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get(field) or [])


def test_ready_and_not_ready_pods_with_named_target_port(core, ns, ep_server):
    core.create_namespaced_service(ns, {
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    make_pod(core, ns, "a", "10.0.0.1")
    make_pod(core, ns, "b", "10.0.0.2", ready=False)
    make_pod(core, ns, "other", "10.0.0.9", labels={"app": "other"})

    ep = wait_for(lambda: (e := endpoints(core, ns, "web")) and addresses(e) == ["10.0.0.1"]
                  and addresses(e, "notReadyAddresses") == ["10.0.0.2"] and e)
    assert len(ep["subsets"]) == 1
    subset = ep["subsets"][0]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    pod_a = core.read_namespaced_pod("a", ns)
    assert subset["addresses"][0] == {"ip": "10.0.0.1", "nodeName": "n1",
                                      "targetRef": {"kind": "Pod", "namespace": ns, "name": "a",
                                                    "uid": pod_a.metadata.uid}}
    # the Endpoints mirror the Service's labels and say when they last changed
    assert ep["metadata"]["labels"] == {"tier": "front"}
    assert "endpoints.kubernetes.io/last-change-trigger-time" in ep["metadata"]["annotations"]

    # b becomes ready: it moves to addresses
    set_ready(core, ns, "b", "10.0.0.2", True)
    wait_for(lambda: addresses(endpoints(core, ns, "web")) == ["10.0.0.1", "10.0.0.2"])

    # kubectl shows them
    out = Kubectl(ep_server.kubeconfig).run("get", "endpoints", "web", "-n", ns).stdout
    assert "10.0.0.1:8080,10.0.0.2:8080" in out

    # deleting a pod removes its address
    core.delete_namespaced_pod("a", ns, grace_period_seconds=0)
    wait_for(lambda: addresses(endpoints(core, ns, "web")) == ["10.0.0.2"])


def test_pods_without_the_named_port_are_left_out_of_that_port(core, ns):
    core.create_namespaced_service(ns, {
        "metadata": {"name": "multi"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                           {"name": "metrics", "port": 9090, "targetPort": "metrics"}]}})
    make_pod(core, ns, "full", "10.0.1.1", ports=[{"name": "http", "containerPort": 8080},
                                                  {"name": "metrics", "containerPort": 9100}])
    make_pod(core, ns, "half", "10.0.1.2", ports=[{"name": "http", "containerPort": 8080}])

    def grouped() -> Any:
        ep = endpoints(core, ns, "multi")
        return {tuple(a["ip"] for a in s.get("addresses") or []):
                sorted((p["name"], p["port"]) for p in s["ports"]) for s in ep.get("subsets") or []}
    # as Kubernetes packs them: one subset per distinct set of addresses, with the ports those addresses
    # share; the metrics port lists only the pod that has it
    wait_for(lambda: grouped() == {("10.0.1.1", "10.0.1.2"): [("http", 8080)],
                                   ("10.0.1.1",): [("metrics", 9100)]})


def test_numeric_target_port_headless_and_terminating_pods(core, ns):
    core.create_namespaced_service(ns, {
        "metadata": {"name": "hl"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"},
                 "ports": [{"port": 5432, "targetPort": 5432}]}})
    make_pod(core, ns, "db-0", "10.0.2.1", labels={"app": "db"})
    make_pod(core, ns, "db-1", "10.0.2.2", labels={"app": "db"})
    ep = wait_for(lambda: (e := endpoints(core, ns, "hl")) and addresses(e) == ["10.0.2.1", "10.0.2.2"] and e)
    assert ep["subsets"][0]["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert ep["metadata"]["labels"] == {"service.kubernetes.io/headless": ""}
    # a terminating pod (graceful deletion of a bound pod) leaves the endpoints at once
    core.delete_namespaced_pod("db-0", ns, grace_period_seconds=30)
    wait_for(lambda: addresses(endpoints(core, ns, "hl")) == ["10.0.2.2"])


def test_publish_not_ready_addresses(core, ns):
    core.create_namespaced_service(ns, {
        "metadata": {"name": "all"},
        "spec": {"selector": {"app": "web"}, "publishNotReadyAddresses": True, "ports": [{"port": 80}]}})
    make_pod(core, ns, "p", "10.0.3.1", ready=False)
    ep = wait_for(lambda: (e := endpoints(core, ns, "all")) and addresses(e) == ["10.0.3.1"] and e)
    assert not addresses(ep, "notReadyAddresses")


def test_selectorless_services_are_left_alone_and_deleted_services_lose_endpoints(core, ns):
    core.create_namespaced_service(ns, {"metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}})
    core.create_namespaced_endpoints(ns, {"metadata": {"name": "manual"},
                                          "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]})
    core.create_namespaced_service(ns, {"metadata": {"name": "auto"},
                                        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    wait_for(lambda: endpoints(core, ns, "auto"))
    time.sleep(0.5)
    assert addresses(endpoints(core, ns, "manual")) == ["192.0.2.1"]
    # a Service with no pods has Endpoints without subsets
    assert not endpoints(core, ns, "auto").get("subsets")
    core.delete_namespaced_service("auto", ns)
    from kubernetes.client.rest import ApiException

    def gone() -> bool:
        try:
            endpoints(core, ns, "auto")
            return False
        except ApiException as e:
            return e.status == 404
    wait_for(gone)


def test_kubernetes_service_lists_the_api_server(core, ep_server):
    ep = wait_for(lambda: endpoints(core, "default", "kubernetes"))
    server = urlsplit(yaml.safe_load(ep_server.kubeconfig.read_text())["clusters"][0]["cluster"]["server"])
    assert ep["subsets"] == [{"addresses": [{"ip": "127.0.0.1"}],
                              "ports": [{"name": "https", "port": server.port, "protocol": "TCP"}]}]
    # deleted, it comes back
    core.delete_namespaced_endpoints("kubernetes", "default")
    wait_for(lambda: endpoints(core, "default", "kubernetes")["subsets"] == ep["subsets"])
