"""The WebSocket channel protocol of Kubernetes streaming (k8s.io/apimachinery/pkg/util/httpstream/wsstream).

Each binary message is one channel byte followed by data (exec: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize;
port-forward: 2i data and 2i+1 error of the i-th port). The base64 variants send text messages whose first character
is the channel digit and whose rest is base64. Versions: `channel.k8s.io` (v1: the error channel carries text),
v2 (same framing), v3 (adds resize), v4 (error channel carries a Status JSON, so the exit code reaches the client),
v5 (the client may send `[255, channel]` to close a channel, i.e. end stdin).
"""
from __future__ import annotations

import base64
import binascii

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V2 = "v2.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"

# In the order a server prefers them (the client's order decides among these when it offers several).
EXEC_PROTOCOLS = (V5, V4, V4_BASE64, V3, V2, V1, V1_BASE64)
PORT_FORWARD_PROTOCOLS = (V4, V4_BASE64, "portforward.k8s.io", V1, V1_BASE64)
SPDY_PORT_FORWARD_TUNNEL = "SPDY/3.1+portforward.k8s.io"


def is_base64(protocol: str) -> bool:
    return "base64" in protocol


def version(protocol: str) -> int:
    """5, 4, 3, 2 or 1 (channel.k8s.io / base64.channel.k8s.io / portforward.k8s.io)."""
    head = protocol.split(".", 1)[0]
    return int(head[1:]) if head.startswith("v") and head[1:].isdigit() else 1


def encode(protocol: str, channel: int, data: bytes) -> bytes | str:
    """One message: bytes to send as binary, or str to send as text (base64 protocols)."""
    if is_base64(protocol):
        return chr(ord("0") + channel) + base64.b64encode(data).decode()
    return bytes((channel,)) + data


def decode(protocol: str, message: bytes | str) -> tuple[int, bytes] | None:
    """(channel, data) of a received message; None when it is empty or malformed."""
    if isinstance(message, str) and not is_base64(protocol):
        message = message.encode()     # a text message on a binary protocol (the Python client sends str as text)
    if isinstance(message, str):
        if not message:
            return None
        try:
            return ord(message[0]) - ord("0"), base64.b64decode(message[1:], validate=True)
        except (binascii.Error, ValueError):
            return None
    if not message:
        return None
    return message[0], bytes(message[1:])


def negotiate(offered: list[str], supported: tuple[str, ...]) -> str | None:
    """The first protocol the client offered that we support (clients list their preferred one first)."""
    for p in offered:
        if p in supported:
            return p
    return None


def offered_protocols(header: str) -> list[str]:
    return [p.strip() for p in header.split(",") if p.strip()]
