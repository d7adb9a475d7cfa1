"""Pod networking for a kates node on containerd: one CNI conflist per pod CIDR, and routes that keep cluster
addresses on the machine.

The conflist chains Debian's containernetworking-plugins (/usr/lib/cni): `bridge` (gateway on the bridge, masquerade
for traffic leaving the pod CIDR, hairpin so a pod reaches itself through a Service) with `host-local` IPAM, then
`portmap` for hostPorts. No `loopback` plugin: containerd brings `lo` up itself and the plugin in the chain fails.

Several nodes may run on one machine (tests start their own clusters): the bridge name and the IPAM state directory
derive from the node's data dir, so two nodes never share a bridge or hand out the same address.

`install_cluster_routes` adds blackhole routes for the cluster's pod and service CIDRs (10.244.0.0/16, 10.96.0.0/12 by
default): the node's own bridge route (10.244.N.0/24) is more specific and wins for its pods, service addresses are
rewritten by kube-proxy before routing, and any other packet for a cluster address is dropped here instead of
following the default route off the machine.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

CNI_BIN_DIR = "/usr/lib/cni"
CONF_NAME = "10-kates.conflist"
NETWORK_NAME = "kates"
DEFAULT_CLUSTER_CIDRS = ("10.244.0.0/16", "10.96.0.0/12")


def bridge_name(data_dir: Path) -> str:
    """`kt` + 8 hex digits of the data dir's hash: unique per node, within the kernel's 15 characters."""
    return "kt" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]


def conf_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "cni" / "net.d"


def ipam_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "cni" / "ipam"


def conflist(data_dir: Path, pod_cidr: str) -> dict[str, object]:
    """The CNI network configuration list for `pod_cidr` on the node whose data dir is `data_dir`."""
    return {
        "cniVersion": "0.4.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge_name(data_dir),
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir(data_dir)),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_conflist(data_dir: Path, pod_cidr: str) -> bool:
    """Write the conflist atomically; False when the same one was already there (containerd reloads on change)."""
    directory = conf_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ipam_dir(data_dir).mkdir(parents=True, exist_ok=True)
    path = directory / CONF_NAME
    text = json.dumps(conflist(data_dir, pod_cidr), indent=2) + "\n"
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = directory / (".tmp-" + CONF_NAME)   # not *.conflist: containerd must never load a half-written file
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def configured_cidr(data_dir: Path) -> str:
    """The pod CIDR of the conflist written for this node, or ""."""
    try:
        conf = json.loads((conf_dir(data_dir) / CONF_NAME).read_text())
        return conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return ""


async def _ip(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace").strip()


async def install_cluster_routes(cidrs: tuple[str, ...] | list[str] = DEFAULT_CLUSTER_CIDRS) -> list[str]:
    """`ip route replace blackhole CIDR` for each cluster CIDR (idempotent); returns the errors, if any."""
    errors = []
    for cidr in cidrs:
        code, out = await _ip("route", "replace", "blackhole", cidr)
        if code != 0:
            errors.append(f"blackhole {cidr}: {out}")
    return errors


async def delete_bridge(data_dir: Path) -> None:
    """Remove this node's bridge (tests and `kates` teardown); a missing bridge is fine."""
    await _ip("link", "delete", bridge_name(data_dir))
