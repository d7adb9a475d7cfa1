"""DefaultBinder: write the scheduling decision as a Binding (POST pods/NAME/binding), the one API call a plugin
makes; the API server sets spec.nodeName and the PodScheduled condition."""
from __future__ import annotations

from typing import Any, Mapping

from ...api import errors
from ..framework import Code, CycleState, PodInfo, Status


class DefaultBinder:
    name = "DefaultBinder"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        self.handle = handle

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status | None:
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        try:
            # POST .../pods/NAME/binding, as Client.create(resource("pods"), ..., subresource="binding") would,
            # minus the query string it builds on every call: this is the scheduler's hottest request
            await self.handle.client.request(
                "POST", f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/binding", body=body)
        except errors.APIError as e:
            return Status(Code.ERROR, f"binding rejected: {e}")
        return None
