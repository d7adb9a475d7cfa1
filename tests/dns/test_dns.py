"""The cluster DNS against a real API server: Services and EndpointSlices made with kubectl, questions asked over
UDP and TCP with dnspython's stub resolver functions and busybox nslookup, and every kind of record checked."""
from __future__ import annotations

import json
import subprocess
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename

ZONE = "cluster.local"


def ask(port: int, name: str, rdtype: str = "A", tcp: bool = False, payload: int | None = None) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if payload else None, payload=payload or 1232)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=3)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=3, ignore_trailing=True)


def values(msg: dns.message.Message, rdtype: str = "A") -> list[str]:
    t = dns.rdatatype.from_text(rdtype)
    return sorted(r.to_text() for rrset in msg.answer if rrset.rdtype == t for r in rrset)


def wait_answer(port: int, name: str, pred, rdtype: str = "A", timeout: float = 5.0) -> tuple[dns.message.Message, float]:
    start = time.monotonic()
    while True:
        msg = ask(port, name, rdtype)
        if pred(msg):
            return msg, time.monotonic() - start
        assert time.monotonic() - start < timeout, f"{name} {rdtype}: last answer {msg}"
        time.sleep(0.02)


def service(kubectl, ns: str, name: str, spec: str) -> dict:
    kubectl.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec: {spec}
