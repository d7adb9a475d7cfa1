"""Only the cluster CA vouches for client certificates: a certificate another CA signed, claiming system:masters,
is no identity (the TLS handshake refuses it, or the request is unauthenticated)."""
from __future__ import annotations

import datetime
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import Server


def _ca_and_client(directory: Path) -> tuple[Path, Path, Path]:
    """A foreign CA and a client certificate it signed claiming system:masters."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-the-cluster-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "intruder")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "foreign-ca.crt", directory / "intruder.crt", directory / "intruder.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def foreign_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, Path]]:
    d = tmp_path_factory.mktemp("certs")
    _, cert, key = _ca_and_client(d)
    s = Server(d / "server", extra=["--disable-controllers", "--disable-scheduler"])
    s.start()
    yield s, cert, key
    s.stop()


def _get(url: str, ca: Path, cert: Path, key: Path) -> int:
    """The HTTP status, or 0 when the TLS handshake refused the client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError, ssl.SSLError):
        return 0


def test_api_server_ignores_certificates_of_other_cas(foreign_client: tuple[Server, Path, Path]) -> None:
    s, cert, key = foreign_client
    pki = s.data_dir / "pki"
    url = f"https://127.0.0.1:{s.port}/api/v1/namespaces"
    assert _get(url, pki / "ca.crt", pki / "admin.crt", pki / "admin.key") == 200
    assert _get(url, pki / "ca.crt", cert, key) in (0, 401)
