"""Fixtures of a real node for tests/kubelet: `node`, `node_kubectl`, `node_ns`, `node_cri` (defined in nodeutil.py,
where other test directories can import them from)."""
from nodeutil import node, node_cri, node_kubectl, node_ns  # noqa: F401 (fixtures)

