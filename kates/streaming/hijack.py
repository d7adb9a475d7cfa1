"""Take over an aiohttp server connection after answering 101, for protocols aiohttp does not speak itself.

aiohttp hands a connection over only for WebSocket; SPDY upgrades (kubectl's exec fallback and port-forward, as the
real kubelet accepts them) and the API server's byte-for-byte relay to the kubelet need the raw stream. The hook is the
one aiohttp's own WebSocketResponse uses: a payload parser installed on the request's protocol receives every byte
that arrives after the request head; writes go straight to the transport with aiohttp's drain for back-pressure.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Mapping

from aiohttp import web
from multidict import CIMultiDict

READ_LIMIT = 1 << 20


class _Feeder:
    """The payload-parser interface aiohttp calls (feed_data/feed_eof), forwarding into a StreamReader."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.reader.feed_data(data)
        return False, b""

    def feed_eof(self) -> None:
        self.reader.feed_eof()


class RawConnection:
    """The client connection of an upgraded request, as a StreamReader plus a writer with drain()."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        transport = request.transport
        assert transport is not None
        self.transport = transport
        self.reader = asyncio.StreamReader(limit=READ_LIMIT)
        self.reader.set_transport(transport)         # pauses the socket while the reader is full
        self._closed = False

    def write(self, data: bytes) -> None:
        if not self._closed and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        await self.request.protocol._drain_helper()  # type: ignore[attr-defined]

    def write_eof(self) -> None:
        """Half-close where the transport can (plain TCP); TLS cannot, so this is a no-op there."""
        with contextlib.suppress(Exception):
            if self.transport.can_write_eof():
                self.transport.write_eof()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self.request.protocol.force_close()  # type: ignore[attr-defined]
            self.transport.close()

    async def wait_closed(self) -> None:  # asyncio.StreamWriter compatibility
        return None


async def accept_upgrade(request: web.Request, headers: Mapping[str, str]) -> tuple[web.StreamResponse, RawConnection]:
    """Answer 101 with `headers` and return the raw connection. The handler must return the response it gets here
    once it is done with the connection (and close the connection first)."""
    raw = RawConnection(request)
    request.protocol.set_parser(_Feeder(raw.reader))  # type: ignore[attr-defined,arg-type]
    response = web.StreamResponse(status=101, headers=CIMultiDict(headers))
    await response.prepare(request)
    return response, raw


async def splice(reader: asyncio.StreamReader, writer: RawConnection | asyncio.StreamWriter,
                 chunk: int = 64 * 1024) -> None:
    """Copy until end of stream, then half-close the other side where possible."""
    try:
        while True:
            data = await reader.read(chunk)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if isinstance(writer, asyncio.StreamWriter):
            if writer.can_write_eof():
                writer.write_eof()
        else:
            writer.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        pass
