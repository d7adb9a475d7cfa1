"""Scheduler profiles end to end: a KubeSchedulerConfiguration with a second, bin-packing profile (NodeResourcesFit
MostAllocated), handed to the scheduler `kates server` starts through KATES_SCHEDULER_CONFIG. Pods naming that
profile's schedulerName pack onto the fullest node; default pods still spread."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator
from unittest import mock

import pytest

from harness import ROOT, Kubectl, Server

from test_scheduler_e2e import create, node, placement, pod

CONFIG = """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: bin-packing-scheduler
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]
"""


@pytest.fixture(scope="module")
def packing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("packing")
    config = data / "scheduler-config.yaml"
    config.write_text(CONFIG)
    s = Server(data, store="memory://", extra=["--disable-controllers", "--hollow-nodes", "0"])
    with mock.patch.dict(os.environ, {"KATES_SCHEDULER_CONFIG": str(config)}):
        s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kctl(packing_server: Server) -> Kubectl:
    return Kubectl(packing_server.kubeconfig)


@pytest.fixture
def ns(kctl: Kubectl) -> Iterator[str]:
    name = "bp-" + uuid.uuid4().hex[:8]
    kctl.run("create", "namespace", name)
    yield name
    kctl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("scheduler, packs", [("bin-packing-scheduler", True), ("default-scheduler", False)])
def test_most_allocated_packs_onto_the_fullest_node(kctl: Kubectl, ns: str, scheduler: str, packs: bool) -> None:
    group = uuid.uuid4().hex[:8]
    full = f"full-{group}"
    create(kctl, [node(full, group, cpu="4", memory="8Gi")]
           + [node(f"empty{i}-{group}", group, cpu="4", memory="8Gi") for i in range(2)])
    anchor = pod("anchor", group, cpu="2", memory="4Gi",
                 nodeSelector={"kates.test/group": group, "kubernetes.io/hostname": full})
    create(kctl, [anchor], ns)
    placement(kctl, ns, 1)
    create(kctl, [pod(f"app-{i}", group, cpu="500m", memory="1Gi", schedulerName=scheduler) for i in range(3)], ns)
    where = placement(kctl, ns, 4)
    on_full = sum(1 for p, n in where.items() if p.startswith("app-") and n == full)
    if packs:
        assert on_full == 3, f"MostAllocated puts every pod on the fullest node: {where}"
    else:
        assert on_full == 0, f"LeastAllocated spreads to the empty nodes: {where}"


def test_unknown_profile_is_rejected(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kates.scheduler.main", "--kubeconfig", str(tmp_path / "none"),
                           "--profile", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "unknown scheduler profile 'nope'" in proc.stderr
