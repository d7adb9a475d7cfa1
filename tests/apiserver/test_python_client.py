"""The official `kubernetes` Python client against `kates server`: CRUD, watch with resume, 410, errors."""
from __future__ import annotations

import threading
import uuid

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


@pytest.fixture
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core):
    name = "py-" + uuid.uuid4().hex[:8]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException:
        pass


def test_crud(core, namespace):
    cm = core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="one", labels={"k": "v"}), data={"a": "1"}))
    assert cm.metadata.uid and cm.metadata.resource_version and cm.metadata.creation_timestamp
    got = core.read_namespaced_config_map("one", namespace)
    assert got.data == {"a": "1"} and got.metadata.labels == {"k": "v"}
    got.data["a"] = "2"
    updated = core.replace_namespaced_config_map("one", namespace, got)
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    patched = core.patch_namespaced_config_map("one", namespace, {"data": {"b": "3"}})
    assert patched.data == {"a": "2", "b": "3"}
    listed = core.list_namespaced_config_map(namespace, label_selector="k=v")
    assert [i.metadata.name for i in listed.items] == ["one"]
    core.delete_namespaced_config_map("one", namespace)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("one", namespace)
    assert e.value.status == 404 and '"reason":"NotFound"' in e.value.body.replace(" ", "")


def test_errors_are_api_exceptions_with_status(core, namespace):
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dup")))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dup")))
    assert e.value.status == 409 and "AlreadyExists" in e.value.body
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Bad_Name")))
    assert e.value.status == 422 and "metadata.name" in e.value.body
    stale = core.read_namespaced_config_map("dup", namespace)
    core.patch_namespaced_config_map("dup", namespace, {"metadata": {"labels": {"x": "y"}}})
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("dup", namespace, stale)
    assert e.value.status == 409 and "Conflict" in e.value.body
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("no-such-namespace-here", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="x")))
    assert e.value.status == 404 and "namespaces" in e.value.body


def test_watch_resumes_from_resource_version(core, namespace):
    first = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w1")))
    resume_from = first.metadata.resource_version
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w2")))
    core.patch_namespaced_config_map("w1", namespace, {"data": {"x": "1"}})
    core.delete_namespaced_config_map("w2", namespace)
    seen = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=resume_from,
                       timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2")]


def test_watch_sees_live_events_with_selectors(core, namespace):
    seen = []
    ready = threading.Event()

    def follow():
        w = watch.Watch()
        listed = core.list_namespaced_config_map(namespace)
        ready.set()
        for ev in w.stream(core.list_namespaced_config_map, namespace, label_selector="app=x",
                           resource_version=listed.metadata.resource_version, timeout_seconds=10):
            seen.append((ev["type"], ev["object"].metadata.name))
            if len(seen) == 2:
                w.stop()
    t = threading.Thread(target=follow)
    t.start()
    ready.wait(5)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="other")))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="mine", labels={"app": "x"})))
    core.patch_namespaced_config_map("mine", namespace, {"metadata": {"labels": {"app": "y"}}})
    t.join(15)
    # leaving the selector is a DELETED event for this watcher, as in Kubernetes
    assert seen == [("ADDED", "mine"), ("DELETED", "mine")]


def test_too_old_resource_version_is_410(tmp_path):
    """A watch from before the watch cache's history gets 410 Expired; the client raises it as ApiException."""
    from harness import Server
    from kubernetes import config
    small = Server(tmp_path / "data", extra=["--watch-cache-size", "5", "--disable-controllers",
                                             "--disable-scheduler"])
    small.start()
    try:
        core = client.CoreV1Api(config.new_client_from_config(str(small.kubeconfig)))
        first = core.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="c0")))
        for i in range(1, 10):
            core.create_namespaced_config_map("default", client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=f"c{i}")))
        with pytest.raises(ApiException) as e:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default",
                                          resource_version=first.metadata.resource_version, timeout_seconds=3):
                pass
        assert e.value.status == 410
        # a relist gives a fresh resourceVersion that watches fine
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="late")))
        events = [ev["object"].metadata.name for ev in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2)]
        assert events == ["late"]
    finally:
        small.stop()


def test_deployments_and_scale_subresource(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    scale = apps.read_namespaced_deployment_scale("d", namespace)
    assert scale.spec.replicas == 1 and scale.status.selector == "a=b"
    apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 4}})
    d = apps.read_namespaced_deployment("d", namespace)
    assert d.spec.replicas == 4 and d.metadata.generation == 2
    # status can only change through /status, and then the generation does not move
    apps.patch_namespaced_deployment_status("d", namespace, {"status": {"replicas": 9}})
    d = apps.read_namespaced_deployment("d", namespace)
    assert d.status.replicas == 9 and d.metadata.generation == 2
    apps.patch_namespaced_deployment("d", namespace, {"status": {"replicas": 1}})
    assert apps.read_namespaced_deployment("d", namespace).status.replicas == 9


