"""The scheduler's cache: NodeInfos kept current from the node and pod informers, plus assumed pods.

A pod is "assumed" onto its node the moment the scheduler decides, before the binding request returns, so the
next pod already sees that capacity taken (Kubernetes' assume / finish-binding / forget). When the informer
later reports the pod bound, the assumed copy is replaced by the real one; if binding fails, it is forgotten.

Scheduling cycles run synchronously on the event loop, so the cache itself is the snapshot plugins read
(Kubernetes copies it per cycle because its cycle runs beside the informers' goroutines); cluster-wide indexes
(nodes with affinity pods, image spread) are kept incrementally so per-pod work stays proportional to what the
pod asks for.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

from .nodeinfo import NodeInfo, PodInfo

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class Snapshot:
    """NodeInfos by name and in a stable order, with cluster-wide indexes plugins use."""

    def __init__(self) -> None:
        self.node_info_map: dict[str, NodeInfo] = {}
        self._list: list[NodeInfo] | None = None
        self._with_affinity: dict[str, NodeInfo] = {}
        self._with_required_anti_affinity: dict[str, NodeInfo] = {}
        self._image_nodes: dict[str, int] = {}
        self._unschedulable: set[str] = set()
        self._tainted: set[str] = set()                 # nodes with NoSchedule / NoExecute taints
        self._soft_tainted: set[str] = set()            # nodes with PreferNoSchedule taints

    @classmethod
    def of(cls, nodes: Iterable[NodeInfo]) -> "Snapshot":
        """A snapshot of given NodeInfos (for tests and simulations)."""
        s = cls()
        for ni in nodes:
            s.node_info_map[ni.name] = ni
            s.track(ni)
            s.track_node(ni)
            for image in ni.images:
                s._image_nodes[image] = s._image_nodes.get(image, 0) + 1
        return s

    def node_infos(self) -> list[NodeInfo]:
        """Nodes that exist (a NodeInfo can outlive its Node while pods still reference it), in a stable order."""
        if self._list is None:
            self._list = [ni for ni in self.node_info_map.values() if ni.node is not None]
        return self._list

    def get(self, name: str) -> NodeInfo | None:
        ni = self.node_info_map.get(name)
        return ni if ni is not None and ni.node is not None else None

    def num_nodes(self) -> int:
        return len(self.node_infos())

    def have_pods_with_affinity(self) -> list[NodeInfo]:
        return [ni for ni in self._with_affinity.values() if ni.node is not None]

    def have_pods_with_required_anti_affinity(self) -> list[NodeInfo]:
        return [ni for ni in self._with_required_anti_affinity.values() if ni.node is not None]

    def image_num_nodes(self, image: str) -> int:
        return self._image_nodes.get(image, 0)

    def has_unschedulable_nodes(self) -> bool:
        return bool(self._unschedulable)

    def has_tainted_nodes(self) -> bool:
        """Does any node have a NoSchedule or NoExecute taint?"""
        return bool(self._tainted)

    def has_prefer_no_schedule_taints(self) -> bool:
        return bool(self._soft_tainted)

    # -- maintenance ------------------------------------------------------------------------------------------
    def invalidate(self) -> None:
        self._list = None

    def track(self, ni: NodeInfo) -> None:
        """Refresh the affinity indexes for one node after its pods changed."""
        if ni.pods_with_affinity:
            self._with_affinity[ni.name] = ni
        else:
            self._with_affinity.pop(ni.name, None)
        if ni.pods_with_required_anti_affinity:
            self._with_required_anti_affinity[ni.name] = ni
        else:
            self._with_required_anti_affinity.pop(ni.name, None)

    def track_node(self, ni: NodeInfo) -> None:
        """Refresh the cordon/taint indexes for one node after its Node object changed (or went away)."""
        if ni.node is not None and ni.unschedulable:
            self._unschedulable.add(ni.name)
        else:
            self._unschedulable.discard(ni.name)
        for index, flagged in ((self._tainted, ni.filter_taints), (self._soft_tainted, ni.prefer_no_schedule_taints)):
            if ni.node is not None and flagged:
                index.add(ni.name)
            else:
                index.discard(ni.name)

    def count_images(self, old: Iterable[str], new: Iterable[str]) -> None:
        for image in old:
            n = self._image_nodes.get(image, 0) - 1
            if n > 0:
                self._image_nodes[image] = n
            else:
                self._image_nodes.pop(image, None)
        for image in new:
            self._image_nodes[image] = self._image_nodes.get(image, 0) + 1


class _PodState:
    __slots__ = ("pod_info", "assumed", "binding_finished")

    def __init__(self, pod_info: PodInfo, assumed: bool) -> None:
        self.pod_info = pod_info
        self.assumed = assumed
        self.binding_finished = False


class SchedulerCache:
    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.pod_states: dict[str, _PodState] = {}

    # -- nodes ------------------------------------------------------------------------------------------------
    def add_node(self, node: Obj) -> NodeInfo:
        name = node["metadata"]["name"]
        ni = self.snapshot.node_info_map.get(name)
        if ni is None:
            ni = self.snapshot.node_info_map[name] = NodeInfo(name=name)
        was_present = ni.node is not None
        old_images = list(ni.images) if was_present else []
        ni.set_node(node)
        self.snapshot.track_node(ni)
        self.snapshot.count_images(old_images, ni.images)
        if not was_present:
            self.snapshot.invalidate()
        return ni

    def update_node(self, node: Obj) -> NodeInfo:
        return self.add_node(node)

    def refresh_node_object(self, node: Obj) -> None:
        """Point the NodeInfo at a newer Node object whose scheduling-relevant fields are unchanged (keeps the
        generation, so memoized per-node results stay valid)."""
        ni = self.snapshot.node_info_map.get(node["metadata"]["name"])
        if ni is None or ni.node is None:
            self.add_node(node)
        else:
            ni.node = node

    def remove_node(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        ni = self.snapshot.node_info_map.get(name)
        if ni is None:
            return
        if ni.node is not None:
            self.snapshot.count_images(ni.images, [])
        ni.node = None
        ni.images = {}
        self.snapshot.track_node(ni)
        if not ni.pods:
            del self.snapshot.node_info_map[name]
            self.snapshot.track(NodeInfo(name=name))
        self.snapshot.invalidate()

    def node(self, name: str) -> NodeInfo | None:
        return self.snapshot.get(name)

    # -- pods -------------------------------------------------------------------------------------------------
    def _add_to_node(self, pi: PodInfo) -> None:
        ni = self.snapshot.node_info_map.get(pi.node_name)
        if ni is None:
            # the pod's node is not known yet (or was deleted): keep a placeholder until the Node arrives
            ni = self.snapshot.node_info_map[pi.node_name] = NodeInfo(name=pi.node_name)
        ni.add_pod(pi)
        self.snapshot.track(ni)

    def _remove_from_node(self, pi: PodInfo) -> None:
        ni = self.snapshot.node_info_map.get(pi.node_name)
        if ni is None:
            return
        ni.remove_pod(pi.uid)
        self.snapshot.track(ni)
        if ni.node is None and not ni.pods:
            del self.snapshot.node_info_map[pi.node_name]

    def assume_pod(self, pi: PodInfo) -> None:
        """Count `pi` (with node_name set) on its node before the binding is written."""
        if pi.uid in self.pod_states:
            raise ValueError(f"pod {pi.key} is already in the cache")
        self._add_to_node(pi)
        self.pod_states[pi.uid] = _PodState(pi, assumed=True)

    def finish_binding(self, pi: PodInfo) -> None:
        st = self.pod_states.get(pi.uid)
        if st is not None and st.assumed:
            st.binding_finished = True

    def forget_pod(self, pi: PodInfo) -> None:
        """Binding failed: give the capacity back."""
        st = self.pod_states.get(pi.uid)
        if st is not None and st.assumed:
            self._remove_from_node(st.pod_info)
            del self.pod_states[pi.uid]

    def is_assumed(self, uid: str) -> bool:
        st = self.pod_states.get(uid)
        return st is not None and st.assumed

    def add_pod(self, pi: PodInfo) -> None:
        """An assigned pod seen by the informer: confirms an assumed pod, or is new."""
        st = self.pod_states.get(pi.uid)
        if st is not None:
            self._remove_from_node(st.pod_info)   # assumed (maybe elsewhere) or a stale copy: replace it
        self._add_to_node(pi)
        self.pod_states[pi.uid] = _PodState(pi, assumed=False)

    def confirm(self, uid: str, pod: Obj) -> bool:
        """The informer reports an assumed pod bound where we assumed it: keep the assumed PodInfo (no NodeInfo
        change), now backed by the bound object. False if it is not assumed there (use add_pod)."""
        st = self.pod_states.get(uid)
        if st is None or not st.assumed or st.pod_info.node_name != (pod.get("spec") or {}).get("nodeName"):
            return False
        st.pod_info.pod = pod
        st.assumed = False
        return True

    def update_pod(self, pi: PodInfo) -> None:
        self.add_pod(pi)

    def remove_pod(self, uid: str) -> PodInfo | None:
        st = self.pod_states.pop(uid, None)
        if st is None:
            return None
        self._remove_from_node(st.pod_info)
        return st.pod_info

    def get_pod(self, uid: str) -> PodInfo | None:
        st = self.pod_states.get(uid)
        return st.pod_info if st is not None else None

    def dump(self) -> dict[str, Any]:
        return {"nodes": len(self.snapshot.node_infos()), "pods": len(self.pod_states),
                "assumed": sum(1 for s in self.pod_states.values() if s.assumed)}
