"""The DNS server of the cluster: UDP and TCP on one address, cluster names from memory, the rest forwarded.

dnspython does the wire format. The hot path is a cache of encoded answers keyed by the query's bytes after its ID
(flags, question, EDNS): a repeated question costs a dict lookup and an ID splice. That cache is dropped whenever
the records' generation moves, so an update is answered as soon as the watch delivers it. Names outside the cluster
zone (and reverse names the cluster does not own) go to the host's resolvers; their answers are cached for at most
30 s (5 s when negative), identical questions in flight share one upstream query, and a truncated upstream answer
is retried over TCP.
"""
from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import struct
import time
from pathlib import Path
from typing import Any, Callable

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from .records import Answer, ClusterRecords

log = logging.getLogger(__name__)

MAX_CACHED_ANSWERS = 20_000
UPSTREAM_TIMEOUT = 2.0
FORWARD_MAX_TTL = 30
FORWARD_NEGATIVE_TTL = 5
TCP_IDLE_TIMEOUT = 10.0
MAX_PENDING = 1000          # questions waiting on upstreams at once
UDP_RECEIVE_BUFFER = 4 << 20


def upstreams_from(spec: str) -> list[tuple[str, int]]:
    """Upstream servers from a resolv.conf path (loopback stubs skipped: they may be this very server) or a comma
    list of `ADDR[:PORT]` (taken as given)."""
    if spec.startswith("/"):
        from ..kubelet.dns import parse_resolv_conf
        try:
            servers, _, _ = parse_resolv_conf(Path(spec).read_text())
        except OSError as e:
            log.warning("cannot read %s: %s; names outside the cluster will fail", spec, e)
            return []
        return [(s, 53) for s in servers if not (s.startswith("127.") or s == "::1")]
    out = []
    for item in filter(None, (i.strip() for i in spec.split(","))):
        if item.startswith("["):
            host, _, port = item[1:].partition("]:")
            out.append((host.rstrip("]"), int(port or 53)))
        elif item.count(":") == 1:
            host, port = item.split(":")
            out.append((host, int(port)))
        else:
            out.append((item, 53))
    return out


@dataclasses.dataclass
class Stats:
    queries: int = 0
    cache_hits: int = 0
    forwarded: int = 0
    upstream_failures: int = 0


class Forwarder:
    """Asks the host's resolvers, with a short answer cache and one query in flight per question."""

    def __init__(self, servers: list[tuple[str, int]], timeout: float = UPSTREAM_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.servers = servers
        self.timeout = timeout
        self.clock = clock
        self._cache: dict[tuple[str, int, int, bool], tuple[float, bytes]] = {}
        self._inflight: dict[tuple[str, int, int, bool], asyncio.Future[bytes | None]] = {}

    async def resolve(self, query: dns.message.Message) -> bytes | None:
        """The upstream answer to `query` in wire form (any ID), or None when no upstream answered."""
        q = query.question[0]
        key = (q.name.to_text().lower(), q.rdtype, q.rdclass, bool(query.ednsflags & dns.flags.DO))
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            wire = await self._ask(query)
            fut.set_result(wire)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()     # retrieved: waiters see it, nobody else logs it
            raise
        finally:
            del self._inflight[key]
        return wire

    async def _ask(self, query: dns.message.Message) -> bytes | None:
        q = query.question[0]
        out = dns.message.make_query(q.name, q.rdtype, q.rdclass, use_edns=0, payload=1232,
                                     want_dnssec=bool(query.ednsflags & dns.flags.DO))
        out.flags = dns.flags.RD | (query.flags & dns.flags.CD)
        for host, port in self.servers:
            try:
                resp = await dns.asyncquery.udp(out, host, timeout=self.timeout, port=port)
                if resp.flags & dns.flags.TC:
                    resp = await dns.asyncquery.tcp(out, host, timeout=self.timeout, port=port)
            except (dns.exception.DNSException, OSError) as e:
                log.debug("upstream %s:%d: %s", host, port, e)
                continue
            if resp.rcode() in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
                continue
            wire = resp.to_wire()
            ttl = self._ttl(resp)
            if ttl > 0:
                if len(self._cache) >= MAX_CACHED_ANSWERS:
                    self._expire()
                key = (q.name.to_text().lower(), q.rdtype, q.rdclass, bool(query.ednsflags & dns.flags.DO))
                self._cache[key] = (self.clock() + ttl, wire)
            return wire
        return None

    @staticmethod
    def _ttl(resp: dns.message.Message) -> int:
        if resp.rcode() == dns.rcode.NOERROR and resp.answer:
            return min([FORWARD_MAX_TTL, *(rrset.ttl for rrset in resp.answer)])
        if resp.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            soa = [rrset.ttl for rrset in resp.authority if rrset.rdtype == dns.rdatatype.SOA]
            return min([FORWARD_NEGATIVE_TTL, *soa])
        return 0

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, (exp, _) in self._cache.items() if exp <= now]:
            del self._cache[key]
        if len(self._cache) >= MAX_CACHED_ANSWERS:
            self._cache.clear()


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server: "DNSServer") -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.server.allowed(addr[0]):
            out: bytes | Pending | None = _refused(data)
        else:
            out = self.server.answer_now(data, tcp=False)
        if isinstance(out, bytes):
            assert self.transport is not None
            self.transport.sendto(out, addr)
        elif out is not None and len(self.server.tasks) < MAX_PENDING:
            self.server.spawn(self._later(out, addr))
        # past MAX_PENDING questions waiting on upstreams the datagram is dropped: the client asks again

    async def _later(self, pending: "Pending", addr: Any) -> None:
        out = await self.server.answer_later(pending)
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)


