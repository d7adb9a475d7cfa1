"""Which resources the API serves: group, version, plural, kind, scope, short names, verbs, subresources.

This table drives routing, discovery (aggregated and legacy), OpenAPI and the store's key layout. Custom
resources add `ResourceType`s at run time (see `kates/apiserver/crds.py`).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclasses.dataclass(frozen=True)
class Subresource:
    name: str
    kind: str                      # response kind, e.g. "Scale"
    group: str = ""                # response group ("autoscaling" for scale)
    version: str = "v1"
    verbs: tuple[str, ...] = SUBRESOURCE_VERBS


@dataclasses.dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    resource: str                  # plural, as in URLs
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[Subresource, ...] = ()
    definition: str | None = None  # OpenAPI definition name (built-ins); None for custom resources

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `pods`: how Kubernetes names a resource in messages."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def subresource(self, name: str) -> Subresource | None:
        return next((s for s in self.subresources if s.name == name), None)

    def has_status(self) -> bool:
        return self.subresource("status") is not None


def _status(kind: str, group: str = "", version: str = "v1") -> Subresource:
    return Subresource("status", kind, group, version)


_SCALE = Subresource("scale", "Scale", "autoscaling", "v1")
_ALL = ("all",)


def _r(group: str, version: str, resource: str, kind: str, namespaced: bool = True, *,
       short: tuple[str, ...] = (), cats: tuple[str, ...] = (), verbs: tuple[str, ...] = ALL_VERBS,
       sub: tuple[Subresource, ...] = (), status: bool = False, scale: bool = False,
       definition: str | None = None) -> ResourceType:
    subs = list(sub)
    if status:
        subs.insert(0, _status(kind, group, version))
    if scale:
        subs.append(_SCALE)
    if definition is None:
        package = {"": "core", "apps": "apps", "batch": "batch", "networking.k8s.io": "networking",
                   "discovery.k8s.io": "discovery", "coordination.k8s.io": "coordination",
                   "rbac.authorization.k8s.io": "rbac", "storage.k8s.io": "storage", "policy": "policy",
                   "autoscaling": "autoscaling", "events.k8s.io": "events", "scheduling.k8s.io": "scheduling",
                   "apiextensions.k8s.io": None, "metrics.k8s.io": None}[group]
        if package is not None:
            definition = f"io.k8s.api.{package}.{version}.{kind}"
    return ResourceType(group, version, resource, kind, namespaced, short, cats, verbs, tuple(subs), definition)


_POD_SUBS = (
    Subresource("binding", "Binding", verbs=("create",)),
    Subresource("eviction", "Eviction", "policy", "v1", verbs=("create",)),
    Subresource("ephemeralcontainers", "Pod"),
    Subresource("log", "Pod", verbs=("get",)),
    Subresource("exec", "PodExecOptions", verbs=("create", "get")),
    Subresource("attach", "PodAttachOptions", verbs=("create", "get")),
    Subresource("portforward", "PodPortForwardOptions", verbs=("create", "get")),
    Subresource("proxy", "PodProxyOptions", verbs=("create", "delete", "get", "patch", "update")),
)

BUILTIN: tuple[ResourceType, ...] = (
    # core/v1
    _r("", "v1", "namespaces", "Namespace", False, short=("ns",),
       verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
       status=True, sub=(Subresource("finalize", "Namespace", verbs=("update",)),)),
    _r("", "v1", "pods", "Pod", short=("po",), cats=_ALL, status=True, sub=_POD_SUBS),
    _r("", "v1", "services", "Service", short=("svc",), cats=_ALL,
       verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"), status=True,
       sub=(Subresource("proxy", "ServiceProxyOptions", verbs=("create", "delete", "get", "patch", "update")),)),
    _r("", "v1", "endpoints", "Endpoints", short=("ep",)),
    _r("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    _r("", "v1", "secrets", "Secret"),
    _r("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",),
       sub=(Subresource("token", "TokenRequest", "authentication.k8s.io", verbs=("create",)),)),
    _r("", "v1", "nodes", "Node", False, short=("no",), status=True,
       sub=(Subresource("proxy", "NodeProxyOptions", verbs=("create", "delete", "get", "patch", "update")),)),
    _r("", "v1", "events", "Event", short=("ev",)),
    _r("", "v1", "persistentvolumes", "PersistentVolume", False, short=("pv",), status=True),
    _r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), status=True),
    _r("", "v1", "replicationcontrollers", "ReplicationController", short=("rc",), cats=_ALL,
       status=True, scale=True),
    _r("", "v1", "resourcequotas", "ResourceQuota", short=("quota",), status=True),
    _r("", "v1", "limitranges", "LimitRange", short=("limits",)),
    _r("", "v1", "podtemplates", "PodTemplate"),
    _r("", "v1", "bindings", "Binding", verbs=("create",)),
    # apps/v1
    _r("apps", "v1", "deployments", "Deployment", short=("deploy",), cats=_ALL, status=True, scale=True),
    _r("apps", "v1", "replicasets", "ReplicaSet", short=("rs",), cats=_ALL, status=True, scale=True),
    _r("apps", "v1", "statefulsets", "StatefulSet", short=("sts",), cats=_ALL, status=True, scale=True),
    _r("apps", "v1", "daemonsets", "DaemonSet", short=("ds",), cats=_ALL, status=True),
    _r("apps", "v1", "controllerrevisions", "ControllerRevision"),
    # batch/v1
    _r("batch", "v1", "jobs", "Job", cats=_ALL, status=True),
    _r("batch", "v1", "cronjobs", "CronJob", short=("cj",), cats=_ALL, status=True),
    # autoscaling
    _r("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", short=("hpa",), cats=_ALL,
       status=True),
    # networking.k8s.io/v1
    _r("networking.k8s.io", "v1", "ingresses", "Ingress", short=("ing",), status=True),
    _r("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    _r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=("netpol",)),
    # discovery.k8s.io/v1
    _r("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    # coordination.k8s.io/v1
    _r("coordination.k8s.io", "v1", "leases", "Lease"),
    # rbac.authorization.k8s.io/v1
    _r("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    # storage.k8s.io/v1
    _r("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, short=("sc",)),
    # policy/v1
    _r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), status=True),
    # scheduling.k8s.io/v1
    _r("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, short=("pc",)),
    # events.k8s.io/v1
    _r("events.k8s.io", "v1", "events", "Event", short=("ev",)),
    # apiextensions.k8s.io/v1
    _r("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
       short=("crd", "crds"), status=True,
       definition="io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"),
)

def storage_prefix(rt: ResourceType) -> str:
    """The store key prefix of a resource type: `/registry/<group>/<resource>/`."""
    return f"/registry/{rt.group or 'core'}/{rt.resource}/"


def object_key(rt: ResourceType, namespace: str | None, name: str) -> str:
    prefix = storage_prefix(rt)
    return f"{prefix}{namespace}/{name}" if rt.namespaced else f"{prefix}{name}"


def by_group_version(types: Iterable[ResourceType]) -> dict[str, list[ResourceType]]:
    out: dict[str, list[ResourceType]] = {}
    for rt in types:
        out.setdefault(rt.group_version, []).append(rt)
    return out
