"""The pod lifecycle on a real node: real containerd through the agent, driven by the real kubectl."""
from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from nodeutil import BUSYBOX, Node, node_ready, wait_for


def get_pod(kubectl: Any, ns: str, name: str) -> dict[str, Any]:
    return kubectl.json("get", "pod", name, "-n", ns)


def status_of(kubectl: Any, ns: str, name: str, container: str | None = None, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    statuses = get_pod(kubectl, ns, name)["status"].get(key) or []
    for s in statuses:
        if container is None or s["name"] == container:
            return s
    raise AssertionError(f"no status of container {container or '(first)'} in pod {ns}/{name} yet")


def pod_manifest(ns: str, name: str, command: str, restart: str = "Always", **spec: Any) -> str:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", command]}], **spec}}
    return json.dumps(body)


def events_of(kubectl: Any, ns: str, name: str) -> list[dict[str, Any]]:
    return kubectl.json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]


def test_pod_runs_with_an_ip_from_the_pod_cidr_and_its_name_as_hostname(node: Node, node_kubectl: Any,
                                                                         node_ns: str) -> None:
    k = node_kubectl
    k.run("run", "web", f"--image={BUSYBOX}", "-n", node_ns, "--", "sleep", "3600")
    k.apply(pod_manifest(node_ns, "who", "hostname > /dev/termination-log", restart="Never"))
    k.run("wait", "--for=condition=Ready", "pod/web", "-n", node_ns, "--timeout=30s")
    pod = get_pod(k, node_ns, "web")
    status = pod["status"]
    assert status["phase"] == "Running"
    assert node.in_pod_cidr(status["podIP"]), (status["podIP"], node.pod_cidr)
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] and status["startTime"] and status["qosClass"] == "BestEffort"
    cs = status["containerStatuses"][0]
    assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
    assert cs["containerID"].startswith("containerd://") and cs["image"] == BUSYBOX and cs["imageID"]
    types = {c["type"]: c["status"] for c in status["conditions"]}
    assert types == {"PodScheduled": "True", "PodReadyToStartContainers": "True", "Initialized": "True",
                     "Ready": "True", "ContainersReady": "True"}
    reasons = {e["reason"] for e in events_of(k, node_ns, "web")}
    assert {"Scheduled", "Pulled", "Created", "Started"} <= reasons, reasons
    # the hostname is the pod's name (reported through the termination message file)
    wait_for("who to finish", lambda: get_pod(k, node_ns, "who")["status"].get("phase") == "Succeeded")
    assert status_of(k, node_ns, "who")["state"]["terminated"]["message"].strip() == "who"


