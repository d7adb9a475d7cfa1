"""SPDY/3.1: frames against their byte layout (draft-mbelshe-httpbis-spdy-00), header compression with the SPDY/3
dictionary, and whole connections (TCP, HTTP upgrade, tunnelled in a WebSocket) with both roles."""
from __future__ import annotations

import asyncio
import hashlib
import struct
import zlib

import aiohttp
import pytest
from aiohttp import web

from kates.streaming import spdy
from kates.streaming.hijack import accept_upgrade
from kates.streaming.spdy import (DATA, FLAG_FIN, GOAWAY, PING, RST_STREAM, SETTINGS, SYN_REPLY, SYN_STREAM,
                                  WINDOW_UPDATE, Codec, Frame, SpdyConnection, SpdyError, UpgradeError)


def test_dictionary_is_the_spdy3_one() -> None:
    # length and digest of the dictionary in Go's spdy package (moby/spdystream/spdy/dictionary.go)
    assert len(spdy.DICTIONARY) == 1423
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == \
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_fixed_layout_frames() -> None:
    c = Codec()
    assert c.encode(Frame(PING, ping_id=1)) == bytes.fromhex("80030006 00000004 00000001")
    assert c.encode(Frame(RST_STREAM, stream_id=3, status=5)) == bytes.fromhex("80030003 00000008 00000003 00000005")
    assert c.encode(Frame(GOAWAY, stream_id=7, status=0)) == bytes.fromhex("80030007 00000008 00000007 00000000")
    assert c.encode(Frame(WINDOW_UPDATE, stream_id=1, delta=65536)) == \
        bytes.fromhex("80030009 00000008 00000001 00010000")
    assert c.encode(Frame(DATA, FLAG_FIN, stream_id=5, data=b"hi")) == bytes.fromhex("00000005 01000002 6869")
    assert c.encode(Frame(SETTINGS, settings=[(0, 7, 65536)])) == \
        bytes.fromhex("80030004 0000000c 00000001 00000007 00010000")


def test_decode_fixed_layout_frames() -> None:
    c = Codec()
    f = c.decode(bytes.fromhex("80030006 00000004"), bytes.fromhex("0000002a"))
    assert f is not None and f.type == PING and f.ping_id == 42
    f = c.decode(bytes.fromhex("00000003 01000003"), b"abc")
    assert f is not None and (f.type, f.stream_id, f.flags, f.data) == (DATA, 3, FLAG_FIN, b"abc")
    f = c.decode(bytes.fromhex("80030004 00000014"), bytes.fromhex("00000002 01000004 00000064 00000007 00010000"))
    assert f is not None and f.settings == [(1, 4, 100), (0, 7, 65536)]
    assert c.decode(bytes.fromhex("8003000a 00000000"), b"") is None        # unknown control frame: ignored
    with pytest.raises(SpdyError):
        c.decode(bytes.fromhex("80020006 00000004"), bytes(4))              # SPDY/2


def test_syn_stream_layout_and_header_block() -> None:
    c = Codec()
    raw = c.encode(Frame(SYN_STREAM, 0, 1, headers={"streamType": "error", "Port": "80"}, priority=2))
    version, type_, flags_len = struct.unpack(">HHI", raw[:8])
    assert (version, type_, flags_len >> 24, flags_len & 0xFFFFFF) == (0x8003, SYN_STREAM, 0, len(raw) - 8)
    sid, assoc, pri, slot = struct.unpack(">IIBB", raw[8:18])
    assert (sid, assoc, pri, slot) == (1, 0, 2 << 5, 0)
    # the block is a zlib stream primed with the dictionary, flushed (SYNC_FLUSH) at the end of each frame
    d = zlib.decompressobj(zdict=spdy.DICTIONARY)
    block = d.decompress(raw[18:])
    assert block == (struct.pack(">I", 2) + struct.pack(">I", 10) + b"streamtype" + struct.pack(">I", 5) + b"error"
                     + struct.pack(">I", 4) + b"port" + struct.pack(">I", 2) + b"80")
    # the compression context carries over: a second block decodes only in the same inflater
    raw2 = c.encode(Frame(SYN_REPLY, 0, 1, headers={"streamtype": "error"}))
    assert d.decompress(raw2[12:]) == struct.pack(">I", 1) + struct.pack(">I", 10) + b"streamtype" + \
        struct.pack(">I", 5) + b"error"
    peer = Codec()
    f1 = peer.decode(raw[:8], raw[8:])
    f2 = peer.decode(raw2[:8], raw2[8:])
    assert f1 is not None and f1.headers == {"streamtype": "error", "port": "80"} and f1.priority == 2
    assert f2 is not None and f2.type == SYN_REPLY and f2.headers == {"streamtype": "error"}


