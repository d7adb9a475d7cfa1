"""The EndpointSlice controller against a real `kates server`: pods made ready by hand (no scheduler, no kubelet)."""
from __future__ import annotations

import uuid
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
import yaml

from harness import Kubectl, Server
from test_endpoints import make_pod, set_ready, wait_for

SLICE_LABELS = "kubernetes.io/service-name={},endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"


@pytest.fixture(scope="module")
def es_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("endpointslices"),
               extra=["--disable-scheduler", "--controllers", "endpointslice"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def api(es_server: Server) -> Any:
    from kubernetes import config
    return config.new_client_from_config(str(es_server.kubeconfig))


@pytest.fixture(scope="module")
def core(api: Any) -> Any:
    from kubernetes import client
    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def discovery(api: Any) -> Any:
    from kubernetes import client
    return client.DiscoveryV1Api(api)


@pytest.fixture
def ns(core: Any) -> Iterator[str]:
    name = "es-" + uuid.uuid4().hex[:8]
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def slices(discovery: Any, ns: str, service: str) -> list[dict[str, Any]]:
    items = discovery.list_namespaced_endpoint_slice(ns, label_selector=SLICE_LABELS.format(service)).items
    return [discovery.api_client.sanitize_for_serialization(s) for s in items]


def by_pod(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {ep["targetRef"]["name"]: ep for s in found for ep in s.get("endpoints") or []}


def test_slices_list_pods_with_conditions_ports_and_zones(core, discovery, ns, es_server):
    core.create_node({"metadata": {"name": f"zoned-{ns}", "labels": {"topology.kubernetes.io/zone": "z1"}}})
    try:
        svc = core.create_namespaced_service(ns, {
            "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
        make_pod(core, ns, "a", "10.1.0.1", node=f"zoned-{ns}")
        make_pod(core, ns, "b", "10.1.0.2", ready=False)

        found = wait_for(lambda: (f := slices(discovery, ns, "web")) and len(by_pod(f)) == 2
                         and not by_pod(f)["b"]["conditions"]["ready"] and f)
        assert len(found) == 1
        s = found[0]
        assert s["addressType"] == "IPv4"
        assert s["metadata"]["generateName"] == "web-"
        assert s["metadata"]["labels"]["tier"] == "front"
        assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                     "uid": svc.metadata.uid, "controller": True,
                                                     "blockOwnerDeletion": True}]
        assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        a = by_pod(found)["a"]
        assert a["addresses"] == ["10.1.0.1"]
        assert a["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert a["nodeName"] == f"zoned-{ns}" and a["zone"] == "z1"
        assert a["targetRef"]["kind"] == "Pod" and a["targetRef"]["namespace"] == ns
        assert by_pod(found)["b"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
        assert "zone" not in by_pod(found)["b"]

        # b turns ready: the same slice is updated in place
        set_ready(core, ns, "b", "10.1.0.2", True)
        after = wait_for(lambda: (f := slices(discovery, ns, "web")) and by_pod(f)["b"]["conditions"]["ready"] and f)
        assert [x["metadata"]["name"] for x in after] == [s["metadata"]["name"]]

        # a terminating pod stays listed, not ready but serving; deleted, it goes
        core.delete_namespaced_pod("a", ns, grace_period_seconds=30)
        wait_for(lambda: by_pod(slices(discovery, ns, "web"))["a"]["conditions"]
                 == {"ready": False, "serving": True, "terminating": True})
        core.delete_namespaced_pod("a", ns, grace_period_seconds=0)
        wait_for(lambda: set(by_pod(slices(discovery, ns, "web"))) == {"b"})

        out = Kubectl(es_server.kubeconfig).run("get", "endpointslices", "-n", ns).stdout
        assert "10.1.0.2" in out and "8080" in out
    finally:
        core.delete_node(f"zoned-{ns}")


def test_at_most_100_endpoints_per_slice_and_a_placeholder_when_empty(core, discovery, ns):
    core.create_namespaced_service(ns, {"metadata": {"name": "big"},
                                        "spec": {"selector": {"app": "big"}, "ports": [{"port": 80}]}})
    placeholder = wait_for(lambda: slices(discovery, ns, "big"))
    assert len(placeholder) == 1 and not placeholder[0].get("endpoints") and not placeholder[0].get("ports")

    for i in range(105):
        core.create_namespaced_pod(ns, {"metadata": {"name": f"p{i}", "labels": {"app": "big"}},
                                        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}})
        core.patch_namespaced_pod_status(f"p{i}", ns, {"status": {
            "phase": "Running", "podIP": f"10.2.{i // 200}.{i % 200 + 1}",
            "conditions": [{"type": "Ready", "status": "True"}]}})
    found = wait_for(lambda: (f := slices(discovery, ns, "big")) and len(by_pod(f)) == 105 and f, timeout=20)
    assert sorted(len(s["endpoints"]) for s in found) == [5, 100]
    # the placeholder was reused rather than replaced
    assert placeholder[0]["metadata"]["name"] in {s["metadata"]["name"] for s in found}
    assert all(s["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}] for s in found)


def test_kubernetes_service_has_a_slice(discovery, es_server):
    server = urlsplit(yaml.safe_load(es_server.kubeconfig.read_text())["clusters"][0]["cluster"]["server"])
    s = wait_for(lambda: discovery.api_client.sanitize_for_serialization(
        discovery.read_namespaced_endpoint_slice("kubernetes", "default")))
    assert s["metadata"]["labels"] == {"kubernetes.io/service-name": "kubernetes"}
    assert s["endpoints"] == [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]
    assert s["ports"] == [{"name": "https", "port": server.port, "protocol": "TCP"}]


def test_deleted_service_takes_its_slices(core, discovery, ns):
    core.create_namespaced_service(ns, {"metadata": {"name": "gone"},
                                        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}})
    wait_for(lambda: slices(discovery, ns, "gone"))
    core.delete_namespaced_service("gone", ns)
    wait_for(lambda: not slices(discovery, ns, "gone"))


def test_reconcile_updates_in_place_and_fills_before_creating():
    from kates.controllers.endpointslice import Desired, ports_key, reconcile, slice_labels
    service = {"metadata": {"name": "s", "namespace": "n", "uid": "u"}, "spec": {"clusterIP": "10.0.0.1"}}
    ports = [{"name": "", "port": 80, "protocol": "TCP"}]

    def ep(i: int) -> dict[str, Any]:
        return {"addresses": [f"10.0.{i // 250}.{i % 250 + 1}"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "targetRef": {"kind": "Pod", "namespace": "n", "name": f"p{i}", "uid": f"uid{i}"}}

    def existing(name: str, eps: list[int]) -> dict[str, Any]:
        return {"metadata": {"name": name, "uid": name, "labels": slice_labels(service)}, "addressType": "IPv4",
                "ports": ports, "endpoints": [ep(i) for i in eps]}

    a, b = existing("a", list(range(100))), existing("b", list(range(100, 150)))
    # nothing changed: nothing written
    want = Desired(ports, {f"uid{i}": ep(i) for i in range(150)})
    plan = reconcile(service, {ports_key(ports): want}, [a, b], 100)
    assert (plan.creates, plan.updates, plan.deletes) == ([], [], [])
    # p0 goes, three pods come: a takes one in p0's place, b (unchanged, with room) takes the other two
    want = Desired(ports, {f"uid{i}": ep(i) for i in list(range(1, 150)) + [150, 151, 152]})
    plan = reconcile(service, {ports_key(ports): want}, [a, b], 100)
    assert not plan.creates and not plan.deletes
    assert sorted((u["metadata"]["name"], len(u["endpoints"])) for u in plan.updates) == [("a", 100), ("b", 52)]
    # everything goes: one slice stays as the placeholder, the other is deleted
    plan = reconcile(service, {}, [a, b], 100)
    assert [d["metadata"]["name"] for d in plan.deletes] == ["a"] and not plan.creates
    assert plan.updates[0]["metadata"]["name"] == "b" and plan.updates[0]["endpoints"] == []