""")
    return kubectl.json("get", "svc", name, "-n", ns)


def endpoint_slice(kubectl, ns: str, svc: str, name: str, endpoints: list[dict], ports: list[dict]) -> None:
    kubectl.apply(json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": ports}))


WEB = "{ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, protocol: UDP}]}"


def test_cluster_ip_service_a_nodata_and_nxdomain(dns_kubectl, dns_ns, kates_dns):
    ip = service(dns_kubectl, dns_ns, "web", WEB)["spec"]["clusterIP"]
    msg, _ = wait_answer(kates_dns.port, f"web.{dns_ns}.svc.{ZONE}", lambda m: m.answer)
    assert values(msg) == [ip]
    assert msg.answer[0].ttl == 5 and msg.flags & dns.flags.AA
    # the name exists, without AAAA: NODATA with the SOA
    nodata = ask(kates_dns.port, f"web.{dns_ns}.svc.{ZONE}", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA and nodata.authority[0].name.to_text() == f"{ZONE}."
    # a missing service, a missing namespace: NXDOMAIN with the SOA; an existing namespace: NODATA
    for name in (f"nope.{dns_ns}.svc.{ZONE}", f"web.no-such-ns.svc.{ZONE}", f"x.web.{dns_ns}.svc.{ZONE}"):
        nx = ask(kates_dns.port, name)
        assert nx.rcode() == dns.rcode.NXDOMAIN, name
        assert nx.authority[0].rdtype == dns.rdatatype.SOA
    assert ask(kates_dns.port, f"{dns_ns}.svc.{ZONE}").rcode() == dns.rcode.NOERROR
    # names are case-insensitive; the answer echoes the question's spelling
    mixed = ask(kates_dns.port, f"WeB.{dns_ns.upper()}.Svc.Cluster.Local")
    assert values(mixed) == [ip]
    # the same over TCP
    assert values(ask(kates_dns.port, f"web.{dns_ns}.svc.{ZONE}", tcp=True)) == [ip]
    soa = ask(kates_dns.port, ZONE, "SOA")
    assert soa.answer and soa.answer[0].rdtype == dns.rdatatype.SOA


def test_srv_for_named_ports(dns_kubectl, dns_ns, kates_dns):
    service(dns_kubectl, dns_ns, "web", WEB)
    name = f"_http._tcp.web.{dns_ns}.svc.{ZONE}"
    msg, _ = wait_answer(kates_dns.port, name, lambda m: m.answer, "SRV")
    assert values(msg, "SRV") == [f"0 100 80 web.{dns_ns}.svc.{ZONE}."]
    assert any(rr.rdtype == dns.rdatatype.A for rr in msg.additional), "the target's address comes along"
    assert values(ask(kates_dns.port, f"_dns._udp.web.{dns_ns}.svc.{ZONE}", "SRV"), "SRV") == \
        [f"0 100 53 web.{dns_ns}.svc.{ZONE}."]
    assert ask(kates_dns.port, f"_dns._tcp.web.{dns_ns}.svc.{ZONE}", "SRV").rcode() == dns.rcode.NXDOMAIN
    assert ask(kates_dns.port, f"_nope._tcp.web.{dns_ns}.svc.{ZONE}", "SRV").rcode() == dns.rcode.NXDOMAIN
    every = ask(kates_dns.port, f"web.{dns_ns}.svc.{ZONE}", "SRV")
    assert len(values(every, "SRV")) == 2


def test_headless_service_answers_ready_endpoints_and_hostnames(dns_kubectl, dns_ns, kates_dns):
    service(dns_kubectl, dns_ns, "db", "{clusterIP: None, ports: [{name: pg, port: 5432}]}")
    endpoint_slice(dns_kubectl, dns_ns, "db", "db-1", [
        {"addresses": ["10.244.7.1"], "hostname": "db-0", "conditions": {"ready": True}},
        {"addresses": ["10.244.7.2"], "hostname": "db-1", "conditions": {"ready": True}},
        {"addresses": ["10.244.7.3"], "conditions": {"ready": False}},
        {"addresses": ["10.244.7.4"]},
    ], [{"name": "pg", "port": 5432, "protocol": "TCP"}])
    name = f"db.{dns_ns}.svc.{ZONE}"
    msg, _ = wait_answer(kates_dns.port, name, lambda m: len(m.answer) and len(m.answer[0]) == 3)
    assert values(msg) == ["10.244.7.1", "10.244.7.2", "10.244.7.4"], "only ready endpoints"
    assert values(ask(kates_dns.port, f"db-1.db.{dns_ns}.svc.{ZONE}")) == ["10.244.7.2"]
    assert values(ask(kates_dns.port, f"10-244-7-4.db.{dns_ns}.svc.{ZONE}")) == ["10.244.7.4"]
    assert ask(kates_dns.port, f"10-244-7-3.db.{dns_ns}.svc.{ZONE}").rcode() == dns.rcode.NXDOMAIN
    srv = ask(kates_dns.port, f"_pg._tcp.db.{dns_ns}.svc.{ZONE}", "SRV")
    assert values(srv, "SRV") == [f"0 33 5432 10-244-7-4.db.{dns_ns}.svc.{ZONE}.",
                                  f"0 33 5432 db-0.db.{dns_ns}.svc.{ZONE}.",
                                  f"0 33 5432 db-1.db.{dns_ns}.svc.{ZONE}."]
    assert {rr.name.to_text() for rr in srv.additional if rr.rdtype == dns.rdatatype.A} == \
        {f"db-0.db.{dns_ns}.svc.{ZONE}.", f"db-1.db.{dns_ns}.svc.{ZONE}.", f"10-244-7-4.db.{dns_ns}.svc.{ZONE}."}
    # PTR of an endpoint names it under its Service
    ptr = ask(kates_dns.port, dns.reversename.from_address("10.244.7.1").to_text(), "PTR")
    assert values(ptr, "PTR") == [f"db-0.db.{dns_ns}.svc.{ZONE}."]
    # publishNotReadyAddresses: the not-ready endpoint is published too
    dns_kubectl.run("patch", "svc", "db", "-n", dns_ns, "-p", '{"spec": {"publishNotReadyAddresses": true}}')
    wait_answer(kates_dns.port, name, lambda m: len(values(m)) == 4)


def test_headless_answer_too_big_for_udp_is_truncated_then_complete_over_tcp(dns_kubectl, dns_ns, kates_dns):
    service(dns_kubectl, dns_ns, "big", "{clusterIP: None, ports: [{name: http, port: 80}]}")
    endpoint_slice(dns_kubectl, dns_ns, "big", "big-1", [{"addresses": [f"10.244.8.{i}"]} for i in range(1, 101)],
                   [{"name": "http", "port": 80, "protocol": "TCP"}])
    name = f"big.{dns_ns}.svc.{ZONE}"
    wait_answer(kates_dns.port, name, lambda m: m.flags & dns.flags.TC)
    udp = ask(kates_dns.port, name)
    assert udp.flags & dns.flags.TC and not udp.answer
    assert len(values(ask(kates_dns.port, name, payload=4096))) == 100, "EDNS lets a bigger answer through UDP"
    assert len(values(ask(kates_dns.port, name, tcp=True))) == 100


def test_ptr_for_service_ips_and_pod_records(dns_kubectl, dns_ns, kates_dns):
    ip = service(dns_kubectl, dns_ns, "web", WEB)["spec"]["clusterIP"]
    reverse = dns.reversename.from_address(ip).to_text()
    msg, _ = wait_answer(kates_dns.port, reverse, lambda m: m.answer, "PTR")
    assert values(msg, "PTR") == [f"web.{dns_ns}.svc.{ZONE}."]
    dns_kubectl.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: p, namespace: {dns_ns}}}
spec: {{containers: [{{name: c, image: localhost/busybox:latest}}]}}
""")
    dns_kubectl.run("patch", "pod", "p", "-n", dns_ns, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"podIP": "10.244.9.9", "podIPs": [{"ip": "10.244.9.9"}]}}))
    pod_name = f"10-244-9-9.{dns_ns}.pod.{ZONE}"
    msg, _ = wait_answer(kates_dns.port, pod_name, lambda m: m.answer)
    assert values(msg) == ["10.244.9.9"]
    ptr = ask(kates_dns.port, dns.reversename.from_address("10.244.9.9").to_text(), "PTR")
    assert values(ptr, "PTR") == [f"{pod_name}."]
    # pods verified: an address no pod of that namespace has does not resolve
    assert ask(kates_dns.port, f"10-244-9-8.{dns_ns}.pod.{ZONE}").rcode() == dns.rcode.NXDOMAIN
    assert ask(kates_dns.port, f"10-244-9-9.default.pod.{ZONE}").rcode() == dns.rcode.NXDOMAIN


