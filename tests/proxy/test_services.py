"""Services through the real kernel: nft rules from `kates proxy`, real containers behind them, real clients
(curl on the host, busybox wget in pods)."""
from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from harness import ROOT
from nodeutil import BUSYBOX, wait_for

pytestmark = pytest.mark.node

# httpd answering with the pod's hostname; on SIGTERM it keeps serving 2 s (the time the proxy needs to drop it)
WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {{rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}}}
  template:
    metadata: {{labels: {{app: {name}}}, annotations: {{rev: "{rev}"}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: {image}
        command: ["sh", "-c", "hostname > /tmp/index.html; httpd -f -p 8080 -h /tmp & pid=$!;
                  trap 'sleep 2; kill $pid; exit 0' TERM; wait"]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  type: {type}
  selector: {{app: {selector}}}
  ports: [{{port: {port}, targetPort: 8080}}]
{extra}
"""


def deploy(kubectl: Any, ns: str, name: str = "web", replicas: int = 2, type: str = "ClusterIP", port: int = 80,
           extra: str = "", selector: str | None = None) -> dict[str, Any]:
    """A Deployment and its Service; returns the Service once every replica is a ready endpoint."""
    if replicas:
        kubectl.apply(WEB.format(name=name, ns=ns, replicas=replicas, image=BUSYBOX, rev=1))
    kubectl.apply(SERVICE.format(name=name, ns=ns, type=type, port=port, extra=extra, selector=selector or name))
    if replicas:
        kubectl.run("rollout", "status", f"deploy/{name}", "-n", ns, "--timeout=60s")
        wait_for("ready endpoints", lambda: len(ready_ips(kubectl, ns, name)) == replicas, timeout=20)
    return kubectl.json("get", "svc", name, "-n", ns)


def ready_ips(kubectl: Any, ns: str, name: str) -> set[str]:
    slices = kubectl.json("get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={name}")["items"]
    return {a for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
            for a in e["addresses"]}


def pod_names(kubectl: Any, ns: str, app: str) -> set[str]:
    return {p["metadata"]["name"] for p in kubectl.json("get", "pods", "-n", ns, "-l", f"app={app}")["items"]}


def curl(url: str, timeout: float = 3) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-s", "--max-time", str(timeout), url], capture_output=True, text=True)


def answers(url: str, n: int) -> list[str]:
    return [curl(url).stdout.strip() for _ in range(n)]


def rules(node: Any) -> str:
    out = subprocess.run(["nft", "list", "table", "ip", f"kates-proxy-{node.node_name}"], capture_output=True,
                         text=True)
    return out.stdout


def served(node: Any, address: str) -> bool:
    return address in rules(node)


def client_pod(kubectl: Any, ns: str) -> None:
    kubectl.run("run", "client", f"--image={BUSYBOX}", "-n", ns, "--", "sleep", "3600")
    kubectl.run("wait", "--for=condition=Ready", "pod/client", "-n", ns, "--timeout=60s")


def test_cluster_ip_from_host_and_pod_balances(node, node_kubectl, node_ns):
    svc = deploy(node_kubectl, node_ns)
    ip = svc["spec"]["clusterIP"]
    pods = pod_names(node_kubectl, node_ns, "web")
    wait_for("the proxy to serve the cluster IP", lambda: curl(f"http://{ip}/").stdout.strip() in pods, timeout=10)
    seen = answers(f"http://{ip}/", 20)
    assert set(seen) == pods, f"from the host, both pods answer: {seen}"
    client_pod(node_kubectl, node_ns)
    out = node_kubectl.run("exec", "client", "-n", node_ns, "--", "sh", "-c",
                           f"for i in $(seq 20); do timeout 3 wget -qO- http://{ip}/; done").stdout.split()
    assert len(out) == 20 and set(out) == pods, f"from a pod, both pods answer: {out}"


def test_hairpin_pod_reaches_itself_through_its_service(node, node_kubectl, node_ns):
    svc = deploy(node_kubectl, node_ns, replicas=1)
    ip = svc["spec"]["clusterIP"]
    (pod,) = pod_names(node_kubectl, node_ns, "web")
    wait_for("the proxy", lambda: served(node, ip), timeout=10)
    out = node_kubectl.run("exec", pod, "-n", node_ns, "--", "sh", "-c",
                           f"for i in 1 2 3; do timeout 3 wget -qO- http://{ip}/; done").stdout.split()
    assert out == [pod] * 3


def test_node_port_on_the_node_address(node, node_kubectl, node_ns):
    svc = deploy(node_kubectl, node_ns, type="NodePort")
    port = svc["spec"]["ports"][0]["nodePort"]
    pods = pod_names(node_kubectl, node_ns, "web")
    wait_for("the node port", lambda: curl(f"http://192.0.2.2:{port}/").stdout.strip() in pods, timeout=10)
    assert set(answers(f"http://192.0.2.2:{port}/", 20)) == pods


def test_load_balancer_gets_an_address_and_answers(node, node_kubectl, node_ns):
    port = random.randint(20000, 29000)
    deploy(node_kubectl, node_ns, type="LoadBalancer", port=port)
    ingress = wait_for("status.loadBalancer", lambda: node_kubectl.json("get", "svc", "web", "-n", node_ns)
                       ["status"]["loadBalancer"]["ingress"], timeout=10)
    assert ingress[0]["ip"] == "192.0.2.2"
    pods = pod_names(node_kubectl, node_ns, "web")
    wait_for("the LB address to answer", lambda: curl(f"http://192.0.2.2:{port}/").stdout.strip() in pods,
             timeout=10)
    assert set(answers(f"http://192.0.2.2:{port}/", 20)) == pods


def test_session_affinity_sticks(node, node_kubectl, node_ns):
    svc = deploy(node_kubectl, node_ns, replicas=3, extra="  sessionAffinity: ClientIP\n"
                 "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}")
    ip = svc["spec"]["clusterIP"]
    pods = pod_names(node_kubectl, node_ns, "web")
    wait_for("the proxy", lambda: curl(f"http://{ip}/").stdout.strip() in pods, timeout=10)
    seen = answers(f"http://{ip}/", 15)
    assert len(set(seen)) == 1 and seen[0] in pods, seen


def test_selector_matching_nothing_is_refused_quickly(node, node_kubectl, node_ns):
    svc = deploy(node_kubectl, node_ns, replicas=0, selector="nothing")
    ip = svc["spec"]["clusterIP"]
    wait_for("the reject rule", lambda: served(node, ip), timeout=10)
    started = time.monotonic()
    result = curl(f"http://{ip}/", timeout=5)
    assert result.returncode == 7, "curl: connection refused"
    assert time.monotonic() - started < 1.0
    client_pod(node_kubectl, node_ns)
    started = time.monotonic()
    out = node_kubectl.run("exec", "client", "-n", node_ns, "--", "sh", "-c",
                           f"timeout 5 nc {ip} 80 </dev/null; echo rc=$?", check=False)
    assert "rc=1" in out.stdout and "refused" in out.stderr + out.stdout
    assert time.monotonic() - started < 3.0   # kubectl exec itself takes most of it


def test_endpoints_follow_readiness(node, node_kubectl, node_ns):
    svc = deploy(node_kubectl, node_ns, replicas=1)
    ip = svc["spec"]["clusterIP"]
    node_kubectl.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: late, namespace: {node_ns}, labels: {{app: web}}}}
spec:
  containers:
  - name: web
    image: {BUSYBOX}
    command: ["sh", "-c", "echo late > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
    readinessProbe: {{exec: {{command: [cat, /tmp/ready]}}, periodSeconds: 1}}
""")
    wait_for("late to run", lambda: node_kubectl.json("get", "pod", "late", "-n", node_ns)["status"].get("podIP"))
    wait_for("the proxy", lambda: curl(f"http://{ip}/").stdout.strip().startswith("web-"), timeout=10)
    assert "late" not in answers(f"http://{ip}/", 15), "an unready pod gets no traffic"
    node_kubectl.run("exec", "late", "-n", node_ns, "--", "touch", "/tmp/ready")
    wait_for("late to get traffic", lambda: "late" in answers(f"http://{ip}/", 6), timeout=15)


def test_rolling_update_and_scale_down_without_failed_requests(node, node_kubectl, node_ns):
    svc = deploy(node_kubectl, node_ns, replicas=3)
    url = f"http://{svc['spec']['clusterIP']}/"
    wait_for("the proxy", lambda: curl(url).stdout.strip().startswith("web-"), timeout=10)
    failures: list[str] = []
    count = 0
    stop = threading.Event()

    def loop() -> None:
        nonlocal count
        while not stop.is_set():
            r = curl(url, timeout=2)
            count += 1
            if not r.stdout.strip().startswith("web-"):
                failures.append(f"rc={r.returncode} {r.stdout!r}")
            time.sleep(0.02)
    t = threading.Thread(target=loop)
    t.start()
    try:
        node_kubectl.apply(WEB.format(name="web", ns=node_ns, replicas=3, image=BUSYBOX, rev=2))
        node_kubectl.run("rollout", "status", "deploy/web", "-n", node_ns, "--timeout=90s")
        node_kubectl.run("scale", "deploy/web", "-n", node_ns, "--replicas=1")
        wait_for("one pod left", lambda: len(pod_names(node_kubectl, node_ns, "web")) == 1, timeout=30)
        time.sleep(1)
    finally:
        stop.set()
        t.join()
    assert count > 50 and not failures, f"{len(failures)} of {count} requests failed: {failures[:5]}"


def test_rules_removed_when_the_service_is_deleted(node, node_kubectl, node_ns):
    svc = deploy(node_kubectl, node_ns, replicas=1, type="NodePort")
    ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    wait_for("the rules", lambda: served(node, ip) and f"tcp . {port} :" in rules(node), timeout=10)
    node_kubectl.run("delete", "svc", "web", "-n", node_ns)
    wait_for("the rules to go", lambda: not served(node, ip) and f"tcp . {port} :" not in rules(node), timeout=10)
    assert curl(f"http://{ip}/", timeout=1).returncode != 0


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_a_proxy_of_its_own_serves_then_removes_its_rules_when_stopped(node, node_kubectl, node_ns, backend):
    """A second `kates proxy` (own table / chain prefix) against the same cluster: serves, then cleans up."""
    svc = deploy(node_kubectl, node_ns, replicas=1)
    ip = svc["spec"]["clusterIP"]
    table = f"kpt{random.randint(1000, 9999)}"
    proc = subprocess.Popen([sys.executable, "-m", "kates.cli.main", "proxy", "--kubeconfig", str(node.kubeconfig),
                             "--node-name", node.node_name, "--node-ip", "192.0.2.2", "--backend", backend,
                             "--table", table, "--disable-servicelb"], cwd=ROOT, stderr=subprocess.PIPE, text=True)

    def listing() -> str:
        if backend == "nftables":
            return subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True).stdout
        return subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    try:
        wait_for("its rules", lambda: ip in listing() and table.upper() in listing().upper(), timeout=15)
        assert curl(f"http://{ip}/").stdout.strip().startswith("web-")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert table.upper() not in listing().upper(), "every rule of the stopped proxy is gone"



ECHO_SOURCE = """
apiVersion: v1
kind: Pod
metadata: {{name: echo, namespace: {ns}, labels: {{app: echo}}}}
spec:
  containers:
  - name: echo
    image: {image}
    command: ["sh", "-c", "mkdir -p /w/cgi-bin; printf '#!/bin/sh\\\\necho Content-Type: text/plain\\\\necho\\\\necho $REMOTE_ADDR\\\\n' > /w/cgi-bin/ip;
              chmod +x /w/cgi-bin/ip; exec httpd -f -p 8080 -h /w"]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"""


@pytest.mark.parametrize("policy", ["Cluster", "Local"])
def test_external_traffic_policy_masquerades_or_preserves_the_source(node, node_kubectl, node_ns, policy):
    """Through the NodePort from a pod: Cluster masquerades (the endpoint sees this node's bridge address),
    Local keeps the client's own address."""
    node_kubectl.apply(ECHO_SOURCE.format(ns=node_ns, image=BUSYBOX))
    svc = deploy(node_kubectl, node_ns, name="echo", replicas=0, type="NodePort",
                 extra=f"  externalTrafficPolicy: {policy}")
    node_kubectl.run("wait", "--for=condition=Ready", "pod/echo", "-n", node_ns, "--timeout=60s")
    client_pod(node_kubectl, node_ns)
    client_ip = node_kubectl.json("get", "pod", "client", "-n", node_ns)["status"]["podIP"]
    port = svc["spec"]["ports"][0]["nodePort"]
    wait_for("the node port", lambda: curl(f"http://192.0.2.2:{port}/cgi-bin/ip").stdout.strip(), timeout=15)
    seen = node_kubectl.run("exec", "client", "-n", node_ns, "--", "sh", "-c",
                            f"timeout 3 wget -qO- http://192.0.2.2:{port}/cgi-bin/ip").stdout.strip()
    seen = seen.removeprefix("[").removesuffix("]").removeprefix("::ffff:")   # httpd listens on IPv6 too
    if policy == "Local":
        assert seen == client_ip, "externalTrafficPolicy Local preserves the source address"
    else:
        assert seen != client_ip and node.in_pod_cidr(seen) and seen.endswith(".1"), \
            f"masqueraded to the node's bridge address, got {seen}"


def test_internal_traffic_policy_local_uses_only_this_nodes_endpoints(node, node_kubectl, node_ns):
    """A selectorless Service with a hand-written EndpointSlice: two real pods, one claimed by another node."""
    deploy(node_kubectl, node_ns, replicas=2)
    pods = {p["status"]["podIP"]: p["metadata"]["name"]
            for p in node_kubectl.json("get", "pods", "-n", node_ns, "-l", "app=web")["items"]}
    (here, here_name), (there, _) = sorted(pods.items())
    node_kubectl.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: local, namespace: {node_ns}}}
spec:
  internalTrafficPolicy: Local
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: local-1, namespace: {node_ns}, labels: {{kubernetes.io/service-name: local}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- {{addresses: ["{here}"], conditions: {{ready: true}}, nodeName: {node.node_name}}}
- {{addresses: ["{there}"], conditions: {{ready: true}}, nodeName: elsewhere}}
""")
    ip = node_kubectl.json("get", "svc", "local", "-n", node_ns)["spec"]["clusterIP"]
    wait_for("the proxy", lambda: curl(f"http://{ip}/").stdout.strip() == here_name, timeout=10)
    assert set(answers(f"http://{ip}/", 12)) == {here_name}
