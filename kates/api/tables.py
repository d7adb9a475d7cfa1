"""meta.k8s.io/v1 Table responses: what `kubectl get` prints.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints whatever columns and cells the server
returns; it has no printers of its own for built-in kinds. So the server decides what users see, and to look like
Kubernetes it must produce the same columns, in the same order, with the same cell formatting as Kubernetes 1.32's
printers (pkg/printers/internalversion), its default table convertor (NAME, CREATED AT for kinds without a printer)
and the CRD table convertor (NAME plus a CRD's additionalPrinterColumns, or NAME, AGE without any).

As in Kubernetes the server always renders the wide cells too (its printers run with `Wide: true`): priority-1
columns are filtered out by kubectl unless `-o wide` is asked for.

Tables of thousands of rows are common (`kubectl get pods -A`), so every printer is a plain function over the stored
dict, column definitions are built once per kind, and ages are computed once per distinct timestamp per table.
"""
from __future__ import annotations

import datetime
import math
import re
import time
from typing import Any, Callable, Iterable

import orjson

from kates.api.resources import ResourceType

__all__ = ["to_table", "age", "human_duration", "jsonpath_find", "JSONPathError", "TABLE_KINDS"]

_E: dict = {}          # shared empty mapping for `x.get(k) or _E`; never mutated
_L: tuple = ()         # shared empty sequence

# --------------------------------------------------------------------------------------------------------------
# Durations and timestamps


def human_duration(seconds: float) -> str:
    """Kubernetes' duration.HumanDuration: ~2-3 significant figures ("5s", "3m2s", "10m", "5h3m", "3d4h", "400d",
    "2y1d", "9y"); up to a second in the future counts as "0s", further is "<invalid>"."""
    s = int(seconds)                       # truncates toward zero, like Go's int(d.Seconds())
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


_fromiso = datetime.datetime.fromisoformat
_UTC = datetime.timezone.utc
_FRACTION = re.compile(r"\.(\d{6})\d+")


