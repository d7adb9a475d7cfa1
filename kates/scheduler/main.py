"""`kates scheduler --kubeconfig FILE`: the scheduler as its own process (kates server starts it as a child).

Runs until SIGTERM or SIGINT. The profile comes from `--profile NAME` (`default`, `bin-packing`), a
KubeSchedulerConfiguration file (`--config FILE`), or, when started by `kates server`, the environment:
KATES_SCHEDULER_PROFILE / KATES_SCHEDULER_CONFIG.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from ..client.rest import Client
from .config import ConfigError, resolve_profiles
from .framework import Profile
from .scheduler import Scheduler

log = logging.getLogger(__name__)


async def serve(kubeconfig: str, profiles: list[Profile]) -> None:
    client = Client.from_kubeconfig(kubeconfig, user_agent="kates-scheduler", field_manager="default-scheduler")
    scheduler = Scheduler(client, profiles)
    task = asyncio.create_task(scheduler.run(on_synced=_freeze_gc), name="scheduler")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait(), name="scheduler-stop")
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopper):
            t.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
        await client.close()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()   # type: ignore[misc]


def _freeze_gc() -> None:
    """The informers' first lists are most of what this process will hold: once synced, move them out of the
    cyclic GC's way and make young collections rarer, as kates server does (kates.cli.main.tune_gc)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def main(kubeconfig: str, profile: str | None = None, config: str | None = None) -> int:
    try:
        profiles = resolve_profiles(profile, config)
    except (ConfigError, OSError) as e:
        print(f"kates scheduler: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(kubeconfig, profiles))
    except KeyboardInterrupt:
        pass
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kates scheduler", description="schedule pending pods onto nodes")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--profile", default=None, help="named profile: default, bin-packing")
    p.add_argument("--config", default=None, help="a KubeSchedulerConfiguration YAML file")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


if __name__ == "__main__":
    args = _parser().parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s scheduler %(name)s: %(message)s")
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    sys.exit(main(args.kubeconfig, args.profile, args.config))
