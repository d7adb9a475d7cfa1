"""The garbage collector against a real cluster: background, foreground and orphan deletion through the real kubectl.

Owners and dependents are made by hand (ConfigMaps, Secrets, unscheduled Pods, custom resources) with
ownerReferences pointing at the owners' uids, so no other controller acts on them. The ownership graph's
bookkeeping is also tested directly.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Awaitable, Callable

import pytest

from kates.api import errors
from kates.api.resources import ResourceType
from kates.client.rest import Client, resource
from kates.controllers.garbagecollector import (OwnershipGraph, RESTMapper, collectable, custom_resource_type,
                                                 slim)

CM = resource("configmaps")
SECRETS = resource("secrets")
PODS = resource("pods")
CRDS = resource("customresourcedefinitions.apiextensions.k8s.io")
NOBODY = "kates-test-no-scheduler"   # pods no scheduler binds: deleting them is immediate


async def eventually(probe: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not reached in {timeout}s; last value: {last!r}")


async def exists(client: Client, rt: ResourceType, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    try:
        return await client.get(rt, name, namespace)
    except errors.NotFound:
        return None


def ref(owner: dict[str, Any], block: bool | None = None) -> dict[str, Any]:
    out = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"]}
    if block is not None:
        out["blockOwnerDeletion"] = block
    return out


async def configmap(client: Client, ns: str, name: str, owners: list[dict[str, Any]] = (),  # type: ignore[assignment]
                    finalizers: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    meta: dict[str, Any] = {"name": name}
    if owners:
        meta["ownerReferences"] = list(owners)
    if finalizers:
        meta["finalizers"] = list(finalizers)
    return await client.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}, ns)


async def release(client: Client, ns: str, name: str) -> None:
    """Drop a test finalizer that holds an object."""
    await client.patch(CM, name, [{"op": "remove", "path": "/metadata/finalizers"}], ns, patch_type="json")


def kubectl(cluster_kubectl: Any, *args: str, **kw: Any) -> Awaitable[Any]:
    return asyncio.to_thread(cluster_kubectl.run, *args, **kw)


@pytest.fixture
async def client(cluster):
    c = Client.from_kubeconfig(cluster.kubeconfig, user_agent="kates-test-gc")
    yield c
    await c.close()


@pytest.fixture(scope="module")
def gadgets(cluster_kubectl) -> ResourceType:
    """A namespaced custom resource, created while the collector runs (it must start following it)."""
    cluster_kubectl.apply("""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.gc.kates.test}
