"""`kates ingress`: the Ingress controller process (its own process, like every kates component, so a slow
backend or a flood of connections never touches the API server), run by `kates server` unless --disable-ingress."""
from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from pathlib import Path
from typing import Awaitable, Callable

from ..cli.lifecycle import stop_event
from ..client.informer import InformerFactory
from ..client.rest import Client
from .controller import IngressController
from .proxy import Proxy, Router, bind

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--http-port", type=int, default=80, help="HTTP port (default 80; negative: none)")
    p.add_argument("--https-port", type=int, default=443, help="HTTPS port (default 443; negative: none)")
    p.add_argument("--bind-address", default="0.0.0.0", help="address the listeners bind (default all)")
    p.add_argument("--node-ip", default="", help="address written to Ingress status (default: the default "
                                                 "route's address)")
    p.add_argument("--ingress-class", default="kates", help="the IngressClass this controller serves")
    p.add_argument("--workers", type=int, default=1,
                   help="proxy processes sharing the listening sockets (default 1; the machine's cores at most)")
    p.add_argument("--worker-fds", default="", help=argparse.SUPPRESS)     # set by the parent of workers
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true")


async def run(args: argparse.Namespace) -> int:
    """Start the informers, the controller and the listeners; stop on SIGINT/SIGTERM. With --workers N > 1 this
    process only binds the ports and supervises N worker processes that serve them."""
    if args.workers > 1 and not args.worker_fds:
        return await run_workers(args)
    from ..kubelet.agent import default_node_ip
    client = Client.from_kubeconfig(Path(args.kubeconfig), user_agent="kates-ingress")
    informers = InformerFactory(client)
    router = Router()
    controller = IngressController(client, informers, router, args.node_ip or default_node_ip(), args.ingress_class)
    controller.writes_status = args.worker_index == 0     # one writer of status and events among workers
    proxy = Proxy(router)
    stop = stop_event()
    informers.start()
    tasks: list[asyncio.Task[object]] = []
    try:
        if controller.writes_status:
            await _retry(controller.ensure_class, stop)
        if not await _unless_stopped(informers.wait_synced(), stop):
            return 0
        await controller.sync_routes()      # serve with the full table from the first request
        tasks.append(asyncio.create_task(controller.run(), name="ingress-controller"))
        if args.worker_fds:
            http_fd, https_fd = (int(f) for f in args.worker_fds.split(","))
            serving = proxy.serve(socket.socket(fileno=http_fd) if http_fd >= 0 else None,
                                  socket.socket(fileno=https_fd) if https_fd >= 0 else None)
        else:
            serving = proxy.start(args.bind_address, args.http_port if args.http_port >= 0 else None,
                                  args.https_port if args.https_port >= 0 else None)
        tasks.append(asyncio.create_task(serving, name="ingress-listeners"))
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await proxy.close()
        await informers.stop()
        await client.close()
    return 0


async def run_workers(args: argparse.Namespace) -> int:
    """Bind the ports once and run `--workers` processes accepting from them: Python serves one core per process,
    and one listening socket (not SO_REUSEPORT, which any other root process could join) keeps the port exclusive
    to this cluster. A worker that exits is restarted."""
    stop = stop_event()
    bound = asyncio.gather(bind(args.bind_address, args.http_port if args.http_port >= 0 else None),
                           bind(args.bind_address, args.https_port if args.https_port >= 0 else None))
    if not await _unless_stopped(bound, stop):
        return 0
    http, https = bound.result()
    fds = [s.fileno() for s in (http, https) if s is not None]
    base = ["ingress", "--kubeconfig", args.kubeconfig, "--node-ip", args.node_ip, "--ingress-class",
            args.ingress_class, "--worker-fds", f"{http.fileno() if http else -1},{https.fileno() if https else -1}",
            *(["-v"] if args.verbose else [])]

    async def worker(index: int) -> None:
        while not stop.is_set():
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kates.cli.main", *base,
                                                        "--worker-index", str(index), pass_fds=fds)
            try:
                code = await proc.wait()
            except asyncio.CancelledError:
                if proc.returncode is None:
                    proc.terminate()
                    try:
                        await asyncio.wait_for(proc.wait(), 10)
                    except asyncio.TimeoutError:
                        proc.kill()
                        await proc.wait()
                raise
            if not stop.is_set():
                log.warning("ingress worker %d exited with %s; restarting", index, code)
                await asyncio.sleep(1)

    tasks = [asyncio.create_task(worker(i), name=f"ingress-worker-{i}") for i in range(args.workers)]
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in (http, https):
            if s is not None:
                s.close()
    return 0


async def _unless_stopped(aw: Awaitable[object], stop: asyncio.Event) -> bool:
    """Await `aw` unless a stop signal comes first (then cancel it and say False)."""
    task = asyncio.ensure_future(aw)
    stopped = asyncio.create_task(stop.wait(), name="ingress-stop")
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()
    return True


async def _retry(fn: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    delay = 0.2
    while not stop.is_set():
        try:
            await fn()
            return
        except Exception as e:   # the API server may still be starting
            log.debug("retrying in %.1fs: %s", delay, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
