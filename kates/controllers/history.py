"""ControllerRevisions and the other pieces the StatefulSet and DaemonSet controllers share.

Both controllers snapshot their pod template into immutable ControllerRevisions (as Kubernetes'
`pkg/controller/history` does): the revision's `data` is a strategic merge patch that puts the template back
(`{"spec": {"template": {..., "$patch": "replace"}}}`), which is exactly what `kubectl rollout undo` sends, and its
name carries a hash so that pods can be labelled with the revision they were made from. The history is
numbered (`revision`), re-numbered when an old template comes back, and truncated to `revisionHistoryLimit`.

The module also holds the small helpers both controllers need about pods (ready, available, ownership), so that
the two controller modules stay about their own policy.
"""
from __future__ import annotations

import asyncio
import copy
import struct
from typing import Any, Awaitable, Callable, Iterable

import orjson

from ..api import errors
from ..client.informer import controller_ref
from ..client.rest import Client, resource
from ..api.timestamps import parse_rfc3339 as parse_time

Obj = dict[str, Any]

REVISIONS = resource("controllerrevisions.apps")
REVISION_HASH_LABEL = "controller-revision-hash"

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"   # no vowels, no look-alikes: as k8s.io/apimachinery/pkg/util/rand
_MAX_PREFIX = 223                                 # so that "<prefix>-<hash>" stays a valid name


# -- hashing ---------------------------------------------------------------------------------------------------

def canonical_json(value: Any) -> bytes:
    """Bytes that are equal exactly when the JSON values are: sorted keys, no spaces."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """Kubernetes' `rand.SafeEncodeString`: each byte mapped onto an alphabet that cannot spell words."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in text.encode())


def compute_hash(value: Any, collision_count: int | None = None) -> str:
    """A short, stable, label-safe hash of a JSON value, salted by the owner's collisionCount."""
    data = canonical_json(value)
    if collision_count:
        data += struct.pack("<I", collision_count & 0xFFFFFFFF) + b"\0\0\0\0"
    return safe_encode(str(fnv32a(data)))


def revision_name(prefix: str, hash_: str) -> str:
    return f"{prefix[:_MAX_PREFIX]}-{hash_}"


# -- building and comparing revisions ----------------------------------------------------------------------------

def template_patch(owner: Obj) -> Obj:
    """The revision data: a strategic merge patch replacing spec.template (what kubectl's undo applies)."""
    template = copy.deepcopy(owner["spec"]["template"])
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def apply_revision(owner: Obj, revision: Obj) -> Obj:
    """A copy of `owner` with the template the revision recorded (the effect of its `$patch: replace`)."""
    restored = copy.deepcopy(owner)
    template = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    restored["spec"]["template"] = template
    return restored


def new_controller_ref(owner: Obj) -> Obj:
    meta = owner["metadata"]
    return {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""), "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}


def new_revision(owner: Obj, data: Obj, number: int, hash_: str) -> Obj:
    """A ControllerRevision of `owner`, labelled like its template plus the hash, carrying owner's annotations."""
    meta = owner["metadata"]
    labels = dict(owner["spec"]["template"].get("metadata", {}).get("labels") or {})
    labels[REVISION_HASH_LABEL] = hash_
    rev: Obj = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": revision_name(meta["name"], hash_), "namespace": meta["namespace"],
                             "labels": labels, "ownerReferences": [new_controller_ref(owner)]},
                "data": data, "revision": number}
    annotations = meta.get("annotations")
    if annotations:
        rev["metadata"]["annotations"] = dict(annotations)
    return rev


def equal_revision(a: Obj | None, b: Obj | None) -> bool:
    if a is None or b is None:
        return a is b
    return canonical_json(a.get("data")) == canonical_json(b.get("data"))


def find_equal_revisions(revisions: Iterable[Obj], needle: Obj) -> list[Obj]:
    return [r for r in revisions if equal_revision(r, needle)]


