"""The scheduling framework's vocabulary: extension points, verdicts, per-attempt state, profiles.

As in Kubernetes (pkg/scheduler/framework/interface.go), a plugin is a small object with a `name` that implements
only the extension points it cares about, each a Protocol here. Verdicts are values: a `Status` with a `Code`,
and `None` means success. Plugins read pods and nodes (`PodInfo`, `NodeInfo`) and a `CycleState` scratchpad
that lives for one scheduling attempt; they never call the API, except the binder. A `Profile` names the enabled
plugins (in order) and score weights, and `runtime.Framework` runs them.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from .nodeinfo import NodeInfo, PodInfo, Resource   # re-exported: the types plugins see

if TYPE_CHECKING:
    from .runtime import Framework

__all__ = ["Code", "Status", "CycleState", "NodeInfo", "PodInfo", "Resource", "ClusterEvent", "ActionType",
           "Profile", "PostFilterResult", "Diagnosis", "FitError", "MAX_NODE_SCORE"]

MAX_NODE_SCORE = 100
MIN_NODE_SCORE = 0


class Code(enum.IntEnum):
    """What a plugin's verdict means for the pod, and so what the queue does next."""

    SUCCESS = 0
    # An internal error (a bug, a missing PreFilter state): the pod goes to the backoff queue and is retried.
    ERROR = 1
    # The node cannot take the pod now, but preemption might change that; the pod waits for a relevant event.
    UNSCHEDULABLE = 2
    # The node cannot take the pod and preempting pods on it would not help (a taint, a selector, a node name).
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    # Permit: hold the pod (assumed) until allowed, rejected or timed out.
    WAIT = 4
    # PreFilter/PreScore: this plugin has nothing to do for this pod; skip its Filter/Score for every node.
    # Bind: this binder does not handle the pod, try the next.
    SKIP = 5
    # The pod waits for something outside the scheduler (it is not retried on cluster events).
    PENDING = 6


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    code: Code
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    def __init__(self, code: Code, *reasons: str, plugin: str = "") -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "reasons", reasons)
        object.__setattr__(self, "plugin", plugin)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    @property
    def is_rejected(self) -> bool:
        """Unschedulable, UnschedulableAndUnresolvable or Pending: the pod cannot go there (not an error)."""
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE, Code.PENDING)

    @property
    def is_skip(self) -> bool:
        return self.code == Code.SKIP

    def with_plugin(self, plugin: str) -> "Status":
        return self if self.plugin == plugin else Status(self.code, *self.reasons, plugin=plugin)

    @classmethod
    def error(cls, message: str) -> "Status":
        return cls(Code.ERROR, message)


SKIP = Status(Code.SKIP)


def is_success(status: Status | None) -> bool:
    return status is None or status.code == Code.SUCCESS


class StateData(Protocol):
    def clone(self) -> "StateData": ...


class CycleState:
    """Per-attempt scratchpad: PreFilter/PreScore write under their plugin's key, Filter/Score read it per node."""

    __slots__ = ("data", "skip_filter_plugins", "skip_score_plugins")

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.skip_filter_plugins: set[str] = set()
        self.skip_score_plugins: set[str] = set()

    def write(self, key: str, value: Any) -> None:
        self.data[key] = value

    def read(self, key: str) -> Any:
        """The value written under `key`; KeyError if its PreFilter/PreScore did not run (a bug)."""
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def clone(self) -> "CycleState":
        """A copy whose plugin states can change (preemption adds and removes pods hypothetically)."""
        c = CycleState()
        c.data = {k: (v.clone() if hasattr(v, "clone") else v) for k, v in self.data.items()}
        c.skip_filter_plugins = set(self.skip_filter_plugins)
        c.skip_score_plugins = set(self.skip_score_plugins)
        return c


# -- cluster events: what can make an unschedulable pod schedulable ---------------------------------------------

