"""The StatefulSet controller against a real API server, driven through the real kubectl.

A `kates server` runs with only the statefulset controller and no scheduler; `FakeKubelet` plays the node's part
for one namespace (marks pods Running and Ready, finishes deletions) and records the order in which pods appear
and disappear, so ordering guarantees are asserted on what a watch saw.
"""
from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from typing import Any, Callable, Iterator

import pytest

from harness import Kubectl, Server
from kates.api import errors
from kates.client.rest import Client, resource
from kates.controllers import history
from kates.controllers.statefulset import desired_claim_refs, new_stateful_pod, parent_and_ordinal

PODS = resource("pods")
SETS = resource("statefulsets.apps")
CLAIMS = resource("persistentvolumeclaims")
REVISIONS = resource("controllerrevisions.apps")
NAMESPACES = resource("namespaces")


# -- test harness (also used by test_daemonset.py) ---------------------------------------------------------------

def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _pinned_node(pod: dict[str, Any]) -> str | None:
    terms = (((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name":
                return field["values"][0]
    return None


class FakeKubelet:
    """Scheduler and kubelet for one namespace, in the test's event loop.

    It binds pods to the node their affinity pins (when `bind`), marks them Running and Ready after `delay`
    (when `ready`), deletes terminating bound pods at once, and keeps the ADDED/DELETED order it watched."""

    def __init__(self, client: Client, namespace: str, *, ready: bool = True, bind: bool = False,
                 delay: float = 0.0) -> None:
        self.client, self.namespace = client, namespace
        self.ready, self.bind, self.delay = ready, bind, delay
        self.events: list[tuple[str, str, str]] = []     # (ADDED|READY|TERMINATING|DELETED, pod, uid), as watched
        self.node_of: dict[str, str] = {}                 # pod name → the node it is pinned to or bound to
        self.pods: dict[str, dict[str, Any]] = {}
        self._handled: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "FakeKubelet":
        listed = await self.client.list(PODS, self.namespace)
        for pod in listed["items"]:
            self.pods[pod["metadata"]["name"]] = pod
        self._watch = asyncio.create_task(self._run(listed["metadata"]["resourceVersion"]), name="fake-kubelet")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for task in [self._watch, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._watch, *self._tasks] if t is not None], return_exceptions=True)

    def added(self) -> list[str]:
        return [name for kind, name, _ in self.events if kind == "ADDED"]

    def deleted(self) -> list[str]:
        return [name for kind, name, _ in self.events if kind == "DELETED"]

    async def _run(self, rv: str) -> None:
        while True:
            try:
                async for kind, pod in self.client.watch(PODS, self.namespace, resource_version=rv):
                    if kind == "BOOKMARK":
                        continue
                    rv = pod["metadata"]["resourceVersion"]
                    self._observe(kind, pod)
            except errors.APIError:
                await asyncio.sleep(0.1)

    def _observe(self, kind: str, pod: dict[str, Any]) -> None:
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        node = pod["spec"].get("nodeName") or _pinned_node(pod)
        if node:
            self.node_of[name] = node
        if kind in ("ADDED", "DELETED"):
            self.events.append((kind, name, uid))
        if pod["metadata"].get("deletionTimestamp") and ("TERMINATING", name, uid) not in self.events:
            self.events.append(("TERMINATING", name, uid))
        if kind != "DELETED" and _is_ready(pod) and ("READY", name, uid) not in self.events:
            self.events.append(("READY", name, uid))
        if kind == "DELETED":
            self.pods.pop(name, None)
            return
        self.pods[name] = pod
        if pod["metadata"].get("deletionTimestamp"):
            self._once(("finish", uid), self._finish(pod))
        elif self.bind and not pod["spec"].get("nodeName"):
            if _pinned_node(pod):
                self._once(("bind", uid), self._bind(pod))
        elif self.ready and (pod.get("status") or {}).get("phase") == "Pending":
            self._once(("ready", uid), self._mark(pod, ready=True))

    def _once(self, key: tuple[str, str], coro: Any) -> None:
        if key in self._handled:
            coro.close()
            return
        self._handled.add(key)
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bind(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        await self.client.create(PODS, {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                         "target": {"kind": "Node", "name": _pinned_node(pod)}},
                                  self.namespace, subresource="binding", name=name)

    async def _finish(self, pod: dict[str, Any]) -> None:
        try:
            await self.client.delete(PODS, pod["metadata"]["name"], self.namespace, grace_period_seconds=0,
                                     preconditions={"uid": pod["metadata"]["uid"]})
        except (errors.NotFound, errors.Conflict):
            pass

    async def _mark(self, pod: dict[str, Any], ready: bool, phase: str = "Running") -> None:
        await asyncio.sleep(self.delay)
        status = "True" if ready else "False"
        now = _now()
        conditions = [{"type": t, "status": status if t in ("Ready", "ContainersReady") else "True",
                       "lastTransitionTime": now} for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
        try:
            await self.client.patch(PODS, pod["metadata"]["name"], {"status": {"phase": phase,
                                                                               "conditions": conditions}},
                                    self.namespace, subresource="status")
        except errors.NotFound:
            return

    async def set_ready(self, name: str, ready: bool = True, phase: str = "Running") -> None:
        pod = await self.client.get(PODS, name, self.namespace)
        delay, self.delay = self.delay, 0.0
        try:
            await self._mark(pod, ready, phase)
        finally:
            self.delay = delay


async def wait_for(what: str, pred: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll `pred` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def kubectl(k: Kubectl, *args: str, input: str | None = None) -> str:
    proc = await asyncio.to_thread(k.run, *args, input=input)
    return proc.stdout


async def kubectl_json(k: Kubectl, *args: str) -> Any:
    return json.loads(await kubectl(k, *args, "-o", "json"))


# -- fixtures -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("statefulset"), extra=["--disable-scheduler", "--controllers", "statefulset"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def k(sts_server: Server) -> Kubectl:
    return Kubectl(sts_server.kubeconfig)


@pytest.fixture
async def client(sts_server: Server) -> Any:
    c = Client.from_kubeconfig(sts_server.kubeconfig, user_agent="statefulset-test")
    yield c
    await c.close()


@pytest.fixture
async def namespace(client: Client) -> str:
    name = "sts-" + uuid.uuid4().hex[:8]
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def manifest(ns: str, *, name: str = "web", replicas: int = 3, image: str = "busybox:1", policy: str = "OrderedReady",
             extra_spec: str = "") -> str:
    return f"""
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}, namespace: {ns}}}
spec:
  serviceName: {name}
  replicas: {replicas}
  podManagementPolicy: {policy}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: c, image: "{image}", command: ["sleep", "3600"]}}]
{extra_spec}"""


async def sts_status(client: Client, ns: str, name: str = "web") -> dict[str, Any]:
    return (await client.get(SETS, name, ns)).get("status") or {}


# -- scaling and identity ----------------------------------------------------------------------------------------

async def test_ordered_ready_creates_pods_one_after_another(k: Kubectl, client: Client, namespace: str) -> None:
    async with FakeKubelet(client, namespace, delay=0.3) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace))
        await wait_for("3 ready replicas", lambda: _ready(client, namespace, 3))
        # in the watch's order: each pod is created only once its predecessor is Ready
        assert [(kind, name) for kind, name, _ in kubelet.events] == [
            ("ADDED", "web-0"), ("READY", "web-0"), ("ADDED", "web-1"), ("READY", "web-1"),
            ("ADDED", "web-2"), ("READY", "web-2")]

    pods = {p["metadata"]["name"]: p for p in (await client.list(PODS, namespace))["items"]}
    status = await sts_status(client, namespace)
    for ordinal in range(3):
        pod = pods[f"web-{ordinal}"]
        labels = pod["metadata"]["labels"]
        assert labels["statefulset.kubernetes.io/pod-name"] == f"web-{ordinal}"
        assert labels["apps.kubernetes.io/pod-index"] == str(ordinal)
        assert labels["controller-revision-hash"] == status["updateRevision"]
        assert pod["spec"]["hostname"] == f"web-{ordinal}" and pod["spec"]["subdomain"] == "web"
        ref = pod["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("StatefulSet", "web", True)
    assert status["replicas"] == status["readyReplicas"] == status["availableReplicas"] == 3
    assert status["currentRevision"] == status["updateRevision"]
    assert status["observedGeneration"] == 1
    out = await kubectl(k, "rollout", "status", "sts/web", "-n", namespace, "--timeout=10s")
    assert "roll out complete" in out
    revisions = await kubectl_json(k, "get", "controllerrevisions", "-n", namespace)
    assert [r["metadata"]["name"] for r in revisions["items"]] == [status["updateRevision"]]


async def _ready(client: Client, ns: str, n: int, name: str = "web") -> bool:
    status = await sts_status(client, ns, name)
    return status.get("readyReplicas") == n and status.get("replicas") == n


async def test_ordered_ready_waits_for_an_unready_pod(k: Kubectl, client: Client, namespace: str) -> None:
    async with FakeKubelet(client, namespace, ready=False) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace))
        await wait_for("web-0", lambda: kubelet.added() == ["web-0"])
        await asyncio.sleep(0.8)
        assert kubelet.added() == ["web-0"], "web-1 must wait for web-0 to be Running and Ready"
        await kubelet.set_ready("web-0")
        await wait_for("web-1", lambda: kubelet.added() == ["web-0", "web-1"])


async def test_parallel_creates_all_pods_at_once(k: Kubectl, client: Client, namespace: str) -> None:
    async with FakeKubelet(client, namespace, ready=False) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, policy="Parallel", replicas=4))
        await wait_for("4 pods without any being ready", lambda: sorted(kubelet.added()) ==
                       ["web-0", "web-1", "web-2", "web-3"])
        await kubectl(k, "scale", "sts/web", "--replicas=1", "-n", namespace)
        await wait_for("scale down to web-0", lambda: sorted(kubelet.pods) == ["web-0"])


