"""`kates scheduler --kubeconfig FILE`: the scheduler as its own process (kates server starts it as a child).

Runs until SIGTERM or SIGINT. The profile comes from `--profile NAME` (`default`, `bin-packing`), a
KubeSchedulerConfiguration file (`--config FILE`), or, when started by `kates server`, the environment:
KATES_SCHEDULER_PROFILE / KATES_SCHEDULER_CONFIG.

Leader election (on by default, as kube-scheduler's --leader-elect): several schedulers may run against one cluster
for availability, but only the holder of the coordination/v1 Lease kube-system/kube-scheduler schedules, so two
never bind the same pods. A standby takes over once the Lease has gone unrenewed for the lease duration; a leader
that stops on SIGTERM/SIGINT releases the Lease (client-go's ReleaseOnCancel) so its successor need not wait; a
leader that loses the Lease exits with an error, as kube-scheduler does ("leaderelection lost").
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys

from ..cli.lifecycle import run_until_stopped, stop_event
from ..client.leaderelection import LeaderElector
from ..client.rest import Client
from .config import ConfigError, resolve_profiles
from .framework import Profile
from .scheduler import Scheduler

log = logging.getLogger(__name__)


class LeaderElectionConfig:
    """kube-scheduler's --leader-elect* flags (client-go defaults: 15 s / 10 s / 2 s)."""

    def __init__(self, enabled: bool = True, lease_duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, namespace: str = "kube-system", name: str = "kube-scheduler") -> None:
        self.enabled = enabled
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.namespace = namespace
        self.name = name


class LeaderElectionLost(RuntimeError):
    pass


async def serve(kubeconfig: str, profiles: list[Profile], election: LeaderElectionConfig | None = None) -> None:
    election = election or LeaderElectionConfig()
    client = Client.from_kubeconfig(kubeconfig, user_agent="kates-scheduler", field_manager="default-scheduler")
    elector: LeaderElector | None = None
    lost = False

    async def schedule() -> None:
        await Scheduler(client, profiles).run(on_synced=_freeze_gc)

    async def lead() -> None:
        nonlocal lost
        assert elector is not None
        await elector.run(schedule)
        lost = True   # run() returns only when the lease could not be renewed (or the scheduler ended)

    if election.enabled:
        elector = LeaderElector(client, election.name, election.namespace, lease_duration=election.lease_duration,
                                renew_deadline=election.renew_deadline, retry_period=election.retry_period)
        log.info("attempting to acquire the leader lease %s/%s as %s", election.namespace, election.name,
                 elector.identity)
        task = asyncio.create_task(lead(), name="scheduler-leader-election")
    else:
        task = asyncio.create_task(schedule(), name="scheduler")
    stop = stop_event()
    try:
        await run_until_stopped(task, stop)
    finally:
        if elector is not None and not lost:
            await elector.release()
        await client.close()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()   # type: ignore[misc]
    if lost and not stop.is_set():
        raise LeaderElectionLost(f"leaderelection lost: {election.namespace}/{election.name}")


def _freeze_gc() -> None:
    """The informers' first lists are most of what this process will hold: once synced, move them out of the
    cyclic GC's way and make young collections rarer, as kates server does (kates.cli.main.tune_gc)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def main(kubeconfig: str, profile: str | None = None, config: str | None = None,
         election: LeaderElectionConfig | None = None) -> int:
    try:
        profiles = resolve_profiles(profile, config)
    except (ConfigError, OSError) as e:
        print(f"kates scheduler: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(kubeconfig, profiles, election))
    except KeyboardInterrupt:
        pass
    except LeaderElectionLost as e:
        print(f"kates scheduler: {e}", file=sys.stderr)
        return 1
    return 0


def add_leader_election_flags(p: argparse.ArgumentParser) -> None:
    """kube-scheduler's flags of the same names (`--leader-elect=false` turns election off)."""
    p.add_argument("--leader-elect", type=_flag_bool, nargs="?", const=True, default=True,
                   help="take the kube-system/kube-scheduler Lease before scheduling (default true)")
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0, metavar="SECONDS")
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0, metavar="SECONDS")


def election_from_args(args: argparse.Namespace) -> LeaderElectionConfig:
    enabled = args.leader_elect if isinstance(args.leader_elect, bool) else _flag_bool(args.leader_elect)
    return LeaderElectionConfig(enabled, args.leader_elect_lease_duration,
                                args.leader_elect_renew_deadline, args.leader_elect_retry_period)


def _flag_bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {value!r}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kates scheduler", description="schedule pending pods onto nodes")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--profile", default=None, help="named profile: default, bin-packing")
    p.add_argument("--config", default=None, help="a KubeSchedulerConfiguration YAML file")
    p.add_argument("-v", "--verbose", action="store_true")
    add_leader_election_flags(p)
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
    sys.exit(main(args.kubeconfig, args.profile, args.config, election_from_args(args)))
