"""Streaming protocols of Kubernetes: SPDY/3.1 (spdy.py), the WebSocket channel protocol (channels.py), and the
raw connection hand-over that lets an aiohttp handler speak them after a 101 (hijack.py)."""
