"""The Deployment controller against a real cluster, driven by the real kubectl (rollout status/history/undo/
restart, set image, scale, pause/resume), plus its pure rollout arithmetic.

As in test_replicaset.py, pods use a scheduler name nobody serves and a `FakeKubelet` makes them ready, so each
test decides which pods become available and when.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from test_replicaset import client  # noqa: F401 (the fixture)
from test_replicaset import FakeKubelet, eventually, kubectl_async, pod_template, pods_of

from kates.client.rest import Client, resource
from kates.controllers import deployment_util as util

DEPLOY = resource("deployments.apps")
RS = resource("replicasets.apps")
EVENTS = resource("events")


def deployment(name: str = "web", replicas: int = 3, image: str = "img:1", *, max_surge: Any = 1,
               max_unavailable: Any = 0, strategy: str = "RollingUpdate", history: int | None = None,
               progress_deadline: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                            "template": pod_template({"app": name}, image)}
    if strategy == "RollingUpdate":
        spec["strategy"] = {"type": strategy, "rollingUpdate": {"maxSurge": max_surge,
                                                                "maxUnavailable": max_unavailable}}
    else:
        spec["strategy"] = {"type": strategy}
    if history is not None:
        spec["revisionHistoryLimit"] = history
    if progress_deadline is not None:
        spec["progressDeadlineSeconds"] = progress_deadline
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


async def apply(kubectl: Any, namespace: str, obj: dict[str, Any]) -> None:
    await kubectl_async(kubectl, "apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


async def replica_sets(client: Client, namespace: str, owner_uid: str | None = None) -> list[dict[str, Any]]:
    items = (await client.list(RS, namespace))["items"]
    return sorted((rs for rs in items if owner_uid is None or any(
        r.get("controller") and r["uid"] == owner_uid for r in rs["metadata"].get("ownerReferences") or [])),
        key=util.revision)


async def rollout_status(kubectl: Any, namespace: str, name: str = "web", timeout: str = "30s") -> Any:
    return await kubectl_async(kubectl, "rollout", "status", f"deploy/{name}", "-n", namespace,
                               f"--timeout={timeout}", check=False, timeout=60)


def image_of(obj: dict[str, Any]) -> str:
    """The image of a pod, or of the pod template of a Deployment or ReplicaSet."""
    spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    return spec["containers"][0]["image"]


# -- end to end ----------------------------------------------------------------------------------------------------

async def test_deployment_makes_one_replica_set_with_revision(client, cluster_kubectl, cluster_ns):
    await apply(cluster_kubectl, cluster_ns, deployment())
    d = await client.get(DEPLOY, "web", cluster_ns)
    uid = d["metadata"]["uid"]

    async def one_full_rs() -> list[dict[str, Any]] | None:
        rss = await replica_sets(client, cluster_ns, uid)
        return rss if len(rss) == 1 and len(await pods_of(client, cluster_ns, rss[0]["metadata"]["uid"])) == 3 \
            else None
    [rs] = await eventually(one_full_rs)
    template_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{template_hash}"
    assert set(template_hash) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert rs["metadata"]["labels"] == {"app": "web", "pod-template-hash": template_hash}
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "web", "pod-template-hash": template_hash}}
    assert rs["spec"]["template"]["metadata"]["labels"] == rs["metadata"]["labels"]
    assert rs["spec"]["replicas"] == 3
    assert rs["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                  "uid": uid, "controller": True, "blockOwnerDeletion": True}]
    ann = rs["metadata"]["annotations"]
    assert (ann[util.REVISION], ann[util.DESIRED_REPLICAS], ann[util.MAX_REPLICAS]) == ("1", "3", "4")
    for pod in await pods_of(client, cluster_ns, rs["metadata"]["uid"]):
        assert pod["metadata"]["labels"]["pod-template-hash"] == template_hash

    async def deployment_status() -> dict[str, Any] | None:
        d = await client.get(DEPLOY, "web", cluster_ns)
        status = d.get("status") or {}
        return d if status.get("updatedReplicas") == 3 and status.get("replicas") == 3 else None
    d = await eventually(deployment_status)
    assert d["metadata"]["annotations"][util.REVISION] == "1"
    status = d["status"]
    assert status["observedGeneration"] == 1 and status["unavailableReplicas"] == 3
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Available"]["status"], conditions["Available"]["reason"]) == \
        ("False", "MinimumReplicasUnavailable")
    assert conditions["Progressing"]["status"] == "True"
    assert conditions["Progressing"]["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")

    async def scaling_event() -> list[str]:
        return [e["message"] for e in (await client.list(EVENTS, cluster_ns))["items"]
                if e["reason"] == "ScalingReplicaSet" and e["involvedObject"]["name"] == "web"]
    assert await eventually(scaling_event) == [f"Scaled up replica set web-{template_hash} to 3"]


async def test_template_change_makes_second_revision_and_rollout_completes(client, cluster_kubectl, cluster_ns):
    async with FakeKubelet(client, cluster_ns):
        await apply(cluster_kubectl, cluster_ns, deployment())
        done = await rollout_status(cluster_kubectl, cluster_ns)
        assert done.returncode == 0 and 'deployment "web" successfully rolled out' in done.stdout
        await kubectl_async(cluster_kubectl, "set", "image", "deploy/web", "app=img:2", "-n", cluster_ns)
        done = await rollout_status(cluster_kubectl, cluster_ns)
        assert done.returncode == 0, done.stderr
        d = await client.get(DEPLOY, "web", cluster_ns)
        assert d["status"]["updatedReplicas"] == d["status"]["replicas"] == d["status"]["availableReplicas"] == 3
        old, new = await replica_sets(client, cluster_ns, d["metadata"]["uid"])
        assert (util.revision(old), util.revision(new)) == (1, 2)
        assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 3)
        assert (image_of(old), image_of(new)) == ("img:1", "img:2")
        history = (await kubectl_async(cluster_kubectl, "rollout", "history", "deploy/web", "-n", cluster_ns)).stdout
        revisions = [line.split()[0] for line in history.splitlines()[2:] if line.strip()]
        assert revisions == ["1", "2"], history
        detail = (await kubectl_async(cluster_kubectl, "rollout", "history", "deploy/web", "-n", cluster_ns,
                                      "--revision=1")).stdout
        assert "img:1" in detail

        await kubectl_async(cluster_kubectl, "rollout", "restart", "deploy/web", "-n", cluster_ns)
        done = await rollout_status(cluster_kubectl, cluster_ns)
        assert done.returncode == 0, done.stderr
        rss = await replica_sets(client, cluster_ns, d["metadata"]["uid"])
        assert [util.revision(rs) for rs in rss] == [1, 2, 3]
        assert "kubectl.kubernetes.io/restartedAt" in rss[-1]["spec"]["template"]["metadata"]["annotations"]
        assert [rs["spec"]["replicas"] for rs in rss] == [0, 0, 3]


async def test_max_unavailable_zero_never_drops_available_replicas(client, cluster_kubectl, cluster_ns):
    async with FakeKubelet(client, cluster_ns, delay=0.2):
        await apply(cluster_kubectl, cluster_ns, deployment(replicas=3, max_surge=1, max_unavailable=0))
        assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0
        start = await client.get(DEPLOY, "web", cluster_ns)
        seen: list[dict[str, Any]] = []

        async def watch() -> None:
            async for _, obj in client.watch(DEPLOY, cluster_ns, field_selector="metadata.name=web",
                                             resource_version=start["metadata"]["resourceVersion"]):
                seen.append(obj.get("status") or {})
        watcher = asyncio.create_task(watch())
        try:
            await kubectl_async(cluster_kubectl, "set", "image", "deploy/web", "app=img:2", "-n", cluster_ns)
            assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0

            async def watched_to_the_end() -> bool:
                return bool(seen) and seen[-1].get("updatedReplicas") == seen[-1].get("availableReplicas") == 3 \
                    and seen[-1].get("replicas") == 3
            await eventually(watched_to_the_end)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    assert min(s.get("availableReplicas", 0) for s in seen) >= 3, seen
    assert any(0 < s.get("updatedReplicas", 0) < 3 for s in seen), seen  # it went one pod at a time


async def test_paused_deployment_scales_but_does_not_roll_out(client, cluster_kubectl, cluster_ns):
    async with FakeKubelet(client, cluster_ns):
        await apply(cluster_kubectl, cluster_ns, deployment(replicas=2))
        assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0
        await kubectl_async(cluster_kubectl, "rollout", "pause", "deploy/web", "-n", cluster_ns)
        await kubectl_async(cluster_kubectl, "set", "image", "deploy/web", "app=img:2", "-n", cluster_ns)
        await kubectl_async(cluster_kubectl, "scale", "deploy/web", "--replicas=4", "-n", cluster_ns)
        uid = (await client.get(DEPLOY, "web", cluster_ns))["metadata"]["uid"]

        async def scaled_in_place() -> dict[str, Any] | None:
            d = await client.get(DEPLOY, "web", cluster_ns)
            status = d.get("status") or {}
            return d if status.get("availableReplicas") == 4 and \
                status.get("observedGeneration") == d["metadata"]["generation"] else None
        d = await eventually(scaled_in_place)
        [rs] = await replica_sets(client, cluster_ns, uid)
        assert image_of(rs) == "img:1" and rs["spec"]["replicas"] == 4
        progressing = util.get_condition(d["status"], "Progressing")
        assert (progressing["status"], progressing["reason"]) == ("Unknown", "DeploymentPaused")

        await kubectl_async(cluster_kubectl, "rollout", "resume", "deploy/web", "-n", cluster_ns)
        assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0
        old, new = await replica_sets(client, cluster_ns, uid)
        assert (image_of(new), new["spec"]["replicas"], old["spec"]["replicas"]) == ("img:2", 4, 0)


async def test_revision_history_limit_prunes_old_replica_sets(client, cluster_kubectl, cluster_ns):
    async with FakeKubelet(client, cluster_ns):
        await apply(cluster_kubectl, cluster_ns, deployment(replicas=1, history=1))
        uid = (await client.get(DEPLOY, "web", cluster_ns))["metadata"]["uid"]
        for version in (2, 3, 4):
            await kubectl_async(cluster_kubectl, "set", "image", "deploy/web", f"app=img:{version}", "-n", cluster_ns)
            assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0

        async def pruned() -> list[dict[str, Any]] | None:
            rss = await replica_sets(client, cluster_ns, uid)
            return rss if len(rss) == 2 else None
        old, new = await eventually(pruned)
        assert (util.revision(old), util.revision(new)) == (3, 4)
        assert (image_of(old), image_of(new)) == ("img:3", "img:4")
        history = (await kubectl_async(cluster_kubectl, "rollout", "history", "deploy/web", "-n", cluster_ns)).stdout
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["3", "4"]


async def test_rollout_undo_brings_back_the_old_template(client, cluster_kubectl, cluster_ns):
    async with FakeKubelet(client, cluster_ns):
        await apply(cluster_kubectl, cluster_ns, deployment(replicas=2))
        assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0
        await kubectl_async(cluster_kubectl, "set", "image", "deploy/web", "app=img:2", "-n", cluster_ns)
        assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0
        undo = await kubectl_async(cluster_kubectl, "rollout", "undo", "deploy/web", "-n", cluster_ns)
        assert "rolled back" in undo.stdout
        assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0
        d = await client.get(DEPLOY, "web", cluster_ns)
        assert image_of(d) == "img:1"
        rss = await replica_sets(client, cluster_ns, d["metadata"]["uid"])
        assert len(rss) == 2                               # the first ReplicaSet came back; no new one
        second, first = rss
        assert (image_of(first), util.revision(first), first["spec"]["replicas"]) == ("img:1", 3, 2)
        assert first["metadata"]["annotations"][util.REVISION_HISTORY] == "1"
        assert (util.revision(second), second["spec"]["replicas"]) == (2, 0)
        assert d["metadata"]["annotations"][util.REVISION] == "3"


async def test_rollout_status_reports_an_exceeded_progress_deadline(client, cluster_kubectl, cluster_ns):
    await apply(cluster_kubectl, cluster_ns, deployment(replicas=1, progress_deadline=1))   # no kubelet: stuck

    async def timed_out() -> dict[str, Any] | None:
        d = await client.get(DEPLOY, "web", cluster_ns)
        cond = util.get_condition(d.get("status") or {}, "Progressing")
        return cond if cond and cond["reason"] == "ProgressDeadlineExceeded" else None
    cond = await eventually(timed_out, timeout=10)
    assert cond["status"] == "False" and "has timed out progressing" in cond["message"]
    result = await rollout_status(cluster_kubectl, cluster_ns)
    assert result.returncode != 0 and "exceeded its progress deadline" in result.stderr


async def test_recreate_removes_old_pods_before_creating_new_ones(client, cluster_kubectl, cluster_ns):
    async with FakeKubelet(client, cluster_ns):
        await apply(cluster_kubectl, cluster_ns, deployment(replicas=2, strategy="Recreate"))
        assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0
        listing = await client.list(resource("pods"), cluster_ns)
        live: dict[str, str] = {p["metadata"]["name"]: image_of(p) for p in listing["items"]}
        mixed: list[dict[str, str]] = []

        async def watch() -> None:
            async for kind, pod in client.watch(resource("pods"), cluster_ns,
                                                resource_version=listing["metadata"]["resourceVersion"]):
                if kind == "DELETED":
                    live.pop(pod["metadata"]["name"], None)
                else:
                    live[pod["metadata"]["name"]] = image_of(pod)
                if len(set(live.values())) > 1:
                    mixed.append(dict(live))
        watcher = asyncio.create_task(watch())
        try:
            await kubectl_async(cluster_kubectl, "set", "image", "deploy/web", "app=img:2", "-n", cluster_ns)
            assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0
            await asyncio.sleep(0.2)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    assert not mixed, mixed
    assert sorted(live.values()) == ["img:2", "img:2"]


async def test_scaling_mid_rollout_is_proportional(client, cluster_kubectl, cluster_ns):
    # only img:1 pods ever become ready, so the rollout to img:2 stalls with both ReplicaSets active
    async with FakeKubelet(client, cluster_ns, accept=lambda pod: image_of(pod) == "img:1"):
        await apply(cluster_kubectl, cluster_ns, deployment(replicas=4, max_surge=2, max_unavailable=0))
        assert (await rollout_status(cluster_kubectl, cluster_ns)).returncode == 0
        uid = (await client.get(DEPLOY, "web", cluster_ns))["metadata"]["uid"]
        await kubectl_async(cluster_kubectl, "set", "image", "deploy/web", "app=img:2", "-n", cluster_ns)

        async def sizes(want: tuple[int, int]) -> bool:
            rss = await replica_sets(client, cluster_ns, uid)
            return len(rss) == 2 and tuple(rs["spec"]["replicas"] for rs in rss) == want
        await eventually(lambda: sizes((4, 2)))       # 4 old (none may go), 2 new (surge)
        await kubectl_async(cluster_kubectl, "scale", "deploy/web", "--replicas=8", "-n", cluster_ns)
        await eventually(lambda: sizes((7, 3)))       # 4 more (8 + 2 surge - 6) spread 3:1
        await asyncio.sleep(0.3)
        assert await sizes((7, 3))
        for rs in await replica_sets(client, cluster_ns, uid):
            ann = rs["metadata"]["annotations"]
            assert (ann[util.DESIRED_REPLICAS], ann[util.MAX_REPLICAS]) == ("8", "10")


async def test_adopts_an_orphan_replica_set_and_releases_it_when_labels_change(client, cluster_kubectl, cluster_ns):
    orphan = {"metadata": {"name": "stray", "labels": {"app": "web"}},
              "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web", "v": "old"}},
                       "template": pod_template({"app": "web", "v": "old"})}}
    await client.create(RS, orphan, cluster_ns)
    await apply(cluster_kubectl, cluster_ns, deployment(replicas=1))
    uid = (await client.get(DEPLOY, "web", cluster_ns))["metadata"]["uid"]

    async def owner_of_stray() -> str | None:
        refs = (await client.get(RS, "stray", cluster_ns))["metadata"].get("ownerReferences") or []
        return refs[0]["uid"] if refs else None
    assert await eventually(owner_of_stray) == uid
    await client.patch(RS, "stray", {"metadata": {"labels": {"app": "elsewhere"}}}, cluster_ns)

    async def released() -> bool:
        return await owner_of_stray() is None
    await eventually(released)


# -- pure rollout arithmetic -------------------------------------------------------------------------------------

def _d(replicas: int, surge: Any = "25%", unavailable: Any = "25%", status_replicas: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": "web", "generation": 1},
            "spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": surge, "maxUnavailable": unavailable}}, "template": pod_template({"app": "web"})},
            "status": {"replicas": status_replicas}}


def _rs(name: str, replicas: int, created: str, max_replicas: int | None = None) -> dict[str, Any]:
    ann = {util.MAX_REPLICAS: str(max_replicas)} if max_replicas is not None else {}
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": created, "annotations": ann},
            "spec": {"replicas": replicas}}


def test_fenceposts_round_surge_up_and_unavailable_down():
    assert util.resolve_fenceposts("25%", "25%", 10) == (3, 2)
    assert util.resolve_fenceposts(0, 0, 5) == (0, 1)          # never both zero
    assert util.resolve_fenceposts("0%", "10%", 5) == (0, 1)
    assert util.max_unavailable(_d(2, 1, 5)) == 2             # capped at replicas
    assert util.max_unavailable(_d(0)) == 0
    assert util.max_surge({**_d(4), "spec": {**_d(4)["spec"], "strategy": {"type": "Recreate"}}}) == 0


def test_new_replica_set_grows_within_surge():
    d = _d(3, 1, 0)
    old, new = _rs("old", 3, "2024-01-01T00:00:00Z"), _rs("new", 0, "2024-01-02T00:00:00Z")
    assert util.new_rs_new_replicas(d, [old, new], new) == 1
    assert util.new_rs_new_replicas(d, [_rs("old", 2, "x"), _rs("new", 1, "y")], _rs("new", 1, "y")) == 2
    assert util.new_rs_new_replicas(d, [_rs("old", 0, "x"), _rs("new", 2, "y")], _rs("new", 2, "y")) == 3


def test_proportional_scaling_spreads_new_replicas_by_size():
    d = _d(15, 3, 2)
    old, new = _rs("old", 8, "2024-01-01T00:00:00Z", 13), _rs("new", 5, "2024-01-02T00:00:00Z", 13)
    assert util.proportional_sizes(d, [old, new]) == ({"old": 11, "new": 7}, "up")
    d = _d(5, 1, 0)
    old, new = _rs("old", 6, "2024-01-01T00:00:00Z", 11), _rs("new", 5, "2024-01-02T00:00:00Z", 11)
    sizes, operation = util.proportional_sizes(d, [old, new])
    assert operation == "down" and sum(sizes.values()) == 6 and sizes["old"] >= sizes["new"]


def test_template_hash_is_deterministic_and_ignores_its_own_label():
    a = pod_template({"app": "web"})
    b = json.loads(json.dumps(a))
    assert util.compute_hash(a) == util.compute_hash(b)
    assert util.compute_hash(a) != util.compute_hash(pod_template({"app": "web"}, "img:2"))
    assert util.compute_hash(a) != util.compute_hash(a, 1)
    labelled = json.loads(json.dumps(a))
    labelled["metadata"]["labels"]["pod-template-hash"] = util.compute_hash(a)
    labelled["metadata"]["annotations"] = {}
    assert util.equal_ignore_hash(a, labelled)
    assert not util.equal_ignore_hash(a, pod_template({"app": "web"}, "img:2"))


def test_an_old_replica_set_that_becomes_new_again_gets_the_next_revision():
    d = {"metadata": {"name": "web", "annotations": {"kubernetes.io/change-cause": "undo"}},
         "spec": {"replicas": 2}}
    rs = {"metadata": {"name": "web-1", "annotations": {util.REVISION: "1"}}, "spec": {"replicas": 0}}
    assert util.set_new_replica_set_annotations(d, rs, 3, True)
    ann = rs["metadata"]["annotations"]
    assert (ann[util.REVISION], ann[util.REVISION_HISTORY], ann["kubernetes.io/change-cause"]) == ("3", "1", "undo")
    assert not util.set_new_replica_set_annotations(d, rs, 3, True)
    assert util.find_active_or_latest(None, [_rs("a", 0, "1"), _rs("b", 0, "2")])["metadata"]["name"] == "b"
    assert util.find_active_or_latest(None, [_rs("a", 1, "1"), _rs("b", 2, "2")]) is None
