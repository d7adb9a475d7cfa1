"""NetworkPolicies enforced on a real node: busybox httpd pods on the node's CNI bridge, clients using wget through
kubectl exec, the `kates network-policy` child programming nftables. Every pod here serves HTTP on 8080 (named
port `http`) and 8081 (unnamed) and answers its own name, so each one is both a server and a client.

All pods share one bridge: every allow/deny below is bridged pod-to-pod traffic, filtered by the inet forward hook.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any, Iterator

import pytest

from nodeutil import BUSYBOX, Node, wait_for
from harness import Kubectl

pytestmark = [pytest.mark.node]

POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "echo {name} > /tmp/index.html; httpd -p 8081 -h /tmp; exec httpd -f -p 8080 -h /tmp"]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
"""


class Pods:
    """The pods of this module: `web`, `client` (role=client), `stranger` in one namespace; `friend`
    (role=client) in a second namespace labelled team=friends."""

    def __init__(self, kubectl: Kubectl, ns: str, other_ns: str) -> None:
        self.kubectl, self.ns, self.other_ns = kubectl, ns, other_ns
        self.ip: dict[str, str] = {}

    def ns_of(self, name: str) -> str:
        return self.other_ns if name == "friend" else self.ns

    def reach(self, src: str, dst: str, port: int = 8080, wait: int = 2) -> bool:
        """Does `src` get `dst`'s page over HTTP? (a fresh connection each time: wget in the pod)"""
        proc = self.kubectl.run("exec", src, "-n", self.ns_of(src), "--", "sh", "-c",
                                f"timeout {wait} wget -qO- http://{self.ip[dst]}:{port}/", check=False, timeout=20)
        return proc.returncode == 0 and proc.stdout.strip() == dst

    def blocked(self, src: str, dst: str, port: int = 8080) -> bool:
        """No answer within 1 s: on one bridge an allowed connection answers in milliseconds."""
        return not self.reach(src, dst, port, wait=1)

    def wait_reach(self, src: str, dst: str, expected: bool, port: int = 8080, timeout: float = 20) -> None:
        wait_for(f"{src} -> {dst}:{port} {'allowed' if expected else 'blocked'}",
                 lambda: self.reach(src, dst, port, wait=2 if expected else 1) == expected,
                 timeout=timeout, interval=0.1)

    def policy(self, name: str, spec: dict[str, Any]) -> None:
        self.kubectl.apply(json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                       "metadata": {"name": name, "namespace": self.ns}, "spec": spec}))


@pytest.fixture(scope="module")
def pods(node: Node, node_kubectl: Kubectl) -> Iterator[Pods]:
    suffix = uuid.uuid4().hex[:6]
    ns, other = f"np-{suffix}", f"np-friends-{suffix}"
    node_kubectl.run("create", "namespace", ns)
    node_kubectl.run("create", "namespace", other)
    node_kubectl.run("label", "namespace", other, "team=friends")
    p = Pods(node_kubectl, ns, other)
    try:
        for name, labels in (("web", "{app: web}"), ("client", "{role: client}"), ("stranger", "{}"),
                             ("friend", "{role: client}")):
            wait_for("the default service account", lambda: node_kubectl.run(
                "get", "serviceaccount", "default", "-n", p.ns_of(name), check=False).returncode == 0, timeout=20)
            node_kubectl.apply(POD.format(name=name, ns=p.ns_of(name), labels=labels, image=BUSYBOX))
        for name in ("web", "client", "stranger", "friend"):
            node_kubectl.run("wait", "--for=condition=Ready", f"pod/{name}", "-n", p.ns_of(name), "--timeout=60s")
            p.ip[name] = node_kubectl.json("get", "pod", name, "-n", p.ns_of(name))["status"]["podIP"]
        yield p
    finally:
        for name in (ns, other):
            node_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def clean(pods: Pods) -> Iterator[Pods]:
    """Each test starts and ends with no policy: traffic flows again before the next one."""
    yield pods
    pods.kubectl.run("delete", "networkpolicy", "--all", "-n", pods.ns, check=False)
    pods.wait_reach("client", "web", True)


def table_exists(node: Node) -> bool:
    from kates.proxy.networkpolicy import table_name
    return subprocess.run(["nft", "list", "table", "inet", table_name(node.node_name)],
                          capture_output=True).returncode == 0


def host_reaches(pods: Pods, name: str) -> bool:
    out = subprocess.run(["curl", "-s", "--max-time", "2", f"http://{pods.ip[name]}:8080/"],
                         capture_output=True, text=True).stdout.strip()
    return out == name


def test_default_deny_ingress_blocks_clients_and_deleting_it_restores_traffic(clean: Pods, node: Node) -> None:
    pods = clean
    assert pods.reach("client", "web")
    assert not table_exists(node), "no policy, no table"
    started = time.monotonic()
    pods.policy("deny", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]})
    pods.wait_reach("client", "web", False)
    print(f"deny effective after {time.monotonic() - started:.2f}s")
    assert table_exists(node)
    assert pods.blocked("friend", "web")
    assert pods.reach("web", "client"), "web is isolated for ingress only: its own connections go out"
    assert host_reaches(pods, "web"), "the node always reaches its pods (kubelet probes)"
    time.sleep(2)   # a few readiness probe periods
    conditions = pods.kubectl.json("get", "pod", "web", "-n", pods.ns)["status"]["conditions"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in conditions), "probes still pass"

    pods.kubectl.run("delete", "networkpolicy", "deny", "-n", pods.ns)
    pods.wait_reach("client", "web", True)
    wait_for("the table to go", lambda: not table_exists(node), timeout=10)