def test_external_name_is_a_cname_followed_upstream(dns_kubectl, dns_ns, kates_dns, upstream):
    service(dns_kubectl, dns_ns, "ext", "{type: ExternalName, externalName: target.example}")
    name = f"ext.{dns_ns}.svc.{ZONE}"
    msg, _ = wait_answer(kates_dns.port, name, lambda m: m.answer)
    assert values(msg, "CNAME") == ["target.example."]
    assert values(msg, "A") == ["203.0.113.8"], "the CNAME's target resolved through the upstream"
    assert values(ask(kates_dns.port, name, "CNAME"), "CNAME") == ["target.example."]


def test_outside_names_are_forwarded_and_cached(kates_dns, upstream):
    before = upstream.queries.count("outside.example.")
    msg = ask(kates_dns.port, "outside.example")
    assert values(msg) == ["203.0.113.7"] and msg.rcode() == dns.rcode.NOERROR
    assert not msg.flags & dns.flags.AA
    again = ask(kates_dns.port, "Outside.Example")
    assert values(again) == ["203.0.113.7"]
    assert upstream.queries.count("outside.example.") == before + 1, "the second answer came from the cache"
    assert ask(kates_dns.port, "missing.example").rcode() == dns.rcode.NXDOMAIN
    # the host resolver's names also answer over TCP
    assert values(ask(kates_dns.port, "outside.example", tcp=True)) == ["203.0.113.7"]


def test_updates_are_answered_within_a_second(dns_kubectl, dns_ns, kates_dns):
    name = f"late.{dns_ns}.svc.{ZONE}"
    assert ask(kates_dns.port, name).rcode() == dns.rcode.NXDOMAIN
    started = time.monotonic()
    ip = service(dns_kubectl, dns_ns, "late", WEB)["spec"]["clusterIP"]
    created = time.monotonic()
    _, waited = wait_answer(kates_dns.port, name, lambda m: values(m) == [ip], timeout=1.0)
    dns_kubectl.run("delete", "svc", "late", "-n", dns_ns)
    _, gone = wait_answer(kates_dns.port, name, lambda m: m.rcode() == dns.rcode.NXDOMAIN, timeout=1.0)
    print(f"service visible {waited * 1000:.0f} ms after kubectl returned "
          f"(kubectl took {(created - started) * 1000:.0f} ms); gone {gone * 1000:.0f} ms after delete")


def test_busybox_nslookup_resolves_cluster_names(dns_kubectl, dns_ns, kates_dns):
    ip = service(dns_kubectl, dns_ns, "web", WEB)["spec"]["clusterIP"]
    wait_answer(kates_dns.port, f"web.{dns_ns}.svc.{ZONE}", lambda m: m.answer)
    out = subprocess.run(["timeout", "5", "busybox", "nslookup", f"-port={kates_dns.port}",
                          f"web.{dns_ns}.svc.{ZONE}", "127.0.0.1"], capture_output=True, text=True)
    assert ip in out.stdout, out.stdout + out.stderr
    out = subprocess.run(["timeout", "5", "busybox", "nslookup", f"-port={kates_dns.port}", "-type=srv",
                          f"_http._tcp.web.{dns_ns}.svc.{ZONE}", "127.0.0.1"], capture_output=True, text=True)
    assert f"web.{dns_ns}.svc.{ZONE}" in out.stdout and " 80 " in out.stdout, out.stdout


