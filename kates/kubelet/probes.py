"""Container probes (liveness, readiness, startup) as pkg/kubelet/prober runs them.

`run_probe` runs one probe of any kind: exec (in the container through the runtime), httpGet (2xx/3xx succeed;
redirects followed on the same host, a redirect to another host ends the probe as a success with a warning, as
Kubernetes does), tcpSocket (a connection opens) and grpc (grpc.health.v1.Health/Check answers SERVING; the two
tiny messages are encoded by hand, so no generated stubs are needed).

`ProbeWorker` is worker.go: one task per container and probe kind, probing every periodSeconds once
initialDelaySeconds have passed since the container started, and turning results into a state only after
successThreshold / failureThreshold consecutive equal results. Readiness starts failed, liveness starts succeeded,
startup starts "not started"; liveness and readiness do not run until the container has started (startup probe
succeeded, or none). A liveness or startup failure puts the worker on hold: the kubelet restarts the container and
starts new workers for the new container.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from yarl import URL

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MAX_OUTPUT = 10 * 1024         # probe output kept for messages, as the kubelet's limit
MAX_REDIRECTS = 10
PROBE_USER_AGENT = "kube-probe/1.32"
GRPC_SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

_INSECURE_TLS = ssl.create_default_context()
_INSECURE_TLS.check_hostname = False
_INSECURE_TLS.verify_mode = ssl.CERT_NONE


class ProbeError(Exception):
    """The probe itself is invalid (e.g. a named port the container does not declare)."""


def resolve_port(port: Any, container: Obj | None) -> int:
    """An IntOrString port: a number, or the name of one of the container's ports (then a numeric string)."""
    if isinstance(port, int):
        number = port
    else:
        text = str(port)
        named = [p.get("containerPort") for p in (container or {}).get("ports") or [] if p.get("name") == text]
        if named:
            number = int(named[0])
        elif text.isdigit():
            number = int(text)
        else:
            raise ProbeError(f"couldn't find port: {text} in container")
    if not 0 < number < 65536:
        raise ProbeError(f"invalid port number: {number}")
    return number


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _os_error(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(e, OSError) and e.strerror:
        return f"connect: {e.strerror.lower()}"
    return str(e) or type(e).__name__


# -- the four kinds ----------------------------------------------------------------------------------------------


async def _exec(action: Obj, runtime: Any, container_id: str, timeout: float) -> tuple[bool, str]:
    cmd = list(action.get("command") or [])
    try:
        code, out, err = await asyncio.wait_for(runtime.exec_sync(container_id, cmd, timeout), timeout + 2)
    except asyncio.TimeoutError:
        return False, f'command "{" ".join(cmd)}" timed out'
    except Exception as e:  # a runtime error (container gone, binary missing) is a failed probe
        msg = str(e)
        if "timeout" in msg.lower() or "timed out" in msg.lower() or "deadline" in msg.lower():
            return False, f'command "{" ".join(cmd)}" timed out'
        return False, msg
    output = (out + err)[:MAX_OUTPUT].decode("utf-8", errors="replace")
    return code == 0, output


async def _http(action: Obj, host: str, port: int, timeout: float) -> tuple[bool, str]:
    scheme = (action.get("scheme") or "HTTP").lower()
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": PROBE_USER_AGENT, "Accept": "*/*"}
    for h in action.get("httpHeaders") or []:
        if h.get("name"):
            headers[h["name"]] = h.get("value", "")
    url = f"{scheme}://{_host_port(host, port)}{path}"
    first_host = host
    deadline = time.monotonic() + timeout
    connector = aiohttp.TCPConnector(force_close=True, ssl=_INSECURE_TLS)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        for _ in range(MAX_REDIRECTS + 1):
            remaining = max(0.001, deadline - time.monotonic())
            try:
                async with session.get(url, headers=headers, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=remaining)) as resp:
                    body = (await resp.content.read(MAX_OUTPUT)).decode("utf-8", errors="replace")
                    status = resp.status
                    location = resp.headers.get("Location")
            except asyncio.TimeoutError:
                return False, (f'Get "{url}": context deadline exceeded '
                               "(Client.Timeout exceeded while awaiting headers)")
            except aiohttp.ClientConnectorError as e:
                return False, f'Get "{url}": dial tcp {_host_port(host, port)}: {_os_error(e.os_error)}'
            except aiohttp.ClientError as e:
                return False, f'Get "{url}": {e}'
            if status in (301, 302, 303, 307, 308) and location:
                target = urlsplit(str(URL(url).join(URL(location))))
                if target.hostname != first_host:
                    # a redirect off the pod: not followed, the probe succeeds with a warning (followNonLocalRedirects
                    # is false in the kubelet)
                    return True, f"Probe terminated redirects, Response body: {body}"
                url = urlunsplit(target)
                continue
            if 200 <= status < 400:
                return True, body
            return False, f"HTTP probe failed with statuscode: {status}"
    return False, f'Get "{url}": stopped after {MAX_REDIRECTS} redirects'


async def _tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except asyncio.TimeoutError:
        return False, f"dial tcp {_host_port(host, port)}: i/o timeout"
    except OSError as e:
        return False, f"dial tcp {_host_port(host, port)}: {_os_error(e)}"
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True, ""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _health_status(raw: bytes) -> int:
    """Field 1 (status, varint) of a HealthCheckResponse; other fields skipped."""
    i = 0
    status = 0
    while i < len(raw):
        key = raw[i]
        i += 1
        field, wire = key >> 3, key & 7
        if wire == 0:
            val = shift = 0
            while True:
                b = raw[i]
                i += 1
                val |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if field == 1:
                status = val
        elif wire == 2:
            length = shift = 0
            while True:
                b = raw[i]
                i += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            i += length
        else:
            break
    return status


async def _grpc(action: Obj, host: str, port: int, timeout: float) -> tuple[bool, str]:
    import grpc
    import grpc.aio
    service = action.get("service") or ""
    request = b"\x0a" + _varint(len(service.encode())) + service.encode() if service else b""
    target = _host_port(host, port)
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            return False, f'timeout: failed to connect service "{target}" within {timeout:g}s'
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            raw = await check(request, timeout=timeout, metadata=(("user-agent", PROBE_USER_AGENT),))
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return False, ("this server does not implement the grpc health protocol (grpc.health.v1.Health): "
                               f"{e.details()}")
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return False, f"timeout: health rpc did not complete within {timeout:g}s"
            return False, f"error: health rpc probe failed: {e.details()}"
    status = _health_status(raw)
    if status != 1:
        return False, f'service unhealthy (responded with "{GRPC_SERVING_STATUS.get(status, status)}")'
    return True, ""


async def run_probe(probe: Obj, *, runtime: Any, container_id: str, pod_ip: str, timeout: float,
                    container: Obj | None = None) -> tuple[bool, str]:
    """Run one probe; (success, output or failure message). `container` resolves named ports."""
    try:
        if "exec" in probe and probe["exec"] is not None:
            return await _exec(probe["exec"], runtime, container_id, timeout)
        if probe.get("httpGet") is not None:
            action = probe["httpGet"]
            return await _http(action, action.get("host") or pod_ip, resolve_port(action.get("port"), container),
                               timeout)
        if probe.get("tcpSocket") is not None:
            action = probe["tcpSocket"]
            return await _tcp(action.get("host") or pod_ip, resolve_port(action.get("port"), container), timeout)
        if probe.get("grpc") is not None:
            action = probe["grpc"]
            return await _grpc(action, pod_ip, resolve_port(action.get("port"), container), timeout)
    except ProbeError as e:
        return False, str(e)
    return False, "missing probe handler"


# -- the worker --------------------------------------------------------------------------------------------------


class ProbeWorker:
    """Periodic probing of one container for one probe kind; reports thresholded transitions.

    `on_result(kind, success, message)` is called when the state changes (readiness False→True, liveness or
    startup True→False, startup "not started"→True); `on_failure(kind, message)` for every failed probe, with the
    message of the kubelet's Unhealthy event (`Liveness probe failed: ...`). `started_fn` tells liveness and
    readiness workers whether the container has started (its startup probe succeeded). `started_at` is the
    container's start (time.time()); initialDelaySeconds counts from it."""

    def __init__(self, kind: str, probe: Obj, *, runtime: Any, container_id: str, pod_ip_fn: Callable[[], str],
                 on_result: Callable[[str, bool, str], None],
                 on_failure: Callable[[str, str], None] | None = None,
                 started_fn: Callable[[], bool] | None = None, started_at: float | None = None,
                 container: Obj | None = None, clock: Callable[[], float] = time.time) -> None:
        if kind not in ("liveness", "readiness", "startup"):
            raise ValueError(f"unknown probe kind {kind!r}")
        self.kind = kind
        self.probe = probe
        self.runtime = runtime
        self.container_id = container_id
        self.pod_ip_fn = pod_ip_fn
        self.on_result = on_result
        self.on_failure = on_failure
        self.started_fn = started_fn or (lambda: True)
        self.clock = clock
        self.started_at = started_at if started_at is not None else clock()
        self.container = container
        self.initial_delay = float(probe.get("initialDelaySeconds") or 0)
        self.period = float(probe.get("periodSeconds") or 10)
        self.timeout = float(probe.get("timeoutSeconds") or 1)
        self.success_threshold = int(probe.get("successThreshold") or 1)
        self.failure_threshold = int(probe.get("failureThreshold") or 3)
        # readiness: not ready until proven; liveness: alive until proven dead; startup: unknown (not started)
        self.result: bool | None = {"liveness": True, "readiness": False, "startup": None}[kind]
        self.on_hold = False
        self.probes_run = 0
        self._last: bool | None = None
        self._run = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"probe-{self.kind}-{self.container_id[:12]}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        # initialDelaySeconds counts from the container's start, then one probe every periodSeconds
        delay = self.started_at + self.initial_delay - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)
        while True:
            began = time.monotonic()
            try:
                if not await self.probe_once():
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one probe must not end probing silently
                log.exception("%s probe of %s failed unexpectedly", self.kind, self.container_id[:12])
            await asyncio.sleep(max(0.0, began + self.period - time.monotonic()))

    async def probe_once(self) -> bool:
        """One tick of worker.go doProbe; False once probing of this container is over."""
        if self.on_hold:
            return False
        started = self.started_fn()
        if self.kind == "startup" and self.result:
            return False                      # started: the startup probe never runs again
        if self.kind != "startup" and not started:
            return True                       # liveness/readiness wait for the startup probe
        ok, message = await run_probe(self.probe, runtime=self.runtime, container_id=self.container_id,
                                      pod_ip=self.pod_ip_fn(), timeout=self.timeout, container=self.container)
        self.probes_run += 1
        if not ok and self.on_failure is not None:
            self.on_failure(self.kind, f"{self.kind.capitalize()} probe failed: {message}")
        if self._last == ok:
            self._run += 1
        else:
            self._last, self._run = ok, 1
        if (not ok and self._run < self.failure_threshold) or (ok and self._run < self.success_threshold):
            return True
        if ok != self.result:
            self.result = ok
            self.on_result(self.kind, ok, message)
        if not ok and self.kind in ("liveness", "startup"):
            # the container will be restarted: nothing more to probe until a new container (a new worker)
            self.on_hold = True
            return False
        if ok and self.kind == "startup":
            return False
        return True
