"""Child components of `kates server` (controller manager, scheduler, hollow nodes) as supervised processes.

Each is a separate process that talks to the API server over HTTPS, exactly as it would from another machine;
a child that dies is restarted with back-off, and all of them stop with the server.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the server dies, even by SIGKILL (Linux prctl)."""
    import ctypes
    import signal
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class Child:
    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")

    async def _supervise(self) -> None:
        backoff = 0.5
        while not self._stopping:
            started = time.monotonic()
            self.proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kates.cli.main", *self.args,
                                                             preexec_fn=_die_with_parent)
            code = await self.proc.wait()
            if self._stopping:
                return
            if time.monotonic() - started > 30:
                backoff = 0.5
            log.warning("%s exited with %s; restarting in %.1fs", self.name, code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