def test_pagination_with_limit_and_continue(core, namespace):
    for i in range(5):
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"p{i}")))
    page = core.list_namespaced_config_map(namespace, limit=2)
    names = [i.metadata.name for i in page.items]
    rv = page.metadata.resource_version
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="p9")))
    while page.metadata._continue:
        page = core.list_namespaced_config_map(namespace, limit=2, _continue=page.metadata._continue)
        assert page.metadata.resource_version == rv, "every page is read at the first page's revision"
        names += [i.metadata.name for i in page.items]
    assert names == ["p0", "p1", "p2", "p3", "p4"]


def test_generate_name_and_dry_run(core, namespace):
    made = core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(generate_name="gen-")))
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dry")),
                                      dry_run="All")
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", namespace)


def test_finalizers_hold_deletion(core, namespace):
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="held", finalizers=["example.com/hold"])))
    core.delete_namespaced_config_map("held", namespace)
    held = core.read_namespaced_config_map("held", namespace)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("held", namespace)
    assert e.value.status == 404


def test_pod_binding_and_graceful_delete(core, namespace):
    core.create_namespaced_pod(namespace, {"metadata": {"name": "p"},
                                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    pod = core.read_namespaced_pod("p", namespace)
    assert pod.status.phase == "Pending" and pod.spec.restart_policy == "Always"
    assert pod.spec.termination_grace_period_seconds == 30
    core.create_namespaced_pod_binding("p", namespace, client.V1Binding(
        metadata=client.V1ObjectMeta(name="p"), target=client.V1ObjectReference(kind="Node", name="node-1")),
        _preload_content=False)
    pod = core.read_namespaced_pod("p", namespace)
    assert pod.spec.node_name == "node-1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod_binding("p", namespace, client.V1Binding(
            metadata=client.V1ObjectMeta(name="p"), target=client.V1ObjectReference(kind="Node", name="node-2")),
            _preload_content=False)
    assert e.value.status == 409
    # a pod on a node terminates gracefully: it stays, marked, until its kubelet confirms with grace 0
    core.delete_namespaced_pod("p", namespace)
    pod = core.read_namespaced_pod("p", namespace)
    assert pod.metadata.deletion_timestamp is not None and pod.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("p", namespace, grace_period_seconds=0)
    with pytest.raises(ApiException):
        core.read_namespaced_pod("p", namespace)


def test_delete_collection_by_label(core, namespace):
    for name, team in [("a", "x"), ("b", "x"), ("c", "y")]:
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels={"team": team})))
    core.delete_collection_namespaced_config_map(namespace, label_selector="team=x")
    left = [i.metadata.name for i in core.list_namespaced_config_map(namespace).items]
    assert left == ["c"]


def test_events_expire_after_their_ttl(tmp_path):
    import time
    from harness import Server
    from kubernetes import config
    short = Server(tmp_path / "data", extra=["--event-ttl", "1", "--disable-controllers", "--disable-scheduler"])
    short.start()
    try:
        core = client.CoreV1Api(config.new_client_from_config(str(short.kubeconfig)))
        core.create_namespaced_event("default", client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="e1"), involved_object=client.V1ObjectReference(
                kind="Pod", name="p", namespace="default"), reason="Tested", message="hello", type="Normal"))
        found = core.list_namespaced_event("default", field_selector="involvedObject.name=p,reason=Tested").items
        assert [e.metadata.name for e in found] == ["e1"]
        core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="stays")))
        deadline = time.monotonic() + 10
        while core.list_namespaced_event("default").items and time.monotonic() < deadline:
            time.sleep(0.2)
        assert core.list_namespaced_event("default").items == [], "events go after their TTL"
        assert core.read_namespaced_config_map("stays", "default").metadata.name == "stays"
    finally:
        short.stop()


def test_concurrent_patches_all_land(core, namespace):
    """Patches that do not pin a resourceVersion are retried on a lost race, never answered with 409."""
    from concurrent.futures import ThreadPoolExecutor
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="busy")))

    def bump(i):
        core.patch_namespaced_config_map("busy", namespace, {"data": {f"k{i}": str(i)}})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(bump, range(40)))
    assert len(core.read_namespaced_config_map("busy", namespace).data) == 40