def _parse_ts(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (metav1.Time or MicroTime); None if absent or unparseable."""
    if not value or type(value) is not str:
        return None
    try:
        dt = _fromiso(value)
    except ValueError:
        try:                               # nanosecond fractions, lower-case z
            dt = _fromiso(_FRACTION.sub(r".\1", value.replace("z", "Z")))
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_UTC)
    return dt.timestamp()


def age(timestamp: str | None, now: float | None = None) -> str:
    """The AGE cell of a timestamp (Kubernetes' translateTimestampSince): HumanDuration since it, "<unknown>" if
    unset."""
    t = _parse_ts(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration((time.time() if now is None else now) - t)


class _Clock:
    """Ages relative to one `now`, memoised per timestamp string (a table's objects often share timestamps)."""

    __slots__ = ("now", "_cache")

    def __init__(self, now: float) -> None:
        self.now = now
        self._cache: dict[str, str] = {}

    def since(self, ts: Any) -> str:
        if not ts:
            return "<unknown>"
        r = self._cache.get(ts)
        if r is None:
            t = _parse_ts(ts)
            r = "<unknown>" if t is None else human_duration(self.now - t)
            self._cache[ts] = r
        return r


# --------------------------------------------------------------------------------------------------------------
# Formatting helpers shared by printers (labels, selectors, containers, lists)


def _format_labels(labels: dict | None) -> str:
    """labels.FormatLabels: sorted `k=v` joined by ",", "<none>" when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _selector_string(sel: dict | None) -> str | None:
    """metav1.LabelSelectorAsSelector(sel).String(); None when the selector is invalid."""
    if not sel:
        return ""
    reqs: list[tuple[str, str]] = []
    for k, v in (sel.get("matchLabels") or _E).items():
        reqs.append((k, f"{k}={v}"))
    for expr in sel.get("matchExpressions") or _L:
        key = expr.get("key") or ""
        op = expr.get("operator")
        values = expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                return None
            word = " in " if op == "In" else " notin "
            reqs.append((key, f"{key}{word}({','.join(sorted(values))})"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                return None
            reqs.append((key, key if op == "Exists" else "!" + key))
        else:
            return None
    reqs.sort(key=lambda r: r[0])
    return ",".join(r[1] for r in reqs)


def _format_selector(sel: dict | None) -> str:
    """metav1.FormatLabelSelector: "<none>" when empty, "<error>" when invalid."""
    s = _selector_string(sel)
    if s is None:
        return "<error>"
    return s or "<none>"


def _containers(pod_spec: dict | None) -> tuple[str, str]:
    """layoutContainerCells: container names and images, each joined by ","."""
    cs = (pod_spec or _E).get("containers") or _L
    if len(cs) == 1:
        c = cs[0]
        return c.get("name") or "", c.get("image") or ""
    return ",".join(c.get("name") or "" for c in cs), ",".join(c.get("image") or "" for c in cs)


def _template_spec(o: dict) -> dict:
    return ((o.get("spec") or _E).get("template") or _E).get("spec") or _E


def _list_with_more(items: list[str], count: int, limit: int = 3) -> str:
    """listWithMoreString: the first `limit` items joined by ",", "+ N more..." beyond, "<unset>" when empty."""
    ret = ",".join(items[:limit])
    if count > limit:
        return f"{ret} + {count - limit} more..."
    return ret or "<unset>"


def _join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _lb_ingress(status_lb: dict | None) -> str:
    """loadBalancerStatusStringer (wide): the sorted, de-duplicated IPs or hostnames joined by ","."""
    seen = set()
    for ing in (status_lb or _E).get("ingress") or _L:
        v = ing.get("ip") or ing.get("hostname")
        if v:
            seen.add(v)
    return ",".join(sorted(seen))


def _bool_ptr(v: Any) -> str:
    if v is None:
        return "<unset>"
    return "True" if v else "False"


def _int_or_string(v: Any) -> str:
    return str(v) if type(v) is int else ("" if v is None else str(v))


def _quantity(v: Any) -> str:
    """A resource.Quantity cell: stored quantities are strings already; absent ones print as "0"."""
    if v is None or v == "":
        return "0"
    if type(v) is float and v.is_integer():
        return str(int(v))
    return str(v)


_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))


def _access_modes(modes: Iterable[str] | None) -> str:
    """helper.GetAccessModesAsString: RWO,ROX,RWX,RWOP in that order, de-duplicated."""
    if not modes:
        return ""
    present = set(modes)
    return ",".join(short for full, short in _ACCESS_MODES if full in present)


_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"


# --------------------------------------------------------------------------------------------------------------
# Printers: one function per kind, from a stored object to its cells (all columns, wide ones included)

Cells = list
Printer = Callable[[dict, _Clock], Cells]


def _pod(o: dict, clock: _Clock) -> Cells:
    meta = o.get("metadata") or _E
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    total = len(spec.get("containers") or _L)
    init_specs = spec.get("initContainers") or _L
    sidecars: set | None = None
    for c in init_specs:
        if c.get("restartPolicy") == "Always":       # a restartable init container (sidecar) counts as a container
            if sidecars is None:
                sidecars = set()
            sidecars.add(c.get("name"))
            total += 1
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    conditions = status.get("conditions") or _L
    for cond in conditions:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    restarts = 0
    sidecar_restarts = 0
    ready = 0
    last_restart: float | None = None
    last_sidecar_restart: float | None = None
    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or _L):
        rc = cs.get("restartCount") or 0
        restarts += rc
        finished = None
        last_term = (cs.get("lastState") or _E).get("terminated")
        if last_term is not None:
            finished = _parse_ts(last_term.get("finishedAt"))
            if finished is not None and (last_restart is None or finished > last_restart):
                last_restart = finished
        is_sidecar = sidecars is not None and cs.get("name") in sidecars
        if is_sidecar:
            sidecar_restarts += rc
            if finished is not None and (last_sidecar_restart is None or finished > last_sidecar_restart):
                last_sidecar_restart = finished
        state = cs.get("state") or _E
        term = state.get("terminated")
        if term is not None and not term.get("exitCode"):
            continue
        if is_sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if term is not None:
            r = term.get("reason")
            if r:
                reason = "Init:" + r
            elif term.get("signal"):
                reason = f"Init:Signal:{term['signal']}"
            else:
                reason = f"Init:ExitCode:{term.get('exitCode') or 0}"
        else:
            waiting_reason = (state.get("waiting") or _E).get("reason")
            if waiting_reason and waiting_reason != "PodInitializing":
                reason = "Init:" + waiting_reason
            else:
                reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _initialized(conditions):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        statuses = status.get("containerStatuses") or _L
        for idx in range(len(statuses) - 1, -1, -1):
            cs = statuses[idx]
            restarts += cs.get("restartCount") or 0
            last_term = (cs.get("lastState") or _E).get("terminated")
            if last_term is not None:
                finished = _parse_ts(last_term.get("finishedAt"))
                if finished is not None and (last_restart is None or finished > last_restart):
                    last_restart = finished
            state = cs.get("state") or _E
            waiting = state.get("waiting")
            term = state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None:
                if term.get("reason"):
                    reason = term["reason"]
                elif term.get("signal"):
                    reason = f"Signal:{term['signal']}"
                else:
                    reason = f"ExitCode:{term.get('exitCode') or 0}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _pod_ready(conditions) else "NotReady"

    if meta.get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase != "Succeeded" and phase != "Failed":
            reason = "Terminating"

    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration(clock.now - last_restart)} ago)"
    else:
        restarts_cell = str(restarts)

    pod_ips = status.get("podIPs")
    ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    gates = spec.get("readinessGates")
    if gates:
        true_count = 0
        for gate in gates:
            ctype = gate.get("conditionType")
            for cond in conditions:
                if cond.get("type") == ctype:
                    if cond.get("status") == "True":
                        true_count += 1
                    break
        gates_cell = f"{true_count}/{len(gates)}"
    else:
        gates_cell = "<none>"
    return [meta.get("name", ""), f"{ready}/{total}", reason, restarts_cell, clock.since(meta.get("creationTimestamp")),
            ip, spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>", gates_cell]


def _initialized(conditions: Iterable[dict]) -> bool:
    for cond in conditions:
        if cond.get("type") == "Initialized":
            return cond.get("status") == "True"
    return False


def _pod_ready(conditions: Iterable[dict]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


_POD_SUCCEEDED = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                   "message": "The pod has completed successfully."}]
_POD_FAILED = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]


def _pod_conditions(o: dict) -> list | None:
    phase = (o.get("status") or _E).get("phase")
    if phase == "Succeeded":
        return _POD_SUCCEEDED
    if phase == "Failed":
        return _POD_FAILED
    return None


def _pod_template(o: dict, clock: _Clock) -> Cells:
    template = o.get("template") or _E
    names, images = _containers(template.get("spec"))
    return [_name(o), names, images, _format_labels((template.get("metadata") or _E).get("labels"))]


def _pdb(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    min_available = spec.get("minAvailable")
    max_unavailable = spec.get("maxUnavailable")
    return [_name(o), "N/A" if min_available is None else _int_or_string(min_available),
            "N/A" if max_unavailable is None else _int_or_string(max_unavailable),
            (o.get("status") or _E).get("disruptionsAllowed") or 0, _age(o, clock)]


def _replication_controller(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    names, images = _containers(((spec.get("template") or _E).get("spec")))
    return [_name(o), _replicas(spec), status.get("replicas") or 0, status.get("readyReplicas") or 0, _age(o, clock),
            names, images, _format_labels(spec.get("selector"))]


def _replica_set(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    names, images = _containers(_template_spec(o))
    return [_name(o), _replicas(spec), status.get("replicas") or 0, status.get("readyReplicas") or 0, _age(o, clock),
            names, images, _format_selector(spec.get("selector"))]


def _deployment(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    names, images = _containers(_template_spec(o))
    selector = _selector_string(spec.get("selector"))
    return [_name(o), f"{status.get('readyReplicas') or 0}/{_replicas(spec)}", status.get("updatedReplicas") or 0,
            status.get("availableReplicas") or 0, _age(o, clock), names, images,
            "<invalid>" if selector is None else selector]


def _stateful_set(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    names, images = _containers(_template_spec(o))
    return [_name(o), f"{(o.get('status') or _E).get('readyReplicas') or 0}/{_replicas(spec)}", _age(o, clock),
            names, images]


def _daemon_set(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    pod_spec = _template_spec(o)
    names, images = _containers(pod_spec)
    return [_name(o), status.get("desiredNumberScheduled") or 0, status.get("currentNumberScheduled") or 0,
            status.get("numberReady") or 0, status.get("updatedNumberScheduled") or 0,
            status.get("numberAvailable") or 0, _format_labels(pod_spec.get("nodeSelector")), _age(o, clock),
            names, images, _format_selector(spec.get("selector"))]


def _job_condition(conditions: Iterable[dict], ctype: str) -> bool:
    for cond in conditions:
        if cond.get("type") == ctype:
            return cond.get("status") == "True"
    return False


def _job(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    succeeded = status.get("succeeded") or 0
    completions = spec.get("completions")
    if completions is not None:
        completions_cell = f"{succeeded}/{completions}"
    else:
        parallelism = spec.get("parallelism") or 0
        completions_cell = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start = _parse_ts(status.get("startTime"))
    if start is None:
        duration = ""
    else:
        end = _parse_ts(status.get("completionTime"))
        duration = human_duration((clock.now if end is None else end) - start)
    conditions = status.get("conditions") or _L
    if _job_condition(conditions, "Complete"):
        state = "Complete"
    elif _job_condition(conditions, "Failed"):
        state = "Failed"
    elif (o.get("metadata") or _E).get("deletionTimestamp"):
        state = "Terminating"
    elif _job_condition(conditions, "Suspended"):
        state = "Suspended"
    elif _job_condition(conditions, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers(_template_spec(o))
    return [_name(o), state, completions_cell, duration, _age(o, clock), names, images,
            _format_selector(spec.get("selector"))]


def _cron_job(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    last = status.get("lastScheduleTime")
    job_spec = (spec.get("jobTemplate") or _E).get("spec") or _E
    names, images = _containers((job_spec.get("template") or _E).get("spec"))
    tz = spec.get("timeZone")
    return [_name(o), spec.get("schedule") or "", "<none>" if tz is None else tz, _bool_ptr(spec.get("suspend")),
            len(status.get("active") or _L), "<none>" if last is None else clock.since(last), _age(o, clock),
            names, images, _format_selector(job_spec.get("selector"))]


def _service_external_ip(spec: dict, status: dict, svc_type: str) -> str:
    external = spec.get("externalIPs") or _L
    if svc_type == "ClusterIP" or svc_type == "NodePort":
        return ",".join(external) if external else "<none>"
    if svc_type == "LoadBalancer":
        lb = _lb_ingress(status.get("loadBalancer"))
        if external:
            return ",".join((lb.split(",") if lb else []) + list(external))
        return lb or "<pending>"
    if svc_type == "ExternalName":
        return spec.get("externalName") or ""
    return "<unknown>"


def _service(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    svc_type = spec.get("type") or "ClusterIP"
    cluster_ips = spec.get("clusterIPs")
    cluster_ip = (cluster_ips[0] if cluster_ips else spec.get("clusterIP")) or "<none>"
    pieces = []
    for p in spec.get("ports") or _L:
        proto = p.get("protocol") or "TCP"
        node_port = p.get("nodePort") or 0
        if node_port > 0:
            pieces.append(f"{p.get('port', 0)}:{node_port}/{proto}")
        else:
            pieces.append(f"{p.get('port', 0)}/{proto}")
    return [_name(o), svc_type, cluster_ip, _service_external_ip(spec, o.get("status") or _E, svc_type),
            ",".join(pieces) or "<none>", _age(o, clock), _format_labels(spec.get("selector"))]


def _ingress(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    rules = spec.get("rules") or _L
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        hosts_cell = "*"
    elif more:
        hosts_cell = f"{','.join(hosts)} + {len(rules) - 3} more..."
    else:
        hosts_cell = ",".join(hosts)
    class_name = spec.get("ingressClassName")
    return [_name(o), "<none>" if class_name is None else class_name, hosts_cell,
            _lb_ingress((o.get("status") or _E).get("loadBalancer")), "80, 443" if spec.get("tls") else "80",
            _age(o, clock)]


def _ingress_class(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    params = spec.get("parameters")
    if params is None:
        params_cell = "<none>"
    else:
        params_cell = params.get("kind") or ""
        if params.get("apiGroup") is not None:
            params_cell += "." + params["apiGroup"]
        params_cell += "/" + (params.get("name") or "")
    return [_name(o), spec.get("controller") or "", params_cell, _age(o, clock)]


def _endpoints(o: dict, clock: _Clock) -> Cells:
    subsets = o.get("subsets") or _L
    if not subsets:
        return [_name(o), "<none>", _age(o, clock)]
    shown: list[str] = []
    count = 0
    for ss in subsets:
        addresses = ss.get("addresses") or _L
        ports = ss.get("ports") or _L
        if not ports:                       # headless services may have no ports
            count += len(addresses)
            for a in addresses:
                if len(shown) == 3:
                    break
                shown.append(a.get("ip") or "")
            continue
        for p in ports:
            count += len(addresses)
            for a in addresses:
                if len(shown) == 3:
                    break
                shown.append(_join_host_port(a.get("ip") or "", p.get("port", 0)))
    cell = ",".join(shown)
    if count > 3:
        cell = f"{cell} + {count - 3} more..."
    return [_name(o), cell, _age(o, clock)]


def _endpoint_slice(o: dict, clock: _Clock) -> Cells:
    ports = o.get("ports") or _L
    port_cells = []
    for p in ports[:3]:
        port = p.get("port")
        port_cells.append(str(port) if port is not None else (p.get("name") if p.get("name") is not None else "*"))
    addresses: list[str] = []
    count = 0
    for ep in o.get("endpoints") or _L:
        for a in ep.get("addresses") or _L:
            if len(addresses) < 3:
                addresses.append(a)
            count += 1
    return [_name(o), o.get("addressType") or "", _list_with_more(port_cells, len(ports)),
            _list_with_more(addresses, count), _age(o, clock)]


def _node(o: dict, clock: _Clock) -> Cells:
    meta = o.get("metadata") or _E
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    state = "Unknown"
    for cond in status.get("conditions") or _L:
        if cond.get("type") == "Ready":     # the last Ready condition wins, as in Kubernetes' condition map
            state = "Ready" if cond.get("status") == "True" else "NotReady"
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = set()
    for k, v in (meta.get("labels") or _E).items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k[len("node-role.kubernetes.io/"):]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = status.get("nodeInfo") or _E
    internal_ip = external_ip = None
    for addr in status.get("addresses") or _L:
        t = addr.get("type")
        if t == "InternalIP" and internal_ip is None:
            internal_ip = addr.get("address") or ""
        elif t == "ExternalIP" and external_ip is None:
            external_ip = addr.get("address") or ""
    return [meta.get("name", ""), state, ",".join(sorted(roles)) or "<none>", clock.since(meta.get("creationTimestamp")),
            info.get("kubeletVersion") or "", "<none>" if internal_ip is None else internal_ip,
            "<none>" if external_ip is None else external_ip, info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


def _make_event_printer(*, regarding: str, message: str, first: str, last: str, count: str,
                        source: str, reporting_component: str) -> Printer:
    """printEvent over either core/v1 Event field names or events.k8s.io/v1 ones (which Kubernetes converts to the
    same internal type before printing)."""

    def printer(o: dict, clock: _Clock) -> Cells:
        first_seen = clock.since(o.get(first)) if o.get(first) else clock.since(o.get("eventTime"))
        last_seen = clock.since(o.get(last)) if o.get(last) else first_seen
        n = o.get(count) or 0
        series = o.get("series")
        if series is not None:
            last_seen = clock.since(series.get("lastObservedTime"))
            n = series.get("count") or 0
        elif n == 0:
            n = 1                           # singleton events carry no count in the new API
        obj = o.get(regarding) or _E
        kind = (obj.get("kind") or "").lower()
        target = f"{kind}/{obj['name']}" if obj.get("name") else kind
        src = o.get(source) or _E
        component = src.get("component") or o.get(reporting_component) or ""
        instance = src.get("host") or o.get("reportingInstance") or ""
        source_cell = f"{component}, {instance}" if instance else component
        return [last_seen, o.get("type") or "", o.get("reason") or "", target, obj.get("fieldPath") or "",
                source_cell, (o.get(message) or "").strip(), first_seen, n, _name(o)]

    return printer


_core_event = _make_event_printer(regarding="involvedObject", message="message", first="firstTimestamp",
                                  last="lastTimestamp", count="count", source="source",
                                  reporting_component="reportingComponent")
_events_event = _make_event_printer(regarding="regarding", message="note", first="deprecatedFirstTimestamp",
                                    last="deprecatedLastTimestamp", count="deprecatedCount",
                                    source="deprecatedSource", reporting_component="reportingController")


def _namespace(o: dict, clock: _Clock) -> Cells:
    return [_name(o), (o.get("status") or _E).get("phase") or "", _age(o, clock)]


def _secret(o: dict, clock: _Clock) -> Cells:
    return [_name(o), o.get("type") or "", len(o.get("data") or _E), _age(o, clock)]


def _service_account(o: dict, clock: _Clock) -> Cells:
    return [_name(o), len(o.get("secrets") or _L), _age(o, clock)]


def _config_map(o: dict, clock: _Clock) -> Cells:
    return [_name(o), len(o.get("data") or _E) + len(o.get("binaryData") or _E), _age(o, clock)]


def _persistent_volume(o: dict, clock: _Clock) -> Cells:
    meta = o.get("metadata") or _E
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    claim = spec.get("claimRef")
    claim_cell = f"{claim.get('namespace') or ''}/{claim.get('name') or ''}" if claim is not None else ""
    phase = "Terminating" if meta.get("deletionTimestamp") else (status.get("phase") or "")
    annotations = meta.get("annotations") or _E
    storage_class = annotations[_BETA_STORAGE_CLASS] if _BETA_STORAGE_CLASS in annotations \
        else (spec.get("storageClassName") or "")
    vac = spec.get("volumeAttributesClassName")
    mode = spec.get("volumeMode")
    return [meta.get("name", ""), _quantity((spec.get("capacity") or _E).get("storage")),
            _access_modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy") or "", phase,
            claim_cell, storage_class, "<unset>" if vac is None else vac, status.get("reason") or "",
            clock.since(meta.get("creationTimestamp")), "<unset>" if mode is None else mode]


def _persistent_volume_claim(o: dict, clock: _Clock) -> Cells:
    meta = o.get("metadata") or _E
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    phase = "Terminating" if meta.get("deletionTimestamp") else (status.get("phase") or "")
    volume = spec.get("volumeName") or ""
    capacity = access = ""
    if volume:
        access = _access_modes(status.get("accessModes"))
        capacity = _quantity((status.get("capacity") or _E).get("storage"))
    annotations = meta.get("annotations") or _E
    storage_class = annotations[_BETA_STORAGE_CLASS] if _BETA_STORAGE_CLASS in annotations \
        else (spec.get("storageClassName") or "")
    vac = spec.get("volumeAttributesClassName")
    mode = spec.get("volumeMode")
    return [meta.get("name", ""), phase, volume, capacity, access, storage_class, "<unset>" if vac is None else vac,
            clock.since(meta.get("creationTimestamp")), "<unset>" if mode is None else mode]


def _hpa_metrics(specs: list, statuses: list) -> str:
    if not specs:
        return "<none>"
    out: list[str] = []
    for i, spec in enumerate(specs):
        st = statuses[i] if i < len(statuses) else _E
        t = spec.get("type")
        if t == "External" or t == "Object":
            key = "external" if t == "External" else "object"
            target = (spec.get(key) or _E).get("target") or _E
            current_status = (st.get(key) or _E).get("current") if st.get(key) is not None else None
            if target.get("averageValue") is not None:
                cur = (current_status or _E).get("averageValue")
                out.append(f"{'<unknown>' if cur is None else _quantity(cur)}/{_quantity(target['averageValue'])} (avg)")
            else:
                cur = "<unknown>" if current_status is None else _quantity(current_status.get("value"))
                out.append(f"{cur}/{_quantity(target.get('value'))}")
        elif t == "Pods":
            target = (spec.get("pods") or _E).get("target") or _E
            pods_status = st.get("pods")
            cur = "<unknown>" if pods_status is None else \
                _quantity(((pods_status.get("current") or _E)).get("averageValue"))
            out.append(f"{cur}/{_quantity(target.get('averageValue'))}")
        elif t == "Resource" or t == "ContainerResource":
            key = "resource" if t == "Resource" else "containerResource"
            src = spec.get(key) or _E
            target = src.get("target") or _E
            res_status = st.get(key)
            current = (res_status.get("current") or _E) if res_status is not None else None
            name = src.get("name") or ""
            if target.get("averageValue") is not None:
                cur = "<unknown>" if current is None else _quantity(current.get("averageValue"))
                out.append(f"{name}: {cur}/{_quantity(target['averageValue'])}")
            else:
                util = None if current is None else current.get("averageUtilization")
                cur = "<unknown>" if util is None else f"{util}%"
                goal = target.get("averageUtilization")
                out.append(f"{name}: {cur}/{'<auto>' if goal is None else f'{goal}%'}")
        else:
            out.append("<unknown type>")
    if len(out) > 2:
        return f"{', '.join(out[:2])} + {len(out) - 2} more..."
    return ", ".join(out)


def _hpa(o: dict, clock: _Clock) -> Cells:
    spec = o.get("spec") or _E
    status = o.get("status") or _E
    ref = spec.get("scaleTargetRef") or _E
    min_replicas = spec.get("minReplicas")
    return [_name(o), f"{ref.get('kind') or ''}/{ref.get('name') or ''}",
            _hpa_metrics(spec.get("metrics") or [], status.get("currentMetrics") or []),
            "<unset>" if min_replicas is None else str(min_replicas), spec.get("maxReplicas") or 0,
            status.get("currentReplicas") or 0, _age(o, clock)]


def _network_policy(o: dict, clock: _Clock) -> Cells:
    return [_name(o), _format_selector((o.get("spec") or _E).get("podSelector")), _age(o, clock)]


def _role_binding(o: dict, clock: _Clock) -> Cells:
    ref = o.get("roleRef") or _E
    users: list[str] = []
    groups: list[str] = []
    sas: list[str] = []
    for s in o.get("subjects") or _L:
        kind = s.get("kind")
        if kind == "ServiceAccount":
            sas.append(f"{s.get('namespace') or ''}/{s.get('name') or ''}")
        elif kind == "User":
            users.append(s.get("name") or "")
        elif kind == "Group":
            groups.append(s.get("name") or "")
    return [_name(o), f"{ref.get('kind') or ''}/{ref.get('name') or ''}", _age(o, clock), ", ".join(users),
            ", ".join(groups), ", ".join(sas)]


def _lease(o: dict, clock: _Clock) -> Cells:
    return [_name(o), (o.get("spec") or _E).get("holderIdentity") or "", _age(o, clock)]


def _storage_class(o: dict, clock: _Clock) -> Cells:
    meta = o.get("metadata") or _E
    annotations = meta.get("annotations") or _E
    name = meta.get("name", "")
    if annotations.get("storageclass.kubernetes.io/is-default-class") == "true" or \
            annotations.get("storageclass.beta.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [name, o.get("provisioner") or "", o.get("reclaimPolicy") or "Delete",
            o.get("volumeBindingMode") or "Immediate", bool(o.get("allowVolumeExpansion")),
            clock.since(meta.get("creationTimestamp"))]


def _controller_revision(o: dict, clock: _Clock) -> Cells:
    controller = "<none>"
    for ref in (o.get("metadata") or _E).get("ownerReferences") or _L:
        if ref.get("controller"):
            api_version = ref.get("apiVersion") or ""
            group = api_version.split("/", 1)[0] if "/" in api_version else ""
            kind = ref.get("kind") or ""
            if not kind and not group:
                controller = ref.get("name") or ""
            else:
                controller = (f"{kind}.{group}" if group else kind).lower() + "/" + (ref.get("name") or "")
            break
    return [_name(o), controller, o.get("revision") or 0, _age(o, clock)]


def _resource_quota(o: dict, clock: _Clock) -> Cells:
    status = o.get("status") or _E
    hard = status.get("hard") or _E
    used = status.get("used") or _E
    requests: list[str] = []
    limits: list[str] = []
    for resource in sorted(hard):
        piece = f"{resource}: {_quantity(used.get(resource))}/{_quantity(hard[resource])}"
        parts = resource.split(".")
        (limits if len(parts) > 1 and parts[0] == "limits" else requests).append(piece)
    return [_name(o), ", ".join(requests), ", ".join(limits), _age(o, clock)]


def _priority_class(o: dict, clock: _Clock) -> Cells:
    return [_name(o), o.get("value") or 0, bool(o.get("globalDefault")), _age(o, clock),
            o.get("preemptionPolicy") or ""]


def _default(o: dict, clock: _Clock) -> Cells:
    """rest.DefaultTableConvertor: the name and the creation time in RFC 3339 (UTC)."""
    meta = o.get("metadata") or _E
    ts = meta.get("creationTimestamp")
    t = _parse_ts(ts)
    if t is None:
        created = "0001-01-01T00:00:00Z"
    elif type(ts) is str and len(ts) == 20 and ts[19] == "Z":
        created = ts
    else:
        created = datetime.datetime.fromtimestamp(math.floor(t), _UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [meta.get("name", ""), created]


def _name(o: dict) -> str:
    return (o.get("metadata") or _E).get("name", "")


def _age(o: dict, clock: _Clock) -> str:
    return clock.since((o.get("metadata") or _E).get("creationTimestamp"))


def _replicas(spec: dict) -> int:
    r = spec.get("replicas")
    return 1 if r is None else r                     # the API defaults spec.replicas to 1


# --------------------------------------------------------------------------------------------------------------
# Column definitions: (name, type, description, priority, format). A description is either literal text or the
# (OpenAPI definition, property) whose description Kubernetes uses; those are looked up once in kates.api.schemas.

_OM = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_CORE = "io.k8s.api.core.v1."
_APPS = "io.k8s.api.apps.v1."
_BATCH = "io.k8s.api.batch.v1."
_CONTAINERS_DESC = "Names of each container in the template."
_IMAGES_DESC = "Images referenced by each container in the template."

ColumnSpec = tuple


def _col(name: str, desc: Any, type_: str = "string", priority: int = 0, fmt: str = "") -> ColumnSpec:
    return (name, type_, desc, priority, fmt)


_NAME = _col("Name", (_OM, "name"), fmt="name")
_AGE = _col("Age", (_OM, "creationTimestamp"))
_CONTAINERS = _col("Containers", _CONTAINERS_DESC, priority=1)
_IMAGES = _col("Images", _IMAGES_DESC, priority=1)

_COLUMNS: dict[str, tuple[ColumnSpec, ...]] = {
    "pod": (
        _NAME,
        _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", "The aggregate status of the containers in this pod."),
        _col("Restarts", "The number of times the containers in this pod have been restarted and when the last "
                         "container in this pod has restarted."),
        _AGE,
        _col("IP", (_CORE + "PodStatus", "podIP"), priority=1),
        _col("Node", (_CORE + "PodSpec", "nodeName"), priority=1),
        _col("Nominated Node", (_CORE + "PodStatus", "nominatedNodeName"), priority=1),
        _col("Readiness Gates", (_CORE + "PodSpec", "readinessGates"), priority=1),
    ),
    "podtemplate": (
        _NAME,
        _col("Containers", _CONTAINERS_DESC),
        _col("Images", _IMAGES_DESC),
        _col("Pod Labels", "The labels for the pod template."),
    ),
    "pdb": (
        _NAME,
        _col("Min Available", "The minimum number of pods that must be available."),
        _col("Max Unavailable", "The maximum number of pods that may be unavailable."),
        _col("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.", "integer"),
        _AGE,
    ),
    "rc": (
        _NAME,
        _col("Desired", (_CORE + "ReplicationControllerSpec", "replicas"), "integer"),
        _col("Current", (_CORE + "ReplicationControllerStatus", "replicas"), "integer"),
        _col("Ready", (_CORE + "ReplicationControllerStatus", "readyReplicas"), "integer"),
        _AGE, _CONTAINERS, _IMAGES,
        _col("Selector", (_CORE + "ReplicationControllerSpec", "selector"), priority=1),
    ),
    "rs": (
        _NAME,
        _col("Desired", (_APPS + "ReplicaSetSpec", "replicas"), "integer"),
        _col("Current", (_APPS + "ReplicaSetStatus", "replicas"), "integer"),
        _col("Ready", (_APPS + "ReplicaSetStatus", "readyReplicas"), "integer"),
        _AGE, _CONTAINERS, _IMAGES,
        _col("Selector", (_APPS + "ReplicaSetSpec", "selector"), priority=1),
    ),
    "ds": (
        _NAME,
        _col("Desired", (_APPS + "DaemonSetStatus", "desiredNumberScheduled"), "integer"),
        _col("Current", (_APPS + "DaemonSetStatus", "currentNumberScheduled"), "integer"),
        _col("Ready", (_APPS + "DaemonSetStatus", "numberReady"), "integer"),
        _col("Up-to-date", (_APPS + "DaemonSetStatus", "updatedNumberScheduled"), "integer"),
        _col("Available", (_APPS + "DaemonSetStatus", "numberAvailable"), "integer"),
        _col("Node Selector", (_CORE + "PodSpec", "nodeSelector")),
        _AGE, _CONTAINERS, _IMAGES,
        _col("Selector", (_APPS + "DaemonSetSpec", "selector"), priority=1),
    ),
    "job": (
        _NAME,
        _col("Status", "Status of the job."),
        _col("Completions", (_BATCH + "JobStatus", "succeeded")),
        _col("Duration", "Time required to complete the job."),
        _AGE, _CONTAINERS, _IMAGES,
        _col("Selector", (_BATCH + "JobSpec", "selector"), priority=1),
    ),
    "cronjob": (
        _NAME,
        _col("Schedule", (_BATCH + "CronJobSpec", "schedule")),
        _col("Timezone", (_BATCH + "CronJobSpec", "timeZone")),
        _col("Suspend", (_BATCH + "CronJobSpec", "suspend"), "boolean"),
        _col("Active", (_BATCH + "CronJobStatus", "active"), "integer"),
        _col("Last Schedule", (_BATCH + "CronJobStatus", "lastScheduleTime")),
        _AGE, _CONTAINERS, _IMAGES,
        _col("Selector", (_BATCH + "JobSpec", "selector"), priority=1),
    ),
    "service": (
        _NAME,
        _col("Type", (_CORE + "ServiceSpec", "type")),
        _col("Cluster-IP", (_CORE + "ServiceSpec", "clusterIP")),
        _col("External-IP", (_CORE + "ServiceSpec", "externalIPs")),
        _col("Port(s)", (_CORE + "ServiceSpec", "ports")),
        _AGE,
        _col("Selector", (_CORE + "ServiceSpec", "selector"), priority=1),
    ),
    "ingress": (
        _NAME,
        _col("Class", "The name of the IngressClass resource that should be used for additional configuration"),
        _col("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
        _col("Address", "Address is a list containing ingress points for the load-balancer"),
        _col("Ports", "Ports of TLS configurations that open"),
        _AGE,
    ),
    "ingressclass": (
        _NAME,
        _col("Controller", "Controller that is responsible for handling this class"),
        _col("Parameters", "A reference to a resource with additional parameters"),
        _AGE,
    ),
    "sts": (
        _NAME,
        _col("Ready", "Number of the pod with ready state"),
        _AGE, _CONTAINERS, _IMAGES,
    ),
    "endpoints": (
        _NAME,
        _col("Endpoints", (_CORE + "Endpoints", "subsets")),
        _AGE,
    ),
    "node": (
        _NAME,
        _col("Status", "The status of the node"),
        _col("Roles", "The roles of the node"),
        _AGE,
        _col("Version", (_CORE + "NodeSystemInfo", "kubeletVersion")),
        _col("Internal-IP", (_CORE + "NodeStatus", "addresses"), priority=1),
        _col("External-IP", (_CORE + "NodeStatus", "addresses"), priority=1),
        _col("OS-Image", (_CORE + "NodeSystemInfo", "osImage"), priority=1),
        _col("Kernel-Version", (_CORE + "NodeSystemInfo", "kernelVersion"), priority=1),
        _col("Container-Runtime", (_CORE + "NodeSystemInfo", "containerRuntimeVersion"), priority=1),
    ),
    "event": (
        _col("Last Seen", (_CORE + "Event", "lastTimestamp")),
        _col("Type", (_CORE + "Event", "type")),
        _col("Reason", (_CORE + "Event", "reason")),
        _col("Object", (_CORE + "Event", "involvedObject")),
        _col("Subobject", (_CORE + "ObjectReference", "fieldPath"), priority=1),
        _col("Source", (_CORE + "Event", "source"), priority=1),
        _col("Message", (_CORE + "Event", "message")),
        _col("First Seen", (_CORE + "Event", "firstTimestamp"), priority=1),
        _col("Count", (_CORE + "Event", "count"), priority=1),
        _col("Name", (_OM, "name"), priority=1, fmt="name"),
    ),
    "namespace": (
        _NAME,
        _col("Status", "The status of the namespace"),
        _AGE,
    ),
    "secret": (
        _NAME,
        _col("Type", (_CORE + "Secret", "type")),
        _col("Data", (_CORE + "Secret", "data")),
        _AGE,
    ),
    "serviceaccount": (
        _NAME,
        _col("Secrets", (_CORE + "ServiceAccount", "secrets")),
        _AGE,
    ),
    "pv": (
        _NAME,
        _col("Capacity", (_CORE + "PersistentVolumeSpec", "capacity")),
        _col("Access Modes", (_CORE + "PersistentVolumeSpec", "accessModes")),
        _col("Reclaim Policy", (_CORE + "PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
        _col("Status", (_CORE + "PersistentVolumeStatus", "phase")),
        _col("Claim", (_CORE + "PersistentVolumeSpec", "claimRef")),
        _col("StorageClass", "StorageClass of the pv"),
        _col("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
        _col("Reason", (_CORE + "PersistentVolumeStatus", "reason")),
        _AGE,
        _col("VolumeMode", (_CORE + "PersistentVolumeSpec", "volumeMode"), priority=1),
    ),
    "pvc": (
        _NAME,
        _col("Status", (_CORE + "PersistentVolumeClaimStatus", "phase")),
        _col("Volume", (_CORE + "PersistentVolumeClaimSpec", "volumeName")),
        _col("Capacity", (_CORE + "PersistentVolumeClaimStatus", "capacity")),
        _col("Access Modes", (_CORE + "PersistentVolumeClaimStatus", "accessModes")),
        _col("StorageClass", "StorageClass of the pvc"),
        _col("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
        _AGE,
        _col("VolumeMode", (_CORE + "PersistentVolumeClaimSpec", "volumeMode"), priority=1),
    ),
    "deployment": (
        _NAME,
        _col("Ready", "Number of the pod with ready state"),
        _col("Up-to-date", (_APPS + "DeploymentStatus", "updatedReplicas")),
        _col("Available", (_APPS + "DeploymentStatus", "availableReplicas")),
        _AGE, _CONTAINERS, _IMAGES,
        _col("Selector", (_APPS + "DeploymentSpec", "selector"), priority=1),
    ),
    "hpa": (
        _NAME,
        _col("Reference", ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "scaleTargetRef")),
        _col("Targets", ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics")),
        _col("MinPods", ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "minReplicas")),
        _col("MaxPods", ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "maxReplicas")),
        _col("Replicas", ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "currentReplicas")),
        _AGE,
    ),
    "configmap": (
        _NAME,
        _col("Data", (_CORE + "ConfigMap", "data")),
        _AGE,
    ),
    "networkpolicy": (
        _NAME,
        _col("Pod-Selector", ("io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector")),
        _AGE,
    ),
    "rolebinding": (
        _NAME,
        _col("Role", ("io.k8s.api.rbac.v1.RoleBinding", "roleRef")),
        _AGE,
        _col("Users", "Users in the roleBinding", priority=1),
        _col("Groups", "Groups in the roleBinding", priority=1),
        _col("ServiceAccounts", "ServiceAccounts in the roleBinding", priority=1),
    ),
    "clusterrolebinding": (
        _NAME,
        _col("Role", ("io.k8s.api.rbac.v1.ClusterRoleBinding", "roleRef")),
        _AGE,
        _col("Users", "Users in the clusterRoleBinding", priority=1),
        _col("Groups", "Groups in the clusterRoleBinding", priority=1),
        _col("ServiceAccounts", "ServiceAccounts in the clusterRoleBinding", priority=1),
    ),
    "lease": (
        _NAME,
        _col("Holder", ("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")),
        _AGE,
    ),
    "storageclass": (
        _NAME,
        _col("Provisioner", ("io.k8s.api.storage.v1.StorageClass", "provisioner")),
        _col("ReclaimPolicy", ("io.k8s.api.storage.v1.StorageClass", "reclaimPolicy")),
        _col("VolumeBindingMode", ("io.k8s.api.storage.v1.StorageClass", "volumeBindingMode")),
        _col("AllowVolumeExpansion", ("io.k8s.api.storage.v1.StorageClass", "allowVolumeExpansion")),
        _AGE,
    ),
    "controllerrevision": (
        _NAME,
        _col("Controller", "Controller of the object"),
        _col("Revision", (_APPS + "ControllerRevision", "revision")),
        _AGE,
    ),
    "resourcequota": (
        _NAME,
        _col("Request", "Request represents a minimum amount of cpu/memory that a container may consume."),
        _col("Limit", "Limits control the maximum amount of cpu/memory that a container may use independent of "
                      "contention on the node."),
        _AGE,
    ),
    "priorityclass": (
        _NAME,
        _col("Value", ("io.k8s.api.scheduling.v1.PriorityClass", "value"), "integer"),
        _col("Global-Default", ("io.k8s.api.scheduling.v1.PriorityClass", "globalDefault"), "boolean"),
        _AGE,
        _col("PreemptionPolicy", ("io.k8s.api.scheduling.v1.PriorityClass", "preemptionPolicy")),
    ),
    "endpointslice": (
        _NAME,
        _col("AddressType", ("io.k8s.api.discovery.v1.EndpointSlice", "addressType")),
        _col("Ports", ("io.k8s.api.discovery.v1.EndpointSlice", "ports")),
        _col("Endpoints", ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints")),
        _AGE,
    ),
    "default": (
        _NAME,
        _col("Created At", (_OM, "creationTimestamp"), "date"),
    ),
}

# (group, resource) -> (column set, printer). Built-ins not listed use Kubernetes' default convertor (NAME, CREATED
# AT): roles, clusterroles, limitranges, bindings, customresourcedefinitions.
_PRINTERS: dict[tuple[str, str], tuple[str, Printer]] = {
    ("", "pods"): ("pod", _pod),
    ("", "podtemplates"): ("podtemplate", _pod_template),
    ("", "replicationcontrollers"): ("rc", _replication_controller),
    ("", "services"): ("service", _service),
    ("", "endpoints"): ("endpoints", _endpoints),
    ("", "nodes"): ("node", _node),
    ("", "events"): ("event", _core_event),
    ("", "namespaces"): ("namespace", _namespace),
    ("", "secrets"): ("secret", _secret),
    ("", "serviceaccounts"): ("serviceaccount", _service_account),
    ("", "persistentvolumes"): ("pv", _persistent_volume),
    ("", "persistentvolumeclaims"): ("pvc", _persistent_volume_claim),
    ("", "configmaps"): ("configmap", _config_map),
    ("", "resourcequotas"): ("resourcequota", _resource_quota),
    ("apps", "deployments"): ("deployment", _deployment),
    ("apps", "replicasets"): ("rs", _replica_set),
    ("apps", "statefulsets"): ("sts", _stateful_set),
    ("apps", "daemonsets"): ("ds", _daemon_set),
    ("apps", "controllerrevisions"): ("controllerrevision", _controller_revision),
    ("batch", "jobs"): ("job", _job),
    ("batch", "cronjobs"): ("cronjob", _cron_job),
    ("autoscaling", "horizontalpodautoscalers"): ("hpa", _hpa),
    ("networking.k8s.io", "ingresses"): ("ingress", _ingress),
    ("networking.k8s.io", "ingressclasses"): ("ingressclass", _ingress_class),
    ("networking.k8s.io", "networkpolicies"): ("networkpolicy", _network_policy),
    ("discovery.k8s.io", "endpointslices"): ("endpointslice", _endpoint_slice),
    ("coordination.k8s.io", "leases"): ("lease", _lease),
    ("rbac.authorization.k8s.io", "rolebindings"): ("rolebinding", _role_binding),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): ("clusterrolebinding", _role_binding),
    ("storage.k8s.io", "storageclasses"): ("storageclass", _storage_class),
    ("policy", "poddisruptionbudgets"): ("pdb", _pdb),
    ("scheduling.k8s.io", "priorityclasses"): ("priorityclass", _priority_class),
    ("events.k8s.io", "events"): ("event", _events_event),
}

TABLE_KINDS: frozenset[tuple[str, str]] = frozenset(_PRINTERS)
"""(group, resource) pairs that have a dedicated printer; every other kind gets a default table."""

_built_columns: dict[str, list[dict]] = {}


def _description(desc: Any) -> str:
    if isinstance(desc, str):
        return desc
    definition, prop = desc
    try:
        from kates.api import schemas
        return schemas.definitions()[definition]["properties"][prop]["description"]
    except Exception:                       # schema package missing or renamed: a short, honest fallback
        return f"{definition.rsplit('.', 1)[-1]}.{prop}"


def _columns(key: str) -> list[dict]:
    cols = _built_columns.get(key)
    if cols is None:
        cols = [{"name": name, "type": type_, "format": fmt, "description": _description(desc), "priority": prio}
                for name, type_, desc, prio, fmt in _COLUMNS[key]]
        _built_columns[key] = cols
    return [dict(c) for c in cols]          # callers may mutate their copy


# --------------------------------------------------------------------------------------------------------------
# Custom resources: additionalPrinterColumns evaluated with a small Kubernetes-JSONPath subset

_AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
               "description": (_OM, "creationTimestamp")}


class JSONPathError(ValueError):
    pass


_jp_cache: dict[str, list[tuple]] = {}


def _jp_compile(expr: str) -> list[tuple]:
    steps = _jp_cache.get(expr)
    if steps is None:
        steps = _jp_parse(expr)
        _jp_cache[expr] = steps
    return steps


def _jp_parse(expr: str) -> list[tuple]:
    s = expr.strip()
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1].strip()
    if s.startswith("$"):
        s = s[1:]
    steps: list[tuple] = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch == ".":
            if s.startswith("..", i):
                i += 2
                if i < n and s[i] == "*":
                    raise JSONPathError(f"unsupported recursive wildcard in {expr!r}")
                name, i = _jp_name(s, i)
                if not name:
                    raise JSONPathError(f"missing field after '..' in {expr!r}")
                steps.append(("desc", name))
                continue
            i += 1
            if i < n and s[i] == "*":
                steps.append(("wild",))
                i += 1
                continue
            name, i = _jp_name(s, i)
            if name:
                steps.append(("field", name))
        elif ch == "[":
            j = _jp_close(s, i, expr)
            steps.append(_jp_bracket(s[i + 1:j].strip(), expr))
            i = j + 1
        elif ch.isspace():
            i += 1
        else:
            raise JSONPathError(f"unexpected {ch!r} at {i} in {expr!r}")
    return steps


def _jp_name(s: str, i: int) -> tuple[str, int]:
    out = []
    n = len(s)
    while i < n:
        ch = s[i]
        if ch == "\\" and i + 1 < n:
            out.append(s[i + 1])
            i += 2
            continue
        if ch in ".[" or ch.isspace():
            break
        out.append(ch)
        i += 1
    return "".join(out), i


def _jp_close(s: str, i: int, expr: str) -> int:
    """Index of the ']' closing the '[' at i, skipping quoted strings and parentheses."""
    depth = 0
    quote = None
    for j in range(i + 1, len(s)):
        ch = s[j]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "]" and depth == 0:
            return j
    raise JSONPathError(f"unterminated '[' in {expr!r}")


_INT = re.compile(r"-?\d+$")


def _jp_bracket(inner: str, expr: str) -> tuple:
    if inner == "*":
        return ("wild",)
    if inner.startswith("?(") and inner.endswith(")"):
        return ("filter", _jp_filter(inner[2:-1].strip(), expr))
    parts = [p.strip() for p in _split_top(inner, ",")]
    if all(len(p) >= 2 and p[0] == p[-1] and p[0] in "'\"" for p in parts):
        return ("keys", tuple(p[1:-1] for p in parts))
    if len(parts) == 1 and ":" in parts[0]:
        bounds = [b.strip() for b in parts[0].split(":")]
        if len(bounds) > 3 or not all(b == "" or _INT.match(b) for b in bounds):
            raise JSONPathError(f"bad slice [{inner}] in {expr!r}")
        vals = [int(b) if b else None for b in bounds] + [None] * (3 - len(bounds))
        if vals[2] == 0:
            raise JSONPathError(f"zero slice step in {expr!r}")
        return ("slice", slice(vals[0], vals[1], vals[2]))
    if all(_INT.match(p) for p in parts):
        return ("index", tuple(int(p) for p in parts))
    raise JSONPathError(f"unsupported subscript [{inner}] in {expr!r}")


def _split_top(s: str, sep: str) -> list[str]:
    out, cur, quote = [], [], None
    for ch in s:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == sep:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return out


_FILTER = re.compile(r"^(.+?)\s*(==|!=|<=|>=|<|>)\s*(.+)$")
_MISSING = object()


def _jp_filter(text: str, expr: str) -> tuple:
    m = _FILTER.match(text)
    if m is None:
        return (_jp_operand(text, expr), None, None)     # existence test: [?(@.field)]
    return (_jp_operand(m.group(1).strip(), expr), m.group(2), _jp_operand(m.group(3).strip(), expr))


def _jp_operand(text: str, expr: str) -> tuple:
    if text.startswith("@"):
        return ("path", _jp_parse(text[1:]))
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return ("lit", text[1:-1])
    if text == "true" or text == "false":
        return ("lit", text == "true")
    if text == "null" or text == "nil":
        return ("lit", None)
    try:
        return ("lit", int(text))
    except ValueError:
        try:
            return ("lit", float(text))
        except ValueError:
            raise JSONPathError(f"bad filter operand {text!r} in {expr!r}") from None


def _operand_value(op: tuple, node: Any) -> Any:
    if op[0] == "lit":
        return op[1]
    found = _jp_eval(op[1], [node])
    return found[0] if found else _MISSING


def _compare(left: Any, op: str, right: Any) -> bool:
    if left is _MISSING or right is _MISSING:
        return False
    if op == "==":
        return left == right and (type(left) is bool) == (type(right) is bool)
    if op == "!=":
        return not (left == right and (type(left) is bool) == (type(right) is bool))
    numeric = (int, float)
    if isinstance(left, numeric) and isinstance(right, numeric) and type(left) is not bool and type(right) is not bool:
        pass
    elif not (type(left) is str and type(right) is str):
        return False
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _descendants(node: Any, name: str, out: list) -> None:
    if type(node) is dict:
        if name in node:
            out.append(node[name])
        for v in node.values():
            if type(v) is dict or type(v) is list:
                _descendants(v, name, out)
    elif type(node) is list:
        for v in node:
            if type(v) is dict or type(v) is list:
                _descendants(v, name, out)


def _jp_eval(steps: list[tuple], nodes: list) -> list:
    for step in steps:
        kind = step[0]
        out: list = []
        if kind == "field":
            key = step[1]
            for v in nodes:
                if type(v) is dict and key in v:
                    out.append(v[key])
        elif kind == "index":
            for v in nodes:
                if type(v) is list:
                    for idx in step[1]:
                        if -len(v) <= idx < len(v):
                            out.append(v[idx])
        elif kind == "wild":
            for v in nodes:
                if type(v) is dict:
                    out.extend(v.values())
                elif type(v) is list:
                    out.extend(v)
        elif kind == "keys":
            for v in nodes:
                if type(v) is dict:
                    out.extend(v[k] for k in step[1] if k in v)
        elif kind == "slice":
            for v in nodes:
                if type(v) is list:
                    out.extend(v[step[1]])
        elif kind == "filter":
            left, op, right = step[1]
            for v in nodes:
                items = v if type(v) is list else (list(v.values()) if type(v) is dict else ())
                for item in items:
                    if op is None:
                        if _operand_value(left, item) is not _MISSING:
                            out.append(item)
                    elif _compare(_operand_value(left, item), op, _operand_value(right, item)):
                        out.append(item)
        elif kind == "desc":
            for v in nodes:
                _descendants(v, step[1], out)
        nodes = out
        if not nodes:
            break
    return nodes


def jsonpath_find(obj: Any, path: str) -> list:
    """All values a Kubernetes JSONPath (`.spec.size`, `{.items[*].name}`, `.status.conditions[?(@.type=="Ready")]`,
    `.metadata.labels['app.kubernetes.io/name']`, `[0]`, `[-1]`, `[1:3]`, `..name`) selects in `obj`; missing keys
    select nothing. Raises JSONPathError for syntax this subset does not support."""
    return _jp_eval(_jp_compile(path), [obj])


def _go_text(value: Any) -> str:
    """How Kubernetes' JSONPath printer renders one value: strings raw, maps and lists as compact JSON, other
    scalars as Go's fmt would (true, 3, 1.5, 1e+21)."""
    t = type(value)
    if t is str:
        return value
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float:
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if t is dict or t is list:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def _custom_cell(col_type: str, values: list, clock: _Clock) -> Any:
    if not values:
        return None
    value = values[0]                       # Kubernetes shows only the first match of a column's path
    if value is None:
        return None
    if col_type == "string":
        return _go_text(value)
    if col_type == "integer":
        if type(value) is int:
            return value
        if type(value) is float:
            return int(value)
        return None
    if col_type == "number":
        if type(value) is int or type(value) is float:
            return float(value)
        return None
    if col_type == "boolean":
        return value if type(value) is bool else None
    if col_type == "date":
        if type(value) is not str:
            return None
        if value == "" or value == "null":
            return "<unknown>"
        t = _parse_ts(value)
        return "<invalid>" if t is None else human_duration(clock.now - t)
    return None


def _custom_table(columns: list[dict]) -> tuple[list[dict], Printer]:
    """The CRD table convertor: NAME, then each additionalPrinterColumn (NAME, AGE when there are none)."""
    if not columns:
        columns = [_AGE_COLUMN]
    defs = [{"name": "Name", "type": "string", "format": "name", "description": _description((_OM, "name")),
             "priority": 0}]
    compiled: list[tuple[str, list[tuple] | None]] = []
    for col in columns:
        path = col.get("jsonPath") or ""
        desc = col.get("description") or f"Custom resource definition column (in JSONPath format): {path}"
        defs.append({"name": col.get("name") or "", "type": col.get("type") or "string",
                     "format": col.get("format") or "", "description": _description(desc),
                     "priority": col.get("priority") or 0})
        try:
            compiled.append((col.get("type") or "string", _jp_compile(path)))
        except JSONPathError:
            compiled.append((col.get("type") or "string", None))

    def printer(o: dict, clock: _Clock) -> Cells:
        cells: list = [_name(o)]
        for col_type, steps in compiled:
            cells.append(None if steps is None else _custom_cell(col_type, _jp_eval(steps, [o]), clock))
        return cells

    return defs, printer


# --------------------------------------------------------------------------------------------------------------
# The Table


def to_table(rt: ResourceType, objects: list[dict], *, include_object: str = "Metadata", now: float | None = None,
             list_metadata: dict | None = None, custom_columns: list[dict] | None = None) -> dict:
    """A meta.k8s.io/v1 Table of `objects` (all of kind `rt`) as Kubernetes 1.32 renders it for `kubectl get`.

    include_object: "None" (row object null), "Metadata" (a PartialObjectMetadata), or "Object" (the full object).
    custom_columns: a CRD version's additionalPrinterColumns ({name, type, jsonPath, description, priority, format});
    given (even empty), the table is NAME plus those columns (NAME, AGE when empty), as for custom resources.
    Without it, built-in kinds get their Kubernetes printer's columns, kinds without one NAME, CREATED AT, and
    custom resources (no OpenAPI definition) NAME, AGE.
    """
    if custom_columns is not None:
        columns, printer = _custom_table(custom_columns)
    else:
        entry = _PRINTERS.get((rt.group, rt.resource))
        if entry is not None:
            columns, printer = _columns(entry[0]), entry[1]
        elif rt.definition is None:
            columns, printer = _custom_table([])
        else:
            columns, printer = _columns("default"), _default
    clock = _Clock(time.time() if now is None else now)
    conditions_of = _pod_conditions if printer is _pod else None

    rows: list[dict] = []
    append = rows.append
    if include_object == "Object":
        for o in objects:
            append({"cells": printer(o, clock), "object": o})
    elif include_object == "None":
        for o in objects:
            append({"cells": printer(o, clock), "object": None})
    else:
        for o in objects:
            append({"cells": printer(o, clock),
                    "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": o.get("metadata") or {}}})
    if conditions_of is not None:
        for row, o in zip(rows, objects):
            conds = conditions_of(o)
            if conds is not None:
                row["conditions"] = [dict(c) for c in conds]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_metadata or {},
            "columnDefinitions": columns, "rows": rows}