async def _tcp_pair() -> tuple[SpdyConnection, SpdyConnection, asyncio.AbstractServer]:
    accepted: asyncio.Future[SpdyConnection] = asyncio.get_running_loop().create_future()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result(SpdyConnection(r, w, client=False))

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    client = SpdyConnection(r, w, client=True)
    return client, await asyncio.wait_for(accepted, 5), server


async def test_streams_round_trip_both_ways() -> None:
    client, server, listener = await _tcp_pair()
    try:
        a = await client.open_stream({"streamtype": "stdin"})
        b = await client.open_stream({"streamtype": "stdout"})
        assert (a.id, b.id) == (1, 3)
        sa = await server.accept_stream()
        sb = await server.accept_stream()
        assert sa is not None and sb is not None
        assert sa.headers == {"streamtype": "stdin"} and sb.headers["streamtype"] == "stdout"
        big = bytes(range(256)) * 1000          # several DATA frames
        await a.write(big)
        await a.close_write()
        got = b""
        while chunk := await sa.read():
            got += chunk
        assert got == big
        await sb.write(b"out")
        await sb.close_write()
        assert await b.read() == b"out" and await b.read() == b""
        # the server opens streams too (even ids)
        s2 = await server.open_stream({"x": "y"})
        c2 = await client.accept_stream()
        assert s2.id == 2 and c2 is not None and c2.headers == {"x": "y"}
        assert await client.ping() < 5 and await server.ping() < 5
    finally:
        await client.close()
        await server.close()
        listener.close()


async def test_reset_and_connection_end() -> None:
    client, server, listener = await _tcp_pair()
    try:
        a = await client.open_stream({"streamtype": "data"})
        sa = await server.accept_stream()
        assert sa is not None
        await sa.reset()
        assert await a.read() == b""
        assert a.reset_received
        with pytest.raises(SpdyError):
            await a.write(b"x")
        await client.close()
        await asyncio.wait_for(server.wait_closed(), 5)
        assert await server.accept_stream() is None
    finally:
        await server.close()
        listener.close()


async def _upgrade_app(protocols: list[str]) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.StreamResponse:
        offered = request.headers.getall("X-Stream-Protocol-Version", [])
        chosen = next((p for p in offered if p in protocols), None)
        if chosen is None:
            return web.Response(status=403, text="no protocol in common")
        response, raw = await accept_upgrade(request, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                                       "X-Stream-Protocol-Version": chosen})
        conn = SpdyConnection(raw.reader, raw, client=False)
        while (s := await conn.accept_stream()) is not None:
            data = await s.read()
            await s.write(data.upper())
            await s.close_write()
        await conn.close()
        return response

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("SPDY/3.1+portforward.k8s.io",))
        await ws.prepare(request)
        conn = SpdyConnection.over_websocket(ws, client=False)
        while (s := await conn.accept_stream()) is not None:
            await s.write(await s.read() + b"!")
            await s.close_write()
        await conn.close()
        return ws

    app = web.Application()
    app.router.add_route("*", "/up", handler)
    app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def test_http_upgrade_and_negotiation() -> None:
    runner, port = await _upgrade_app(["v4.channel.k8s.io"])
    try:
        conn, protocol = await spdy.spdy_upgrade(f"http://127.0.0.1:{port}/up", ["v5.channel.k8s.io",
                                                                                 "v4.channel.k8s.io"])
        assert protocol == "v4.channel.k8s.io"
        s = await conn.open_stream({"streamtype": "stdin"})
        await s.write(b"hello")
        assert await s.read() == b"HELLO"
        assert await s.read() == b""
        await conn.close()
        with pytest.raises(UpgradeError) as e:
            await spdy.spdy_upgrade(f"http://127.0.0.1:{port}/up", ["v1"])
        assert e.value.status == 403 and b"no protocol in common" in e.value.body
    finally:
        await runner.cleanup()


async def test_spdy_tunnelled_in_websocket() -> None:
    runner, port = await _upgrade_app([])
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws",
                                          protocols=("SPDY/3.1+portforward.k8s.io",)) as ws:
                conn = SpdyConnection.over_websocket(ws, client=True)
                streams = [await conn.open_stream({"requestid": str(i)}) for i in range(3)]
                for i, s in enumerate(streams):
                    await s.write(f"r{i}".encode())
                assert [await s.read() for s in streams] == [b"r0!", b"r1!", b"r2!"]
                await conn.close()
    finally:
        await runner.cleanup()
