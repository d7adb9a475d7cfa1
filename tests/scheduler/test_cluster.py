"""The scheduler inside the whole control plane (the shared `cluster`: controllers, scheduler, hollow nodes):
a Deployment's pods are bound to the hollow nodes and spread over them."""
from __future__ import annotations

import json
import time

from harness import Kubectl


def test_deployment_pods_are_scheduled_on_hollow_nodes(cluster_kubectl: Kubectl, cluster_ns: str) -> None:
    k = cluster_kubectl
    deadline = time.monotonic() + 30
    nodes: list[str] = []
    while time.monotonic() < deadline and len(nodes) < 3:
        nodes = [n["metadata"]["name"] for n in k.json("get", "nodes")["items"]]
        time.sleep(0.5)
    assert len(nodes) >= 3, f"hollow nodes did not register: {nodes}"
    k.apply(json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": cluster_ns},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                                       "resources": {"requests": {"cpu": "10m"}}}]}}}}))
    placed: dict[str, str] = {}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        pods = k.json("get", "pods", "-n", cluster_ns, "-l", "app=web")["items"]
        placed = {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods}
        if len(placed) == 6 and all(placed.values()):
            break
        time.sleep(0.5)
    assert len(placed) == 6 and all(n in nodes for n in placed.values()), placed
    assert len(set(placed.values())) >= 2, f"LeastAllocated spreads replicas: {placed}"
