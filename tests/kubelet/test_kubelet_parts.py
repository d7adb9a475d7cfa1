"""The kubelet's pure parts: back-off arithmetic, pull policy and credentials, pod status from runtime states."""
from __future__ import annotations

import base64
import json

from kates.kubelet.backoff import Backoff
from kates.kubelet.images import auth_from_secret, pull_policy, registry_host
from kates.kubelet.resources import qos_class
from kates.kubelet.status import PodRuntimeView, pod_status
from kates.runtime.interface import (ContainerMetadata, ContainerState, ContainerStatus, PodSandboxMetadata,
                                     PodSandboxStatus, SandboxState)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_to_the_cap_and_starts_over_after_twice_the_cap() -> None:
    clock = Clock()
    b = Backoff(10, 300, clock=clock)
    delays = []
    for _ in range(7):
        delays.append(b.next("uid/c", clock.now))
        clock.now += 1
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert b.in_backoff_since("uid/c", clock.now - 1)
    assert not b.in_backoff_since("uid/c", clock.now - 301)
    clock.now += 601          # ten minutes without a failure (a container that ran that long)
    assert b.next("uid/c", clock.now) == 10
    b.forget_prefix("uid/")
    assert b.get("uid/c") == 0


def test_backoff_is_rebuilt_from_the_restart_count() -> None:
    clock = Clock()
    b = Backoff(10, 300, clock=clock)
    b.seed("uid/c", 3, clock.now - 5)      # a container restarted 3 times: its back-off was 40 s
    assert b.get("uid/c") == 40 and b.in_backoff_since("uid/c", clock.now - 5)
    b.seed("uid/d", 0, clock.now)
    assert b.get("uid/d") == 0


def test_pull_policy_defaults_and_registry_hosts() -> None:
    assert pull_policy({"image": "busybox"}) == "Always"
    assert pull_policy({"image": "localhost/busybox:latest"}) == "Always"
    assert pull_policy({"image": "registry:5000/app:1.2"}) == "IfNotPresent"
    assert pull_policy({"image": "app@sha256:abc"}) == "IfNotPresent"
    assert pull_policy({"image": "app:1", "imagePullPolicy": "Never"}) == "Never"
    assert registry_host("busybox") == "docker.io"
    assert registry_host("library/busybox") == "docker.io"
    assert registry_host("127.0.0.1:5000/app") == "127.0.0.1:5000"
    assert registry_host("localhost/busybox:latest") == "localhost"


def test_image_pull_secrets_give_the_credentials_of_the_registry() -> None:
    config = {"auths": {"127.0.0.1:5000": {"auth": base64.b64encode(b"alice:s3cret").decode()},
                        "https://index.docker.io/v1/": {"username": "bob", "password": "pw"}}}
    secret = {"type": "kubernetes.io/dockerconfigjson",
              "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}
    local = auth_from_secret(secret, "127.0.0.1:5000")
    assert local is not None and (local.username, local.password) == ("alice", "s3cret")
    hub = auth_from_secret(secret, "docker.io")
    assert hub is not None and (hub.username, hub.password) == ("bob", "pw")
    assert auth_from_secret(secret, "quay.io") is None


def _cs(name: str, attempt: int, state: ContainerState, exit_code: int = 0, reason: str = "") -> ContainerStatus:
    return ContainerStatus(id=f"{name}-{attempt}", sandbox_id="sb", metadata=ContainerMetadata(name, attempt),
                           image="localhost/busybox:latest", image_ref="sha256:1", state=state,
                           created_at=100.0 + attempt, started_at=101.0 + attempt,
                           finished_at=102.0 + attempt if state is ContainerState.EXITED else 0.0,
                           exit_code=exit_code, reason=reason)


def _pod(**spec: object) -> dict[str, object]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [{"name": "main", "image": "localhost/busybox:latest"}], **spec},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}


SANDBOX = PodSandboxStatus(id="sb", metadata=PodSandboxMetadata("p", "ns", "u"), state=SandboxState.READY,
                           created_at=99.0, ip="10.244.7.5")


def test_pod_status_of_a_crash_looping_container() -> None:
    exited = [_cs("main", 0, ContainerState.EXITED, 2), _cs("main", 1, ContainerState.EXITED, 2)]
    view = PodRuntimeView(containers=exited, sandbox=SANDBOX, waiting={"main": ("CrashLoopBackOff", "back-off 20s")})
    status = pod_status(_pod(), view, "192.0.2.2", now=200.0)
    cs = status["containerStatuses"][0]
    assert status["phase"] == "Running" and status["podIP"] == "10.244.7.5" and status["hostIP"] == "192.0.2.2"
    assert cs["restartCount"] == 1 and cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 2 and cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["containerID"] == "containerd://main-1" and not cs["ready"]


def test_pod_status_of_init_containers_and_terminal_phases() -> None:
    pod = _pod(restartPolicy="Never", initContainers=[{"name": "init", "image": "localhost/busybox:latest"}])
    view = PodRuntimeView(containers=[_cs("init", 0, ContainerState.EXITED, 1)], sandbox=SANDBOX)
    status = pod_status(pod, view, "192.0.2.2", now=200.0)
    assert status["phase"] == "Failed"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    view = PodRuntimeView(containers=[_cs("init", 0, ContainerState.EXITED, 0),
                                      _cs("main", 0, ContainerState.EXITED, 137, "OOMKilled")], sandbox=SANDBOX)
    status = pod_status(pod, view, "192.0.2.2", now=200.0)
    assert status["phase"] == "Failed"
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Initialized"]["status"] == "True" and conditions["Ready"]["reason"] == "PodCompleted"


def test_readiness_follows_the_probe_results() -> None:
    pod = _pod()
    running = _cs("main", 0, ContainerState.RUNNING)
    status = pod_status(pod, PodRuntimeView(containers=[running], sandbox=SANDBOX, ready={running.id: False}),
                        "192.0.2.2", now=200.0)
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert status["phase"] == "Running" and conditions["Ready"] == "False" and conditions["ContainersReady"] == "False"
    status = pod_status(pod, PodRuntimeView(containers=[running], sandbox=SANDBOX), "192.0.2.2", now=200.0)
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"


def test_qos_class() -> None:
    assert qos_class(_pod() | {"status": {}}) == "BestEffort"
    guaranteed = {"metadata": {}, "spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}
    assert qos_class(guaranteed) == "Guaranteed"
    burstable = {"metadata": {}, "spec": {"containers": [{"resources": {"requests": {"cpu": "100m"}}}]}}
    assert qos_class(burstable) == "Burstable"