def test_garbage_gets_formerr_and_responses_are_ignored(kates_dns):
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff", ("127.0.0.1", kates_dns.port))
        data, _ = s.recvfrom(512)
        assert data[:2] == b"\x12\x34" and data[3] & 0x0F == dns.rcode.FORMERR
    # still serving
    assert ask(kates_dns.port, f"kubernetes.default.svc.{ZONE}").rcode() == dns.rcode.NOERROR


def test_addon_publishes_kube_dns_service_and_endpoint_slice(dns_kubectl, kates_dns):
    def published():
        svc = dns_kubectl.json("get", "svc", "kube-dns", "-n", "kube-system")
        slices = dns_kubectl.json("get", "endpointslices", "-n", "kube-system",
                                  "-l", "kubernetes.io/service-name=kube-dns")["items"]
        return svc, slices
    deadline = time.monotonic() + 10
    while True:
        try:
            svc, slices = published()
            if slices:
                break
        except AssertionError:
            pass
        assert time.monotonic() < deadline, "kube-dns was not published"
        time.sleep(0.2)
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert "selector" not in svc["spec"]
    assert {(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == \
        {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")}
    [sl] = slices
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "kates-dns"
    assert sl["endpoints"][0]["addresses"] == ["127.0.0.1"]
    assert {(p["name"], p["port"], p["protocol"]) for p in sl["ports"]} == \
        {("dns", kates_dns.port, "UDP"), ("dns-tcp", kates_dns.port, "TCP")}
    # the DNS Service resolves like any other, and the zone's NS points at it
    assert values(ask(kates_dns.port, f"kube-dns.kube-system.svc.{ZONE}")) == ["10.96.0.10"]
    ns = ask(kates_dns.port, ZONE, "NS")
    assert values(ns, "NS") == [f"ns.dns.{ZONE}."]


def test_endpoint_names_and_empty_headless_services(dns_kubectl, dns_ns, kates_dns):
    # as CoreDNS: an endpoint's name resolves under a ClusterIP Service too; a headless Service with no ready
    # endpoint has no records at all (NXDOMAIN), and its SRV names follow the endpoints' ports
    service(dns_kubectl, dns_ns, "api", "{ports: [{name: http, port: 80, targetPort: 8080}]}")
    endpoint_slice(dns_kubectl, dns_ns, "api", "api-1", [{"addresses": ["10.244.6.1"], "hostname": "a0"}],
                   [{"name": "http", "port": 8080, "protocol": "TCP"}])
    msg, _ = wait_answer(kates_dns.port, f"a0.api.{dns_ns}.svc.{ZONE}", lambda m: m.answer)
    assert values(msg) == ["10.244.6.1"]
    srv = ask(kates_dns.port, f"_http._tcp.a0.api.{dns_ns}.svc.{ZONE}", "SRV")
    assert values(srv, "SRV") == [f"0 100 8080 a0.api.{dns_ns}.svc.{ZONE}."]
    service(dns_kubectl, dns_ns, "empty", "{clusterIP: None, ports: [{name: http, port: 80}]}")
    # the Service is known once its `_tcp` empty non-terminal exists
    wait_answer(kates_dns.port, f"_tcp.empty.{dns_ns}.svc.{ZONE}", lambda m: m.rcode() == dns.rcode.NOERROR)
    assert ask(kates_dns.port, f"empty.{dns_ns}.svc.{ZONE}").rcode() == dns.rcode.NXDOMAIN
    assert ask(kates_dns.port, f"_http._tcp.empty.{dns_ns}.svc.{ZONE}", "SRV").rcode() == dns.rcode.NXDOMAIN


def test_a_second_server_publishes_beside_the_first_and_withdraws_at_shutdown(dns_kubectl, kates_dns, start_dns):
    selector = ("-l", "kubernetes.io/service-name=kube-dns")

    def slice_names() -> set[str]:
        items = dns_kubectl.json("get", "endpointslices", "-n", "kube-system", *selector)["items"]
        return {s["metadata"]["name"] for s in items}
    deadline = time.monotonic() + 10
    while "kube-dns-dns-test" not in slice_names():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    second = start_dns("dns-test-2")
    while "kube-dns-dns-test-2" not in slice_names():
        assert time.monotonic() < deadline, "the second server's slice did not appear"
        time.sleep(0.1)
    assert values(ask(second.port, f"kube-dns.kube-system.svc.{ZONE}")) == ["10.96.0.10"]
    second.stop()
    assert slice_names() == {"kube-dns-dns-test"}, "a stopped server takes its endpoint away"
