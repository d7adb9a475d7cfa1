"""Regenerate the protobuf fixtures: run the real kubectl against a fake API server and keep each POST/PUT body.

Not part of the test run (it needs /usr/bin/kubectl and takes a while); run it by hand:

    .venv/bin/python tests/api/protobuf_fixtures/capture.py            # all fixtures, into this folder
    .venv/bin/python tests/api/protobuf_fixtures/capture.py deployment # only some, by name

The fake server answers just enough for kubectl 1.32 to get to its POST: `/version` (the kubectl dispatcher
picks the client by the server's minor version), legacy discovery (`/api`, `/apis`, one `APIResourceList` per
group version, all plain JSON), the objects some commands GET first (a Deployment for `kubectl autoscale`, a
Pod for `kubectl debug --copy-to`, a CronJob for `kubectl create job --from`), and a 201 with a minimal object
(or the review/token status kubectl prints) for the POST (or PUT), whose body (the `k8s\\x00`-enveloped
protobuf) it saves as `NAME.pb`. A run fails if kubectl fails, does not write exactly once, or writes something
other than protobuf (as `kubectl run`, `expose` and `drain` do: they send JSON). Each kubectl run gets a fresh
HOME, so no discovery cache carries over. README.md beside this file lists the commands; keep it in step with
COMMANDS.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

HERE = Path(__file__).resolve().parent
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")

# name -> kubectl arguments (after the connection flags). Files named @NAME are made in a scratch folder first.
COMMANDS: dict[str, list[str]] = {
    "deployment": ["create", "deployment", "web", "--image=busybox", "--replicas=2", "--port=8080"],
    "deployment_multi": ["create", "deployment", "pair", "--image=nginx", "--image=redis:7"],
    "deployment_zero": ["create", "deployment", "idle", "--image=nginx:1.27", "--replicas=0",
                        "--namespace=apps", "--", "sleep", "3600"],
    "configmap_literal": ["create", "configmap", "settings", "--from-literal=color=blue",
                          "--from-literal=size=10"],
    "configmap_file": ["create", "configmap", "files", "--from-file=@scratch/hello.txt",
                       "--from-file=blob.bin=@scratch/blob.bin"],
    "secret_generic": ["create", "secret", "generic", "creds", "--from-literal=username=admin",
                       "--from-literal=password=s3cr3t", "--type=Opaque"],
    "secret_file": ["create", "secret", "generic", "blobs", "--from-file=@scratch/blob.bin"],
    "secret_tls": ["create", "secret", "tls", "tls-cert", "--cert=@scratch/tls.crt", "--key=@scratch/tls.key"],
    "secret_docker_registry": ["create", "secret", "docker-registry", "regcred",
                               "--docker-server=registry.example.com", "--docker-username=bob",
                               "--docker-password=hunter2", "--docker-email=bob@example.com"],
    "service_clusterip": ["create", "service", "clusterip", "backend", "--tcp=80:8080", "--tcp=443:8443"],
    "service_nodeport": ["create", "service", "nodeport", "public", "--tcp=80:8080", "--node-port=30080"],
    "service_headless": ["create", "service", "clusterip", "headless", "--clusterip=None"],
    "service_externalname": ["create", "service", "externalname", "ext", "--external-name=example.com"],
    "job": ["create", "job", "once", "--image=busybox", "--", "echo", "hello"],
    "cronjob": ["create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *",
                "--restart=OnFailure", "--", "date"],
    "namespace": ["create", "namespace", "team-a"],
    "quota": ["create", "quota", "limits", "--hard=cpu=1,memory=1G,pods=2", "--scopes=NotTerminating"],
    "serviceaccount": ["create", "serviceaccount", "robot"],
    "role": ["create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods,deployments.apps",
             "--resource-name=web"],
    "rolebinding": ["create", "rolebinding", "read-pods", "--role=pod-reader", "--user=jane",
                    "--group=devs", "--serviceaccount=default:robot"],
    "clusterrole": ["create", "clusterrole", "node-viewer", "--verb=get", "--resource=nodes",
                    "--non-resource-url=/healthz"],
    "clusterrole_aggregate": ["create", "clusterrole", "monitoring",
                              "--aggregation-rule=rbac.example.com/aggregate-to-monitoring=true"],
    "clusterrolebinding": ["create", "clusterrolebinding", "view-nodes", "--clusterrole=node-viewer",
                           "--user=jane"],
    "poddisruptionbudget": ["create", "poddisruptionbudget", "web-pdb", "--selector=app=web",
                            "--min-available=50%"],
    "poddisruptionbudget_max": ["create", "poddisruptionbudget", "db-pdb", "--selector=app=db",
                                "--max-unavailable=0"],
    "priorityclass": ["create", "priorityclass", "high", "--value=1000", "--global-default=false",
                      "--description=important pods", "--preemption-policy=Never"],
    "priorityclass_zero": ["create", "priorityclass", "zero", "--value=0"],
    "ingress": ["create", "ingress", "site", "--class=nginx", "--rule=foo.example.com/bar*=svc1:8080,tls=my-cert",
                "--rule=/path=svc2:http", "--annotation=nginx.ingress.kubernetes.io/rewrite-target=/"],
    "autoscale": ["autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu-percent=80"],
    "autoscale_v2": ["autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu-percent=80"],
    "token": ["create", "token", "robot", "--audience=api", "--duration=10m"],
    "token_bound": ["create", "token", "robot", "--bound-object-kind=Pod", "--bound-object-name=rich",
                    "--bound-object-uid=00000000-0000-0000-0000-000000000003"],
    "job_from_cronjob": ["create", "job", "manual-run", "--from=cronjob/nightly"],
    "debug_copy": ["debug", "rich", "--copy-to=rich-debug", "--image=busybox", "--container=dbg"],
    "auth_can_i": ["auth", "can-i", "list", "pods", "--subresource=log", "--namespace=kube-system"],
    "auth_can_i_list": ["auth", "can-i", "--list"],
    "auth_whoami": ["auth", "whoami"],
    "certificate_approve": ["certificate", "approve", "csr1"],   # a PUT of the CSR with an Approved condition
}

# kubectl sends a rich PodSpec as protobuf only when it copies one it read: `kubectl debug --copy-to` (a Pod)
# and `kubectl create job --from=cronjob/...` (a Job from the CronJob's template). The fake server serves
# this pod (as Pod "rich" and inside CronJob "nightly") for those GETs.
RICH_POD: dict[str, Any] = {
    "metadata": {"annotations": {"note": "rich pod"}},
    "spec": {
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "serviceAccountName": "robot",
        "nodeSelector": {"disk": "ssd"},
        "hostname": "box-0",
        "subdomain": "boxes",
        "dnsPolicy": "ClusterFirst",
        "priority": 0,
        "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "fsGroup": 2000,
                            "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
        "imagePullSecrets": [{"name": "regcred"}],
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchExpressions": [
                    {"key": "app", "operator": "In", "values": ["box"]}]},
                    "topologyKey": "kubernetes.io/hostname"}}]}},
        "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]}],
        "containers": [{
            "name": "box",
            "workingDir": "/work",
            "env": [{"name": "B", "value": "two"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password",
                                                                    "optional": False}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                       "divisor": "1Mi"}}}],
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}},
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                             {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True, "subPath": "app"}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 80, "scheme": "HTTP"},
                              "initialDelaySeconds": 5, "periodSeconds": 10, "failureThreshold": 3},
            "readinessProbe": {"tcpSocket": {"port": "http"}, "timeoutSeconds": 2},
            "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 5"]}},
                          "postStart": {"httpGet": {"path": "/started", "port": 8080}}},
            "securityContext": {"privileged": False, "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True, "runAsUser": 1000,
                                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}},
            "imagePullPolicy": "IfNotPresent",
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "stdin": True, "tty": True,
        }],
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420,
                                          "items": [{"key": "color", "path": "color.txt"}]}},
            {"name": "sec", "secret": {"secretName": "creds", "optional": True}},
            {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc", "readOnly": True}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels",
                                                         "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "all", "projected": {"sources": [
                {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}},
                {"configMap": {"name": "settings"}},
                {"secret": {"name": "creds", "items": [{"key": "username", "path": "user", "mode": 256}]}}]}},
        ],
    },
}

# The server's minor version when not "32": the kubectl dispatcher then runs that kubectl. kubectl 1.32 sends
# autoscaling/v1 for `autoscale`, 1.33 sends autoscaling/v2.
MINOR = {"autoscale_v2": "33"}

# Replies to the review POSTs (kubectl reads their status).
REVIEWS: dict[str, dict[str, Any]] = {
    "selfsubjectaccessreviews": {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                                 "metadata": {}, "spec": {}, "status": {"allowed": True}},
    "selfsubjectrulesreviews": {"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
                                "metadata": {}, "spec": {}, "status": {
                                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                                    "nonResourceRules": [], "incomplete": False}},
    "selfsubjectreviews": {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                           "metadata": {}, "status": {"userInfo": {"username": "admin", "groups": ["system:masters"]}}},
}

# The name kubectl should see in the 201 reply (it prints "<kind>/<name> created").
REPLY_NAMES = {"autoscale": "web", "autoscale_v2": "web", "token": "robot", "token_bound": "robot",
               "debug_copy": "rich-debug", "certificate_approve": "csr1",
               "auth_can_i": "-", "auth_can_i_list": "-", "auth_whoami": "-"}


def _resource(name: str, kind: str, namespaced: bool = True, verbs: tuple[str, ...] = (
        "create", "delete", "get", "list", "patch", "update", "watch"), short: tuple[str, ...] = ()) -> dict[str, Any]:
    r: dict[str, Any] = {"name": name, "singularName": "" if "/" in name else kind.lower(),
                         "namespaced": namespaced, "kind": kind, "verbs": list(verbs)}
    if short:
        r["shortNames"] = list(short)
    return r


GROUPS: dict[str, list[dict[str, Any]]] = {
    "v1": [
        _resource("namespaces", "Namespace", False, short=("ns",)),
        _resource("configmaps", "ConfigMap", short=("cm",)),
        _resource("secrets", "Secret"),
        _resource("services", "Service", short=("svc",)),
        _resource("serviceaccounts", "ServiceAccount", short=("sa",)),
        _resource("serviceaccounts/token", "TokenRequest", verbs=("create",)),
        _resource("resourcequotas", "ResourceQuota", short=("quota",)),
        _resource("pods", "Pod", short=("po",)),
        _resource("nodes", "Node", False, short=("no",)),
    ],
    "apps/v1": [
        _resource("deployments", "Deployment", short=("deploy",)),
        _resource("deployments/scale", "Scale", verbs=("get", "patch", "update")),
        _resource("statefulsets", "StatefulSet", short=("sts",)),
        _resource("daemonsets", "DaemonSet", short=("ds",)),
        _resource("replicasets", "ReplicaSet", short=("rs",)),
    ],
    "batch/v1": [_resource("jobs", "Job"), _resource("cronjobs", "CronJob", short=("cj",))],
    "autoscaling/v2": [_resource("horizontalpodautoscalers", "HorizontalPodAutoscaler", short=("hpa",))],
    "certificates.k8s.io/v1": [
        _resource("certificatesigningrequests", "CertificateSigningRequest", False, short=("csr",)),
        _resource("certificatesigningrequests/approval", "CertificateSigningRequest", False, verbs=("update",))],
    "autoscaling/v1": [_resource("horizontalpodautoscalers", "HorizontalPodAutoscaler", short=("hpa",))],
    "rbac.authorization.k8s.io/v1": [
        _resource("roles", "Role"), _resource("rolebindings", "RoleBinding"),
        _resource("clusterroles", "ClusterRole", False), _resource("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    "policy/v1": [_resource("poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",))],
    "authorization.k8s.io/v1": [
        _resource("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, verbs=("create",)),
        _resource("selfsubjectrulesreviews", "SelfSubjectRulesReview", False, verbs=("create",))],
    "authentication.k8s.io/v1": [
        _resource("selfsubjectreviews", "SelfSubjectReview", False, verbs=("create",)),
        _resource("tokenreviews", "TokenReview", False, verbs=("create",))],
    "scheduling.k8s.io/v1": [_resource("priorityclasses", "PriorityClass", False, short=("pc",))],
    "networking.k8s.io/v1": [_resource("ingresses", "Ingress", short=("ing",)),
                             _resource("ingressclasses", "IngressClass", False)],
}


class Capture:
    def __init__(self) -> None:
        self.posts: list[tuple[str, str, bytes]] = []   # ("POST /path", content type, body), PUTs too
        self.reply_name = ""
        self.log: list[str] = []
        self.minor = "32"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        self.log.append(f"{request.method} {request.path_qs} accept={request.headers.get('Accept', '')}")
        if request.method in ("POST", "PUT"):
            body = await request.read()
            self.posts.append((f"{request.method} {path}", request.headers.get("Content-Type", ""), body))
            if request.method == "PUT":
                return web.json_response(_csr())       # the only PUT here: `kubectl certificate approve`
            return web.json_response(self.reply_for(path), status=201)
        if path == "/version":
            return web.json_response({"major": "1", "minor": self.minor, "gitVersion": f"v1.{self.minor}.0",
                                      "platform": "linux/amd64"})
        if path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"],
                                      "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                                      "serverAddress": "127.0.0.1"}]})
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for gv in GROUPS:
                if "/" in gv:
                    g, v = gv.split("/")
                    groups.setdefault(g, []).append(v)
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                for g, vs in groups.items()]})
        gv = path[len("/api/"):] if path.startswith("/api/") else path[len("/apis/"):]
        if gv in GROUPS:
            return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                                      "resources": GROUPS[gv]})
        if path == "/apis/apps/v1/namespaces/default/deployments/web":
            return web.json_response(_deployment())
        if path == "/apis/batch/v1/namespaces/default/cronjobs/nightly":
            return web.json_response(_cronjob())
        if path == "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1":
            return web.json_response(_csr())
        if path == "/api/v1/namespaces/default/pods/rich":
            return web.json_response(_pod())
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": f"{path} not found", "reason": "NotFound", "code": 404}, status=404)

    def reply_for(self, path: str) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        if parts[-1] == "token":
            return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"name": parts[-2], "namespace": "default"},
                    "spec": {"audiences": ["api"]},
                    "status": {"token": "captured.token.value", "expirationTimestamp": "2030-01-01T00:00:00Z"}}
        if parts[-1] in REVIEWS:
            return REVIEWS[parts[-1]]
        if parts[0] == "api":
            gv = parts[1]
        else:
            gv = f"{parts[1]}/{parts[2]}"
        plural = parts[-1]
        kind = next((r["kind"] for r in GROUPS.get(gv, []) if r["name"] == plural), "Unknown")
        metadata: dict[str, Any] = {"name": self.reply_name, "uid": "00000000-0000-0000-0000-000000000001",
                                    "resourceVersion": "1", "creationTimestamp": "2024-01-02T03:04:05Z"}
        if "namespaces" in parts[:-1] and len(parts) > 4:
            metadata["namespace"] = parts[parts.index("namespaces") + 1]
        return {"apiVersion": gv, "kind": kind, "metadata": metadata}


def _deployment() -> dict[str, Any]:
    labels = {"app": "web"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "00000000-0000-0000-0000-000000000002",
                         "resourceVersion": "5", "generation": 1, "labels": labels,
                         "creationTimestamp": "2024-01-02T03:04:05Z"},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "busybox", "image": "busybox",
                                                           "resources": {"requests": {"cpu": "100m"}}}]}}},
            "status": {"replicas": 2}}


def _csr() -> dict[str, Any]:
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {
        "name": "csr1", "uid": "00000000-0000-0000-0000-000000000008", "resourceVersion": "3"},
        "spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
                 "signerName": "kubernetes.io/kube-apiserver-client", "expirationSeconds": 86400,
                 "usages": ["client auth"], "username": "jane", "groups": ["system:authenticated"],
                 "extra": {"scopes": ["a", "b"]}},
        "status": {}}


def _pod() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "rich", "namespace": "default", "uid": "00000000-0000-0000-0000-000000000003",
        "resourceVersion": "7", "labels": {"app": "rich"}, **RICH_POD["metadata"]}, "spec": RICH_POD["spec"]}


def _cronjob() -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {
        "name": "nightly", "namespace": "default", "uid": "00000000-0000-0000-0000-000000000004",
        "resourceVersion": "9"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {
            "metadata": {"labels": {"job": "nightly"}, "annotations": {"team": "ops"}},
            "spec": {"backoffLimit": 0, "completions": 3, "parallelism": 2, "activeDeadlineSeconds": 600,
                     "ttlSecondsAfterFinished": 100, "completionMode": "Indexed", "suspend": False,
                     "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
                         "operator": "In", "values": [42]}}]},
                     "template": {"metadata": {"labels": {"app": "rich"}},
                                  "spec": {**RICH_POD["spec"], "restartPolicy": "OnFailure"}}}}}}


def make_scratch(folder: Path) -> None:
    (folder / "hello.txt").write_text("hello, world\n")
    (folder / "blob.bin").write_bytes(bytes(range(256)))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                    "-subj", "/CN=example.com", "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.crt")],
                   check=True, capture_output=True)


async def _kubectl(capture: Capture, name: str, extra: list[str], port: int, scratch: Path,
                   home: Path) -> tuple[int, bytes, bytes]:
    args = [a.replace("@scratch", str(scratch)) for a in COMMANDS[name]]
    flags = ["--server", f"http://127.0.0.1:{port}", *extra]
    at = args.index("--") if "--" in args else len(args)
    args[at:at] = flags
    capture.posts.clear()
    capture.log.clear()
    capture.minor = MINOR.get(name, "32")
    cmd = COMMANDS[name]
    capture.reply_name = REPLY_NAMES.get(name) or cmd[3 if cmd[1] in ("secret", "service") else 2]
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await proc.communicate()
    return proc.returncode or 0, stdout, stderr


async def run_all(names: list[str], out: Path) -> int:
    """For each name: NAME.pb (the POST body) and, where kubectl can print it, NAME.json (the same object from
    `--dry-run=client -o json`, i.e. kubectl's JSON form of it: the oracle the tests compare the decoding with)."""
    capture = Capture()
    runner = web.AppRunner(capture.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]   # type: ignore[union-attr]
    failures = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            scratch = Path(tmp) / "scratch"
            scratch.mkdir()
            make_scratch(scratch)
            for name in names:
                home = Path(tmp) / f"home-{name}"
                home.mkdir()
                rc, stdout, stderr = await _kubectl(capture, name, [], port, scratch, home)
                posts = list(capture.posts)
                if rc != 0 or len(posts) != 1:
                    failures += 1
                    print(f"FAIL {name}: rc={rc} posts={len(posts)}\n  {stdout.decode()}"
                          f"  {stderr.decode()}\n  " + "\n  ".join(capture.log), file=sys.stderr)
                    continue
                path, ctype, body = posts[0]
                if ctype != "application/vnd.kubernetes.protobuf":
                    failures += 1
                    print(f"FAIL {name}: {path} sent {ctype}, not protobuf", file=sys.stderr)
                    continue
                (out / f"{name}.pb").write_bytes(body)
                print(f"ok   {name}: {path} {ctype} {len(body)} bytes -> {stdout.decode().strip()}")
                json_file = out / f"{name}.json"
                json_file.unlink(missing_ok=True)
                rc, stdout, stderr = await _kubectl(capture, name, ["--dry-run=client", "-o", "json"], port,
                                                    scratch, home)
                try:
                    printed = json.loads(stdout) if rc == 0 and not capture.posts else None
                except ValueError:
                    printed = None
                if printed is None:
                    print(f"     {name}: no --dry-run=client -o json form ({stderr.decode().strip()[:80]})")
                else:
                    json_file.write_text(json.dumps(printed, indent=2) + "\n")
    finally:
        await runner.cleanup()
    return failures


def main(argv: list[str]) -> int:
    names = argv or list(COMMANDS)
    unknown = [n for n in names if n not in COMMANDS]
    if unknown:
        print(f"unknown fixture names: {unknown}", file=sys.stderr)
        return 2
    return 1 if asyncio.run(run_all(names, HERE)) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
