"""`kates`: start the control plane and this machine's node agent (`kates server`), a node agent alone (`kates agent`),
or run the real kubectl against it (`kates kubectl`)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/kates")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "kates"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kates", description="Kubernetes in Python")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("server", help="run the control plane")
    s.add_argument("--data-dir", type=Path, default=None, help="where state, certificates and the kubeconfig live")
    s.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=6443)
    s.add_argument("--store", default=None, help="store URL: sqlite:///path (default: DATA_DIR/state.db) or "
                                                 "memory://")
    s.add_argument("--service-cidr", default="10.96.0.0/12")
    s.add_argument("--node-port-range", default="30000-32767")
    s.add_argument("--event-ttl", type=float, default=3600.0, help="seconds events are kept (default 1 h)")
    s.add_argument("--watch-cache-size", type=int, default=10_000,
                   help="events kept per resource for watches resuming from a resourceVersion")
    s.add_argument("--disable-controllers", action="store_true", help="do not start the controller manager")
    s.add_argument("--disable-scheduler", action="store_true", help="do not start the scheduler")
    s.add_argument("--controllers", default="", help="comma-separated controllers to run (default: all)")
    s.add_argument("--hollow-nodes", type=int, default=0, help="also run N hollow (fake-runtime) nodes")
    s.add_argument("--scheduler-profile", default=None, help="default, or bin-packing (MostAllocated)")
    s.add_argument("--scheduler-config", default=None, help="a KubeSchedulerConfiguration file for the scheduler")
    s.add_argument("--node-monitor-grace-period", type=float, default=15.0,
                   help="seconds without a Lease renewal before a node is NotReady")
    s.add_argument("--terminated-pod-gc-threshold", type=int, default=12500,
                   help="terminated pods kept before the pod GC deletes the oldest (<= 0: never)")
    s.add_argument("--default-toleration-seconds", type=int, default=15,
                   help="tolerationSeconds of the not-ready/unreachable tolerations added to pods "
                        "(Kubernetes: 300)")
    s.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod addresses: each node gets a block of it")
    s.add_argument("--node-cidr-mask-size", type=int, default=24, help="prefix length of each node's pod CIDR")
    s.add_argument("--enable-admission-plugins", default="",
                   help="admission plugins to run besides the defaults (LimitRanger, Priority, ServiceAccount)")
    s.add_argument("--disable-admission-plugins", default="", help="default admission plugins not to run")
    s.add_argument("--disable-ingress", action="store_true",
                   help="do not run the Ingress controller (it runs with the node agent otherwise)")
    s.add_argument("--ingress-http-port", type=int, default=80, help="the Ingress controller's HTTP port")
    s.add_argument("--ingress-https-port", type=int, default=443, help="the Ingress controller's HTTPS port")
    s.add_argument("--disable-network-policy", action="store_true",
                   help="do not enforce NetworkPolicies on this node (they are enforced with nftables otherwise)")
    s.add_argument("--disable-agent", action="store_true",
                   help="do not run the node agent (this machine is then not a node of the cluster)")
    s.add_argument("--disable-proxy", action="store_true", help="do not run kube-proxy (`kates proxy`) on this node")
    s.add_argument("--proxy-backend", default="nftables", choices=("nftables", "iptables"))
    s.add_argument("--lb-pool", default="", help="addresses for LoadBalancer Services (CIDRs or IPs, comma-"
                                                 "separated; default: the node addresses)")
    s.add_argument("--disable-dns", action="store_true",
                   help="do not run the cluster DNS (it runs with the node agent otherwise, as kube-system/kube-dns "
                        "at the 10th address of the service CIDR)")
    _node_args(s)
    s.add_argument("-v", "--verbose", action="store_true")
    a = sub.add_parser("agent", help="run the node agent (kubelet) against an API server")
    a.add_argument("--kubeconfig", required=True)
    a.add_argument("--data-dir", type=Path, default=None, help="the node's data (default: DATA_DIR/node)")
    _node_args(a)
    a.add_argument("--tls-cert-file", default="", help="the kubelet API's serving certificate (default: self-signed)")
    a.add_argument("--tls-private-key-file", default="")
    a.add_argument("--client-ca-file", default="",
                   help="CA of the client certificates the kubelet API accepts (default: the kubeconfig's CA)")
    a.add_argument("-v", "--verbose", action="store_true")
    cm = sub.add_parser("controller-manager", help="run the controllers against an API server")
    cm.add_argument("--kubeconfig", required=True)
    cm.add_argument("--controllers", default="", help="comma-separated controllers to run (default: all)")
    cm.add_argument("--node-monitor-grace-period", type=float, default=15.0)
    cm.add_argument("--terminated-pod-gc-threshold", type=int, default=12500)
    cm.add_argument("--cluster-cidr", default="10.244.0.0/16")
    cm.add_argument("--node-cidr-mask-size", type=int, default=24)
    cm.add_argument("-v", "--verbose", action="store_true")
    sc = sub.add_parser("scheduler", help="run the scheduler against an API server")
    sc.add_argument("--kubeconfig", required=True)
    sc.add_argument("--profile", default=None, help="scheduling profile: default, or bin-packing (MostAllocated)")
    sc.add_argument("--config", default=None, help="a KubeSchedulerConfiguration file")
    sc.add_argument("-v", "--verbose", action="store_true")
    sc.add_argument("--leader-elect", choices=("true", "false"), default="true",
                    help="take the kube-system/kube-scheduler Lease before scheduling (default true)")
    sc.add_argument("--leader-elect-lease-duration", type=float, default=15.0)
    sc.add_argument("--leader-elect-renew-deadline", type=float, default=10.0)
    sc.add_argument("--leader-elect-retry-period", type=float, default=2.0)
    hn = sub.add_parser("hollow-nodes", help="register N nodes whose pods run on a fake runtime (like kwok)")
    hn.add_argument("--kubeconfig", required=True)
    hn.add_argument("--count", type=int, default=1)
    hn.add_argument("--prefix", default="hollow-")
    hn.add_argument("-v", "--verbose", action="store_true")
    px = sub.add_parser("proxy", help="run kube-proxy (Services: ClusterIP, NodePort, LoadBalancer) for a node")
    px.add_argument("--kubeconfig", required=True)
    px.add_argument("--node-name", default="", help="this node's name (default: the hostname)")
    px.add_argument("--node-ip", default="", help="this node's address (default: the default route's address)")
    px.add_argument("--backend", default="nftables", choices=("nftables", "iptables"))
    px.add_argument("--table", default="kates-proxy",
                    help="nft table (nftables) or chain prefix (iptables) holding this proxy's rules")
    px.add_argument("--service-cidr", default="10.96.0.0/12")
    px.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod addresses: other sources are masqueraded")
    px.add_argument("--min-sync-period", type=float, default=0.05, help="seconds between rule syncs, at least")
    px.add_argument("--lb-pool", default="", help="addresses for LoadBalancer Services (default: node addresses)")
    px.add_argument("--disable-servicelb", action="store_true", help="leave LoadBalancer status to someone else")
    px.add_argument("-v", "--verbose", action="store_true")
    ing = sub.add_parser("ingress", help="run the Ingress controller (IngressClass kates) against an API server")
    from ..ingress.main import add_arguments as ingress_arguments
    ingress_arguments(ing)
    np = sub.add_parser("network-policy", help="enforce NetworkPolicies for this node's pods with nftables")
    np.add_argument("--kubeconfig", required=True)
    np.add_argument("--node-name", default="", help="the Node whose pods to protect (default: the hostname)")
    np.add_argument("-v", "--verbose", action="store_true")
    dn = sub.add_parser("dns", help="run the cluster DNS server against an API server")
    from ..dns.main import add_arguments as dns_arguments
    dns_arguments(dn)
    sub.add_parser("images", help="images of this node's containerd: import FILE.tar, ls, rm REF", add_help=False)
    k = sub.add_parser("kubectl", help="run kubectl with this cluster's admin kubeconfig", add_help=False)
    k.add_argument("--data-dir", type=Path, default=None)
    k.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _node_args(p: argparse.ArgumentParser) -> None:
    """Flags of the node agent, shared by `kates agent` and `kates server` (which passes them through)."""
    p.add_argument("--node-name", default="", help="the Node's name (default: the hostname)")
    p.add_argument("--node-ip", default="", help="the Node's InternalIP (default: the default route's address)")
    p.add_argument("--kubelet-port", type=int, default=10250, help="port of the kubelet API (0: any free port)")
    p.add_argument("--pod-cidr", default="", help="this node's pod CIDR (default: assigned by the cluster)")
    p.add_argument("--runtime", default="auto", choices=("auto", "cri", "process", "fake"),
                   help="container runtime: cri (containerd), process (no isolation), fake, or auto")
    p.add_argument("--container-runtime-endpoint", default="",
                   help="an existing CRI socket (unix:///run/crio/crio.sock); default: kates runs containerd")
    p.add_argument("--cluster-dns", default="", help="comma-separated DNS server addresses for pods")
    p.add_argument("--cluster-domain", default="cluster.local")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kubectl"]:
        return run_kubectl(argv[1:])
    if argv[:1] == ["images"]:
        from .images import main as images_main
        data_dir = default_data_dir()
        if argv[1:2] == ["--data-dir"] and len(argv) > 2:
            data_dir, argv = Path(argv[2]), argv[:1] + argv[3:]
        return images_main(argv[1:], data_dir)
    args = _parser().parse_args(argv)
    if args.command == "server":
        return run_server(args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"%(asctime)s %(levelname)s {args.command} %(name)s: %(message)s")
    _install_uvloop()
    if args.command == "controller-manager":
        from ..controllers import manager, nodeipam
        try:
            nodeipam.configure(args.cluster_cidr, args.node_cidr_mask_size)
        except ValueError as e:
            print(f"kates controller-manager: {e}", file=sys.stderr)
            return 2
        names = [n for n in args.controllers.split(",") if n] or None
        return manager.main(args.kubeconfig, names, node_monitor_grace_period=args.node_monitor_grace_period,
                            terminated_pod_gc_threshold=args.terminated_pod_gc_threshold)
    if args.command == "scheduler":
        from ..scheduler import main as scheduler
        return scheduler.main(args.kubeconfig, profile=args.profile, config=args.config,
                              election=scheduler.election_from_args(args))
    if args.command == "agent":
        return run_agent(args)
    if args.command == "proxy":
        from ..kubelet.agent import default_node_ip
        from ..proxy import main as proxy
        return proxy.main(args.kubeconfig, args.node_name or socket.gethostname().lower(),
                          args.node_ip or default_node_ip(), backend_name=args.backend, table=args.table,
                          service_cidr=args.service_cidr, cluster_cidr=args.cluster_cidr,
                          min_sync_period=args.min_sync_period, lb_pool=args.lb_pool,
                          servicelb=not args.disable_servicelb)
    if args.command == "ingress":
        from ..ingress.main import main as ingress_main
        return ingress_main(args)
    if args.command == "network-policy":
        from ..proxy import networkpolicy
        return networkpolicy.main(args.kubeconfig, args.node_name or socket.gethostname().lower())
    if args.command == "dns":
        from ..dns.main import main as dns_main
        return dns_main(args)
    if args.command == "hollow-nodes":
        from ..kubelet import hollow
        return hollow.main(args.kubeconfig, args.count, args.prefix)
    return 2


def _install_uvloop() -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass


def run_kubectl(argv: list[str]) -> int:
    data_dir = default_data_dir()
    if argv[:1] == ["--data-dir"] and len(argv) > 1:
        data_dir, argv = Path(argv[1]), argv[2:]
    kubeconfig = data_dir / "kubeconfig.yaml"
    if not kubeconfig.exists():
        print(f"kates: no kubeconfig at {kubeconfig}: is `kates server` running?", file=sys.stderr)
        return 1
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    os.execvpe("kubectl", ["kubectl", *argv], env)
    return 127


def run_agent(args: argparse.Namespace) -> int:
    from ..kubelet.agent import AgentConfig, default_node_ip, run_agent as agent_main
    kubeconfig = Path(args.kubeconfig)
    data_dir = (args.data_dir or default_data_dir() / "node").resolve()
    config = AgentConfig(node_name=args.node_name or socket.gethostname().lower(),
                         node_ip=args.node_ip or default_node_ip(), data_dir=data_dir, pod_cidr=args.pod_cidr,
                         kubelet_port=args.kubelet_port, tls_cert=args.tls_cert_file,
                         tls_key=args.tls_private_key_file, client_ca=args.client_ca_file,
                         cluster_dns=tuple(a for a in args.cluster_dns.split(",") if a),
                         cluster_domain=args.cluster_domain)
    try:
        return asyncio.run(agent_main(kubeconfig, config, args.runtime, args.container_runtime_endpoint))
    except KeyboardInterrupt:
        return 0


def _agent_child(args: argparse.Namespace, kubeconfig: Path, data_dir: Path, pki: Any) -> "Child":
    """`kates agent` as a supervised child of `kates server`, on `<data dir>/node`, with a serving certificate
    signed by the cluster CA when the PKI can issue one."""
    from ..kubelet.agent import default_node_ip
    from .supervisor import Child
    node_name = args.node_name or socket.gethostname().lower()
    node_ip = args.node_ip or default_node_ip()
    extra = ["--node-name", node_name, "--node-ip", node_ip, "--kubelet-port", str(args.kubelet_port),
             "--runtime", args.runtime, "--client-ca-file", str(pki.ca_cert), "--cluster-domain", args.cluster_domain]
    cluster_dns = args.cluster_dns or _cluster_dns(args)
    for flag, value in (("--pod-cidr", args.pod_cidr), ("--cluster-dns", cluster_dns),
                        ("--container-runtime-endpoint", args.container_runtime_endpoint)):
        if value:
            extra += [flag, value]
    cert, key = pki.ensure_kubelet_serving(node_name, [node_ip, "127.0.0.1", node_name])
    extra += ["--tls-cert-file", str(cert), "--tls-private-key-file", str(key)]
    return Child("agent", ["agent", "--kubeconfig", str(kubeconfig), "--data-dir", str(data_dir / "node"), *extra]
                 + (["-v"] if args.verbose else []))


def _cluster_dns(args: argparse.Namespace) -> str:
    """The kube-dns Service address pods are told to use, when this server runs the cluster DNS."""
    if args.disable_dns or args.disable_agent:
        return ""
    from ..dns.addon import cluster_dns_ip
    return cluster_dns_ip(args.service_cidr)


def run_server(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _install_uvloop()
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0


def _children(args: argparse.Namespace, kubeconfig: Path) -> list["Child"]:
    from .supervisor import Child
    common = ["--kubeconfig", str(kubeconfig)] + (["-v"] if args.verbose else [])
    children = []
    if not args.disable_controllers:
        extra = ["--controllers", args.controllers] if args.controllers else []
        children.append(Child("controller-manager", ["controller-manager", *common, *extra,
                                                     "--node-monitor-grace-period",
                                                     str(args.node_monitor_grace_period),
                                                     "--terminated-pod-gc-threshold",
                                                     str(args.terminated_pod_gc_threshold),
                                                     "--cluster-cidr", args.cluster_cidr,
                                                     "--node-cidr-mask-size", str(args.node_cidr_mask_size)]))
    if not args.disable_scheduler:
        extra = (["--profile", args.scheduler_profile] if args.scheduler_profile else []) + \
            (["--config", args.scheduler_config] if args.scheduler_config else [])
        children.append(Child("scheduler", ["scheduler", *common, *extra]))
    if args.hollow_nodes:
        children.append(Child("hollow-nodes", ["hollow-nodes", *common, "--count", str(args.hollow_nodes)]))
    if not args.disable_proxy and not args.disable_agent and os.geteuid() != 0:
        logging.getLogger("kates").warning("not root: no kube-proxy, Services have no virtual addresses here")
    elif not args.disable_proxy and not args.disable_agent:
        # kube-proxy runs on every node; a test cluster named by --node-name gets rules of its own
        table = f"kates-proxy-{args.node_name}" if args.node_name else "kates-proxy"
        children.append(Child("proxy", ["proxy", *common, "--node-name",
                                        args.node_name or socket.gethostname().lower(), "--backend",
                                        args.proxy_backend, "--table", table, "--service-cidr", args.service_cidr,
                                        "--cluster-cidr", args.cluster_cidr,
                                        *(["--node-ip", args.node_ip] if args.node_ip else []),
                                        *(["--lb-pool", args.lb_pool] if args.lb_pool else [])]))
    if not args.disable_ingress and not args.disable_agent:
        # the Ingress controller is this node's HTTP(S) entry point: it runs where the node agent runs
        children.append(Child("ingress", ["ingress", *common, "--http-port", str(args.ingress_http_port),
                                          "--https-port", str(args.ingress_https_port),
                                          *(["--node-ip", args.node_ip] if args.node_ip else [])]))
    if not args.disable_network_policy and not args.disable_agent and args.runtime in ("auto", "cri"):
        # NetworkPolicies are enforced where the pods run: nftables rules for this node's pods
        children.append(Child("network-policy", ["network-policy", *common, "--node-name",
                                                 args.node_name or socket.gethostname().lower()]))
    if not args.disable_dns and not args.disable_agent:
        # the cluster DNS listens on this node's address (port 53, or a free one if taken) and publishes itself
        # behind kube-system/kube-dns; kube-proxy carries 10.96.0.10:53 to it
        from ..kubelet.agent import default_node_ip
        children.append(Child("dns", ["dns", *common, "--listen", f"{args.node_ip or default_node_ip()}:53",
                                      "--service-ip", _cluster_dns(args), "--cluster-domain", args.cluster_domain,
                                      "--allow", f"127.0.0.0/8,::1/128,{args.cluster_cidr}",
                                      "--node-name", args.node_name or socket.gethostname().lower()]))
    return children


def _admission_plugins(args: argparse.Namespace) -> tuple[str, ...]:
    """kube-apiserver's defaults, less what is disabled. ServiceAccount admission is left out when this server does
    not run the serviceaccount controller, unless enabled explicitly: nothing would create the `default`
    ServiceAccounts it requires, and every pod would be refused (see kates.apiserver.admission)."""
    from ..apiserver.admission import DEFAULT_PLUGINS
    split = lambda v: [n.strip() for n in v.split(",") if n.strip()]
    enabled, disabled = split(args.enable_admission_plugins), set(split(args.disable_admission_plugins))
    controllers = split(args.controllers)
    if "ServiceAccount" not in enabled and (args.disable_controllers or
                                            (controllers and "serviceaccount" not in controllers)):
        logging.getLogger("kates").info("ServiceAccount admission is off: the serviceaccount controller does not run "
                                        "(--enable-admission-plugins ServiceAccount keeps it on)")
        disabled.add("ServiceAccount")
    return tuple(n for n in dict.fromkeys([*DEFAULT_PLUGINS, *enabled]) if n not in disabled)


def tune_gc() -> None:
    """Keep the cyclic GC off the request path: the watch cache holds every object as nested dicts, and default
    thresholds make full collections walk all of them every few thousand allocations (p99 create latency went from
    83 ms to 23 ms in bench/bench_apiserver.py). What exists at start-up is frozen; young collections are rarer."""
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


async def _serve(args: argparse.Namespace) -> int:
    from ..apiserver.certs import PKI, default_hosts
    from ..apiserver.server import APIServer, ServerConfig
    from ..store import open_store

    started = time.monotonic()
    data_dir: Path = (args.data_dir or default_data_dir()).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    store_url = args.store or f"sqlite://{data_dir / 'state.db'}"
    try:
        store = open_store(store_url)
    except ValueError as e:
        print(f"kates: {e}", file=sys.stderr)
        return 2
    from ..controllers.nodeipam import CidrSet
    try:
        CidrSet(args.cluster_cidr, args.node_cidr_mask_size)
    except ValueError as e:
        print(f"kates: --cluster-cidr/--node-cidr-mask-size: {e}", file=sys.stderr)
        return 2
    lo, _, hi = args.node_port_range.partition("-")
    config = ServerConfig(bind=args.bind, port=args.port, service_cidr=args.service_cidr,
                          node_port_range=(int(lo), int(hi)), event_ttl=args.event_ttl,
                          watch_cache_size=args.watch_cache_size,
                          default_toleration_seconds=args.default_toleration_seconds,
                          admission_plugins=_admission_plugins(args),
                          service_account_key_file=str(data_dir / "pki" / "sa.key"))
    pki = PKI(data_dir)
    await asyncio.to_thread(pki.ensure, default_hosts(args.bind))
    await store.start()
    store.start_background_tasks()
    server = APIServer(store, config)
    server.tokens = pki.load_tokens()
    # logs, exec, attach and port-forward reach the kubelets with the apiserver-kubelet-client certificate
    server.podproxy.tls = await asyncio.to_thread(pki.kubelet_client_context)
    try:
        await server.start(pki.server_context())
    except OSError as e:
        print(f"kates: cannot listen on {args.bind}:{args.port}: {e.strerror}", file=sys.stderr)
        await server.stop()
        await store.close()
        return 1
    host = "127.0.0.1" if args.bind in ("0.0.0.0", "::", "") else args.bind
    kubeconfig = data_dir / "kubeconfig.yaml"
    await asyncio.to_thread(pki.write_kubeconfig, kubeconfig, f"https://{host}:{args.port}")
    tune_gc()
    logging.getLogger("kates").info("serving in %.2fs with store %s", time.monotonic() - started, store_url)
    children = _children(args, kubeconfig)
    if not args.disable_agent:
        children.append(await asyncio.to_thread(_agent_child, args, kubeconfig, data_dir, pki))
    for child in children:
        child.start()
    print(f"kates is ready: KUBECONFIG={kubeconfig}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("kates").info("stopping")
    await asyncio.gather(*(c.stop() for c in children))
    await server.stop()
    await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
