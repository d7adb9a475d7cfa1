"""How every component's process runs until told to stop: SIGTERM (from the supervisor of `kates server`) or SIGINT
sets one Event, and the component's main task is cancelled so it can wind down (release Leases, remove rules)."""
from __future__ import annotations

import asyncio
import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_event() -> asyncio.Event:
    """An Event that SIGINT or SIGTERM sets (on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_until_stopped(task: asyncio.Task[object], stop: asyncio.Event) -> None:
    """Wait until `task` ends or `stop` is set, then cancel the task and wait for it to wind down. The caller reads
    the task's outcome (`task.exception()`) afterwards."""
    stopper = asyncio.create_task(stop.wait(), name=f"{task.get_name()}-stop")
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopper):
            t.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