def sort_revisions(revisions: list[Obj]) -> list[Obj]:
    """Oldest first: by revision number, then creation time, then name (history.SortControllerRevisions)."""
    return sorted(revisions, key=lambda r: (r.get("revision", 0), r["metadata"].get("creationTimestamp", ""),
                                            r["metadata"]["name"]))


def next_revision(sorted_revisions: list[Obj]) -> int:
    return sorted_revisions[-1].get("revision", 0) + 1 if sorted_revisions else 1


async def create_revision(client: Client, revision: Obj, prefix: str, collision_count: int) -> tuple[Obj, int]:
    """Create `revision`, named `<prefix>-<hash of its data>`; on a name taken by a different revision bump the
    collision count and try the next name. Returns the stored revision and the collision count used."""
    while True:
        hash_ = compute_hash(revision["data"], collision_count)
        candidate = copy.deepcopy(revision)
        candidate["metadata"]["name"] = revision_name(prefix, hash_)
        candidate["metadata"]["labels"][REVISION_HASH_LABEL] = hash_
        try:
            return await client.create(REVISIONS, candidate), collision_count
        except errors.AlreadyExists:
            existing = await client.get(REVISIONS, candidate["metadata"]["name"], candidate["metadata"]["namespace"])
            if equal_revision(existing, candidate):
                return existing, collision_count
            collision_count += 1


async def renumber_revision(client: Client, revision: Obj, number: int) -> Obj:
    """Give an old revision a new number (a rollback to an earlier template makes it the newest)."""
    meta = revision["metadata"]
    return await client.patch(REVISIONS, meta["name"], {"revision": number}, meta["namespace"])


async def delete_revision(client: Client, revision: Obj) -> None:
    meta = revision["metadata"]
    try:
        await client.delete(REVISIONS, meta["name"], meta["namespace"])
    except errors.NotFound:
        pass


# -- ownership: adopt orphans, release what no longer matches ----------------------------------------------------

def owned_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"]["uid"]


async def adopt(client: Client, rt: Any, obj: Obj, owner: Obj) -> Obj:
    """Add `owner` as the controller of an orphan; the resourceVersion makes it fail if the orphan changed."""
    meta = obj["metadata"]
    refs = list(meta.get("ownerReferences") or []) + [new_controller_ref(owner)]
    body = {"metadata": {"ownerReferences": refs, "resourceVersion": meta["resourceVersion"]}}
    return await client.patch(rt, meta["name"], body, meta.get("namespace"))


async def release(client: Client, rt: Any, obj: Obj, owner: Obj) -> None:
    """Drop `owner`'s controller reference from an object it no longer selects."""
    meta = obj["metadata"]
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner["metadata"]["uid"]]
    body = {"metadata": {"ownerReferences": refs or None, "resourceVersion": meta["resourceVersion"]}}
    try:
        await client.patch(rt, meta["name"], body, meta.get("namespace"))
    except errors.NotFound:
        pass


# -- pods ------------------------------------------------------------------------------------------------------

def ready_condition(pod: Obj) -> Obj | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)


def is_pod_ready(pod: Obj) -> bool:
    cond = ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least minReadySeconds (podutil.IsPodAvailable)."""
    cond = ready_condition(pod)
    if cond is None or cond.get("status") != "True":
        return False
    if not min_ready_seconds:
        return True
    since = parse_time(cond.get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= now


def phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_terminating(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """An IntOrString ("25%" or 2) scaled against `total` (intstr.GetScaledValueFromIntOrPercent)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.endswith("%"):
        return int(text)
    percent = int(text[:-1])
    exact = percent * total
    return -(-exact // 100) if round_up else exact // 100


async def slow_start_batch(count: int, fn: Callable[[int], Awaitable[None]], initial: int = 1) -> int:
    """Run fn(0..count-1) in batches of 1, 2, 4...; stop at the first batch with a failure (re-raised).

    A create that fails (quota, admission) then fails once, not `count` times."""
    done = 0
    batch = min(initial, count)
    while batch > 0:
        results = await asyncio.gather(*(fn(i) for i in range(done, done + batch)), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        done += batch - len(failures)
        if failures:
            raise failures[0]
        batch = min(2 * batch, count - done)
    return done
