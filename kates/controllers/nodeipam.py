"""The node IPAM controller: every Node gets a pod CIDR of its own from the cluster CIDR (Kubernetes' range allocator,
pkg/controller/nodeipam/ipam/range_allocator.go and cidrset).

The cluster CIDR (`--cluster-cidr`, default 10.244.0.0/16) is cut into blocks of `--node-cidr-mask-size` (default
/24). Before allocating anything, the controller marks as used every block a Node already has in spec.podCIDRs
(nodes whose agent was given `--pod-cidr`, nodes of an earlier run); then each Node without one gets the next free
block, written as spec.podCIDR and spec.podCIDRs (immutable once set). Blocks are handed out round-robin from the
last one given, as cidrset does, so a block released by a deleted node is not reused at once. A node's own CIDR
outside the cluster CIDR (hollow nodes use 10.200.0.0/16 and up) is left alone; one that overlaps another node's is
never reassigned (spec.podCIDR is immutable) but reported once with a Warning event `CIDRConflict` (Kubernetes would
not notice). When no block is left the node gets Kubernetes' `CIDRNotAvailable` event and is retried every
`retry_period` seconds, and at once when a Node is deleted, which releases its block.

The allocation state lives in this process only and is rebuilt from the Nodes on start; one worker keeps it serial.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any

from ..api import errors
from ..client.controller import Controller, ControllerOptions
from ..client.informer import InformerFactory
from ..client.rest import Client, resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_NODE_CIDR_MASK_SIZE = 24
# `kates controller-manager --cluster-cidr/--node-cidr-mask-size` set these once per process (see configure)
CLUSTER_CIDR = DEFAULT_CLUSTER_CIDR
NODE_CIDR_MASK_SIZE = DEFAULT_NODE_CIDR_MASK_SIZE

NODES = resource("nodes")


def configure(cluster_cidr: str | None = None, node_cidr_mask_size: int | None = None) -> None:
    """Set the process's cluster CIDR and block size (the controller manager's flags); validated here."""
    global CLUSTER_CIDR, NODE_CIDR_MASK_SIZE
    if cluster_cidr:
        CidrSet(cluster_cidr, node_cidr_mask_size or NODE_CIDR_MASK_SIZE)   # raises ValueError if unusable
        CLUSTER_CIDR = cluster_cidr
    if node_cidr_mask_size:
        CidrSet(CLUSTER_CIDR, node_cidr_mask_size)
        NODE_CIDR_MASK_SIZE = node_cidr_mask_size


class CidrExhausted(Exception):
    pass


class CidrSet:
    """The blocks of one cluster CIDR, each used or free; allocation is round-robin from the last block given."""

    def __init__(self, cidr: str, mask_size: int) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        if not self.network.prefixlen <= mask_size <= self.network.max_prefixlen:
            raise ValueError(f"node CIDR mask size /{mask_size} does not fit in cluster CIDR {cidr}")
        if mask_size - self.network.prefixlen > 20:
            raise ValueError(f"cluster CIDR {cidr} with /{mask_size} blocks has too many blocks (at most 2^20)")
        self.mask_size = mask_size
        self.size = 1 << (mask_size - self.network.prefixlen)
        self.block = 1 << (self.network.max_prefixlen - mask_size)
        self.used: dict[int, str] = {}   # block index → node name
        self.next_candidate = 0

    def cidr(self, index: int) -> str:
        return str(ipaddress.ip_network((int(self.network.network_address) + index * self.block, self.mask_size)))

    def indices(self, cidr: str) -> range | None:
        """The blocks `cidr` covers, or None if it is not inside the cluster CIDR (or not a network at all)."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.network.version or not net.subnet_of(self.network):   # type: ignore[arg-type]
            return None
        first = (int(net.network_address) - int(self.network.network_address)) // self.block
        count = max(1, 1 << max(0, self.mask_size - net.prefixlen))
        return range(first, min(first + count, self.size))

    def allocate(self, owner: str) -> int:
        for i in range(self.size):
            index = (self.next_candidate + i) % self.size
            if index not in self.used:
                self.used[index] = owner
                self.next_candidate = (index + 1) % self.size
                return index
        raise CidrExhausted(f"no remaining CIDRs of size /{self.mask_size} in {self.network}")

    def release(self, indices: list[int], owner: str) -> None:
        for i in indices:
            if self.used.get(i) == owner:
                del self.used[i]


def node_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = [c for c in spec.get("podCIDRs") or [] if isinstance(c, str)]
    if not cidrs and isinstance(spec.get("podCIDR"), str) and spec["podCIDR"]:
        cidrs = [spec["podCIDR"]]
    return cidrs


