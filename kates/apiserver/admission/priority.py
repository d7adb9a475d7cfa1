"""Priority admission (plugin/pkg/admission/priority): a new pod's spec.priority and preemptionPolicy come from its
PriorityClass, so users name a class and cannot pick a number themselves.

- priorityClassName set: the class must exist (403 `no PriorityClass with name X was found`); its value becomes
  spec.priority, its preemptionPolicy spec.preemptionPolicy. A pod that states a different priority or policy is
  refused, with Kubernetes' messages.
- no class named: the globalDefault class (the lowest-valued one if a race made several) is named and applied; with
  none, priority 0 and PreemptLowerPriority.
- updates keep the priority and policy the pod was admitted with when the new object omits them.
- PriorityClasses: only one may be globalDefault (403 `PriorityClass X is already marked as default...`).

The built-in system-node-critical / system-cluster-critical classes resolve even before they exist as objects.
"""
from __future__ import annotations

from typing import Any

from ...api.defaulting.pods import SYSTEM_PRIORITIES
from ...api.resources import ResourceType, storage_prefix
from . import forbidden, lookup

PREEMPT_LOWER = "PreemptLowerPriority"


class PriorityAdmission:
    name = "Priority"

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    async def admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if rt.group == "" and rt.resource == "pods":
            await self._admit_pod(rt, obj, old)
        elif rt.group == "scheduling.k8s.io" and rt.resource == "priorityclasses":
            self._validate_class(rt, obj, old)

    async def _class(self, name: str) -> dict[str, Any] | None:
        pc = await lookup(self.registry, "scheduling.k8s.io", "priorityclasses", None, name)
        if pc is None and name in SYSTEM_PRIORITIES:
            return {"metadata": {"name": name}, "value": SYSTEM_PRIORITIES[name], "preemptionPolicy": PREEMPT_LOWER}
        return pc

    def _default_class(self) -> dict[str, Any] | None:
        pc_rt = self.registry.catalog.lookup("scheduling.k8s.io", "v1", "priorityclasses")
        if pc_rt is None:
            return None
        best = None
        for _, pc in self.registry.cache.cache(storage_prefix(pc_rt)).list(None):
            if pc.get("globalDefault") is True and (best is None or int(best.get("value") or 0) >
                                                    int(pc.get("value") or 0)):
                best = pc
        return best

    async def _admit_pod(self, rt: ResourceType, pod: dict[str, Any], old: dict[str, Any] | None) -> None:
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            return
        if old is not None:
            old_spec = old.get("spec") or {}
            for field in ("priority", "preemptionPolicy"):
                if spec.get(field) is None and old_spec.get(field) is not None:
                    spec[field] = old_spec[field]
            return
        name = (pod.get("metadata") or {}).get("name") or ""
        class_name = spec.get("priorityClassName")
        if not class_name:
            pc = self._default_class()
            if pc is not None:
                spec["priorityClassName"] = pc["metadata"]["name"]
                priority, policy = int(pc.get("value") or 0), pc.get("preemptionPolicy") or PREEMPT_LOWER
            else:
                priority, policy = 0, PREEMPT_LOWER
        elif not isinstance(class_name, str):
            return   # validation reports it
        else:
            pc = await self._class(class_name)
            if pc is None:
                raise forbidden(rt, name, f"no PriorityClass with name {class_name} was found")
            priority, policy = int(pc.get("value") or 0), pc.get("preemptionPolicy") or PREEMPT_LOWER
        given = spec.get("priority")
        if given is not None and given != priority:
            raise forbidden(rt, name, f"the integer value of priority ({given}) must not be provided in pod spec; "
                                      f"priority admission controller computed {priority} from the given "
                                      "PriorityClass name")
        spec["priority"] = priority
        given_policy = spec.get("preemptionPolicy")
        if given_policy is not None and given_policy != policy:
            raise forbidden(rt, name, f"the string value of PreemptionPolicy ({given_policy}) must not be provided "
                                      f"in pod spec; priority admission controller computed {policy} from the given "
                                      "PriorityClass name")
        spec["preemptionPolicy"] = policy

    def _validate_class(self, rt: ResourceType, pc: dict[str, Any], old: dict[str, Any] | None) -> None:
        if pc.get("globalDefault") is not True:
            return
        current = self._default_class()
        name = (pc.get("metadata") or {}).get("name") or ""
        if current is not None and (old is None or current["metadata"]["name"] != name):
            raise forbidden(rt, name, f"PriorityClass {current['metadata']['name']} is already marked as default. "
                                      "Only one default can exist")
