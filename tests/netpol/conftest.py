"""tests/netpol runs on the real node of tests/kubelet/nodeutil.py: its fixtures, imported by an unshadowed name."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "kubelet"))

from nodeutil import node, node_cri, node_kubectl, node_ns  # noqa: E402,F401 (fixtures)