@dataclasses.dataclass
class Pending:
    """A question the server cannot answer from memory alone: forwarded, or a CNAME to chase upstream."""

    data: bytes
    query: dns.message.Message
    tcp: bool
    local: Answer | None = None


class DNSServer:
    """Serves `records` on UDP and TCP; forwards what is not the cluster's."""

    def __init__(self, records: ClusterRecords, forwarder: Forwarder, allow: tuple[str, ...] = ()) -> None:
        self.records = records
        self.forwarder = forwarder
        self.allow = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in allow)
        self.stats = Stats()
        self._answers: dict[bytes, bytes] = {}
        self._rrsets: dict[tuple[str, int, int, tuple[str, ...]], dns.rrset.RRset] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        records.listeners.append(self._answers.clear)

    # -- sockets ---------------------------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Listen on UDP and TCP `host:port` (port 0: a free port, the same for both); returns the port."""
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(self), local_addr=(host, port))
            bound = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, bound, reuse_address=True)
            except OSError:
                transport.close()
                if port or attempt == 19:
                    raise
                continue
            _grow_receive_buffer(transport.get_extra_info("socket"))
            self._udp = transport  # type: ignore[assignment]
            return bound
        raise OSError("no free port")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._connections):
                writer.close()
            await self._tcp.wait_closed()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="dns-query")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def allowed(self, client: str) -> bool:
        """Pods, the node and loopback are answered; anyone else who reaches the node address is not."""
        if not self.allow:
            return True
        try:
            ip = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allow if net.version == ip.version)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if peer and not self.allowed(peer[0]):
            writer.close()
            return
        self._connections.add(writer)
        try:
            while True:
                try:
                    size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT))[0]
                    data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                out = self.answer_now(data, tcp=True)
                if isinstance(out, Pending):
                    out = await self.answer_later(out)
                if out is None:
                    return
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    # -- answering -------------------------------------------------------------------------------------------
    def answer_now(self, data: bytes, tcp: bool) -> bytes | Pending | None:
        """The encoded answer when memory has it, a Pending to finish asynchronously, or None to stay silent."""
        self.stats.queries += 1
        key = (b"T" if tcp else b"U") + data[2:]
        cached = self._answers.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            return data[:2] + cached
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return _format_error(data)
        if query.flags & dns.flags.QR:
            return None
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            r = dns.message.make_response(query)
            r.set_rcode(dns.rcode.NOTIMP if query.opcode() != dns.opcode.QUERY else dns.rcode.FORMERR)
            return r.to_wire()
        q = query.question[0]
        qname = q.name.to_text(omit_final_dot=True).lower()
        answer = self.records.lookup(qname, q.rdtype) if q.rdclass == dns.rdataclass.IN else None
        if answer is None:
            return Pending(data, query, tcp)
        if self._needs_chase(answer, q.rdtype):
            return Pending(data, query, tcp, answer)
        wire = self._encode(query, self._build(query, answer), tcp)
        if len(self._answers) >= MAX_CACHED_ANSWERS:
            self._answers.clear()
        self._answers[key] = wire[2:]
        return wire

    def _needs_chase(self, answer: Answer, qtype: int) -> bool:
        """An ExternalName's CNAME to a name outside the cluster: the addresses come from upstream."""
        return (qtype != dns.rdatatype.CNAME and len(answer.answers) == 1
                and answer.answers[0].rdtype == dns.rdatatype.CNAME)

    async def answer_later(self, pending: Pending) -> bytes | None:
        """The answer that needed an upstream; SERVFAIL when something unexpected broke on the way."""
        try:
            return await self._answer_later(pending)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("answering %s", pending.query.question[0])
            r = dns.message.make_response(pending.query)
            r.set_rcode(dns.rcode.SERVFAIL)
            return r.to_wire()

    async def _answer_later(self, pending: Pending) -> bytes | None:
        query = pending.query
        if pending.local is not None:
            return self._encode(query, await self._chase(query, pending.local), pending.tcp)
        self.stats.forwarded += 1
        wire = await self.forwarder.resolve(query)
        if wire is None:
            self.stats.upstream_failures += 1
            r = dns.message.make_response(query)
            r.flags |= dns.flags.RA
            r.set_rcode(dns.rcode.SERVFAIL)
            return r.to_wire()
        out = pending.data[:2] + wire[2:]
        limit = 65535 if pending.tcp else _udp_limit(query)
        if len(out) > limit:
            resp = dns.message.from_wire(wire)
            r = dns.message.make_response(query)
            r.flags |= dns.flags.TC | dns.flags.RA
            r.set_rcode(resp.rcode())
            return r.to_wire()
        return out

    async def _chase(self, query: dns.message.Message, answer: Answer) -> dns.message.Message:
        response = self._build(query, answer)
        target = dns.name.from_text(answer.answers[0].value)
        q = query.question[0]
        local = self.records.lookup(target.to_text(omit_final_dot=True).lower(), q.rdtype)
        if local is not None:
            extra = self._build(query, local)
            response.answer.extend(extra.answer)
            return response
        sub = dns.message.make_query(target, q.rdtype, q.rdclass)
        wire = await self.forwarder.resolve(sub)
        if wire is not None:
            try:
                response.answer.extend(dns.message.from_wire(wire).answer)
            except dns.exception.DNSException:
                pass
        return response

    def _build(self, query: dns.message.Message, answer: Answer) -> dns.message.Message:
        r = dns.message.make_response(query, our_payload=4096)
        r.flags |= dns.flags.AA | dns.flags.RA
        r.set_rcode(answer.rcode)
        q = query.question[0]
        qname = q.name.to_text(omit_final_dot=True).lower()
        for section, rrs in ((r.answer, answer.answers), (r.authority, answer.authority),
                             (r.additional, answer.additional)):
            groups: dict[tuple[str, int], list[str]] = {}
            ttls: dict[tuple[str, int], int] = {}
            for rr in rrs:
                groups.setdefault((rr.name, rr.rdtype), []).append(rr.value)
                ttls[(rr.name, rr.rdtype)] = rr.ttl
            for (name, rdtype), values in groups.items():
                owner = q.name if name == qname else None
                section.append(self._rrset(owner.to_text() if owner else name, rdtype, ttls[(name, rdtype)],
                                           tuple(values)))
        return r

    def _rrset(self, owner: str, rdtype: int, ttl: int, values: tuple[str, ...]) -> dns.rrset.RRset:
        """RRsets parsed once and shared by the answers that carry them (parsing is most of an answer's cost)."""
        key = (owner, rdtype, ttl, values)
        rrset = self._rrsets.get(key)
        if rrset is None:
            if len(self._rrsets) >= MAX_CACHED_ANSWERS:
                self._rrsets.clear()
            rrset = self._rrsets[key] = dns.rrset.from_text_list(dns.name.from_text(owner), ttl,
                                                                 dns.rdataclass.IN, rdtype, list(values))
        return rrset

    @staticmethod
    def _encode(query: dns.message.Message, response: dns.message.Message, tcp: bool) -> bytes:
        try:
            return response.to_wire(max_size=65535 if tcp else _udp_limit(query))
        except dns.exception.TooBig:
            r = dns.message.make_response(query)
            r.flags |= dns.flags.AA | dns.flags.RA | dns.flags.TC
            r.set_rcode(response.rcode())
            return r.to_wire()


def _grow_receive_buffer(sock: Any, size: int = UDP_RECEIVE_BUFFER) -> None:
    """Room for a burst of queries while the process waits for a CPU: the default (~200 KB, a few hundred
    datagrams) drops queries as soon as the loop stalls for a few tens of milliseconds at 5,000 queries/s."""
    import socket
    import sys
    force = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform == "linux" else None)   # root: past rmem_max
    for option in (force, socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            return
        except OSError:
            continue


def _udp_limit(query: dns.message.Message) -> int:
    return max(512, min(query.payload, 4096)) if query.edns >= 0 else 512


def _refused(data: bytes) -> bytes | None:
    """REFUSED for a client outside the allowed networks (nothing for garbage)."""
    try:
        query = dns.message.from_wire(data)
    except Exception:  # noqa: BLE001 (any malformed datagram)
        return None
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.REFUSED)
    return response.to_wire()


def _format_error(data: bytes) -> bytes | None:
    """FORMERR for a query too broken to parse (when at least its header is there and it is not a response)."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    flags = 0x8000 | (data[2] & 0x79) << 8 | dns.rcode.FORMERR    # QR, opcode and RD echoed
    return data[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)

