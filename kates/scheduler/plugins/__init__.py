"""The in-tree plugins, by name: the registry profiles draw from (pkg/scheduler/framework/plugins/registry.go)."""
from __future__ import annotations

from ..framework import Registry
from .balanced_allocation import NodeResourcesBalancedAllocation
from .default_binder import DefaultBinder
from .default_preemption import DefaultPreemption
from .image_locality import ImageLocality
from .inter_pod_affinity import InterPodAffinity
from .node_affinity import NodeAffinity
from .node_name import NodeName
from .node_ports import NodePorts
from .node_resources_fit import NodeResourcesFit
from .node_unschedulable import NodeUnschedulable
from .pod_topology_spread import PodTopologySpread
from .priority_sort import PrioritySort
from .scheduling_gates import SchedulingGates
from .taint_toleration import TaintToleration

REGISTRY: Registry = {cls.name: cls for cls in (
    SchedulingGates, PrioritySort, NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
    NodeResourcesFit, PodTopologySpread, InterPodAffinity, DefaultPreemption, NodeResourcesBalancedAllocation,
    ImageLocality, DefaultBinder)}