class ActionType(enum.Flag):
    ADD = enum.auto()
    DELETE = enum.auto()
    UPDATE_NODE_ALLOCATABLE = enum.auto()
    UPDATE_NODE_LABEL = enum.auto()
    UPDATE_NODE_TAINT = enum.auto()
    UPDATE_NODE_CONDITION = enum.auto()
    UPDATE_NODE_ANNOTATION = enum.auto()
    UPDATE_POD_LABEL = enum.auto()
    UPDATE_POD_SCALE_DOWN = enum.auto()            # a pod's requests shrank
    UPDATE_POD_TOLERATIONS = enum.auto()
    UPDATE_POD_SCHEDULING_GATES_ELIMINATED = enum.auto()
    UPDATE = enum.auto()                           # any other update
    ALL = (ADD | DELETE | UPDATE_NODE_ALLOCATABLE | UPDATE_NODE_LABEL | UPDATE_NODE_TAINT | UPDATE_NODE_CONDITION
           | UPDATE_NODE_ANNOTATION | UPDATE_POD_LABEL | UPDATE_POD_SCALE_DOWN | UPDATE_POD_TOLERATIONS
           | UPDATE_POD_SCHEDULING_GATES_ELIMINATED | UPDATE)


# resources events are about
NODE, ASSIGNED_POD, UNSCHEDULED_POD, POD, NAMESPACE, PRIORITY_CLASS, WILDCARD = (
    "Node", "AssignedPod", "UnscheduledPod", "Pod", "Namespace", "PriorityClass", "*")


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterEvent:
    resource: str
    action: ActionType
    label: str = ""

    def matches(self, incoming: "ClusterEvent") -> bool:
        """Is `incoming` (something that happened) covered by this registration?"""
        if self.resource == WILDCARD or incoming.resource == WILDCARD:
            return True
        resource_ok = self.resource == incoming.resource or (
            self.resource == POD and incoming.resource in (ASSIGNED_POD, UNSCHEDULED_POD))
        return resource_ok and bool(self.action & incoming.action)


# events that wake everything: a pod rejected for an unknown reason, the periodic flush
EVENT_UNSCHEDULABLE_TIMEOUT = ClusterEvent(WILDCARD, ActionType.ALL, "UnschedulableTimeout")
EVENT_FORCE_ACTIVATE = ClusterEvent(WILDCARD, ActionType.ALL, "ForceActivate")


# -- results ----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class PostFilterResult:
    """What PostFilter (preemption) decided: the node to nominate and the pods to evict there."""

    nominated_node_name: str = ""
    victims: list[PodInfo] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Diagnosis:
    """Why no node fit: each rejected node's status, the plugins that rejected, PreFilter/PostFilter messages."""

    node_to_status: dict[str, Status] = dataclasses.field(default_factory=dict)
    unschedulable_plugins: set[str] = dataclasses.field(default_factory=set)
    pending_plugins: set[str] = dataclasses.field(default_factory=set)
    pre_filter_msg: str = ""
    post_filter_msg: str = ""


class FitError(Exception):
    """No node fits the pod. Its message is Kubernetes' `0/N nodes are available: ...` summary."""

    def __init__(self, pod: PodInfo, num_all_nodes: int, diagnosis: Diagnosis) -> None:
        super().__init__()
        self.pod = pod
        self.num_all_nodes = num_all_nodes
        self.diagnosis = diagnosis

    def __str__(self) -> str:
        return fit_error_message(self.num_all_nodes, self.diagnosis)


def fit_error_message(num_all_nodes: int, diagnosis: Diagnosis) -> str:
    msg = f"0/{num_all_nodes} nodes are available:"
    if diagnosis.pre_filter_msg:
        msg += f" {diagnosis.pre_filter_msg}."
    else:
        histogram: dict[str, int] = {}
        for status in diagnosis.node_to_status.values():
            for reason in status.reasons:
                histogram[reason] = histogram.get(reason, 0) + 1
        if histogram:
            msg += " " + ", ".join(sorted(f"{count} {reason}" for reason, count in histogram.items())) + "."
    if diagnosis.post_filter_msg:
        post = diagnosis.post_filter_msg
        msg += f" {post}" + ("" if post.endswith(".") else ".")
    return msg