spec:
  group: gc.kates.test
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - {name: v1, served: true, storage: true,
     schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
""")
    cluster_kubectl.run("wait", "--for=condition=Established", "crd/gadgets.gc.kates.test", "--timeout=20s")
    return ResourceType("gc.kates.test", "v1", "gadgets", "Gadget", True)


# -- against the cluster ------------------------------------------------------------------------------------------

async def test_background_deletion_removes_dependents_of_every_kind(client, cluster_kubectl, cluster_ns):
    owner = await configmap(client, cluster_ns, "owner")
    await configmap(client, cluster_ns, "dep-cm", [ref(owner)])
    await client.create(SECRETS, {"metadata": {"name": "dep-secret", "ownerReferences": [ref(owner)]}}, cluster_ns)
    await client.create(PODS, {"metadata": {"name": "dep-pod", "ownerReferences": [ref(owner)]},
                               "spec": {"schedulerName": NOBODY, "containers": [{"name": "c", "image": "pause"}]}},
                        cluster_ns)
    grandchild = await configmap(client, cluster_ns, "grandchild", [ref(await client.get(CM, "dep-cm", cluster_ns))])
    await kubectl(cluster_kubectl, "delete", "configmap", "owner", "-n", cluster_ns)

    async def all_gone() -> bool:
        left = [await exists(client, CM, "dep-cm", cluster_ns), await exists(client, SECRETS, "dep-secret", cluster_ns),
                await exists(client, PODS, "dep-pod", cluster_ns), await exists(client, CM, "grandchild", cluster_ns)]
        return not any(left)
    await eventually(all_gone)
    assert grandchild["metadata"]["uid"]


async def test_dependent_with_two_owners_survives_until_both_are_gone(client, cluster_kubectl, cluster_ns):
    a = await configmap(client, cluster_ns, "owner-a")
    b = await configmap(client, cluster_ns, "owner-b")
    await configmap(client, cluster_ns, "shared", [ref(a), ref(b)])
    await kubectl(cluster_kubectl, "delete", "configmap", "owner-a", "-n", cluster_ns)

    async def only_b_left() -> bool:
        dep = await exists(client, CM, "shared", cluster_ns)
        assert dep is not None, "a dependent with a remaining owner was collected"
        return [r["uid"] for r in dep["metadata"].get("ownerReferences") or []] == [b["metadata"]["uid"]]
    await eventually(only_b_left)   # the reference to the deleted owner is dropped, the object kept
    await asyncio.sleep(0.5)
    assert await exists(client, CM, "shared", cluster_ns) is not None
    await kubectl(cluster_kubectl, "delete", "configmap", "owner-b", "-n", cluster_ns)
    await eventually(lambda: _absent(client, CM, "shared", cluster_ns))


async def _absent(client: Client, rt: ResourceType, name: str, ns: str) -> bool:
    return await exists(client, rt, name, ns) is None


async def test_references_to_owners_that_do_not_exist_are_collected(client, cluster_ns):
    await configmap(client, cluster_ns, "no-such-owner", [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": str(uuid.uuid4())}])
    # an owner of that name exists, but it is another object (another uid): the reference still dangles
    await configmap(client, cluster_ns, "replaced")
    await configmap(client, cluster_ns, "owner-replaced", [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "replaced", "uid": str(uuid.uuid4())}])
    await configmap(client, cluster_ns, "bystander")
    await eventually(lambda: _absent(client, CM, "no-such-owner", cluster_ns))
    await eventually(lambda: _absent(client, CM, "owner-replaced", cluster_ns))
    assert await exists(client, CM, "replaced", cluster_ns) is not None
    assert await exists(client, CM, "bystander", cluster_ns) is not None


async def test_foreground_deletion_removes_blocking_dependents_before_the_owner(client, cluster_kubectl, cluster_ns):
    owner = await configmap(client, cluster_ns, "owner")
    await configmap(client, cluster_ns, "held", [ref(owner, block=True)], finalizers=["kates.test/hold"])
    await configmap(client, cluster_ns, "free", [ref(owner, block=True)])
    await kubectl(cluster_kubectl, "delete", "configmap", "owner", "-n", cluster_ns, "--cascade=foreground",
                  "--wait=false")

    async def owner_waits() -> bool:
        o = await client.get(CM, "owner", cluster_ns)
        held = await client.get(CM, "held", cluster_ns)
        return (bool(o["metadata"].get("deletionTimestamp")) and "foregroundDeletion" in o["metadata"]["finalizers"]
                and bool(held["metadata"].get("deletionTimestamp"))
                and await exists(client, CM, "free", cluster_ns) is None)
    await eventually(owner_waits)
    await asyncio.sleep(0.5)
    assert await exists(client, CM, "owner", cluster_ns) is not None, "the owner went before a blocking dependent"
    await release(client, cluster_ns, "held")
    await eventually(lambda: _absent(client, CM, "owner", cluster_ns))
    assert await exists(client, CM, "held", cluster_ns) is None


async def test_foreground_deletion_is_recursive(client, cluster_kubectl, cluster_ns):
    top = await configmap(client, cluster_ns, "top")
    mid = await configmap(client, cluster_ns, "mid", [ref(top, block=True)])
    await configmap(client, cluster_ns, "leaf", [ref(mid, block=True)], finalizers=["kates.test/hold"])
    await kubectl(cluster_kubectl, "delete", "configmap", "top", "-n", cluster_ns, "--cascade=foreground",
                  "--wait=false")

    async def chain_waits() -> bool:
        m = await exists(client, CM, "mid", cluster_ns)
        leaf = await exists(client, CM, "leaf", cluster_ns)
        return bool(m and "foregroundDeletion" in (m["metadata"].get("finalizers") or [])
                    and leaf and leaf["metadata"].get("deletionTimestamp"))
    await eventually(chain_waits)   # mid is deleted in the foreground too, since it has dependents
    assert await exists(client, CM, "top", cluster_ns) is not None
    await release(client, cluster_ns, "leaf")
    for name in ("leaf", "mid", "top"):
        await eventually(lambda name=name: _absent(client, CM, name, cluster_ns))


async def test_kubectl_foreground_delete_returns_once_dependents_are_gone(client, cluster_kubectl, cluster_ns):
    owner = await configmap(client, cluster_ns, "owner")
    for i in range(3):
        await configmap(client, cluster_ns, f"dep-{i}", [ref(owner, block=True)])
    await kubectl(cluster_kubectl, "delete", "configmap", "owner", "-n", cluster_ns, "--cascade=foreground",
                  "--timeout=20s")
    for i in range(3):
        assert await exists(client, CM, f"dep-{i}", cluster_ns) is None
    assert await exists(client, CM, "owner", cluster_ns) is None


async def test_orphan_deletion_strips_owner_references(client, cluster_kubectl, cluster_ns):
    owner = await configmap(client, cluster_ns, "owner")
    other = await configmap(client, cluster_ns, "other-owner")
    await configmap(client, cluster_ns, "dep-1", [ref(owner, block=True)])
    await configmap(client, cluster_ns, "dep-2", [ref(owner), ref(other)])
    await kubectl(cluster_kubectl, "delete", "configmap", "owner", "-n", cluster_ns, "--cascade=orphan",
                  "--timeout=20s")
    assert await exists(client, CM, "owner", cluster_ns) is None
    dep1 = await client.get(CM, "dep-1", cluster_ns)
    dep2 = await client.get(CM, "dep-2", cluster_ns)
    assert not dep1["metadata"].get("ownerReferences")
    assert [r["uid"] for r in dep2["metadata"]["ownerReferences"]] == [other["metadata"]["uid"]]
    await asyncio.sleep(0.5)   # and they are not collected afterwards
    assert await exists(client, CM, "dep-1", cluster_ns) is not None


async def test_custom_resources_own_and_are_owned(client, cluster_kubectl, cluster_ns, gadgets):
    gadget = await client.create(gadgets, {"apiVersion": "gc.kates.test/v1", "kind": "Gadget",
                                           "metadata": {"name": "g"}}, cluster_ns)
    await configmap(client, cluster_ns, "owned-by-gadget", [ref(gadget)])
    owner = await configmap(client, cluster_ns, "owns-a-gadget")
    await client.create(gadgets, {"apiVersion": "gc.kates.test/v1", "kind": "Gadget",
                                  "metadata": {"name": "child", "ownerReferences": [ref(owner)]}}, cluster_ns)
    await kubectl(cluster_kubectl, "delete", "gadget", "g", "-n", cluster_ns)
    await kubectl(cluster_kubectl, "delete", "configmap", "owns-a-gadget", "-n", cluster_ns)
    await eventually(lambda: _absent(client, CM, "owned-by-gadget", cluster_ns))
    await eventually(lambda: _absent(client, gadgets, "child", cluster_ns))


async def test_dependents_of_a_deleted_custom_resource_definition_are_collected(client, cluster_kubectl, cluster_ns):
    cluster_kubectl.apply("""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: doomeds.gc.kates.test}