def test_restart_never_exit_codes_give_succeeded_and_failed(node_kubectl: Any, node_ns: str) -> None:
    k = node_kubectl
    k.apply(pod_manifest(node_ns, "good", "exit 0", restart="Never"))
    k.apply(pod_manifest(node_ns, "bad", "echo oops >&2; exit 1", restart="Never"))
    wait_for("good to succeed", lambda: get_pod(k, node_ns, "good")["status"].get("phase") == "Succeeded")
    wait_for("bad to fail", lambda: get_pod(k, node_ns, "bad")["status"].get("phase") == "Failed")
    good = status_of(k, node_ns, "good")["state"]["terminated"]
    bad = status_of(k, node_ns, "bad")["state"]["terminated"]
    assert (good["exitCode"], good["reason"]) == (0, "Completed")
    assert (bad["exitCode"], bad["reason"]) == (1, "Error")
    assert bad["containerID"].startswith("containerd://") and bad["startedAt"] and bad["finishedAt"]
    conditions = {c["type"]: c for c in get_pod(k, node_ns, "bad")["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"].get("reason") == "PodCompleted"
    time.sleep(1.5)   # nothing restarts a Never pod
    assert status_of(k, node_ns, "bad")["restartCount"] == 0


def test_crash_loop_backs_off_and_keeps_the_last_state(node_kubectl: Any, node_ns: str) -> None:
    k = node_kubectl
    k.apply(pod_manifest(node_ns, "crash", "exit 2"))

    def backing_off() -> Any:
        cs = status_of(k, node_ns, "crash")
        waiting = cs["state"].get("waiting") or {}
        return cs if cs["restartCount"] >= 1 and waiting.get("reason") == "CrashLoopBackOff" else None
    cs = wait_for("CrashLoopBackOff", backing_off, timeout=30)
    assert "back-off 10s restarting failed container=main" in cs["state"]["waiting"]["message"]
    last = cs["lastState"]["terminated"]
    assert last["exitCode"] == 2 and last["reason"] == "Error"
    assert get_pod(k, node_ns, "crash")["status"]["phase"] == "Running"
    # still backing off a moment later: no restart storm
    time.sleep(2)
    assert status_of(k, node_ns, "crash")["restartCount"] == cs["restartCount"]
    assert any(e["reason"] == "BackOff" for e in events_of(k, node_ns, "crash"))


def test_init_containers_run_in_order_before_the_app(node_kubectl: Any, node_ns: str) -> None:
    k = node_kubectl
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ordered", "namespace": node_ns},
            "spec": {"restartPolicy": "Never", "volumes": [{"name": "work", "emptyDir": {}}],
                     "initContainers": [
                         {"name": "one", "image": BUSYBOX, "command": ["sh", "-c", "echo one >> /work/log"],
                          "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                         {"name": "two", "image": BUSYBOX, "command": ["sh", "-c", "sleep 0.3; echo two >> /work/log"],
                          "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
                     "containers": [{"name": "main", "image": BUSYBOX,
                                     "command": ["sh", "-c", "echo main >> /work/log; cat /work/log > "
                                                 "/dev/termination-log"],
                                     "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]}}
    k.apply(json.dumps(body))
    wait_for("ordered to succeed", lambda: get_pod(k, node_ns, "ordered")["status"].get("phase") == "Succeeded")
    assert status_of(k, node_ns, "ordered")["state"]["terminated"]["message"].split() == ["one", "two", "main"]
    for name in ("one", "two"):
        assert status_of(k, node_ns, "ordered", name, init=True)["state"]["terminated"]["reason"] == "Completed"


def test_a_failing_init_container_blocks_the_pod(node_kubectl: Any, node_ns: str) -> None:
    k = node_kubectl
    for name, restart in (("blocked-never", "Never"), ("blocked-always", "Always")):
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": node_ns},
                "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                         "initContainers": [{"name": "check", "image": BUSYBOX, "command": ["sh", "-c", "exit 7"]}],
                         "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]}}
        k.apply(json.dumps(body))
    wait_for("the Never pod to fail", lambda: get_pod(k, node_ns, "blocked-never")["status"].get("phase") == "Failed")
    init = status_of(k, node_ns, "blocked-never", "check", init=True)
    assert init["state"]["terminated"]["exitCode"] == 7
    assert status_of(k, node_ns, "blocked-never")["state"] == {"waiting": {"reason": "PodInitializing"}}

    def init_backing_off() -> bool:
        cs = status_of(k, node_ns, "blocked-always", "check", init=True)
        return cs["restartCount"] >= 1 and (cs["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff"
    wait_for("the init container to crash-loop", init_backing_off)
    pod = get_pod(k, node_ns, "blocked-always")
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Initialized"] == "False" and conditions["Ready"] == "False"
    assert "Init:CrashLoopBackOff" in k.run("get", "pod", "blocked-always", "-n", node_ns).stdout


async def _sandboxes_of(cri: Any, uid: str) -> list[Any]:
    return [s for s in await cri.list_pod_sandbox() if s.metadata.uid == uid]


async def test_graceful_deletion_waits_for_the_grace_period_and_the_containers(node_kubectl: Any, node_ns: str,
                                                                               node_cri: Any) -> None:
    import asyncio
    k = node_kubectl
    body = json.loads(pod_manifest(node_ns, "stubborn", "trap '' TERM; while true; do sleep 0.2; done"))
    body["spec"]["terminationGracePeriodSeconds"] = 3
    k.apply(json.dumps(body))
    await asyncio.to_thread(k.run, "wait", "--for=condition=Ready", "pod/stubborn", "-n", node_ns, "--timeout=30s")
    uid = get_pod(k, node_ns, "stubborn")["metadata"]["uid"]
    assert await _sandboxes_of(node_cri, uid)
    started = time.monotonic()
    await asyncio.to_thread(k.run, "delete", "pod", "stubborn", "-n", node_ns, "--timeout=30s")
    took = time.monotonic() - started
    assert 2.8 <= took < 10, f"SIGTERM is ignored: the pod should go after its 3 s grace period, took {took:.1f}s"
    # the pod left the API only once its containers and sandbox were gone from the runtime
    assert await _sandboxes_of(node_cri, uid) == []
    assert [c for c in await node_cri.list_containers() if c.labels.get("io.kubernetes.pod.uid") == uid] == []
    reasons = {e["reason"] for e in events_of(k, node_ns, "stubborn")}
    assert "Killing" in reasons


def test_a_missing_image_backs_off_with_a_clear_message_and_disturbs_no_one(node_kubectl: Any,
                                                                           node_ns: str) -> None:
    k = node_kubectl
    k.run("run", "steady", f"--image={BUSYBOX}", "-n", node_ns, "--", "sleep", "3600")
    k.run("wait", "--for=condition=Ready", "pod/steady", "-n", node_ns, "--timeout=30s")
    k.run("run", "ghost", "--image=localhost/no-such-image:1", "-n", node_ns)
    seen: set[str] = set()

    def both_reasons() -> bool:
        waiting = status_of(k, node_ns, "ghost")["state"].get("waiting") or {}
        if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff"):
            seen.add(waiting["reason"])
            assert "localhost/no-such-image:1" in waiting.get("message", "")
        events = {e["reason"]: e["message"] for e in events_of(k, node_ns, "ghost")}
        return "ImagePullBackOff" in seen and "Failed" in events and "BackOff" in events
    wait_for("ErrImagePull then ImagePullBackOff", both_reasons, timeout=30, interval=0.1)
    failed = [e["message"] for e in events_of(k, node_ns, "ghost") if e["reason"] == "Failed"]
    assert any('Failed to pull image "localhost/no-such-image:1"' in m for m in failed), failed
    assert any(m == "Error: ErrImagePull" for m in failed), failed
    assert get_pod(k, node_ns, "ghost")["status"]["phase"] == "Pending"
    steady = status_of(k, node_ns, "steady")
    assert steady["ready"] and steady["restartCount"] == 0 and "running" in steady["state"]


def test_agent_restart_adopts_running_containers(node: Node, node_kubectl: Any, node_ns: str) -> None:
    k = node_kubectl
    k.run("run", "calm", f"--image={BUSYBOX}", "-n", node_ns, "--", "sleep", "3600")
    k.apply(pod_manifest(node_ns, "brief", "test -e /tmp/done && exec sleep 3600; touch /tmp/done; sleep 1; "
                                           "exit 0"))
    k.run("wait", "--for=condition=Ready", "pod/calm", "-n", node_ns, "--timeout=30s")
    wait_for("brief to run", lambda: "running" in status_of(k, node_ns, "brief")["state"])
    before = status_of(k, node_ns, "calm")
    agent = node.agent_pid()
    assert agent is not None
    os.kill(agent, signal.SIGSTOP)          # the agent is away...
    try:
        time.sleep(2.5)                     # ...while brief's container exits
    finally:
        os.kill(agent, signal.SIGKILL)      # and it dies; the server's supervisor starts a new one
    wait_for("a new agent", lambda: node.agent_pid() not in (None, agent), timeout=20)
    time.sleep(0.5)
    wait_for("the node Ready again", lambda: node_ready(k, node.node_name), timeout=30)
    # the container that kept running is adopted: same container, no restart
    wait_for("brief restarted", lambda: status_of(k, node_ns, "brief")["restartCount"] >= 1
             and "running" in status_of(k, node_ns, "brief")["state"], timeout=30)
    after = status_of(k, node_ns, "calm")
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == 0 and after["state"] == before["state"]
    brief = status_of(k, node_ns, "brief")
    assert brief["lastState"]["terminated"]["exitCode"] == 0


def test_a_deployment_of_three_becomes_available(node: Node, node_kubectl: Any, node_ns: str) -> None:
    k = node_kubectl
    k.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {node_ns}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {BUSYBOX}
        command: ["sh", "-c", "exec httpd -f -p 8080 -h /tmp"]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
""")
    k.run("rollout", "status", "deploy/web", "-n", node_ns, "--timeout=60s")
    assert k.json("get", "deploy", "web", "-n", node_ns)["status"]["availableReplicas"] == 3
    pods = k.json("get", "pods", "-n", node_ns, "-l", "app=web")["items"]
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 3 and all(node.in_pod_cidr(ip) for ip in ips)


def test_active_deadline_fails_the_pod(node_kubectl: Any, node_ns: str) -> None:
    k = node_kubectl
    body = json.loads(pod_manifest(node_ns, "bounded", "sleep 3600"))
    body["spec"]["activeDeadlineSeconds"] = 2
    body["spec"]["terminationGracePeriodSeconds"] = 0
    k.apply(json.dumps(body))
    status = wait_for("DeadlineExceeded", lambda: (lambda s: s if s.get("phase") == "Failed" else None)(
        get_pod(k, node_ns, "bounded")["status"]), timeout=20)
    assert status["reason"] == "DeadlineExceeded"
    assert "terminated" in status["containerStatuses"][0]["state"]


def test_host_network_pods_have_the_node_address(node_kubectl: Any, node_ns: str) -> None:
    k = node_kubectl
    body = json.loads(pod_manifest(node_ns, "onhost", "sleep 3600"))
    body["spec"]["hostNetwork"] = True
    body["spec"]["terminationGracePeriodSeconds"] = 0
    k.apply(json.dumps(body))
    k.run("wait", "--for=condition=Ready", "pod/onhost", "-n", node_ns, "--timeout=30s")
    status = get_pod(k, node_ns, "onhost")["status"]
    assert status["podIP"] == status["hostIP"] and status["podIPs"] == [{"ip": status["hostIP"]}]


def test_out_of_memory_is_reported_as_oomkilled(node_kubectl: Any, node_ns: str) -> None:
    k = node_kubectl
    body = json.loads(pod_manifest(node_ns, "hungry", "dd if=/dev/zero of=/dev/null bs=64M count=1", restart="Never"))
    body["spec"]["containers"][0]["resources"] = {"limits": {"memory": "16Mi"}}
    k.apply(json.dumps(body))
    wait_for("hungry to fail", lambda: get_pod(k, node_ns, "hungry")["status"].get("phase") == "Failed")
    terminated = status_of(k, node_ns, "hungry")["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)


def test_a_failing_post_start_hook_kills_the_container(node_kubectl: Any, node_ns: str) -> None:
    k = node_kubectl
    body = json.loads(pod_manifest(node_ns, "hooked", "exec sleep 3600", restart="Never"))
    body["spec"]["terminationGracePeriodSeconds"] = 1
    body["spec"]["containers"][0]["lifecycle"] = {"postStart": {"exec": {"command": ["sh", "-c", "exit 5"]}}}
    k.apply(json.dumps(body))
    wait_for("hooked to fail", lambda: get_pod(k, node_ns, "hooked")["status"].get("phase") == "Failed")
    events = {e["reason"]: e["message"] for e in events_of(k, node_ns, "hooked")}
    assert "FailedPostStartHook" in events and "exited with 5" in events["FailedPostStartHook"], events
    assert "terminated" in status_of(k, node_ns, "hooked")["state"]
