"""The service account controller against a real cluster: each namespace gets its "default" ServiceAccount and
the "kube-root-ca.crt" ConfigMap, and gets them back when they are deleted or changed."""
from __future__ import annotations

import base64
import time
from typing import Any, Callable

import yaml

from kates.client.rest import Connection
from kates.controllers.serviceaccount import cluster_ca_bundle


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except AssertionError as e:   # kubectl says NotFound: not yet
            last = e
        if last and not isinstance(last, AssertionError):
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not reached in {timeout}s (last: {last!r})")


def kubeconfig_ca(path: Any) -> str:
    config = yaml.safe_load(open(path))
    return base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()


def test_new_namespace_gets_default_service_account_and_root_ca(cluster, cluster_kubectl, cluster_ns):
    sa = wait_for("default service account", lambda: cluster_kubectl.json("get", "sa", "default", "-n", cluster_ns))
    assert sa["metadata"]["name"] == "default"
    cm = wait_for("kube-root-ca.crt", lambda: cluster_kubectl.json("get", "cm", "kube-root-ca.crt", "-n", cluster_ns))
    assert cm["data"]["ca.crt"].strip() == kubeconfig_ca(cluster.kubeconfig).strip()


def test_deleted_default_service_account_comes_back(cluster_kubectl, cluster_ns):
    first = wait_for("default service account", lambda: cluster_kubectl.json("get", "sa", "default", "-n", cluster_ns))
    cluster_kubectl.run("delete", "sa", "default", "-n", cluster_ns)
    again = wait_for("a new default service account", lambda: (lambda sa: sa if sa["metadata"]["uid"] !=
                     first["metadata"]["uid"] else None)(cluster_kubectl.json("get", "sa", "default", "-n", cluster_ns)))
    assert again["metadata"]["name"] == "default"


def test_root_ca_config_map_is_restored(cluster, cluster_kubectl, cluster_ns):
    ca = kubeconfig_ca(cluster.kubeconfig).strip()
    wait_for("kube-root-ca.crt", lambda: cluster_kubectl.json("get", "cm", "kube-root-ca.crt", "-n", cluster_ns))
    cluster_kubectl.run("patch", "cm", "kube-root-ca.crt", "-n", cluster_ns, "--type=merge",
                        "-p", '{"data": {"ca.crt": "tampered"}}')
    wait_for("the CA put back", lambda: cluster_kubectl.json(
        "get", "cm", "kube-root-ca.crt", "-n", cluster_ns)["data"]["ca.crt"].strip() == ca)
    cluster_kubectl.run("delete", "cm", "kube-root-ca.crt", "-n", cluster_ns)
    wait_for("kube-root-ca.crt recreated", lambda: cluster_kubectl.json(
        "get", "cm", "kube-root-ca.crt", "-n", cluster_ns)["data"]["ca.crt"].strip() == ca)


def test_terminating_namespace_gets_nothing_new(cluster_kubectl):
    import uuid
    ns = "sa-" + uuid.uuid4().hex[:6]
    cluster_kubectl.run("create", "namespace", ns)
    wait_for("default service account", lambda: cluster_kubectl.json("get", "sa", "default", "-n", ns))
    cluster_kubectl.run("delete", "namespace", ns, "--timeout=30s", timeout=40)
    gone = cluster_kubectl.run("get", "namespace", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_cluster_ca_bundle_is_the_kubeconfig_authority(cluster):
    connection = Connection.from_kubeconfig(cluster.kubeconfig)
    assert cluster_ca_bundle(connection).strip() == kubeconfig_ca(cluster.kubeconfig).strip()
