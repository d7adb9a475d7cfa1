"""What a Service write allocates and frees: its clusterIP(s) and nodePorts, as Kubernetes' service REST does."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from ..api import errors
from .allocators import ServiceAllocator


def _owner(svc: dict[str, Any]) -> str:
    meta = svc["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _wants_node_ports(spec: dict[str, Any]) -> bool:
    if spec.get("type") == "NodePort":
        return True
    return spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True)


def _used_ports(svc: dict[str, Any] | None) -> set[int]:
    if not svc:
        return set()
    return {p["nodePort"] for p in (svc.get("spec") or {}).get("ports") or [] if p.get("nodePort")}


def _ips(svc: dict[str, Any] | None) -> set[str]:
    if not svc:
        return set()
    spec = svc.get("spec") or {}
    ips = set(spec.get("clusterIPs") or [])
    if spec.get("clusterIP") and spec["clusterIP"] != "None":
        ips.add(spec["clusterIP"])
    return ips - {"None", ""}


async def allocate(alloc: ServiceAllocator, new: dict[str, Any], old: dict[str, Any] | None, *,
                   dry_run: bool = False) -> Callable[[], Awaitable[None]]:
    """Fill in clusterIP(s) and nodePorts on `new`; the returned undo frees what this call took."""
    spec = new.setdefault("spec", {})
    owner = _owner(new)
    taken_ips: list[str] = []
    taken_ports: list[int] = []

    async def undo() -> None:
        for ip in taken_ips:
            await alloc.release_ip(ip)
        for port in taken_ports:
            await alloc.release_port(port)

    try:
        old_ips = _ips(old)
        if spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        else:
            ip = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
            if not ip and old_ips:
                ip = (old.get("spec") or {}).get("clusterIP")   # type: ignore[union-attr]
            if ip == "None":
                spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            elif ip:
                if ip not in old_ips and not dry_run:
                    await alloc.reserve_ip(ip, owner)
                    taken_ips.append(ip)
                spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
            elif not dry_run:
                ip = await alloc.allocate_ip(owner)
                taken_ips.append(ip)
                spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        old_ports = _used_ports(old)
        seen: set[int] = set()
        for i, port in enumerate(spec.get("ports") or []):
            if not _wants_node_ports(spec):
                port.pop("nodePort", None)
                continue
            wanted = port.get("nodePort")
            if wanted:
                if wanted in seen:
                    raise errors.Invalid("Service", new["metadata"]["name"], [errors.cause(
                        f"spec.ports[{i}].nodePort", f"Duplicate value: {wanted}", "FieldValueDuplicate")])
                seen.add(wanted)
                if wanted not in old_ports and not dry_run:
                    await alloc.reserve_port(wanted, owner, f"spec.ports[{i}].nodePort")
                    taken_ports.append(wanted)
            elif not dry_run:
                reuse = next((p.get("nodePort") for p in ((old or {}).get("spec") or {}).get("ports") or []
                              if p.get("nodePort") and p.get("port") == port.get("port")
                              and p.get("nodePort") not in seen), None)
                if reuse:
                    port["nodePort"] = reuse
                else:
                    port["nodePort"] = await alloc.allocate_port(owner)
                    taken_ports.append(port["nodePort"])
                seen.add(port["nodePort"])
    except BaseException:
        await undo()
        raise
    return undo


async def release_unused(alloc: ServiceAllocator, new: dict[str, Any] | None, old: dict[str, Any]) -> None:
    """After a successful write, free what `old` held and `new` no longer does."""
    for ip in _ips(old) - _ips(new):
        await alloc.release_ip(ip)
    for port in _used_ports(old) - _used_ports(new):
        await alloc.release_port(port)
