"""Small helpers plugins share: score normalization (pkg/scheduler/framework/plugins/helper/normalize_score.go)."""
from __future__ import annotations

from ..framework import MAX_NODE_SCORE


def default_normalize_score(scores: list[int], reverse: bool = False, max_priority: int = MAX_NODE_SCORE) -> None:
    """Scale scores so the highest becomes `max_priority`; with `reverse`, the lowest raw score ranks highest."""
    highest = max(scores, default=0)
    if highest == 0:
        if reverse:
            scores[:] = [max_priority] * len(scores)
        return
    for i, s in enumerate(scores):
        s = max_priority * s // highest
        scores[i] = max_priority - s if reverse else s


class ScoreMemo:
    """A score plugin's per-node results for the last pod shape, keyed by node generation.

    Pods of one workload look alike and most nodes do not change between two of them, so a large cluster's
    scores are mostly recomputed from identical inputs. A generation number names one state of one node (any
    change of any NodeInfo takes a fresh one), so it alone is the key; entries of states that no longer exist are
    dropped wholesale when the memo outgrows its limit."""

    __slots__ = ("key", "entries")

    def __init__(self) -> None:
        self.key: object = None
        self.entries: dict[int, int] = {}

    def for_shape(self, key: object, limit: int) -> dict[int, int]:
        if key != self.key or len(self.entries) > limit:
            self.key = key
            self.entries = {}
        return self.entries
