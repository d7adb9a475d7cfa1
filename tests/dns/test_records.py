"""The record model alone, fed objects as the informers deliver them: IPv6, reverse names, generations."""
from __future__ import annotations

import dns.rdatatype as t
import dns.reversename

from kates.dns.records import NOERROR, NXDOMAIN, ClusterRecords

ZONE = "cluster.local"


def svc(ns: str, name: str, ips: list[str], **spec) -> dict:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ips[0] if ips else "None", "clusterIPs": ips or ["None"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}}


def rev(ip: str) -> str:
    return dns.reversename.from_address(ip).to_text(omit_final_dot=True)


def test_dual_stack_service_aaaa_and_ip6_reverse() -> None:
    r = ClusterRecords(ZONE)
    r.set_service(svc("ns", "web", ["10.96.0.20", "fd00:10:96::20"]))
    a = r.lookup(f"web.ns.svc.{ZONE}", t.A)
    aaaa = r.lookup(f"web.ns.svc.{ZONE}", t.AAAA)
    assert a and [x.value for x in a.answers] == ["10.96.0.20"]
    assert aaaa and [x.value for x in aaaa.answers] == ["fd00:10:96::20"]
    ptr = r.lookup(rev("fd00:10:96::20"), t.PTR)
    assert ptr and [x.value for x in ptr.answers] == [f"web.ns.svc.{ZONE}."]
    assert r.lookup(rev("10.96.0.21"), t.PTR) is None, "reverse names the cluster does not own are forwarded"
    assert r.lookup("example.com", t.A) is None


def test_generation_moves_only_when_answers_can_change() -> None:
    r = ClusterRecords(ZONE)
    s = svc("ns", "web", ["10.96.0.20"])
    r.set_service(s)
    g = r.generation
    s2 = {**s, "metadata": {**s["metadata"], "resourceVersion": "9"}}
    r.set_service(s2)
    assert r.generation == g, "a new resourceVersion with the same spec changes no answer"
    r.set_pod({"metadata": {"namespace": "ns", "name": "p"}, "spec": {}, "status": {"podIP": "10.244.1.5"}})
    assert r.generation == g + 1
    r.set_pod({"metadata": {"namespace": "ns", "name": "p"}, "spec": {}, "status": {"podIP": "10.244.1.5",
                                                                                    "phase": "Running"}})
    assert r.generation == g + 1
    r.set_service(s2, deleted=True)
    assert r.lookup(f"web.ns.svc.{ZONE}", t.A).rcode == NXDOMAIN


def test_slices_moving_between_services_and_dedup() -> None:
    r = ClusterRecords(ZONE)
    r.set_service(svc("ns", "a", []))
    r.set_service(svc("ns", "b", []))
    sl = {"metadata": {"namespace": "ns", "name": "x", "labels": {"kubernetes.io/service-name": "a"}},
          "endpoints": [{"addresses": ["10.244.1.1"]}], "ports": [{"name": "http", "port": 8080}]}
    r.set_slice(sl)
    other = {**sl, "metadata": {**sl["metadata"], "name": "y"}}
    r.set_slice(other)       # the same address twice: one record
    assert [x.value for x in r.lookup(f"a.ns.svc.{ZONE}", t.A).answers] == ["10.244.1.1"]
    r.set_slice({**sl, "metadata": {**sl["metadata"], "labels": {"kubernetes.io/service-name": "b"}}})
    r.set_slice(other, deleted=True)
    assert r.lookup(f"a.ns.svc.{ZONE}", t.A).rcode == NXDOMAIN
    assert [x.value for x in r.lookup(f"b.ns.svc.{ZONE}", t.A).answers] == ["10.244.1.1"]
    assert r.lookup(f"_http._tcp.b.ns.svc.{ZONE}", t.SRV).answers[0].value == f"0 100 8080 10-244-1-1.b.ns.svc.{ZONE}."


def test_zone_apex_and_intermediate_names() -> None:
    r = ClusterRecords(ZONE, dns_ips=("10.96.0.10",))
    r.set_namespace({"metadata": {"name": "ns"}})
    soa = r.lookup(ZONE, t.SOA)
    assert soa.rcode == NOERROR and soa.answers[0].rdtype == t.SOA
    assert r.lookup(f"svc.{ZONE}", t.A).rcode == NOERROR
    assert r.lookup(f"ns.svc.{ZONE}", t.A).rcode == NOERROR
    assert r.lookup(f"ns.pod.{ZONE}", t.A).rcode == NOERROR
    assert r.lookup(f"other.svc.{ZONE}", t.A).rcode == NXDOMAIN
    assert r.lookup(f"foo.{ZONE}", t.A).rcode == NXDOMAIN
    assert [x.value for x in r.lookup(f"ns.dns.{ZONE}", t.A).answers] == ["10.96.0.10"]
    assert r.lookup(f"dns-version.{ZONE}", t.TXT).answers[0].value == '"1.1.0"'
    assert r.lookup(f"example.com.ns.svc.{ZONE}", t.A).rcode == NXDOMAIN, "search-path expansions stay local"