spec:
  group: gc.kates.test
  scope: Namespaced
  names: {plural: doomeds, singular: doomed, kind: Doomed}
  versions:
  - {name: v1, served: true, storage: true,
     schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
""")
    cluster_kubectl.run("wait", "--for=condition=Established", "crd/doomeds.gc.kates.test", "--timeout=20s")
    doomeds = ResourceType("gc.kates.test", "v1", "doomeds", "Doomed", True)
    d = await client.create(doomeds, {"apiVersion": "gc.kates.test/v1", "kind": "Doomed",
                                      "metadata": {"name": "d"}}, cluster_ns)
    await configmap(client, cluster_ns, "owned-by-doomed", [ref(d)])
    await asyncio.sleep(0.3)
    assert await exists(client, CM, "owned-by-doomed", cluster_ns) is not None
    await kubectl(cluster_kubectl, "delete", "crd", "doomeds.gc.kates.test", "--timeout=20s")
    await eventually(lambda: _absent(client, CM, "owned-by-doomed", cluster_ns))


# -- the graph, directly ----------------------------------------------------------------------------------------------

def obj(name: str, uid: str, owners: list[dict[str, Any]] = (), **meta: Any) -> dict[str, Any]:  # type: ignore
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "ownerReferences": list(owners), **meta}}


def owner_ref(name: str, uid: str, block: bool = False) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid, "blockOwnerDeletion": block}


def test_graph_links_owners_and_dependents():
    g = OwnershipGraph()
    assert not g.observe(CM, obj("o", "u-o"))
    work = g.observe(CM, obj("d", "u-d", [owner_ref("o", "u-o")]))
    assert not work.delete, "an observed owner needs no verification"
    assert g.get("u-o").dependents == {"u-d"}
    work = g.remove("u-o")
    assert work.delete == {"u-d"} and work.absent == {"u-o"}
    assert g.get("u-o") is None


def test_graph_makes_virtual_owners_to_verify():
    g = OwnershipGraph()
    work = g.observe(CM, obj("d", "u-d", [owner_ref("o", "u-o")]))
    assert work.delete == {"u-o"}
    virtual = g.get("u-o")
    assert not virtual.observed and virtual.namespace == "ns" and virtual.kind == "ConfigMap"
    g.observe(CM, obj("o", "u-o"))    # the owner shows up: no longer virtual
    assert g.get("u-o").observed and g.get("u-o").dependents == {"u-d"}
    g.observe(CM, obj("d", "u-d"))    # the reference is dropped: so is the link
    assert g.get("u-o").dependents == set()


def test_graph_foreground_and_orphan_transitions():
    g = OwnershipGraph()
    g.observe(CM, obj("o", "u-o"))
    g.observe(CM, obj("b", "u-b", [owner_ref("o", "u-o", block=True)]))
    g.observe(CM, obj("n", "u-n", [owner_ref("o", "u-o")]))
    work = g.observe(CM, obj("o", "u-o", deletionTimestamp="2024-01-01T00:00:00Z", finalizers=["foregroundDeletion"]))
    assert work.delete == {"u-o", "u-b", "u-n"}
    owner = g.get("u-o")
    assert owner.deleting_dependents
    assert [d.uid for d in g.blocking_dependents(owner)] == ["u-b"]
    work = g.observe(CM, obj("b", "u-b", [owner_ref("o", "u-o", block=False)]))
    assert "u-o" in work.delete, "unblocking a dependent wakes its waiting owner"
    assert g.blocking_dependents(owner) == []
    work = g.observe(CM, obj("x", "u-x", deletionTimestamp="2024-01-01T00:00:00Z", finalizers=["orphan"]))
    assert work.orphan == {"u-x"}


def test_custom_resource_types_and_the_rest_mapper():
    crd = {"spec": {"group": "g.test", "scope": "Cluster", "names": {"plural": "things", "kind": "Thing"},
                    "versions": [{"name": "v1", "served": True, "storage": False},
                                 {"name": "v2", "served": True, "storage": True}]},
           "status": {"conditions": [{"type": "Established", "status": "True"}]}}
    rt = custom_resource_type(crd)
    assert (rt.group, rt.version, rt.resource, rt.kind, rt.namespaced) == ("g.test", "v2", "things", "Thing", False)
    assert custom_resource_type({**crd, "status": {}}) is None
    assert collectable(rt) and not collectable(resource("events")) and not collectable(resource("bindings"))
    mapper = RESTMapper()
    assert mapper.lookup("apps/v1", "Deployment") == resource("deployments.apps")
    assert mapper.lookup("g.test/v1", "Thing") is None
    assert mapper.add(rt) and not mapper.add(rt)
    assert mapper.lookup("g.test/v1", "Thing") == rt
    assert slim(rt, {"metadata": {"name": "a", "uid": "u", "managedFields": [{}], "labels": {"x": "y"}}}) == {
        "apiVersion": "g.test/v2", "kind": "Thing", "metadata": {"name": "a", "uid": "u"}}
