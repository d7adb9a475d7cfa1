"""ServiceAccount admission (plugin/pkg/admission/serviceaccount): every new pod runs as an existing ServiceAccount and,
unless it opts out, gets the projected API credentials volume the kubelet fills in.

- serviceAccountName defaults to `default`; the account must exist, or the pod is refused with
  `error looking up service account NS/NAME: serviceaccount "NAME" not found`. A miss in the watch cache is checked
  against the store; for `default` the check is retried for up to ~1.5 s (10 tries, 100-200 ms apart, as Kubernetes),
  because the serviceaccount controller creates it right after the namespace and a pod may race it.
- automountServiceAccountToken (the pod's, else the account's, else true): a volume `kube-api-access-<5 random>`
  projecting a bound token (path `token`, expirationSeconds 3607), the `kube-root-ca.crt` ConfigMap's `ca.crt` and
  the namespace (downward API), mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount in every init
  container and container that has nothing mounted there already.
- imagePullSecrets come from the account when the pod names none.
- mirror pods (kubelet static pods) are left alone, but may not name an account, secrets or token projections.
Only creates are admitted (updates cannot change these fields: validation makes them immutable).
"""
from __future__ import annotations

import asyncio
import random
from typing import Any

from ...api.resources import ResourceType
from . import forbidden, lookup

DEFAULT_SERVICE_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_EXPIRATION_SECONDS = 3607   # Kubernetes' WarnOnlyBoundTokenExpirationSeconds: 1 h + 7 s
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
DEFAULT_ATTEMPTS = 10
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"   # apiserver's SimpleNameGenerator alphabet


def token_volume_source() -> dict[str, Any]:
    """The projected source Kubernetes' TokenVolumeSource() builds (defaultMode explicit, as since 1.22)."""
    return {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}


class ServiceAccountAdmission:
    name = "ServiceAccount"

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    async def admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if old is not None or rt.group != "" or rt.resource != "pods":
            return
        spec = obj.get("spec")
        meta = obj.get("metadata") or {}
        if not isinstance(spec, dict):
            return
        name, namespace = meta.get("name") or "", meta.get("namespace") or ""
        if isinstance(meta.get("annotations"), dict) and MIRROR_ANNOTATION in meta["annotations"]:
            self._validate_mirror(rt, name, spec)
            return
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        if not isinstance(sa_name, str):
            return   # validation reports it
        spec["serviceAccountName"] = spec["serviceAccount"] = sa_name
        sa = await self._get(namespace, sa_name)
        if sa is None:
            raise forbidden(rt, name, f"error looking up service account {namespace}/{sa_name}: "
                                      f'serviceaccount "{sa_name}" not found')
        if _should_automount(sa, spec):
            _mount_token(spec)
        if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [{"name": s.get("name", "")} for s in sa["imagePullSecrets"]
                                        if isinstance(s, dict)]

    async def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        attempts = DEFAULT_ATTEMPTS if name == DEFAULT_SERVICE_ACCOUNT else 1
        interval = random.uniform(0.1, 0.2)
        for i in range(attempts):
            if i:
                await asyncio.sleep(interval)
            sa = await lookup(self.registry, "", "serviceaccounts", namespace, name)
            if sa is not None:
                return sa
        return None

    @staticmethod
    def _validate_mirror(rt: ResourceType, name: str, spec: dict[str, Any]) -> None:
        if spec.get("serviceAccountName") or spec.get("serviceAccount"):
            raise forbidden(rt, name, "a mirror pod may not reference service accounts")
        for v in spec.get("volumes") or []:
            if not isinstance(v, dict):
                continue
            if v.get("secret"):
                raise forbidden(rt, name, "a mirror pod may not reference secrets")
            for src in (v.get("projected") or {}).get("sources") or []:
                if isinstance(src, dict) and src.get("secret"):
                    raise forbidden(rt, name, "a mirror pod may not reference secrets")
                if isinstance(src, dict) and src.get("serviceAccountToken"):
                    raise forbidden(rt, name, "a mirror pod may not use ServiceAccountToken volume projections")
        for key in ("containers", "initContainers", "ephemeralContainers"):
            for c in spec.get(key) or []:
                for env in (c.get("env") or []) if isinstance(c, dict) else []:
                    if isinstance(env, dict) and ((env.get("valueFrom") or {}).get("secretKeyRef")):
                        raise forbidden(rt, name, "a mirror pod may not reference secrets")
                for src in (c.get("envFrom") or []) if isinstance(c, dict) else []:
                    if isinstance(src, dict) and src.get("secretRef"):
                        raise forbidden(rt, name, "a mirror pod may not reference secrets")
        if spec.get("imagePullSecrets"):
            raise forbidden(rt, name, "a mirror pod may not reference secrets")


def _should_automount(sa: dict[str, Any], spec: dict[str, Any]) -> bool:
    """The pod's preference wins, then the account's; true when neither says."""
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if sa.get("automountServiceAccountToken") is not None:
        return bool(sa["automountServiceAccountToken"])
    return True


def _mount_token(spec: dict[str, Any]) -> None:
    volumes = spec.get("volumes")
    if not isinstance(volumes, list):
        volumes = []
    existing = next((v.get("name") for v in volumes if isinstance(v, dict) and isinstance(v.get("name"), str)
                     and v["name"].startswith(VOLUME_PREFIX)), None)
    volume_name = existing or VOLUME_PREFIX + "".join(random.choice(_NAME_CHARS) for _ in range(5))
    needs_volume = False
    for key in ("initContainers", "containers"):
        containers = spec.get(key)
        if not isinstance(containers, list):
            continue
        for c in containers:
            if not isinstance(c, dict):
                continue
            mounts = c.get("volumeMounts")
            if not isinstance(mounts, list):
                mounts = []
            if any(isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH for m in mounts):
                continue
            mounts.append({"name": volume_name, "readOnly": True, "mountPath": MOUNT_PATH})
            c["volumeMounts"] = mounts
            needs_volume = True
    if needs_volume and existing is None:
        volumes.append({"name": volume_name, "projected": token_volume_source()})
        spec["volumes"] = volumes
