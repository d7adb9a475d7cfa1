"""HTTPS from the first run: a cluster CA, the API server's serving certificate and the admin's client certificate.

Made once with `cryptography` and kept in the data dir, so a restarted server keeps its identity and existing
kubeconfigs stay valid. The admin kubeconfig authenticates with a client certificate (O=system:masters), as
kubeadm's admin.conf does.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    if private:
        os.chmod(tmp, 0o600)
    tmp.replace(path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


class PKI:
    """The cluster's certificates under `<data-dir>/pki`."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "pki"
        self.ca_cert = self.dir / "ca.crt"
        self.ca_key = self.dir / "ca.key"
        self.server_cert = self.dir / "apiserver.crt"
        self.server_key = self.dir / "apiserver.key"
        self.admin_cert = self.dir / "admin.crt"
        self.admin_key = self.dir / "admin.key"
        self.tokens = self.dir / "tokens.csv"
        # The API server's identity towards kubelets (kubeadm's apiserver-kubelet-client.crt)
        self.kubelet_client_cert = self.dir / "apiserver-kubelet-client.crt"
        self.kubelet_client_key = self.dir / "apiserver-kubelet-client.key"

    def ensure(self, hosts: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.ca_cert.exists() and self.ca_key.exists()):
            key = _key()
            now = datetime.datetime.now(datetime.timezone.utc)
            cert = (x509.CertificateBuilder().subject_name(_name("kates-ca")).issuer_name(_name("kates-ca"))
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                    .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                 content_commitment=False, key_encipherment=False,
                                                 data_encipherment=False, key_agreement=False,
                                                 encipher_only=False, decipher_only=False), critical=True)
                    .sign(key, hashes.SHA256()))
            _write(self.ca_key, _pem_key(key), private=True)
            _write(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
            for stale in (self.server_cert, self.admin_cert, self.kubelet_client_cert):
                stale.unlink(missing_ok=True)
        if not self.server_cert.exists() or not self._covers(hosts):
            self._issue(self.server_cert, self.server_key, _name("kube-apiserver"), server_hosts=hosts)
        if not self.admin_cert.exists():
            self._issue(self.admin_cert, self.admin_key, _name("kubernetes-admin", "system:masters"))
        if not self.kubelet_client_cert.exists():
            self._issue(self.kubelet_client_cert, self.kubelet_client_key,
                        _name("kube-apiserver-kubelet-client", "system:masters"))
        if not self.tokens.exists():
            import secrets
            _write(self.tokens, f"{secrets.token_hex(24)},kubernetes-admin,admin,system:masters\n".encode(),
                   private=True)

    def ensure_kubelet_serving(self, node_name: str, hosts: list[str]) -> tuple[Path, Path]:
        """A serving certificate for a node's kubelet API, signed by the cluster CA (kept while it covers `hosts`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in node_name)
        cert, key = self.dir / f"kubelet-{safe}.crt", self.dir / f"kubelet-{safe}.key"
        names = list(dict.fromkeys([node_name, *hosts]))
        if not (cert.exists() and key.exists()) or not self._covers(names, cert):
            self._issue(cert, key, _name(f"system:node:{node_name}", "system:nodes"), server_hosts=names)
        return cert, key

    def kubelet_client_context(self) -> ssl.SSLContext:
        """TLS towards kubelets with the API server's kubelet client certificate. The kubelet's serving certificate
        is not verified, as kube-apiserver without --kubelet-certificate-authority does."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(self.kubelet_client_cert, self.kubelet_client_key)
        return ctx

    def load_tokens(self) -> dict[str, str]:
        """Static bearer tokens (Kubernetes' --token-auth-file format: token,user,uid,"groups")."""
        out = {}
        for line in self.tokens.read_text().splitlines():
            parts = line.split(",")
            if len(parts) >= 2 and parts[0]:
                out[parts[0]] = parts[1]
        return out

    def _covers(self, hosts: list[str], path: Path | None = None) -> bool:
        cert = x509.load_pem_x509_certificate((path or self.server_cert).read_bytes())
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        have = {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))
        return set(hosts) <= have

    def _issue(self, cert_path: Path, key_path: Path, subject: x509.Name, server_hosts: list[str] | None = None,
               ) -> None:
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if server_hosts is not None:
            names: list[x509.GeneralName] = []
            for h in server_hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    names.append(x509.DNSName(h))
            builder = (builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        _write(key_path, _pem_key(key), private=True)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))

    def server_context(self) -> ssl.SSLContext:
        # Client certificates count only when the cluster CA signed them (a default context trusts public CAs too).
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        ctx.load_verify_locations(self.ca_cert)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def write_kubeconfig(self, path: Path, server: str, cluster: str = "kates") -> None:
        import base64
        b64 = lambda p: base64.b64encode(p.read_bytes()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": cluster, "cluster": {"server": server,
                                                       "certificate-authority-data": b64(self.ca_cert)}}],
            "users": [{"name": "admin", "user": {"client-certificate-data": b64(self.admin_cert),
                                                 "client-key-data": b64(self.admin_key)}}],
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "admin"}}],
            "current-context": cluster,
        }
        _write(path, yaml.safe_dump(config, sort_keys=False).encode(), private=True)


def default_hosts(bind: str) -> list[str]:
    hosts = ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", socket.gethostname()]
    if bind not in ("0.0.0.0", "::", "") and bind not in hosts:
        hosts.append(bind)
    return hosts
