"""The process runtime (no root needed, no isolation) runs the node scenarios that need no isolation.

The same agent drives it as drives containerd; the differences users see are stated by the runtime: pods share the
host network (pod IP 127.0.0.1), so two pods cannot listen on one port.
"""
from __future__ import annotations

import subprocess
import time
import uuid
from typing import Iterator

import pytest

from harness import Kubectl
from nodeutil import BUSYBOX, Node, node_ready, wait_for


@pytest.fixture(scope="module")
def process_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Kubectl]]:
    n = Node(tmp_path_factory.mktemp("pnode"), runtime="process")
    n.start()
    kubectl = Kubectl(n.kubeconfig)
    try:
        wait_for("the node to be Ready", lambda: node_ready(kubectl, n.node_name), timeout=60)
        yield n, kubectl
    finally:
        try:
            kubectl.run("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--timeout=60s",
                        check=False, timeout=90)
        except subprocess.TimeoutExpired:
            pass
        n.stop()


@pytest.fixture
def pns(process_node: tuple[Node, Kubectl]) -> Iterator[str]:
    _, k = process_node
    name = "p-" + uuid.uuid4().hex[:8]
    k.run("create", "namespace", name)
    wait_for("the default service account", lambda: k.run(
        "get", "serviceaccount", "default", "-n", name, check=False).returncode == 0, timeout=20)
    yield name
    k.run("delete", "namespace", name, "--wait=false", check=False)


def test_node_reports_the_process_runtime(process_node: tuple[Node, Kubectl]) -> None:
    n, k = process_node
    node = k.json("get", "node", n.node_name)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("process://")


def test_run_logs_exec_and_delete(process_node: tuple[Node, Kubectl], pns: str) -> None:
    _, k = process_node
    k.run("run", "whoami", f"--image={BUSYBOX}", "-n", pns, "--", "sh", "-c", "echo started; exec sleep 3600")
    k.run("wait", "--for=condition=Ready", "pod/whoami", "-n", pns, "--timeout=60s")
    wait_for("the log line", lambda: "started" in k.run("logs", "whoami", "-n", pns).stdout)
    assert k.run("exec", "whoami", "-n", pns, "--", "sh", "-c", "echo $((6*7))").stdout.strip() == "42"
    assert k.run("exec", "whoami", "-n", pns, "--", "sh", "-c", "exit 3", check=False).returncode == 3
    assert k.run("exec", "-i", "whoami", "-n", pns, "--", "cat", input="via stdin\n").stdout == "via stdin\n"
    k.run("delete", "pod", "whoami", "-n", pns, "--timeout=60s")


def test_config_env_init_containers_and_volumes(process_node: tuple[Node, Kubectl], pns: str) -> None:
    _, k = process_node
    k.run("create", "configmap", "cfg", "--from-literal=greeting=hello", "-n", pns)
    k.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: wired, namespace: {pns}}}
spec:
  initContainers:
  - {{name: prepare, image: {BUSYBOX}, command: ["sh", "-c", "echo prepared > /work/marker"],
     volumeMounts: [{{name: work, mountPath: /work}}]}}
  containers:
  - name: main
    image: {BUSYBOX}
    command: ["sleep", "3600"]
    env: [{{name: GREETING, valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}}}]
    volumeMounts: [{{name: work, mountPath: /work}}]
  volumes: [{{name: work, emptyDir: {{}}}}]
""")
    k.run("wait", "--for=condition=Ready", "pod/wired", "-n", pns, "--timeout=60s")
    assert k.run("exec", "wired", "-n", pns, "--", "sh", "-c", "echo $GREETING; cat /work/marker").stdout.split() \
        == ["hello", "prepared"]


def test_jobs_and_graceful_termination(process_node: tuple[Node, Kubectl], pns: str) -> None:
    _, k = process_node
    k.apply(f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: batch, namespace: {pns}}}
spec:
  completions: 2
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: work, image: {BUSYBOX}, command: ["sh", "-c", "echo done"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: stubborn, namespace: {pns}}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - {{name: main, image: {BUSYBOX}, command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}}
""")
    k.run("wait", "--for=condition=Complete", "job/batch", "-n", pns, "--timeout=60s")
    k.run("wait", "--for=condition=Ready", "pod/stubborn", "-n", pns, "--timeout=60s")
    started = time.monotonic()
    k.run("delete", "pod", "stubborn", "-n", pns, "--timeout=60s")
    took = time.monotonic() - started
    assert 2.5 <= took < 15, f"SIGTERM ignored: killed after the 3 s grace period, took {took:.1f}s"