async def test_deleted_pod_comes_back_with_the_same_name(k: Kubectl, client: Client, namespace: str) -> None:
    async with FakeKubelet(client, namespace):
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, replicas=2))
        await wait_for("2 ready", lambda: _ready(client, namespace, 2))
        first = (await client.get(PODS, "web-0", namespace))["metadata"]["uid"]
        await kubectl(k, "delete", "pod", "web-0", "-n", namespace)

        async def recreated() -> bool:
            try:
                pod = await client.get(PODS, "web-0", namespace)
            except errors.NotFound:
                return False
            return pod["metadata"]["uid"] != first
        await wait_for("web-0 with a new uid", recreated)
        await wait_for("2 ready again", lambda: _ready(client, namespace, 2))


async def test_failed_pod_is_replaced(k: Kubectl, client: Client, namespace: str) -> None:
    async with FakeKubelet(client, namespace) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, replicas=1))
        await wait_for("1 ready", lambda: _ready(client, namespace, 1))
        first = (await client.get(PODS, "web-0", namespace))["metadata"]["uid"]
        await kubelet.set_ready("web-0", ready=False, phase="Failed")
        await wait_for("a new web-0", lambda: [u for kind, n, u in kubelet.events if kind == "ADDED" and u != first])
        await wait_for("1 ready again", lambda: _ready(client, namespace, 1))


