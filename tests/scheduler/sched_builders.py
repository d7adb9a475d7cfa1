"""Pods and nodes as plain data for the scheduler's unit tests."""
from __future__ import annotations

import itertools
from typing import Any

from kates.scheduler.nodeinfo import NodeInfo, PodInfo

_uid = itertools.count()


def make_node(name: str = "n1", cpu: str = "4", memory: str = "8Gi", pods: str = "110", *,
              labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
              unschedulable: bool = False, images: list[tuple[str, int]] | None = None,
              extra: dict[str, str] | None = None) -> NodeInfo:
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods, **(extra or {})}
    return NodeInfo({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
                     "spec": {"taints": taints or [], "unschedulable": unschedulable},
                     "status": {"allocatable": allocatable, "capacity": allocatable,
                                "images": [{"names": [n], "sizeBytes": s} for n, s in images or []]}})


def make_pod(name: str = "p", namespace: str = "default", *, cpu: str | None = None, memory: str | None = None,
             labels: dict[str, str] | None = None, priority: int | None = None, node_name: str = "",
             containers: list[dict[str, Any]] | None = None, start_time: str = "", **spec: Any) -> PodInfo:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    if containers is None:
        containers = [{"name": "c", "image": "nginx", "resources": {"requests": requests} if requests else {}}]
    body: dict[str, Any] = {"containers": containers, **spec}
    if node_name:
        body["nodeName"] = node_name
    if priority is not None:
        body["priority"] = priority
    pod = {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}-{next(_uid)}",
                        "labels": labels or {}, "creationTimestamp": start_time or "2024-01-01T00:00:00Z"},
           "spec": body, "status": {"startTime": start_time} if start_time else {}}
    return PodInfo(pod)


def place(node: NodeInfo, *pods: PodInfo) -> NodeInfo:
    for p in pods:
        node.add_pod(p.with_node(node.name))
    return node
