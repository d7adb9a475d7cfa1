"""The DNS server listens on the node address: only pods, the node and loopback get answers, so it is no open
resolver for whoever else reaches that address."""
from __future__ import annotations

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode

from kates.dns.records import ClusterRecords
from kates.dns.server import DNSServer, Forwarder

SERVICE = {"metadata": {"name": "web", "namespace": "shop"},
           "spec": {"type": "ClusterIP", "clusterIP": "10.96.7.7", "ports": [{"name": "http", "port": 80}]}}


async def ask(port: int, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query("web.shop.svc.cluster.local.", "A")
    if tcp:
        return await dns.asyncquery.tcp(query, "127.0.0.1", port=port, timeout=2)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=2)


async def serve(allow: tuple[str, ...]) -> tuple[DNSServer, int]:
    records = ClusterRecords("cluster.local")
    records.set_service(SERVICE)
    server = DNSServer(records, Forwarder([]), allow=allow)
    return server, await server.start("127.0.0.1", 0)


async def test_clients_outside_the_allowed_networks_are_refused() -> None:
    server, port = await serve(("10.244.0.0/16", "192.0.2.2/32"))
    try:
        assert (await ask(port)).rcode() == dns.rcode.REFUSED
        try:
            await ask(port, tcp=True)
            raise AssertionError("a TCP client outside the allowed networks got an answer")
        except (EOFError, ConnectionError, dns.exception.DNSException):
            pass
    finally:
        await server.stop()


async def test_allowed_clients_get_answers() -> None:
    server, port = await serve(("127.0.0.0/8", "10.244.0.0/16"))
    try:
        for tcp in (False, True):
            answer = await ask(port, tcp=tcp)
            assert answer.rcode() == dns.rcode.NOERROR
            assert [r.address for rrset in answer.answer for r in rrset] == ["10.96.7.7"]
    finally:
        await server.stop()