async def test_scale_down_removes_the_highest_ordinal_first(k: Kubectl, client: Client, namespace: str) -> None:
    async with FakeKubelet(client, namespace) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, replicas=4))
        await wait_for("4 ready", lambda: _ready(client, namespace, 4))
        await kubectl(k, "scale", "sts/web", "--replicas=1", "-n", namespace)
        await wait_for("1 left", lambda: _ready(client, namespace, 1))
        assert kubelet.deleted() == ["web-3", "web-2", "web-1"]
        await kubectl(k, "scale", "sts/web", "--replicas=2", "-n", namespace)
        await wait_for("2 again", lambda: _ready(client, namespace, 2))
        assert kubelet.added()[-1] == "web-1"


async def test_ordinals_start(k: Kubectl, client: Client, namespace: str) -> None:
    async with FakeKubelet(client, namespace) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, replicas=2,
                                                            extra_spec="  ordinals: {start: 5}\n"))
        await wait_for("2 ready", lambda: _ready(client, namespace, 2))
        assert kubelet.added() == ["web-5", "web-6"]


# -- storage ---------------------------------------------------------------------------------------------------

CLAIM_TEMPLATES = """  volumeClaimTemplates:
  - metadata: {name: www}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"""


async def test_volume_claims_are_made_before_pods_and_outlive_them(k: Kubectl, client: Client,
                                                                   namespace: str) -> None:
    async with FakeKubelet(client, namespace) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, replicas=2, extra_spec=CLAIM_TEMPLATES))
        await wait_for("2 ready", lambda: _ready(client, namespace, 2))
        claims = {c["metadata"]["name"]: c for c in (await client.list(CLAIMS, namespace))["items"]}
        assert sorted(claims) == ["www-web-0", "www-web-1"]
        pods = {p["metadata"]["name"]: p for p in (await client.list(PODS, namespace))["items"]}
        for ordinal in (0, 1):
            name = f"web-{ordinal}"
            claim = claims[f"www-{name}"]
            # made first: the claim's resourceVersion predates the pod's creation
            assert int(claim["metadata"]["resourceVersion"]) < int(pods[name]["metadata"]["resourceVersion"])
            assert claim["metadata"]["labels"] == {"app": "web"}
            assert not claim["metadata"].get("ownerReferences"), "Retain is the default policy"
            assert {"name": "www", "persistentVolumeClaim": {"claimName": f"www-{name}"}} in pods[name]["spec"]["volumes"]
        await kubectl(k, "delete", "pod", "web-1", "-n", namespace)
        await wait_for("web-1 back", lambda: kubelet.added().count("web-1") == 2)
        await kubectl(k, "scale", "sts/web", "--replicas=0", "-n", namespace)
        await wait_for("no pods", lambda: not kubelet.pods)
        after = {c["metadata"]["name"]: c["metadata"]["uid"] for c in (await client.list(CLAIMS, namespace))["items"]}
        assert after == {n: c["metadata"]["uid"] for n, c in claims.items()}