class NodeIPAMController(Controller):
    name = "node-ipam-controller"
    workers = 1            # the allocation map is shared: one worker keeps allocations serial
    retry_period = 10.0    # seconds between attempts for a node that found the range exhausted

    def __init__(self, client: Client, informers: InformerFactory, options: ControllerOptions | None = None) -> None:
        super().__init__(client, informers, options)
        self.recorder.component = "cidrAllocator"
        self.cidrs = CidrSet(CLUSTER_CIDR, NODE_CIDR_MASK_SIZE)
        self.owned: dict[str, list[int]] = {}       # node name → blocks it holds (or is being given)
        self.reported: set[tuple[str, str]] = set()  # (node, cidr) conflicts already reported
        self.node_informer = informers.informer(NODES)
        self.nodes = self.node_informer.store

    async def run(self) -> None:
        # first mark every block nodes already have, so no allocation can hand one out again
        for node in sorted(self.nodes.list(), key=lambda n: n["metadata"].get("creationTimestamp") or ""):
            self._occupy(node)
        self.node_informer.add_handler(on_add=self._on_add, on_update=self._on_update, on_delete=self._on_delete)
        log.info("node IPAM: allocating /%d blocks of %s (%d in use)", self.cidrs.mask_size, self.cidrs.network,
                 len(self.cidrs.used))
        await super().run()

    def _on_add(self, node: Obj) -> None:
        if node_cidrs(node):
            self._occupy(node)
        else:
            self.enqueue(node)

    def _on_update(self, old: Obj, new: Obj) -> None:
        if node_cidrs(new) != node_cidrs(old) or not node_cidrs(new):
            self._on_add(new)

    def _on_delete(self, node: Obj) -> None:
        name = node["metadata"]["name"]
        self.cidrs.release(self.owned.pop(name, []), name)
        self.reported = {r for r in self.reported if r[0] != name}
        for other in self.nodes.list():   # nodes waiting for a free block need not wait for their retry
            if not node_cidrs(other):
                self.enqueue(other)

    def _occupy(self, node: Obj) -> None:
        """Mark the node's own CIDRs used; report (once) those another node holds already."""
        name = node["metadata"]["name"]
        held: list[int] = []
        for cidr in node_cidrs(node)[:1]:   # single-stack: the first CIDR is the one of this family
            indices = self.cidrs.indices(cidr)
            if indices is None:
                log.debug("node %s has pod CIDR %s outside %s: not tracked", name, cidr, self.cidrs.network)
                continue
            others = sorted({self.cidrs.used[i] for i in indices if self.cidrs.used.get(i) not in (None, name)})
            if others and (name, cidr) not in self.reported:
                self.reported.add((name, cidr))
                msg = (f"Node {name} has pod CIDR {cidr}, which overlaps the pod CIDR of node(s) "
                       f"{', '.join(others)}; it is not reassigned (spec.podCIDR is immutable)")
                log.warning(msg)
                self.recorder.event(_node_ref(node), "Warning", "CIDRConflict", msg)
            for i in indices:
                self.cidrs.used.setdefault(i, name)
                if self.cidrs.used[i] == name:
                    held.append(i)
        previous = self.owned.get(name, [])
        self.cidrs.release([i for i in previous if i not in held], name)
        self.owned[name] = held

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        if node_cidrs(node):
            self._occupy(node)
            return
        name = node["metadata"]["name"]
        if not self.owned.get(name):
            try:
                self.owned[name] = [self.cidrs.allocate(name)]
            except CidrExhausted as e:
                log.warning("node %s: %s", name, e)
                self.recorder.event(_node_ref(node), "Normal", "CIDRNotAvailable",
                                    f"Node {name} status is now: CIDRNotAvailable")
                self.queue.add_after(key, self.retry_period)
                return
        cidr = self.cidrs.cidr(self.owned[name][0])
        try:
            await self.client.patch(NODES, name, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}},
                                    patch_type="merge")
            log.info("set node %s pod CIDR %s", name, cidr)
        except errors.NotFound:
            self.cidrs.release(self.owned.pop(name, []), name)
        except errors.Invalid:
            # someone set the node's CIDR meanwhile (it is immutable once set): take theirs when the update arrives
            self.cidrs.release(self.owned.pop(name, []), name)
            raise


def _node_ref(node: Obj) -> Obj:
    """Node events as Kubernetes records them: involvedObject uid = the node's name, in the default namespace."""
    name = node["metadata"]["name"]
    return {"kind": "Node", "apiVersion": "v1", "metadata": {"name": name, "uid": name}}
