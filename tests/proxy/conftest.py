"""Fixtures of tests/proxy: the real node (tests/kubelet/nodeutil.py), whose `kates server` runs `kates proxy` as a
child with an nft table of its own (`kates-proxy-<node name>`)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "kubelet"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodeutil import node, node_cri, node_kubectl, node_ns  # noqa: E402,F401 (fixtures)
