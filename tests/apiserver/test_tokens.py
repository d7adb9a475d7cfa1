"""ServiceAccount tokens: `kubectl create token` (the TokenRequest subresource) issues a signed JWT with Kubernetes'
claims, and the API server accepts it as the ServiceAccount for as long as the account and the object it is bound
to exist; expired, foreign, wrong-audience and orphaned tokens get 401."""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness import Kubectl, Server

ISSUER = "https://kubernetes.default.svc.cluster.local"


@pytest.fixture(scope="module")
def tok_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("tokens"), store="memory://",
               extra=["--controllers", "serviceaccount", "--disable-scheduler", "--disable-agent"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tk(tok_server: Server) -> Kubectl:
    return Kubectl(tok_server.kubeconfig)


@pytest.fixture
def tns(tk: Kubectl) -> Iterator[str]:
    name = "tok-" + uuid.uuid4().hex[:8]
    tk.run("create", "namespace", name)
    deadline = time.monotonic() + 10   # the serviceaccount controller makes `default` right after the namespace
    while tk.run("get", "sa", "default", "-n", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, "no default ServiceAccount"
        time.sleep(0.1)
    yield name
    tk.run("delete", "namespace", name, "--wait=false", check=False)


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def as_token(server: Server, token: str, tmp: Path) -> Kubectl:
    """kubectl with a kubeconfig that has only the cluster CA and the bearer token (no client certificate)."""
    config = yaml.safe_load(server.kubeconfig.read_text())
    config["users"] = [{"name": "sa", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "sa"
    path = tmp / f"kubeconfig-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(config))
    return Kubectl(path)


def allowed(k: Kubectl, ns: str) -> bool:
    out = k.run("get", "configmaps", "-n", ns, check=False)
    if out.returncode == 0:
        return True
    assert "You must be logged in to the server" in out.stderr, out.stderr   # a 401
    return False


def test_create_token_issues_kubernetes_claims_that_authenticate(tok_server: Server, tk: Kubectl, tns: str,
                                                                 tmp_path: Path) -> None:
    token = tk.run("create", "token", "default", "-n", tns).stdout.strip()
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"]
    c = claims(token)
    sa = tk.json("get", "sa", "default", "-n", tns)
    assert c["iss"] == ISSUER and c["aud"] == [ISSUER]
    assert c["sub"] == f"system:serviceaccount:{tns}:default"
    assert c["exp"] - c["iat"] == 3600 and c["nbf"] == c["iat"] and abs(c["iat"] - time.time()) < 30
    assert c["kubernetes.io"] == {"namespace": tns,
                                  "serviceaccount": {"name": "default", "uid": sa["metadata"]["uid"]}}
    # signed with the key kept under the data dir (private, made on first start)
    key_path = tok_server.data_dir / "pki" / "sa.key"
    assert oct(os.stat(key_path).st_mode & 0o777) == "0o600"
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    jwt.decode(token, key.public_key(), algorithms=["ES256"], audience=ISSUER)   # type: ignore[arg-type]
    user = as_token(tok_server, token, tmp_path)
    assert allowed(user, tns)
    assert user.run("create", "configmap", "made-by-sa", "-n", tns).returncode == 0
    # deleting the ServiceAccount revokes its tokens; a new one of the same name has another uid
    tk.run("delete", "sa", "default", "-n", tns)
    assert not allowed(user, tns)


def test_audiences_duration_and_errors(tok_server: Server, tk: Kubectl, tns: str, tmp_path: Path) -> None:
    token = tk.run("create", "token", "default", "-n", tns, "--audience", "vault", "--audience", "other",
                   "--duration", "20m").stdout.strip()
    c = claims(token)
    assert c["aud"] == ["vault", "other"] and c["exp"] - c["iat"] == 1200
    assert not allowed(as_token(tok_server, token, tmp_path), tns), "a token for other audiences is not for the API"
    out = tk.run("create", "token", "default", "-n", tns, "--duration", "5m", check=False)
    assert out.returncode != 0 and ('TokenRequest.authentication.k8s.io "default" is invalid: spec.expirationSeconds: '
                                    "Invalid value: 300: may not specify a duration less than 10 minutes"
                                    ) in out.stderr
    out = tk.run("create", "token", "nobody", "-n", tns, check=False)
    assert out.returncode != 0 and 'serviceaccounts "nobody" not found' in out.stderr


def test_token_bound_to_a_pod_dies_with_the_pod(tok_server: Server, tk: Kubectl, tns: str, tmp_path: Path) -> None:
    tk.run("create", "-n", tns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    pod_uid = tk.json("get", "pod", "p", "-n", tns)["metadata"]["uid"]
    token = tk.run("create", "token", "default", "-n", tns, "--bound-object-kind", "Pod",
                   "--bound-object-name", "p").stdout.strip()
    assert claims(token)["kubernetes.io"]["pod"] == {"name": "p", "uid": pod_uid}
    # the kubelet's projected-volume request (3607 s, bound to the pod) is extended to a year, with warnafter
    long = claims(tk.run("create", "token", "default", "-n", tns, "--bound-object-kind", "Pod",
                         "--bound-object-name", "p", "--duration", "3607s").stdout.strip())
    assert long["exp"] - long["iat"] == 365 * 24 * 3600 and long["kubernetes.io"]["warnafter"] == long["iat"] + 3607
    user = as_token(tok_server, token, tmp_path)
    assert allowed(user, tns)
    tk.run("delete", "pod", "p", "-n", tns, "--grace-period=0", "--force")
    assert not allowed(user, tns)
    out = tk.run("create", "token", "default", "-n", tns, "--bound-object-kind", "Pod", "--bound-object-name", "p",
                 check=False)
    assert out.returncode != 0 and 'pods "p" not found' in out.stderr


def test_expired_and_foreign_tokens_are_refused(tok_server: Server, tk: Kubectl, tns: str, tmp_path: Path) -> None:
    sa = tk.json("get", "sa", "default", "-n", tns)
    key = serialization.load_pem_private_key((tok_server.data_dir / "pki" / "sa.key").read_bytes(), None)
    now = int(time.time())
    base = {"iss": ISSUER, "aud": [ISSUER], "sub": f"system:serviceaccount:{tns}:default", "iat": now - 7200,
            "nbf": now - 7200, "exp": now + 600,
            "kubernetes.io": {"namespace": tns, "serviceaccount": {"name": "default", "uid": sa["metadata"]["uid"]}}}
    good = jwt.encode(base, key, algorithm="ES256")   # type: ignore[arg-type]
    assert allowed(as_token(tok_server, good, tmp_path), tns)
    expired = jwt.encode({**base, "exp": now - 1}, key, algorithm="ES256")   # type: ignore[arg-type]
    assert not allowed(as_token(tok_server, expired, tmp_path), tns)
    foreign = jwt.encode(base, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    assert not allowed(as_token(tok_server, foreign, tmp_path), tns)
    wrong_issuer = jwt.encode({**base, "iss": "https://elsewhere"}, key, algorithm="ES256")   # type: ignore[arg-type]
    assert not allowed(as_token(tok_server, wrong_issuer, tmp_path), tns)
    other_uid = jwt.encode({**base, "kubernetes.io": {"namespace": tns, "serviceaccount": {
        "name": "default", "uid": str(uuid.uuid4())}}}, key, algorithm="ES256")   # type: ignore[arg-type]
    assert not allowed(as_token(tok_server, other_uid, tmp_path), tns)