async def test_retention_policy_delete_sets_owner_references(k: Kubectl, client: Client, namespace: str) -> None:
    spec = CLAIM_TEMPLATES + "  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Delete}\n"
    async with FakeKubelet(client, namespace):
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, replicas=2, extra_spec=spec))
        await wait_for("2 ready", lambda: _ready(client, namespace, 2))
        sts = await client.get(SETS, "web", namespace)
        for name in ("www-web-0", "www-web-1"):
            refs = (await client.get(CLAIMS, name, namespace))["metadata"]["ownerReferences"]
            assert [(r["kind"], r["uid"]) for r in refs] == [("StatefulSet", sts["metadata"]["uid"])]
        doomed = await client.get(PODS, "web-1", namespace)
        await kubectl(k, "scale", "sts/web", "--replicas=1", "-n", namespace)

        async def owned_by_pod() -> bool:
            refs = (await client.get(CLAIMS, "www-web-1", namespace))["metadata"].get("ownerReferences") or []
            return [(r["kind"], r["uid"]) for r in refs] == [("Pod", doomed["metadata"]["uid"])]
        await wait_for("www-web-1 handed to its scaled-down pod", owned_by_pod)
        refs = (await client.get(CLAIMS, "www-web-0", namespace))["metadata"]["ownerReferences"]
        assert [r["kind"] for r in refs] == ["StatefulSet"]


# -- updates and history ---------------------------------------------------------------------------------------

async def _revisions_of_pods(client: Client, ns: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["labels"]["controller-revision-hash"]
            for p in (await client.list(PODS, ns))["items"] if not p["metadata"].get("deletionTimestamp")}


