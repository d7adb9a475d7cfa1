"""The real kubectl 1.32 drives `kates server` through every command of the wire contract."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import time

import pytest

CM = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {ns}
  labels: {{app: demo, tier: {tier}}}
data:
  color: {color}
"""

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {image}
        env: [{{name: VERSION, value: "1"}}, {{name: OTHER, value: "x"}}]
        ports: [{{containerPort: 8080}}]
"""


def test_version_is_1_32(kubectl):
    out = json.loads(kubectl.run("version", "-o", "json").stdout)
    assert out["serverVersion"]["major"] == "1" and out["serverVersion"]["minor"] == "32"
    assert out["serverVersion"]["gitVersion"].startswith("v1.32.")


def test_api_resources_have_short_names_and_categories(kubectl):
    out = kubectl.run("api-resources").stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert " deploy " in lines["deployments"] and "apps/v1" in lines["deployments"]
    assert " po " in lines["pods"] and " svc " in lines["services"]
    assert "horizontalpodautoscalers" in lines and "customresourcedefinitions" in lines
    names = kubectl.run("api-resources", "--namespaced=false", "-o", "name").stdout.split()
    assert "nodes" in names and "namespaces" in names and "pods" not in names


def test_default_namespaces_and_kubernetes_service(kubectl):
    names = kubectl.run("get", "ns", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-public",
            "namespace/kube-node-lease"} <= set(names)
    svc = kubectl.json("get", "svc", "kubernetes", "-n", "default")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    assert svc["spec"]["ports"][0]["port"] == 443


def test_get_output_formats(kubectl, ns):
    kubectl.apply(CM.format(ns=ns, tier="a", color="blue"))
    table = kubectl.run("get", "cm", "settings", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"]
    assert table[1].split()[:2] == ["settings", "1"]
    assert kubectl.run("get", "cm", "settings", "-n", ns, "-o", "name").stdout.strip() == "configmap/settings"
    assert kubectl.run("get", "cm", "settings", "-n", ns, "-o", "jsonpath={.data.color}").stdout == "blue"
    assert "color: blue" in kubectl.run("get", "cm", "settings", "-n", ns, "-o", "yaml").stdout
    labels = kubectl.run("get", "cm", "-n", ns, "--show-labels").stdout
    assert "app=demo" in labels
    everywhere = kubectl.run("get", "cm", "-A").stdout
    assert ns in everywhere and "settings" in everywhere
    sorted_out = kubectl.run("get", "cm", "-n", ns, "--sort-by=.metadata.name", "-o", "name").stdout
    assert "configmap/settings" in sorted_out


def test_wide_columns(kubectl, ns):
    kubectl.apply(DEPLOY.format(ns=ns, replicas=2, image="busybox"))
    header = kubectl.run("get", "deploy", "-n", ns).stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    wide = kubectl.run("get", "deploy", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES",
                               "SELECTOR"]
    assert wide[1].split()[5:] == ["web", "busybox", "app=web"]


def test_client_side_apply_diff(kubectl, ns):
    assert "created" in kubectl.apply(CM.format(ns=ns, tier="a", color="blue")).stdout
    assert "unchanged" in kubectl.apply(CM.format(ns=ns, tier="a", color="blue")).stdout
    diff = kubectl.run("diff", "-f", "-", input=CM.format(ns=ns, tier="b", color="red"), check=False)
    assert diff.returncode == 1 and "+  color: red" in diff.stdout
    assert kubectl.json("get", "cm", "settings", "-n", ns)["data"]["color"] == "blue"
    assert "configured" in kubectl.apply(CM.format(ns=ns, tier="b", color="red")).stdout
    cm = kubectl.json("get", "cm", "settings", "-n", ns)
    assert cm["data"]["color"] == "red" and cm["metadata"]["labels"]["tier"] == "b"
    # removing a field from the manifest removes it from the object (three-way merge)
    kubectl.apply(CM.format(ns=ns, tier="b", color="red").replace("  labels: {app: demo, tier: b}\n", ""))
    assert not kubectl.json("get", "cm", "settings", "-n", ns)["metadata"].get("labels")


def test_server_side_apply_conflicts_and_force(kubectl, ns):
    kubectl.run("apply", "--server-side", "--field-manager=alice", "-f", "-",
                input=CM.format(ns=ns, tier="a", color="blue"))
    clash = kubectl.run("apply", "--server-side", "--field-manager=bob", "-f", "-",
                        input=CM.format(ns=ns, tier="a", color="green"), check=False)
    assert clash.returncode != 0 and "conflict" in clash.stderr.lower() and "alice" in clash.stderr
    kubectl.run("apply", "--server-side", "--force-conflicts", "--field-manager=bob", "-f", "-",
                input=CM.format(ns=ns, tier="a", color="green"))
    cm = kubectl.json("get", "cm", "settings", "-n", ns, "--show-managed-fields")
    assert cm["data"]["color"] == "green"
    managers = {m["manager"]: m for m in cm["metadata"]["managedFields"]}
    assert "f:color" in json.dumps(managers["bob"]["fieldsV1"])
    assert "f:color" not in json.dumps(managers["alice"]["fieldsV1"])


def test_create_kinds_over_protobuf(kubectl, ns):
    kubectl.run("create", "deployment", "hello", "--image=busybox", "--replicas=2", "--port=8080", "-n", ns)
    kubectl.run("create", "configmap", "lit", "--from-literal=a=1", "--from-literal=b=2", "-n", ns)
    kubectl.run("create", "secret", "generic", "pw", "--from-literal=password=s3cr3t", "-n", ns)
    kubectl.run("create", "service", "clusterip", "hello", "--tcp=80:8080", "-n", ns)
    kubectl.run("create", "service", "nodeport", "hello-np", "--tcp=80:8080", "-n", ns)
    kubectl.run("create", "job", "once", "--image=busybox", "-n", ns, "--", "echo", "hi")
    kubectl.run("create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "-n", ns)
    kubectl.run("create", "quota", "q", "--hard=pods=4,cpu=2", "-n", ns)
    kubectl.run("create", "serviceaccount", "robot", "-n", ns)
    deploy = kubectl.json("get", "deploy", "hello", "-n", ns)
    assert deploy["spec"]["replicas"] == 2
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "busybox" and container["ports"][0]["containerPort"] == 8080
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert deploy["spec"]["revisionHistoryLimit"] == 10
    assert kubectl.json("get", "cm", "lit", "-n", ns)["data"] == {"a": "1", "b": "2"}
    pw = kubectl.run("get", "secret", "pw", "-n", ns, "-o", "jsonpath={.data.password}").stdout
    assert base64.b64decode(pw) == b"s3cr3t"
    svc = kubectl.json("get", "svc", "hello", "-n", ns)
    assert svc["spec"]["clusterIP"].startswith("10.") and svc["spec"]["ports"][0]["targetPort"] == 8080
    node_port = kubectl.json("get", "svc", "hello-np", "-n", ns)["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    job = kubectl.json("get", "job", "once", "-n", ns)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    assert kubectl.json("get", "cronjob", "tick", "-n", ns)["spec"]["schedule"] == "*/5 * * * *"
    assert kubectl.json("get", "quota", "q", "-n", ns)["spec"]["hard"] == {"pods": "4", "cpu": "2"}
    kubectl.run("create", "namespace", ns + "-extra")
    assert kubectl.json("get", "ns", ns + "-extra")["status"]["phase"] == "Active"
    kubectl.run("delete", "ns", ns + "-extra", "--wait=false")


def test_replace_with_stale_resource_version_conflicts(kubectl, ns):
    kubectl.apply(CM.format(ns=ns, tier="a", color="blue"))
    stale = kubectl.json("get", "cm", "settings", "-n", ns)
    kubectl.run("label", "cm", "settings", "-n", ns, "touched=yes")
    stale["data"]["color"] = "black"
    lost = kubectl.run("replace", "-f", "-", input=json.dumps(stale), check=False)
    assert lost.returncode != 0 and "Conflict" in lost.stderr and "the object has been modified" in lost.stderr
    assert kubectl.json("get", "cm", "settings", "-n", ns)["data"]["color"] == "blue"
    fresh = kubectl.json("get", "cm", "settings", "-n", ns)
    fresh["data"]["color"] = "black"
    kubectl.run("replace", "-f", "-", input=json.dumps(fresh))
    assert kubectl.json("get", "cm", "settings", "-n", ns)["data"]["color"] == "black"


def test_patch_types(kubectl, ns):
    kubectl.apply(DEPLOY.format(ns=ns, replicas=1, image="busybox"))
    kubectl.run("patch", "deploy", "web", "-n", ns, "-p",
                json.dumps({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "busybox:2"}]}}}}))
    c = kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["template"]["spec"]["containers"]
    assert c[0]["image"] == "busybox:2" and c[0]["ports"][0]["containerPort"] == 8080, "strategic merge by name"
    kubectl.run("patch", "deploy", "web", "-n", ns, "--type=merge", "-p", json.dumps({"spec": {"replicas": 3}}))
    assert kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 3
    kubectl.run("patch", "deploy", "web", "-n", ns, "--type=json", "-p",
                json.dumps([{"op": "replace", "path": "/spec/replicas", "value": 4}]))
    d = kubectl.json("get", "deploy", "web", "-n", ns)
    assert d["spec"]["replicas"] == 4 and d["metadata"]["generation"] == 4


def test_set_env_image_restart_label_annotate_scale(kubectl, ns):
    kubectl.apply(DEPLOY.format(ns=ns, replicas=1, image="busybox"))
    kubectl.run("set", "env", "deploy/web", "VERSION=2", "-n", ns)
    env = kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "VERSION", "value": "2"} in env and {"name": "OTHER", "value": "x"} in env
    kubectl.run("set", "env", "deploy/web", "OTHER-", "-n", ns)
    env = kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "VERSION", "value": "2"}]
    kubectl.run("set", "image", "deploy/web", "web=busybox:3", "-n", ns)
    kubectl.run("rollout", "restart", "deploy/web", "-n", ns)
    d = kubectl.json("get", "deploy", "web", "-n", ns)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:3"
    assert "kubectl.kubernetes.io/restartedAt" in d["spec"]["template"]["metadata"]["annotations"]
    kubectl.run("label", "deploy", "web", "-n", ns, "team=blue")
    kubectl.run("annotate", "deploy", "web", "-n", ns, "note=hello")
    kubectl.run("scale", "deploy/web", "--replicas=5", "-n", ns)
    d = kubectl.json("get", "deploy", "web", "-n", ns)
    assert d["metadata"]["labels"]["team"] == "blue" and d["metadata"]["annotations"]["note"] == "hello"
    assert d["spec"]["replicas"] == 5
    kubectl.run("label", "deploy", "web", "-n", ns, "team-")
    assert "team" not in (kubectl.json("get", "deploy", "web", "-n", ns)["metadata"].get("labels") or {})


def test_edit_with_an_editor(kubectl, ns):
    kubectl.apply(CM.format(ns=ns, tier="a", color="blue"))
    env = kubectl.env(EDITOR="sed -i s/color:\\ blue/color:\\ purple/", KUBE_EDITOR="")
    kubectl.run("edit", "cm", "settings", "-n", ns, env=env)
    assert kubectl.json("get", "cm", "settings", "-n", ns)["data"]["color"] == "purple"


def test_delete_and_cascade_options(kubectl, ns):
    kubectl.apply(CM.format(ns=ns, tier="a", color="blue"))
    kubectl.run("delete", "cm", "settings", "-n", ns)
    gone = kubectl.run("get", "cm", "settings", "-n", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    kubectl.apply(DEPLOY.format(ns=ns, replicas=1, image="busybox"))
    kubectl.run("delete", "deploy", "web", "-n", ns, "--cascade=orphan", "--wait=false")
    d = kubectl.json("get", "deploy", "web", "-n", ns)
    assert "orphan" in d["metadata"]["finalizers"] and d["metadata"]["deletionTimestamp"]
    # removing the finalizer lets the object go, as the garbage collector will do
    kubectl.run("patch", "deploy", "web", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    assert kubectl.run("get", "deploy", "web", "-n", ns, check=False).returncode != 0
    kubectl.run("create", "cm", "a", "-n", ns)
    kubectl.run("create", "cm", "b", "-n", ns)
    kubectl.run("label", "cm", "a", "b", "-n", ns, "batch=1")
    kubectl.run("delete", "cm", "-l", "batch=1", "-n", ns)
    assert kubectl.run("get", "cm", "-l", "batch=1", "-n", ns, "-o", "name").stdout == ""


def test_explain(kubectl):
    out = kubectl.run("explain", "deployment.spec.replicas").stdout
    assert "replicas" in out and "<integer>" in out
    assert "containers" in kubectl.run("explain", "pods.spec").stdout


def test_watch_prints_changes(kubectl, ns):
    watcher = subprocess.Popen(["kubectl", "get", "cm", "-n", ns, "-w"], env=kubectl.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        kubectl.apply(CM.format(ns=ns, tier="a", color="blue"))
        kubectl.run("label", "cm", "settings", "-n", ns, "more=yes")
        time.sleep(1.5)
    finally:
        watcher.terminate()
    out = watcher.communicate(timeout=10)[0]
    assert out.count("settings") >= 2, out
    assert out.splitlines()[0].split() == ["NAME", "DATA", "AGE"]


def test_errors_are_clear_and_change_nothing(kubectl, ns):
    missing = kubectl.run("get", "pod", "nope", "-n", ns, check=False)
    assert missing.returncode != 0 and 'pods "nope" not found' in missing.stderr
    kubectl.apply(CM.format(ns=ns, tier="a", color="blue"))
    dup = kubectl.run("create", "-f", "-", input=CM.format(ns=ns, tier="a", color="blue"), check=False)
    assert dup.returncode != 0 and "AlreadyExists" in dup.stderr
    strict = kubectl.run("apply", "-f", "-", check=False,
                         input=CM.format(ns=ns, tier="a", color="green").replace("\ndata:", "\ndta:"))
    assert strict.returncode != 0 and 'unknown field "dta"' in strict.stderr
    bad_name = kubectl.run("apply", "-f", "-", check=False,
                           input=CM.format(ns=ns, tier="a", color="blue").replace("name: settings", "name: Not_Valid"))
    assert bad_name.returncode != 0 and "Invalid" in bad_name.stderr and "metadata.name" in bad_name.stderr
    wrong_type = kubectl.run("apply", "-f", "-", check=False,
                             input=DEPLOY.format(ns=ns, replicas='"three"', image="busybox"))
    assert wrong_type.returncode != 0 and "replicas" in wrong_type.stderr
    unknown_kind = kubectl.run("apply", "-f", "-", check=False,
                               input=f"apiVersion: v1\nkind: Gizmo\nmetadata: {{name: g, namespace: {ns}}}\n")
    assert unknown_kind.returncode != 0 and "Gizmo" in unknown_kind.stderr
    assert kubectl.json("get", "cm", "settings", "-n", ns)["data"]["color"] == "blue"
    assert kubectl.run("get", "deploy", "-n", ns, "-o", "name").stdout == ""


def test_selectors(kubectl, ns):
    for tier in ["a", "b"]:
        kubectl.apply(CM.format(ns=ns, tier=tier, color="x").replace("name: settings", f"name: cm-{tier}"))
    assert kubectl.run("get", "cm", "-n", ns, "-l", "tier=b", "-o", "name").stdout.split() == ["configmap/cm-b"]
    assert kubectl.run("get", "cm", "-n", ns, "-l", "tier in (a,b),app=demo", "-o", "name").stdout.split() == \
        ["configmap/cm-a", "configmap/cm-b"]
    assert kubectl.run("get", "cm", "-n", ns, "-l", "tier!=a,app", "-o", "name").stdout.split() == ["configmap/cm-b"]
    kubectl.run("create", "cm", "untiered", "-n", ns)
    assert kubectl.run("get", "cm", "-n", ns, "-l", "!tier", "-o", "name").stdout.split() == ["configmap/untiered"]
    assert kubectl.run("get", "cm", "-n", ns, "--field-selector", "metadata.name=cm-a",
                       "-o", "name").stdout.split() == ["configmap/cm-a"]
    bad = kubectl.run("get", "cm", "-n", ns, "--field-selector", "data.color=x", check=False)
    assert bad.returncode != 0 and "field label not supported" in bad.stderr


def test_pagination_through_kubectl_chunks(kubectl, ns):
    for i in range(7):
        kubectl.run("create", "cm", f"page-{i}", "-n", ns)
    out = kubectl.run("get", "cm", "-n", ns, "--chunk-size=2", "-o", "name").stdout.split()
    assert [n for n in out if "page-" in n] == [f"configmap/page-{i}" for i in range(7)]


def test_custom_resources(kubectl, ns):
    kubectl.apply("""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
          status:
            type: object
            properties:
              ok: {type: boolean}
