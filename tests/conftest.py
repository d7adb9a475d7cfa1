"""Shared fixtures: a real `kates server` in a subprocess, the real kubectl and the official Python client."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from harness import Kubectl, Server
from nodeutil import node, node_cri, node_kubectl, node_ns  # noqa: F401  (one real node per session, for every directory)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API server alone: no controller writes behind the tests' backs."""
    s = Server(tmp_path_factory.mktemp("kates"), extra=["--disable-controllers", "--disable-scheduler"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A whole control plane (controllers, scheduler) with three hollow nodes."""
    s = Server(tmp_path_factory.mktemp("cluster"), extra=["--hollow-nodes", "3"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def cluster_kubectl(cluster: Server) -> Kubectl:
    return Kubectl(cluster.kubeconfig)


@pytest.fixture
def cluster_ns(cluster_kubectl: Kubectl) -> Iterator[str]:
    import uuid
    name = "c-" + uuid.uuid4().hex[:8]
    cluster_kubectl.run("create", "namespace", name)
    yield name
    cluster_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def kubectl(server: Server) -> Kubectl:
    return Kubectl(server.kubeconfig)


@pytest.fixture
def ns(kubectl: Kubectl) -> Iterator[str]:
    import uuid
    name = "t-" + uuid.uuid4().hex[:8]
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def api_client(server: Server) -> Any:
    from kubernetes import client, config
    return config.new_client_from_config(str(server.kubeconfig))
