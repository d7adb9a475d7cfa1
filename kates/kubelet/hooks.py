"""postStart and preStop handlers (pkg/kubelet/lifecycle/handlers.go).

An exec handler runs in the container and fails on a non-zero exit; an httpGet handler fails only when no HTTP
response comes back (the status code is not checked, as in Kubernetes; an HTTPS request answered in plain HTTP is
retried over HTTP); a sleep handler waits. The caller bounds the time: the kubelet waits for preStop at most the
grace period, and for postStart as long as it takes (the container is not Running before it returns).
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from .probes import _INSECURE_TLS, ProbeError, _host_port, _os_error, resolve_port

Obj = dict[str, Any]

LIFECYCLE_USER_AGENT = "kube-lifecycle/1.32"
NO_TIMEOUT = 0.0            # CRI ExecSync timeout 0: wait as long as the command runs


def _who(container: Obj | None, pod: Obj | None) -> str:
    if container is None or pod is None:
        return ""
    meta = pod.get("metadata") or {}
    return f' for Container "{container.get("name", "")}" in Pod "{meta.get("name", "")}_{meta.get("namespace", "")}' \
           f'({meta.get("uid", "")})"'


async def _http_get(action: Obj, host: str, port: int) -> str | None:
    scheme = (action.get("scheme") or "HTTP").lower()
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": LIFECYCLE_USER_AGENT, "Accept": "*/*"}
    for h in action.get("httpHeaders") or []:
        if h.get("name"):
            headers[h["name"]] = h.get("value", "")
    last = ""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, ssl=_INSECURE_TLS)) as session:
        for attempt in (scheme, "http") if scheme == "https" else (scheme,):
            url = f"{attempt}://{_host_port(host, port)}{path}"
            try:
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                return None
            except (aiohttp.ClientSSLError, aiohttp.ServerDisconnectedError) as e:
                last = f'Get "{url}": {e}'   # an HTTPS request to a plain HTTP server: retry with HTTP
            except aiohttp.ClientConnectorError as e:
                return f'Get "{url}": dial tcp {_host_port(host, port)}: {_os_error(e.os_error)}'
            except aiohttp.ClientError as e:
                return f'Get "{url}": {e}'
        return last


async def run_handler(handler: Obj, *, runtime: Any, container_id: str, pod_ip: str, container: Obj | None = None,
                      pod: Obj | None = None, timeout: float | None = None) -> str | None:
    """Run a lifecycle handler; None on success, else the message the kubelet puts in its
    FailedPostStartHook / FailedPreStopHook event. `container` resolves named ports and, with `pod`, names the
    container in the message; `timeout` bounds an exec handler (None: no bound)."""
    who = _who(container, pod)
    if handler.get("exec") is not None:
        cmd = list(handler["exec"].get("command") or [])
        try:
            code, out, err = await runtime.exec_sync(container_id, cmd, timeout if timeout is not None else NO_TIMEOUT)
        except Exception as e:  # runtime errors: missing binary, container gone
            return f"Exec lifecycle hook ({cmd}){who} failed - error: {e}, message: \"\""
        if code != 0:
            output = (out + err).decode("utf-8", errors="replace")
            return (f"Exec lifecycle hook ({cmd}){who} failed - error: command '{' '.join(cmd)}' exited with "
                    f"{code}: {err.decode('utf-8', errors='replace')}, message: {output!r}")
        return None
    if handler.get("httpGet") is not None:
        action = handler["httpGet"]
        try:
            port = resolve_port(action.get("port"), container)
        except ProbeError as e:
            return f"Http lifecycle hook ({action.get('path') or '/'}){who} failed - error: {e}"
        err_msg = await _http_get(action, action.get("host") or pod_ip, port)
        if err_msg is not None:
            return f"Http lifecycle hook ({action.get('path') or '/'}){who} failed - error: {err_msg}"
        return None
    if handler.get("sleep") is not None:
        await asyncio.sleep(float(handler["sleep"].get("seconds") or 0))
        return None
    if handler.get("tcpSocket") is not None:
        return "tcpSocket lifecycle hooks are deprecated and not supported"
    return "invalid handler: none of exec, httpGet, sleep"
