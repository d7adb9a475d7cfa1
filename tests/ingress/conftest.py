"""Fixtures of tests/ingress: the real node (tests/kubelet/nodeutil.py) and a `kates ingress` process of the
test's own, on free ports, against it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "kubelet"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodeutil import node, node_cri, node_kubectl, node_ns  # noqa: E402,F401 (fixtures)
