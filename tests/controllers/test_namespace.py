"""The namespace controller against a real cluster: `kubectl delete namespace` empties it, then it goes.

Pods here use a scheduler name nobody serves, so they are never bound and their deletion is immediate.
"""
from __future__ import annotations

import time
import uuid

import pytest

from kates.controllers.namespace import ContentTotals, content_conditions, merge_conditions

NOBODY = "kates-test-no-scheduler"

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: trinkets.ns.kates.test}
spec:
  group: ns.kates.test
  scope: Namespaced
  names: {plural: trinkets, singular: trinket, kind: Trinket}
  versions:
  - {name: v1, served: true, storage: true,
     schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
"""


def content(ns: str) -> str:
    docs = [f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: {ns}}}\ndata: {{k: v}}"
            for i in range(3)]
    docs += [f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s-{i}, namespace: {ns}}}\nstringData: {{k: v}}"
             for i in range(2)]
    docs += [f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p-{i}, namespace: {ns}}}\n"
             f"spec: {{schedulerName: {NOBODY}, containers: [{{name: c, image: pause}}]}}" for i in range(2)]
    docs += [f"apiVersion: ns.kates.test/v1\nkind: Trinket\nmetadata: {{name: t-1, namespace: {ns}}}\n"
             f"spec: {{shiny: true}}"]
    docs += [f"apiVersion: v1\nkind: Service\nmetadata: {{name: svc, namespace: {ns}}}\n"
             f"spec: {{ports: [{{port: 80}}]}}"]
    return "\n---\n".join(docs)


@pytest.fixture(scope="module")
def trinkets(cluster_kubectl) -> None:
    cluster_kubectl.apply(CRD)
    cluster_kubectl.run("wait", "--for=condition=Established", "crd/trinkets.ns.kates.test", "--timeout=20s")


def wait_for(what: str, predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not reached in {timeout}s (last: {last!r})")


def test_deleting_a_namespace_empties_it_then_removes_it(cluster_kubectl, trinkets):
    ns = "doomed-" + uuid.uuid4().hex[:6]
    cluster_kubectl.run("create", "namespace", ns)
    cluster_kubectl.apply(content(ns))
    names = cluster_kubectl.run("get", "cm,secret,pods,trinkets,svc", "-n", ns, "-o", "name").stdout.split()
    assert len(names) >= 9
    started = time.monotonic()
    cluster_kubectl.run("delete", "namespace", ns, "--timeout=30s", timeout=40)
    assert time.monotonic() - started < 30
    gone = cluster_kubectl.run("get", "namespace", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    # nothing was left behind in the store either (the namespace could be recreated empty)
    cluster_kubectl.run("create", "namespace", ns)
    try:
        left = cluster_kubectl.run("get", "cm,secret,pods,trinkets,svc", "-n", ns, "-o", "name").stdout.split()
        assert [n for n in left if "kube-root-ca.crt" not in n] == []
    finally:
        cluster_kubectl.run("delete", "namespace", ns, "--wait=false", check=False)


def test_terminating_namespace_reports_what_remains(cluster_kubectl):
    ns = "held-" + uuid.uuid4().hex[:6]
    cluster_kubectl.run("create", "namespace", ns)
    cluster_kubectl.apply(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: held, namespace: {ns}, "
                          f"finalizers: [kates.test/hold]}}\n---\n"
                          f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: free, namespace: {ns}}}\n")
    cluster_kubectl.run("delete", "namespace", ns, "--wait=false")

    def conditions() -> dict[str, dict[str, str]] | None:
        obj = cluster_kubectl.json("get", "namespace", ns)
        conds = {c["type"]: c for c in obj["status"].get("conditions") or []}
        remaining = conds.get("NamespaceContentRemaining", {})
        return conds if remaining.get("status") == "True" else None
    conds = wait_for("content remaining reported", conditions)
    assert conds["NamespaceContentRemaining"]["reason"] == "SomeResourcesRemain"
    assert "configmaps has 1 resource instances" in conds["NamespaceContentRemaining"]["message"]
    assert conds["NamespaceFinalizersRemaining"]["status"] == "True"
    assert "kates.test/hold in 1 resource instances" in conds["NamespaceFinalizersRemaining"]["message"]
    assert conds["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
    obj = cluster_kubectl.json("get", "namespace", ns)
    assert obj["status"]["phase"] == "Terminating" and obj["spec"]["finalizers"] == ["kubernetes"]
    names = cluster_kubectl.run("get", "cm", "-n", ns, "-o", "name").stdout.split()
    assert names == ["configmap/held"], "everything not held was deleted"
    cluster_kubectl.run("patch", "configmap", "held", "-n", ns, "--type=json",
                        "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    cluster_kubectl.run("wait", "--for=delete", f"namespace/{ns}", "--timeout=20s", timeout=30)


def test_content_conditions():
    ok = content_conditions(ContentTotals())
    assert [c["type"] for c in ok] == ["NamespaceDeletionDiscoveryFailure", "NamespaceDeletionGroupVersionParsingFailure",
                                       "NamespaceDeletionContentFailure", "NamespaceContentRemaining",
                                       "NamespaceFinalizersRemaining"]
    assert all(c["status"] == "False" for c in ok)
    bad = {c["type"]: c for c in content_conditions(
        ContentTotals(remaining={"pods": 2, "widgets.example.com": 1}, finalizers={"example.com/x": 1},
                      failures=["secrets: boom"]), "Discovery failed: nope")}
    assert bad["NamespaceContentRemaining"]["message"] == (
        "Some resources are remaining: pods has 2 resource instances, widgets.example.com has 1 resource instances")
    assert bad["NamespaceFinalizersRemaining"]["reason"] == "SomeFinalizersRemain"
    assert bad["NamespaceDeletionContentFailure"]["status"] == "True"
    assert bad["NamespaceDeletionDiscoveryFailure"]["message"] == "Discovery failed: nope"
    merged = merge_conditions([{**ok[3], "lastTransitionTime": "t0"}], [ok[3], bad["NamespaceFinalizersRemaining"]],
                              "t1")
    assert {c["type"]: c["lastTransitionTime"] for c in merged} == {
        "NamespaceContentRemaining": "t0", "NamespaceFinalizersRemaining": "t1"}
