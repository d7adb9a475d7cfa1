"""What the proxier decides, without a kernel: usable endpoints, traffic policies, the nft transactions it writes
(incremental: only what changed), and the UDP flows conntrack must forget."""
from __future__ import annotations

from kates.proxy.conntrack import stale_flows
from kates.proxy.model import Endpoint, ServicePort
from kates.proxy.nftables import NftablesBackend
from kates.proxy.proxier import service_ports


def svc(**spec):
    base = {"type": "ClusterIP", "clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    return {"metadata": {"namespace": "ns", "name": "web"}, "spec": {**base, **spec}, "status": {}}


def slice_(*endpoints):
    return {"metadata": {"namespace": "ns", "name": "web-x", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": c, "nodeName": n} for ip, c, n in endpoints]}


READY = {"ready": True, "serving": True, "terminating": False}
UNREADY = {"ready": False, "serving": False, "terminating": False}
DRAINING = {"ready": False, "serving": True, "terminating": True}


def test_only_ready_endpoints_and_terminating_only_as_a_last_resort():
    (sp,) = service_ports(svc(), [slice_(("10.244.0.2", READY, "a"), ("10.244.0.3", UNREADY, "a"),
                                         ("10.244.0.4", DRAINING, "a"))], "a")
    assert [e.ip for e in sp.cluster_endpoints] == ["10.244.0.2"]
    (sp,) = service_ports(svc(), [slice_(("10.244.0.3", UNREADY, "a"), ("10.244.0.4", DRAINING, "a"))], "a")
    assert [e.ip for e in sp.cluster_endpoints] == ["10.244.0.4"], "serving+terminating when nothing is ready"


def test_traffic_policies_pick_node_local_endpoints():
    slices = [slice_(("10.244.0.2", READY, "here"), ("10.244.1.2", READY, "there"))]
    (sp,) = service_ports(svc(type="NodePort", externalTrafficPolicy="Local", internalTrafficPolicy="Local",
                              ports=[{"name": "http", "port": 80, "nodePort": 30080}]), slices, "here")
    assert sp.external_local and sp.internal_local and sp.node_port == 30080
    assert [e.ip for e in sp.local_endpoints] == ["10.244.0.2"] == [e.ip for e in sp.internal_endpoints]
    assert len(sp.cluster_endpoints) == 2


def test_headless_and_external_name_have_no_rules():
    assert service_ports(svc(clusterIP="None"), [], "a") == []
    assert service_ports(svc(type="ExternalName", clusterIP="", externalName="example.com"), [], "a") == []


def test_load_balancer_ingress_and_affinity():
    s = svc(type="LoadBalancer", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 9}})
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.2", "ipMode": "VIP"}]}}
    (sp,) = service_ports(s, [], "a")
    assert sp.load_balancer_ips == ("192.0.2.2",) and sp.affinity_timeout == 9


def _port(n_eps, ip="10.96.0.20", name="web"):
    eps = tuple(Endpoint(f"10.244.0.{i + 2}", 8080) for i in range(n_eps))
    return ServicePort("ns", name, "http", "TCP", ip, 80, cluster_endpoints=eps, local_endpoints=eps)


def test_nft_sync_is_incremental():
    b = NftablesBackend(table="t")
    first = b.script(b.desired([_port(3), _port(1, "10.96.0.21", "other")]))
    assert first[:2] == ["add table ip t", "delete table ip t"], "the first sync recreates the table atomically"
    b._state = b.desired([_port(3), _port(1, "10.96.0.21", "other")])
    change = b.script(b.desired([_port(2), _port(1, "10.96.0.21", "other")]))
    assert not any("other" in line for line in change), "an untouched service is not rewritten"
    assert any(line.startswith("flush chain ip t service-") for line in change)
    assert any(line.startswith("add rule ip t service-") and "numgen random mod 2" in line for line in change)
    assert "delete element ip t hairpin { 10.244.0.4 . 10.244.0.4 }" in change, "a gone endpoint leaves hairpin"
    assert not any("table" in line.split()[1] for line in change if line.split()[:2] == ["delete", "table"])
    assert b.script(b._state) == [], "nothing changed, nothing written"


def test_conntrack_forgets_removed_udp_endpoints_and_newly_served_services():
    udp = lambda n: ServicePort("ns", "dns", "dns", "UDP", "10.96.0.10", 53,
                                cluster_endpoints=tuple(Endpoint(f"10.244.0.{i + 2}", 53) for i in range(n)))
    assert stale_flows([udp(2)], [udp(1)]) == [["-p", "udp", "--orig-dst", "10.96.0.10", "--dst-nat", "10.244.0.3"]]
    assert stale_flows([udp(0)], [udp(1)]) == [["-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53"]]
    assert stale_flows([_port(2)], [_port(1)]) == [], "TCP recovers by itself"


def test_service_traffic_of_pods_elsewhere_is_left_alone():
    """Several clusters on one machine share service addresses (10.96.0.10): each proxy answers its own pods."""
    b = NftablesBackend(table="t", cluster_cidr="10.244.0.0/16")
    b.set_local_pod_cidr("10.244.7.0/24")
    first = b.script(b.desired([_port(1)]))
    assert "add rule ip t services ip saddr 10.244.0.0/16 ip saddr != 10.244.7.0/24 return" in first
    b._state = b.desired([_port(1)])
    b.set_local_pod_cidr("10.244.8.0/24")
    assert b.script(b.desired([_port(1)]))[:2] == ["add table ip t", "delete table ip t"], "a new CIDR: rewrite"