async def test_partitioned_rolling_update(k: Kubectl, client: Client, namespace: str) -> None:
    async with FakeKubelet(client, namespace) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, replicas=3))
        await wait_for("3 ready", lambda: _ready(client, namespace, 3))
        old = (await sts_status(client, namespace))["currentRevision"]
        await kubectl(k, "patch", "sts/web", "-n", namespace, "-p",
                      '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}}}}')
        await kubectl(k, "set", "image", "sts/web", "c=busybox:2", "-n", namespace)

        async def partly_updated() -> dict[str, Any] | None:
            status = await sts_status(client, namespace)
            ok = status.get("updatedReplicas") == 2 and status.get("readyReplicas") == 3
            return status if ok else None
        status = await wait_for("ordinals 1 and 2 updated", partly_updated)
        new = status["updateRevision"]
        assert new != old and status["currentRevision"] == old
        assert await _revisions_of_pods(client, namespace) == {"web-0": old, "web-1": new, "web-2": new}
        assert kubelet.deleted() == ["web-2", "web-1"], "highest ordinal first, one at a time"
        out = await kubectl(k, "rollout", "status", "sts/web", "-n", namespace, "--timeout=10s")
        assert "partitioned roll out complete: 2 new pods have been updated" in out

        await kubectl(k, "patch", "sts/web", "-n", namespace, "-p",
                      '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}')

        async def rolled_out() -> bool:
            status = await sts_status(client, namespace)
            return status.get("currentRevision") == new and status.get("updatedReplicas") == 3 \
                and status.get("readyReplicas") == 3
        await wait_for("all updated", rolled_out)
        assert kubelet.deleted() == ["web-2", "web-1", "web-0"]
        pod = await client.get(PODS, "web-0", namespace)
        assert pod["spec"]["containers"][0]["image"] == "busybox:2"

        history_out = await kubectl(k, "rollout", "history", "sts/web", "-n", namespace)
        rows = [line.split()[0] for line in history_out.splitlines()[1:] if line.strip()]
        assert rows == ["REVISION", "1", "2"]
        detail = await kubectl(k, "rollout", "history", "sts/web", "-n", namespace, "--revision=1")
        assert "busybox:1" in detail
        await kubectl(k, "rollout", "undo", "sts/web", "-n", namespace)

        async def back_to_old() -> bool:
            status = await sts_status(client, namespace)
            return status.get("currentRevision") == old and status.get("updatedReplicas") == 3 \
                and status.get("readyReplicas") == 3
        await wait_for("rolled back", back_to_old)
        revisions = {r["metadata"]["name"]: r["revision"] for r in (await client.list(REVISIONS, namespace))["items"]}
        assert revisions == {old: 3, new: 2}, "the old template's revision is renumbered, not duplicated"


async def test_on_delete_updates_only_deleted_pods(k: Kubectl, client: Client, namespace: str) -> None:
    spec = "  updateStrategy: {type: OnDelete}\n"
    async with FakeKubelet(client, namespace) as kubelet:
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, replicas=2, extra_spec=spec))
        await wait_for("2 ready", lambda: _ready(client, namespace, 2))
        old = (await sts_status(client, namespace))["currentRevision"]
        await kubectl(k, "set", "image", "sts/web", "c=busybox:2", "-n", namespace)
        status = await wait_for("a new update revision", lambda: _new_revision(client, namespace, old))
        await asyncio.sleep(0.5)
        assert kubelet.deleted() == []
        await kubectl(k, "delete", "pod", "web-1", "-n", namespace)
        await wait_for("web-1 at the new revision", lambda: _pod_at(client, namespace, "web-1",
                                                                      status["updateRevision"]))
        assert (await _revisions_of_pods(client, namespace))["web-0"] == old


async def _new_revision(client: Client, ns: str, old: str) -> dict[str, Any] | None:
    status = await sts_status(client, ns)
    return status if status.get("updateRevision") not in (None, old) else None


async def _pod_at(client: Client, ns: str, name: str, revision: str) -> bool:
    return (await _revisions_of_pods(client, ns)).get(name) == revision


