"""ImageLocality: prefer nodes that already have the pod's images, weighted by image size and by how widely the
image is spread (an image on every node says little about any one of them)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..framework import SKIP, CycleState, NodeInfo, PodInfo, Status, MAX_NODE_SCORE
from ..nodeinfo import normalized_image_name

MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB
STATE_KEY = "PreScoreImageLocality"


def calculate_priority(sum_scores: int, num_containers: int) -> int:
    max_threshold = MAX_CONTAINER_THRESHOLD * num_containers
    sum_scores = min(max(sum_scores, MIN_THRESHOLD), max_threshold)
    return MAX_NODE_SCORE * (sum_scores - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


class ImageLocality:
    name = "ImageLocality"

    def __init__(self, args: Mapping[str, Any] | None = None, handle: Any = None) -> None:
        self.handle = handle

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        spec = pod.spec
        images = [normalized_image_name(c.get("image", ""))
                  for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        snapshot = self.handle.snapshot
        total = snapshot.num_nodes()
        spread = {i: snapshot.image_num_nodes(i) / total for i in set(images) if total and snapshot.image_num_nodes(i)}
        if not spread:
            return SKIP      # no node has any of the images: every node scores 0
        state.write(STATE_KEY, (images, spread))
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        images, spread = state.read(STATE_KEY)
        total = 0
        for image in images:
            size = node.images.get(image)
            if size is not None:
                total += int(size * spread.get(image, 0))
        return calculate_priority(total, len(images))