# -- extension points -------------------------------------------------------------------------------------------

@runtime_checkable
class Plugin(Protocol):
    name: str


@runtime_checkable
class PreEnqueuePlugin(Plugin, Protocol):
    def pre_enqueue(self, pod: PodInfo) -> Status | None:
        """May the pod enter the active queue at all? (Scheduling gates.)"""


@runtime_checkable
class QueueSortPlugin(Plugin, Protocol):
    def sort_key(self, queued: Any) -> Any:
        """Order of the active queue: pods with smaller keys are tried first (a key, not `less`, for heapq)."""


@runtime_checkable
class PreFilterPlugin(Plugin, Protocol):
    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        """Compute once per attempt what Filter needs; SKIP turns this plugin's Filter off for the attempt."""


@runtime_checkable
class PreFilterExtensions(Plugin, Protocol):
    """Keep PreFilter state right when a pod is hypothetically added to or removed from a node (preemption)."""

    def add_pod(self, state: CycleState, pod: PodInfo, pod_to_add: PodInfo, node: NodeInfo) -> Status | None: ...

    def remove_pod(self, state: CycleState, pod: PodInfo, pod_to_remove: PodInfo,
                   node: NodeInfo) -> Status | None: ...


@runtime_checkable
class FilterPlugin(Plugin, Protocol):
    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        """Can `node` run `pod`? None if so; otherwise UNSCHEDULABLE(_AND_UNRESOLVABLE) with reasons."""


@runtime_checkable
class FilterNodesExtension(Plugin, Protocol):
    """Optional batch form of Filter, for speed: the framework hands a plugin a chunk of nodes at once so the
    per-node loop runs inside the plugin with the pod's values hoisted. It must agree with `filter` node by node
    (tests check this); plugins without it are called per node."""

    def filter_nodes(self, state: CycleState, pod: PodInfo,
                     nodes: list[NodeInfo]) -> tuple[list[NodeInfo], list[tuple[NodeInfo, Status]]]:
        """(nodes that pass, in order; (node, status) for each node rejected). The nodes are the handle's
        snapshot's own (never preemption's modified copies), so its cluster-wide indexes apply to them."""


@runtime_checkable
class PostFilterPlugin(Plugin, Protocol):
    def post_filter(self, state: CycleState, pod: PodInfo,
                    statuses: Mapping[str, Status]) -> tuple[PostFilterResult | None, Status | None]:
        """Called when no node fits: make one fit (preemption). A result with victims is applied by the scheduler."""


@runtime_checkable
class PreScorePlugin(Plugin, Protocol):
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        """Compute once what Score needs over the feasible nodes; SKIP turns this plugin's Score off."""


@runtime_checkable
class ScorePlugin(Plugin, Protocol):
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        """How good `node` is for `pod`, 0..100 after NormalizeScore."""


@runtime_checkable
class ScoreNodesExtension(Plugin, Protocol):
    """Optional batch form of Score: the raw scores of many nodes at once; must equal `score` per node."""

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]: ...


@runtime_checkable
class NormalizeScorePlugin(Plugin, Protocol):
    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Rescale this plugin's raw scores (in node order) in place into 0..100."""


@runtime_checkable
class ReservePlugin(Plugin, Protocol):
    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None: ...

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None: ...


@runtime_checkable
class PermitPlugin(Plugin, Protocol):
    def permit(self, state: CycleState, pod: PodInfo, node_name: str) -> tuple[Status | None, float]:
        """None to go ahead, WAIT with a timeout in seconds to hold the pod, or a rejection."""


@runtime_checkable
class BindPlugin(Plugin, Protocol):
    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        """Write the binding (the one extension point that talks to the API). SKIP passes to the next binder."""