async def test_revision_history_is_truncated(k: Kubectl, client: Client, namespace: str) -> None:
    spec = "  revisionHistoryLimit: 1\n"
    async with FakeKubelet(client, namespace):
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, replicas=1, extra_spec=spec))
        await wait_for("ready", lambda: _ready(client, namespace, 1))
        for tag in ("2", "3", "4"):
            await kubectl(k, "set", "image", "sts/web", f"c=busybox:{tag}", "-n", namespace)

            async def done() -> bool:
                status = await sts_status(client, namespace)
                return status.get("currentRevision") == status.get("updateRevision") \
                    and status.get("observedGeneration") == (await client.get(SETS, "web", namespace))[
                        "metadata"]["generation"] and status.get("readyReplicas") == 1
            await wait_for(f"busybox:{tag} rolled out", done)

        async def numbers() -> list[int]:
            return sorted(r["revision"] for r in (await client.list(REVISIONS, namespace))["items"])
        # the newest revision plus revisionHistoryLimit=1 older one (truncation follows the status write)
        await wait_for("history truncated to [3, 4]", lambda: _equal(numbers(), [3, 4]))


async def _equal(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_orphaned_pods_are_adopted(k: Kubectl, client: Client, namespace: str) -> None:
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "web-0", "labels": {"app": "web", "controller-revision-hash": "web-old"}},
              "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}
    async with FakeKubelet(client, namespace) as kubelet:
        uid = (await client.create(PODS, orphan, namespace))["metadata"]["uid"]
        await kubectl(k, "apply", "-f", "-", input=manifest(namespace, replicas=2,
                                                            extra_spec="  updateStrategy: {type: OnDelete}\n"))
        sts = await wait_for("the set", lambda: _get_or_none(client, SETS, "web", namespace))
        await wait_for("adopted", lambda: _all_owned_by(client, namespace, sts["metadata"]["uid"]))
        await wait_for("2 ready", lambda: _ready(client, namespace, 2))
        assert (await client.get(PODS, "web-0", namespace))["metadata"]["uid"] == uid, "adopted, not replaced"
        assert [(n, u == uid) for kind, n, u in kubelet.events if kind == "ADDED"] == [("web-0", True),
                                                                                     ("web-1", False)]


async def _all_owned_by(client: Client, ns: str, uid: str) -> bool:
    pods = (await client.list(PODS, ns))["items"]
    return bool(pods) and all([r["uid"] for r in p["metadata"].get("ownerReferences") or []] == [uid] for p in pods)


async def _get_or_none(client: Client, rt: Any, name: str, ns: str) -> dict[str, Any] | None:
    try:
        return await client.get(rt, name, ns)
    except errors.NotFound:
        return None


# -- pure helpers ----------------------------------------------------------------------------------------------

def test_revision_hash_is_stable_and_salted_by_collisions() -> None:
    data = {"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}}
    same = {"spec": {"template": {"spec": {"containers": []}, "metadata": {"labels": {"a": "b"}}}}}
    assert history.compute_hash(data) == history.compute_hash(same)
    assert history.compute_hash(data, 1) != history.compute_hash(data)
    assert set(history.compute_hash(data)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_stateful_pod_identity_and_storage() -> None:
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "db", "namespace": "ns", "uid": "u1"},
           "spec": {"serviceName": "db-svc", "replicas": 2, "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}},
                                 "spec": {"containers": [{"name": "c", "image": "i"}],
                                          "volumes": [{"name": "data", "emptyDir": {}},
                                                      {"name": "cfg", "emptyDir": {}}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}}
    pod = new_stateful_pod(sts, 1, "db-abc")
    assert parent_and_ordinal(pod) == ("db", 1)
    assert pod["spec"]["hostname"] == "db-1" and pod["spec"]["subdomain"] == "db-svc"
    assert pod["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}},
                                      {"name": "cfg", "emptyDir": {}}]
    assert pod["metadata"]["labels"] == {"app": "db", "statefulset.kubernetes.io/pod-name": "db-1",
                                         "apps.kubernetes.io/pod-index": "1", "controller-revision-hash": "db-abc"}
    claim = {"metadata": {"name": "data-db-1", "ownerReferences": []}}
    live = {**pod, "metadata": {**pod["metadata"], "uid": "p1"}}
    sts["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete", "whenScaled": "Delete"}
    assert [r["uid"] for r in desired_claim_refs(claim, sts, live) or []] == ["u1"]
    sts["spec"]["replicas"] = 1     # now db-1 is being scaled away
    assert [r["uid"] for r in desired_claim_refs(claim, sts, live) or []] == ["p1"]
    sts["spec"]["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert desired_claim_refs(claim, sts, live) == []
