"""Pure helpers of the Deployment controller: revisions, template hashes, surge arithmetic, conditions, status.

Nothing here does I/O, so the rollout arithmetic (fenceposts, proportional scaling, which ReplicaSet is new) is
tested as plain functions. Objects are the wire JSON dicts; functions that change one say so and take a copy.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Iterable

import orjson

from .replicaset import parse_time, rfc3339

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
POD_TEMPLATE_HASH = "pod-template-hash"
# deployment annotations not copied onto its ReplicaSets
SKIPPED_ANNOTATIONS = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
                                 ROLLBACK_TO})
MAX_REVISION_HISTORY_CHARS = 2000

# condition reasons (pkg/controller/deployment/util)
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"
MINIMUM_AVAILABLE = "MinimumReplicasAvailable"
MINIMUM_UNAVAILABLE = "MinimumReplicasUnavailable"

MAX_INT32 = 2**31 - 1
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# -- small accessors ---------------------------------------------------------------------------------------------

def spec_replicas(obj: Obj | None) -> int:
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_count(obj: Obj | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def annotations(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def revision(rs: Obj) -> int:
    try:
        return int(annotations(rs).get(REVISION, "0") or 0)
    except ValueError:
        return 0


def max_revision(rss: Iterable[Obj]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def by_creation(rs: Obj) -> tuple[str, str]:
    """Sort key: oldest first, then by name (timestamps have one-second resolution)."""
    return rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"]


def by_revision(rs: Obj) -> tuple[int, str, str]:
    return (revision(rs), *by_creation(rs))


def filter_active(rss: Iterable[Obj | None]) -> list[Obj]:
    """ReplicaSets that should have pods."""
    return [rs for rs in rss if rs is not None and spec_replicas(rs) > 0]


def replica_count(rss: Iterable[Obj | None]) -> int:
    return sum(spec_replicas(rs) for rs in rss if rs is not None)


def actual_replica_count(rss: Iterable[Obj | None]) -> int:
    return sum(status_count(rs, "replicas") for rs in rss if rs is not None)


def ready_replica_count(rss: Iterable[Obj | None]) -> int:
    return sum(status_count(rs, "readyReplicas") for rs in rss if rs is not None)


def available_replica_count(rss: Iterable[Obj | None]) -> int:
    return sum(status_count(rs, "availableReplicas") for rs in rss if rs is not None)


# -- templates ---------------------------------------------------------------------------------------------------

def safe_encode(text: str) -> str:
    """Kubernetes' rand.SafeEncodeString: no vowels, no look-alike characters, so no accidental words."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in text)


