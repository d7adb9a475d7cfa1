"""Kubernetes timestamps: `metav1.Time` (RFC 3339, whole seconds, UTC) and `MicroTime` (microseconds).

One place for the conversions every component makes between wall-clock seconds and the API's strings.
"""
from __future__ import annotations

import datetime


def rfc3339(ts: float) -> str:
    """`metav1.Time` as the API writes it: `2026-01-02T03:04:05Z`."""
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_rfc3339(ts: float) -> str:
    """`metav1.MicroTime`: `2026-01-02T03:04:05.123456Z` (Lease renewTime, Event eventTime)."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str | None) -> float | None:
    """Seconds since the epoch from either form (or any RFC 3339 offset); None for empty or malformed text."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None
