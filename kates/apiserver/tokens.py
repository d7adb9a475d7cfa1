"""ServiceAccount tokens: the TokenRequest subresource that issues them and the authenticator that accepts them.

As Kubernetes' (pkg/serviceaccount, pkg/registry/core/serviceaccount/storage/token.go):
- `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token` with an authentication.k8s.io/v1 TokenRequest (audiences,
  expirationSeconds >= 600, default 3600, optional boundObjectRef to a Pod, Secret or Node of that namespace) returns
  it with status.token, a JWT signed ES256 with the key kept in `<data-dir>/pki/sa.key` (made on first start), and
  status.expirationTimestamp. Claims: iss https://kubernetes.default.svc.cluster.local, sub
  system:serviceaccount:NS:NAME, aud, exp, iat, nbf, jti, and `kubernetes.io` {namespace, serviceaccount {name, uid},
  pod|secret|node {name, uid}}. `kubectl create token SA` is this request.
- Tokens bound to a pod asking for the kubelet's 3607 s (the projected volume's default) are extended to a year with a
  `warnafter` claim, as kube-apiserver's --service-account-extend-token-expiration (on by default), so a kubelet that
  falls behind on refreshing does not break workloads.
- A bearer token that verifies (signature, issuer, one of the API audiences, exp/nbf) and whose ServiceAccount and bound
  object still exist with the same uid (a bound pod also not past its deletion time) authenticates as
  `system:serviceaccount:NS:NAME`, groups system:serviceaccounts, system:serviceaccounts:NS, system:authenticated.
  Authorization stays allow-all for every authenticated user: kates has no RBAC enforcement yet.
The lookups read the watch cache, as Kubernetes' validator reads its informers.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..api import errors
from ..api.resources import object_key, storage_prefix

log = logging.getLogger(__name__)

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
WARN_ONLY_EXPIRATION = 3607            # what the kubelet asks for projected tokens
EXTENDED_EXPIRATION = 365 * 24 * 3600   # kube-apiserver's ExpirationExtensionSeconds
ALGORITHM = "ES256"
BINDABLE = {"Pod": ("", "pods", True), "Secret": ("", "secrets", True), "Node": ("", "nodes", False)}


@dataclasses.dataclass
class UserInfo:
    username: str
    uid: str = ""
    groups: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, list[str]] = dataclasses.field(default_factory=dict)


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The signing key: kept across restarts so issued tokens stay valid; created (P-256, mode 0600) if missing."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: the service account signing key must be an EC P-256 key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return key


def _rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_rfc3339(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None


class ServiceAccountTokens:
    """Issues and verifies ServiceAccount JWTs for one API server (`registry` gives the objects tokens bind to)."""

    def __init__(self, registry: Any, key: ec.EllipticCurvePrivateKey, *, issuer: str = ISSUER,
                 audiences: list[str] | None = None, extend_expiration: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.key = key
        self.public_key = key.public_key()
        self.issuer = issuer
        self.audiences = audiences or [issuer]
        self.extend_expiration = extend_expiration
        self.clock = clock
        pub = self.public_key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
        # the key id Kubernetes derives from the public key: base64url(sha256(DER public key))
        self.key_id = base64.urlsafe_b64encode(hashlib.sha256(pub).digest()).decode().rstrip("=")

    # -- lookups ------------------------------------------------------------------------------------------------
    def _cached(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        rt = self.registry.catalog.lookup("", "v1", resource)
        if rt is None:
            return None
        return self.registry.cache.cache(storage_prefix(rt)).objects.get(object_key(rt, namespace, name))

    async def _live(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        rt = self.registry.catalog.lookup("", "v1", resource)
        if rt is None:
            return None
        try:
            return await self.registry.get(rt, namespace, name)
        except errors.NotFound:
            return None

    # -- TokenRequest -------------------------------------------------------------------------------------------
    async def token_request(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Validate a TokenRequest for ServiceAccount NS/NAME, issue the token, return the TokenRequest to send."""
        kind = body.get("kind")
        if kind not in (None, "", "TokenRequest"):
            raise errors.BadRequest(f"the kind of the body ({kind}) does not match TokenRequest")
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        sa = await self._live("serviceaccounts", namespace, name)
        if sa is None:
            raise errors.NotFound.of("serviceaccounts", name)
        audiences = spec.get("audiences") or list(self.audiences)
        if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
            raise _invalid(name, "spec.audiences", audiences, "audiences must be a list of non-empty strings")
        expiration = spec.get("expirationSeconds")
        if expiration is None:
            expiration = DEFAULT_EXPIRATION
        if not isinstance(expiration, int) or isinstance(expiration, bool):
            raise _invalid(name, "spec.expirationSeconds", expiration, "must be an integer")
        if expiration < MIN_EXPIRATION:
            raise _invalid(name, "spec.expirationSeconds", expiration,
                           "may not specify a duration less than 10 minutes")
        if expiration > MAX_EXPIRATION:
            raise _invalid(name, "spec.expirationSeconds", expiration,
                           "may not specify a duration larger than 2^32 seconds")
        bound: dict[str, Any] | None = None
        claims_private: dict[str, Any] = {"namespace": namespace,
                                          "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}}
        ref = spec.get("boundObjectRef")
        if ref:
            if not isinstance(ref, dict):
                raise errors.BadRequest("spec.boundObjectRef must be an object")
            ref_kind, ref_name = ref.get("kind"), ref.get("name")
            if ref_kind not in BINDABLE:
                raise errors.BadRequest(f'cannot bind token for serviceaccount "{name}" to object of type '
                                        f"{ref_kind}")
            if ref.get("apiVersion", "v1") != "v1":
                raise errors.BadRequest(f"cannot bind token to object of apiVersion {ref.get('apiVersion')}")
            if not ref_name:
                raise _invalid(name, "spec.boundObjectRef.name", ref_name, "name is required")
            _, resource, namespaced = BINDABLE[ref_kind]
            bound = await self._live(resource, namespace if namespaced else None, ref_name)
            if bound is None:
                raise errors.NotFound.of(resource, ref_name)
            uid = bound["metadata"]["uid"]
            if ref.get("uid") and ref["uid"] != uid:
                raise errors.Conflict(f"the UID in the bound object reference ({ref['uid']}) does not match the UID "
                                      f"in record. The object might have been deleted and then recreated")
            ref = {"kind": ref_kind, "apiVersion": "v1", "name": ref_name, "uid": uid}
            claims_private[ref_kind.lower()] = {"name": ref_name, "uid": uid}
            if ref_kind == "Pod":
                node_name = (bound.get("spec") or {}).get("nodeName")
                node = self._cached("nodes", None, node_name) if node_name else None
                if node is not None:   # 1.30+: the node the pod runs on is in the token too
                    claims_private["node"] = {"name": node_name, "uid": node["metadata"]["uid"]}
        now = int(self.clock())
        lifetime = expiration
        if self.extend_expiration and bound is not None and ref and ref["kind"] == "Pod" \
                and expiration == WARN_ONLY_EXPIRATION:
            lifetime = EXTENDED_EXPIRATION
            claims_private["warnafter"] = now + expiration
        claims = {"aud": audiences, "exp": now + lifetime, "iat": now, "nbf": now, "iss": self.issuer,
                  "jti": str(uuid.uuid4()), "kubernetes.io": claims_private,
                  "sub": f"system:serviceaccount:{namespace}:{name}"}
        token = jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.key_id})
        out_spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": expiration}
        if ref:
            out_spec["boundObjectRef"] = ref
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": namespace, "creationTimestamp": _rfc3339(now)},
                "spec": out_spec,
                "status": {"token": token, "expirationTimestamp": _rfc3339(now + lifetime)}}

    # -- authentication -----------------------------------------------------------------------------------------
    def authenticate(self, token: str) -> UserInfo | None:
        """The user a ServiceAccount JWT stands for, or None if it is not one of ours or no longer valid."""
        if token.count(".") != 2:
            return None
        try:
            claims = jwt.decode(token, self.public_key, algorithms=[ALGORITHM], audience=self.audiences,
                                issuer=self.issuer, leeway=0,
                                options={"require": ["exp", "iss", "sub"]})
        except jwt.PyJWTError as e:
            log.debug("service account token rejected: %s", e)
            return None
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            return None
        namespace = private.get("namespace")
        sa_ref = private.get("serviceaccount") or {}
        if not namespace or not isinstance(sa_ref, dict) or \
                claims.get("sub") != f"system:serviceaccount:{namespace}:{sa_ref.get('name')}":
            return None
        sa = self._cached("serviceaccounts", namespace, sa_ref.get("name") or "")
        if sa is None or sa["metadata"].get("uid") != sa_ref.get("uid") or sa["metadata"].get("deletionTimestamp"):
            log.debug("service account token for %s/%s: the account is gone", namespace, sa_ref.get("name"))
            return None
        extra: dict[str, list[str]] = {}
        now = self.clock()
        for kind, (_, resource, namespaced) in BINDABLE.items():
            ref = private.get(kind.lower())
            if not isinstance(ref, dict) or (kind == "Node" and "pod" in private):
                continue   # a pod-bound token names its node as information only
            obj = self._cached(resource, namespace if namespaced else None, ref.get("name") or "")
            if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
                log.debug("service account token bound to %s %s: the object is gone", kind, ref.get("name"))
                return None
            deleting = _parse_rfc3339(obj["metadata"].get("deletionTimestamp"))
            if deleting is not None and (kind != "Pod" or deleting <= now):
                return None
            key = f"authentication.kubernetes.io/{kind.lower()}"
            extra[key + "-name"], extra[key + "-uid"] = [ref["name"]], [ref["uid"]]
        if isinstance(private.get("node"), dict) and "pod" in private:
            extra["authentication.kubernetes.io/node-name"] = [private["node"].get("name", "")]
            extra["authentication.kubernetes.io/node-uid"] = [private["node"].get("uid", "")]
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = [f"JTI={claims['jti']}"]
        return UserInfo(username=claims["sub"], uid=sa_ref.get("uid", ""),
                        groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                "system:authenticated"], extra=extra)


def _invalid(name: str, field: str, value: Any, detail: str) -> errors.APIError:
    shown = f'"{value}"' if isinstance(value, str) else value
    return errors.Invalid("TokenRequest", name, [errors.cause(field, f"Invalid value: {shown}: {detail}",
                                                              "FieldValueInvalid")], "authentication.k8s.io")