def compute_hash(template: Obj, collision_count: int | None = None) -> str:
    """The pod-template-hash of a template: FNV-1a (32 bit) of its canonical JSON (and of the collision count,
    which moves the hash off a name that is taken), in the safe alphabet."""
    data = orjson.dumps(_semantic(template) or {}, option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += int(collision_count).to_bytes(4, "little", signed=False)
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return safe_encode(str(h))


def _semantic(value: Any) -> Any:
    """A value with empty maps, lists and nulls dropped: Kubernetes' semantic equality treats them as unset."""
    if isinstance(value, dict):
        out = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def semantically_equal(a: Any, b: Any) -> bool:
    return _semantic(a) == _semantic(b)


def without_hash(template: Obj | None) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(POD_TEMPLATE_HASH, None)
    return t


def equal_ignore_hash(a: Obj | None, b: Obj | None) -> bool:
    """Same pod template, apart from the pod-template-hash label."""
    return semantically_equal(without_hash(a), without_hash(b))


def find_new_replica_set(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the deployment's."""
    template = (d.get("spec") or {}).get("template")
    return next((rs for rs in sorted(rss, key=by_creation)
                 if equal_ignore_hash((rs.get("spec") or {}).get("template"), template)), None)


def find_old_replica_sets(d: Obj, rss: list[Obj], new_rs: Obj | None) -> list[Obj]:
    new_uid = new_rs["metadata"]["uid"] if new_rs is not None else None
    return [rs for rs in rss if rs["metadata"]["uid"] != new_uid]


# -- surge and unavailability ------------------------------------------------------------------------------------

def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """An IntOrString of a count: an int as is, a percent of `total`, rounded up or down."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        fraction = int(text[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(text)


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable): surge rounds up, unavailable down; both 0 would never progress, so unavailable is 1."""
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling_update(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def _fenceposts(d: Obj) -> tuple[int, int]:
    rolling = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return resolve_fenceposts(rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"),
                              spec_replicas(d))


def max_surge(d: Obj) -> int:
    return _fenceposts(d)[0] if is_rolling_update(d) else 0


def max_unavailable(d: Obj) -> int:
    replicas = spec_replicas(d)
    if not is_rolling_update(d) or replicas == 0:
        return 0
    return min(_fenceposts(d)[1], replicas)


def new_rs_new_replicas(d: Obj, all_rss: list[Obj | None], new_rs: Obj) -> int:
    """How big the new ReplicaSet may be now: up to replicas + surge pods in all, never above replicas."""
    if not is_rolling_update(d):
        return spec_replicas(d)
    current = replica_count(all_rss)
    max_total = spec_replicas(d) + max_surge(d)
    if current >= max_total:
        return spec_replicas(new_rs)
    scale_up = min(max_total - current, spec_replicas(d) - spec_replicas(new_rs))
    return spec_replicas(new_rs) + scale_up


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """The new ReplicaSet has all the deployment's replicas, and all are available."""
    if rs is None:
        return False
    try:
        desired = int(annotations(rs).get(DESIRED_REPLICAS, ""))
    except ValueError:
        return False
    replicas = spec_replicas(d)
    return spec_replicas(rs) == replicas and desired == replicas and status_count(rs, "availableReplicas") == replicas


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """The only ReplicaSet with replicas, or the latest one if none has; None while several have."""
    if new_rs is None and not old_rss:
        return None
    newest_first = sorted(old_rss, key=by_creation, reverse=True)
    active = filter_active([*newest_first, new_rs])
    if not active:
        return new_rs if new_rs is not None else newest_first[0]
    if len(active) == 1:
        return active[0]
    return None


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def replica_set_fraction(rs: Obj, d: Obj) -> int:
    """How many replicas `rs` gains (or loses) when the deployment's size changes, in proportion to its share."""
    if spec_replicas(d) == 0:
        return -spec_replicas(rs)
    deployment_replicas = spec_replicas(d) + max_surge(d)
    try:
        annotated = int(annotations(rs)[MAX_REPLICAS])
    except (KeyError, ValueError):
        annotated = status_count(d, "replicas")
    if annotated == 0:
        return 0
    return _round_half_away(spec_replicas(rs) * deployment_replicas / annotated) - spec_replicas(rs)


def proportion(rs: Obj | None, d: Obj, to_add: int, added: int) -> int:
    if rs is None or spec_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: Obj, active: list[Obj]) -> tuple[dict[str, int], str]:
    """New sizes of the active ReplicaSets when a deployment is scaled mid-rollout, and "up" or "down".

    The extra (or missing) replicas are spread in proportion to each set's size; the rounding leftover goes to the
    largest set (the newest of equals when scaling up, the oldest when scaling down)."""
    allowed = spec_replicas(d) + max_surge(d) if spec_replicas(d) > 0 else 0
    to_add = allowed - replica_count(active)
    if to_add > 0:
        ordered = sorted(active, key=lambda rs: (-spec_replicas(rs), _neg_creation(rs)))
        operation = "up"
    elif to_add < 0:
        ordered = sorted(active, key=lambda rs: (-spec_replicas(rs), by_creation(rs)))
        operation = "down"
    else:
        return {rs["metadata"]["name"]: spec_replicas(rs) for rs in active}, ""
    sizes: dict[str, int] = {}
    added = 0
    for rs in ordered:
        share = proportion(rs, d, to_add, added)
        sizes[rs["metadata"]["name"]] = spec_replicas(rs) + share
        added += share
    if ordered:
        first = ordered[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes, operation


def _neg_creation(rs: Obj) -> tuple[int, ...]:
    """Newest first as a sort key (negate the characters of the timestamp and name)."""
    ts, name = by_creation(rs)
    return tuple(-ord(c) for c in ts) + (0,) + tuple(-ord(c) for c in name)


# -- annotations -------------------------------------------------------------------------------------------------

def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = annotations(rs)
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    """Record the deployment size (and size with surge) a ReplicaSet was scaled for. Mutates `rs`."""
    if not replicas_annotations_need_update(rs, desired, max_replicas):
        return False
    ann = rs["metadata"].setdefault("annotations", {})
    ann[DESIRED_REPLICAS] = str(desired)
    ann[MAX_REPLICAS] = str(max_replicas)
    return True


def copy_deployment_annotations(d: Obj, rs: Obj) -> bool:
    """Copy the deployment's own annotations (change-cause...) onto `rs`. Mutates `rs`."""
    changed = False
    for k, v in annotations(d).items():
        if k in SKIPPED_ANNOTATIONS or annotations(rs).get(k) == v:
            continue
        rs["metadata"].setdefault("annotations", {})[k] = v
        changed = True
    return changed


def set_new_replica_set_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
    """Give the new ReplicaSet the next revision (remembering its former one in revision-history) and, for a
    ReplicaSet being created, the replicas annotations. Mutates `rs`; True if anything changed."""
    changed = copy_deployment_annotations(d, rs)
    ann = rs["metadata"].setdefault("annotations", {})
    old_text = ann.get(REVISION, "")
    try:
        old = int(old_text) if old_text else 0
    except ValueError:
        return False
    if old < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old_text:
            history = [h for h in ann.get(REVISION_HISTORY, "").split(",") if h]
            history.append(old_text)
            while len(",".join(history)) > MAX_REVISION_HISTORY_CHARS and len(history) > 1:
                history.pop(0)
            ann[REVISION_HISTORY] = ",".join(history)
    if not exists and set_replicas_annotations(rs, spec_replicas(d), spec_replicas(d) + max_surge(d)):
        changed = True
    return changed


# -- conditions --------------------------------------------------------------------------------------------------

def get_condition(status: Obj, type_: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def new_condition(type_: str, status: str, reason: str, message: str, now: float) -> Obj:
    stamp = rfc3339(now)
    return {"type": type_, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}


def set_condition(status: Obj, cond: Obj) -> None:
    """Put `cond` in `status`, unless one of its type already says the same thing; a transition time survives
    while the condition's status does not change. Mutates `status`."""
    current = get_condition(status, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime", cond["lastTransitionTime"])}
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: Obj, type_: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if not status["conditions"]:
        del status["conditions"]


def progress_deadline(d: Obj) -> int | None:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return None if value is None or int(value) == MAX_INT32 else int(value)


def deployment_complete(d: Obj, status: Obj) -> bool:
    replicas = spec_replicas(d)
    return (int(status.get("updatedReplicas") or 0) == replicas and int(status.get("replicas") or 0) == replicas
            and int(status.get("availableReplicas") or 0) == replicas
            and int(status.get("observedGeneration") or 0) >= d["metadata"].get("generation", 0))


def deployment_progressing(d: Obj, status: Obj) -> bool:
    """More pods updated, fewer old pods, or more ready or available ones than the last recorded status."""
    old = d.get("status") or {}

    def get(s: Obj, f: str) -> int:
        return int(s.get(f) or 0)

    def old_pods(s: Obj) -> int:
        return get(s, "replicas") - get(s, "updatedReplicas")
    return (get(status, "updatedReplicas") > get(old, "updatedReplicas")
            or old_pods(status) < old_pods(old)
            or get(status, "readyReplicas") > get(old, "readyReplicas")
            or get(status, "availableReplicas") > get(old, "availableReplicas"))


def deployment_timed_out(d: Obj, status: Obj, now: float) -> bool:
    deadline = progress_deadline(d)
    cond = get_condition(status, "Progressing")
    if deadline is None or cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    return since is not None and since + deadline < now


def calculate_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj, now: float) -> Obj:
    """The deployment status its ReplicaSets add up to, with the Available condition. Pure."""
    available = available_replica_count(all_rss)
    total = actual_replica_count(all_rss)
    old = d.get("status") or {}
    status: Obj = {"observedGeneration": d["metadata"].get("generation", 0), "replicas": total,
                   "updatedReplicas": actual_replica_count([new_rs]), "readyReplicas": ready_replica_count(all_rss),
                   "availableReplicas": available, "unavailableReplicas": max(0, total - available)}
    status = {k: v for k, v in status.items() if v}
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    if available >= spec_replicas(d) - max_unavailable(d):
        set_condition(status, new_condition("Available", "True", MINIMUM_AVAILABLE,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition("Available", "False", MINIMUM_UNAVAILABLE,
                                            "Deployment does not have minimum availability.", now))
    return status