""")
    kubectl.run("wait", "--for=condition=Established", "crd/gadgets.example.com", "--timeout=30s")
    kubectl.apply(f"apiVersion: example.com/v1\nkind: Gadget\nmetadata: {{name: g1, namespace: {ns}}}\n"
                  "spec: {size: 3}\n")
    assert kubectl.json("get", "gd", "g1", "-n", ns)["spec"]["size"] == 3
    table = kubectl.run("get", "gadgets", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE"] and table[1].split()[:2] == ["g1", "3"]
    wrong = kubectl.run("apply", "-f", "-", check=False, input=(
        f"apiVersion: example.com/v1\nkind: Gadget\nmetadata: {{name: g2, namespace: {ns}}}\nspec: {{size: big}}\n"))
    assert wrong.returncode != 0 and "spec.size" in wrong.stderr
    too_small = kubectl.run("apply", "-f", "-", check=False, input=(
        f"apiVersion: example.com/v1\nkind: Gadget\nmetadata: {{name: g3, namespace: {ns}}}\nspec: {{size: 0}}\n"))
    assert too_small.returncode != 0 and "spec.size" in too_small.stderr
    # status changes only through the status subresource
    kubectl.run("patch", "gadget", "g1", "-n", ns, "--type=merge", "-p", '{"status":{"ok":true}}')
    assert kubectl.json("get", "gadget", "g1", "-n", ns).get("status", {}).get("ok") is None
    kubectl.run("patch", "gadget", "g1", "-n", ns, "--subresource=status", "--type=merge",
                "-p", '{"status":{"ok":true}}')
    assert kubectl.json("get", "gadget", "g1", "-n", ns)["status"]["ok"] is True
    kubectl.run("delete", "crd", "gadgets.example.com", "--timeout=30s")
    gone = kubectl.run("get", "gadgets", "-n", ns, check=False)
    assert gone.returncode != 0


def test_service_type_changes_keep_and_free_allocations(kubectl, ns):
    kubectl.run("create", "service", "clusterip", "flip", "--tcp=80:8080", "-n", ns)
    ip = kubectl.json("get", "svc", "flip", "-n", ns)["spec"]["clusterIP"]
    kubectl.run("patch", "svc", "flip", "-n", ns, "-p", json.dumps({"spec": {"type": "NodePort"}}))
    svc = kubectl.json("get", "svc", "flip", "-n", ns)
    port = svc["spec"]["ports"][0]["nodePort"]
    assert svc["spec"]["clusterIP"] == ip and 30000 <= port <= 32767
    # the port is taken: nobody else gets it
    clash = kubectl.run("create", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "clash", "namespace": ns},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}}))
    assert clash.returncode != 0 and "provided port is already allocated" in clash.stderr
    kubectl.run("patch", "svc", "flip", "-n", ns, "-p", json.dumps({"spec": {"type": "ClusterIP"}}))
    assert "nodePort" not in kubectl.json("get", "svc", "flip", "-n", ns)["spec"]["ports"][0]
    # freed when the service stops using it
    kubectl.run("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "clash", "namespace": ns},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}}))
    kubectl.run("patch", "svc", "flip", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"type": "ExternalName", "externalName": "example.com", "clusterIP": None, "clusterIPs": None}}))
    assert "clusterIP" not in kubectl.json("get", "svc", "flip", "-n", ns)["spec"]
    kubectl.run("create", "cm", "after-flip", "-n", ns)   # the server keeps serving after allocations change
    kubectl.run("create", "service", "clusterip", "reuse", f"--clusterip={ip}", "--tcp=80:80", "-n", ns)
    assert kubectl.json("get", "svc", "reuse", "-n", ns)["spec"]["clusterIP"] == ip