@runtime_checkable
class EnqueueExtensions(Plugin, Protocol):
    def events_to_register(self) -> list[ClusterEvent]:
        """Cluster events that may make a pod this plugin rejected schedulable again."""


EXTENSION_POINTS: dict[str, type] = {
    "pre_enqueue": PreEnqueuePlugin,
    "queue_sort": QueueSortPlugin,
    "pre_filter": PreFilterPlugin,
    "filter": FilterPlugin,
    "post_filter": PostFilterPlugin,
    "pre_score": PreScorePlugin,
    "score": ScorePlugin,
    "reserve": ReservePlugin,
    "permit": PermitPlugin,
    "bind": BindPlugin,
}

# name → factory(args, handle): the registry's shape (pkg/scheduler/framework/runtime/registry.go)
PluginFactory = Callable[[Mapping[str, Any], "Framework"], Plugin]
Registry = Mapping[str, PluginFactory]


# -- profiles ---------------------------------------------------------------------------------------------------

# Kubernetes' default plugin set (pkg/scheduler/apis/config/v1/default_plugins.go), in its order, minus volumes.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "SchedulingGates", "PrioritySort", "NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
    "NodePorts", "NodeResourcesFit", "PodTopologySpread", "InterPodAffinity", "DefaultPreemption",
    "NodeResourcesBalancedAllocation", "ImageLocality", "DefaultBinder",
)

DEFAULT_SCORE_WEIGHTS: Mapping[str, int] = {
    "TaintToleration": 3, "NodeAffinity": 2, "PodTopologySpread": 2, "InterPodAffinity": 2,
    "NodeResourcesFit": 1, "NodeResourcesBalancedAllocation": 1, "ImageLocality": 1,
}


@dataclasses.dataclass(frozen=True)
class Profile:
    """One scheduler personality, selected by a pod's `spec.schedulerName` (KubeSchedulerProfile).

    `plugins` are enabled at every extension point they implement, in this order (Kubernetes' multiPoint),
    except where `disabled` turns a plugin off at one point; `score_weights` multiply each Score plugin's
    normalized score; `plugin_args` configure plugins by name (e.g. NodeResourcesFit's scoring strategy).
    `percentage_of_nodes_to_score` 0 means adaptive.
    """

    scheduler_name: str = "default-scheduler"
    plugins: tuple[str, ...] = DEFAULT_PLUGINS
    score_weights: Mapping[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SCORE_WEIGHTS))
    disabled: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    plugin_args: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    percentage_of_nodes_to_score: int = 0

    def enabled(self, point: str, registry_plugins: Mapping[str, Plugin]) -> list[Plugin]:
        """The plugin instances enabled at `point`, in profile order."""
        proto = EXTENSION_POINTS[point]
        off = self.disabled.get(point, frozenset())
        out = []
        for name in self.plugins:
            plugin = registry_plugins.get(name)
            if plugin is not None and name not in off and isinstance(plugin, proto):
                if point == "score" and self.score_weights.get(name, 1) == 0:
                    continue
                out.append(plugin)
        return out

    def weight(self, name: str) -> int:
        return self.score_weights.get(name, 1)


def default_profile() -> Profile:
    return Profile()


def bin_packing_profile(scheduler_name: str = "default-scheduler") -> Profile:
    """Pack pods onto the fullest nodes: NodeResourcesFit scores with MostAllocated (Kubernetes' documented
    bin-packing setup), so a pod goes where most of the cpu and memory is already requested."""
    return Profile(scheduler_name=scheduler_name, plugin_args={
        "NodeResourcesFit": {"scoringStrategy": {"type": "MostAllocated",
                                                 "resources": [{"name": "cpu", "weight": 1},
                                                               {"name": "memory", "weight": 1}]}}})


PROFILES: dict[str, Callable[[], Profile]] = {
    "default": default_profile,
    "bin-packing": bin_packing_profile,
}