def test_allow_from_pods_with_role_client_only(clean: Pods) -> None:
    pods = clean
    pods.policy("allow-clients", {"podSelector": {"matchLabels": {"app": "web"}},
                                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})
    pods.wait_reach("stranger", "web", False)
    assert pods.reach("client", "web")
    assert pods.blocked("friend", "web"), "a podSelector alone selects pods of the policy's namespace only"


def test_namespace_selector_and_combined_selector(clean: Pods) -> None:
    pods = clean
    pods.policy("from-friends", {"podSelector": {"matchLabels": {"app": "web"}},
                                 "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "friends"}}}]}]})
    pods.wait_reach("client", "web", False)
    assert pods.reach("friend", "web")
    # both selectors in one peer: pods with role=client AND in a friends namespace; friend has role=client
    pods.policy("from-friends", {"podSelector": {"matchLabels": {"app": "web"}},
                                 "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "friends"}},
                                                        "podSelector": {"matchLabels": {"role": "server"}}}]}]})
    pods.wait_reach("friend", "web", False)
    pods.kubectl.run("label", "pod", "friend", "-n", pods.other_ns, "role=server", "--overwrite")
    try:
        pods.wait_reach("friend", "web", True)
        assert pods.blocked("client", "web")
    finally:
        pods.kubectl.run("label", "pod", "friend", "-n", pods.other_ns, "role=client", "--overwrite")


def test_ip_block_with_except(clean: Pods, node: Node) -> None:
    pods = clean
    pods.policy("cidr", {"podSelector": {"matchLabels": {"app": "web"}},
                         "ingress": [{"from": [{"ipBlock": {"cidr": node.pod_cidr,
                                                            "except": [pods.ip["client"] + "/32"]}}]}]})
    pods.wait_reach("client", "web", False)
    assert pods.reach("stranger", "web")
    assert pods.reach("friend", "web")


def test_egress_deny_then_allow_to_one_pod(clean: Pods) -> None:
    pods = clean
    pods.policy("client-egress", {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"]})
    pods.wait_reach("client", "web", False)
    assert pods.blocked("client", "stranger")
    assert pods.reach("web", "client"), "egress isolation leaves ingress open (and its replies pass)"
    pods.policy("client-egress", {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
                                  "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                              "ports": [{"port": 8080}]}]})
    pods.wait_reach("client", "web", True)
    assert pods.blocked("client", "stranger")
    assert pods.blocked("client", "web", 8081), "only the allowed port"


def test_named_port_and_port_range(clean: Pods) -> None:
    pods = clean
    pods.policy("http-only", {"podSelector": {"matchLabels": {"app": "web"}},
                              "ingress": [{"ports": [{"port": "http"}]}]})
    pods.wait_reach("client", "web", False, port=8081)
    assert pods.reach("client", "web", 8080), "the named port resolves to the pod's 8080"
    assert pods.reach("stranger", "web", 8080)
    pods.policy("http-only", {"podSelector": {"matchLabels": {"app": "web"}},
                              "ingress": [{"ports": [{"port": 8081, "endPort": 8090}]}]})
    pods.wait_reach("client", "web", True, port=8081)
    assert pods.blocked("client", "web", 8080)


def test_egress_to_a_named_port(clean: Pods) -> None:
    pods = clean
    pods.policy("egress-http", {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
                                "egress": [{"ports": [{"port": "http", "protocol": "TCP"}]}]})
    pods.wait_reach("client", "web", False, port=8081)
    assert pods.reach("client", "web", 8080), "http is 8080 on the destination pod"


def test_a_controller_process_programs_its_table_and_removes_it_on_sigterm(clean: Pods, node: Node) -> None:
    """A second controller process for this node, on a table of its own: how long from `kubectl apply` to rules in
    the kernel, and nothing left after SIGTERM (what the supervisor sends at shutdown)."""
    import signal
    import sys
    from harness import ROOT
    table = f"kates-netpol-t{uuid.uuid4().hex[:6]}"
    listed = lambda: subprocess.run(["nft", "list", "table", "inet", table], capture_output=True,
                                    text=True).stdout
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO);"
            "from kates.proxy.networkpolicy import main; sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(node.kubeconfig), node.node_name, table], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)   # its informers list and watch
        started = time.monotonic()
        clean.policy("deny", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]})
        wait_for("the table", lambda: clean.ip["web"] in listed(), timeout=10, interval=0.01)
        print(f"\npolicy applied to the kernel {1000 * (time.monotonic() - started):.0f} ms after kubectl apply")
        assert "drop" in listed()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert listed() == "", f"table left behind:\n{err}"


def test_a_pod_started_under_a_policy_is_isolated_and_still_probed(clean: Pods) -> None:
    pods = clean
    pods.policy("deny-late", {"podSelector": {"matchLabels": {"app": "late"}}, "policyTypes": ["Ingress"]})
    pods.kubectl.apply(POD.format(name="late", ns=pods.ns, labels="{app: late}", image=BUSYBOX))
    try:
        pods.kubectl.run("wait", "--for=condition=Ready", "pod/late", "-n", pods.ns, "--timeout=60s")
        pods.ip["late"] = pods.kubectl.json("get", "pod", "late", "-n", pods.ns)["status"]["podIP"]
        pods.wait_reach("client", "late", False)
        assert pods.reach("client", "web"), "the policy selects app=late only"
    finally:
        pods.kubectl.run("delete", "pod", "late", "-n", pods.ns, "--grace-period=1", "--wait=false", check=False)
