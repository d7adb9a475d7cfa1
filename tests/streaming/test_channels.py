"""The WebSocket channel framing: binary, base64, version negotiation."""
from __future__ import annotations

from kates.streaming import channels as ch


def test_binary_and_base64_framing() -> None:
    assert ch.encode(ch.V5, 1, b"out") == b"\x01out"
    assert ch.decode(ch.V5, b"\x00in") == (0, b"in")
    assert ch.encode(ch.V4_BASE64, 2, b"err") == "2ZXJy"
    assert ch.decode(ch.V4_BASE64, "0aGk=") == (0, b"hi")
    assert ch.decode(ch.V4, "\x00text") == (0, b"text")        # a text message on a binary protocol
    assert ch.decode(ch.V4, b"") is None and ch.decode(ch.V1_BASE64, "") is None
    assert ch.decode(ch.V1_BASE64, "0!!!") is None


def test_versions_and_negotiation() -> None:
    assert [ch.version(p) for p in (ch.V5, ch.V4, ch.V4_BASE64, ch.V3, ch.V2, ch.V1, ch.V1_BASE64)] == \
        [5, 4, 4, 3, 2, 1, 1]
    assert ch.negotiate(ch.offered_protocols("v5.channel.k8s.io, v4.channel.k8s.io"), ch.EXEC_PROTOCOLS) == ch.V5
    assert ch.negotiate(["v5.channel.k8s.io", "v4.channel.k8s.io"], ch.PORT_FORWARD_PROTOCOLS) == ch.V4
    assert ch.negotiate(["x"], ch.EXEC_PROTOCOLS) is None
