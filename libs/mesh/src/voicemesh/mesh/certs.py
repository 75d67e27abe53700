"""Certificates for the mesh's internal mTLS: one private CA, one certificate per identity.

An identity is a service name (`stt`, `media-edge`, ...) or the operator's `cli`. Each
certificate carries it as its common name (what a server reads to authorize the caller)
and as the DNS name `<identity>.voicemesh.internal` (what a client checks the server
against, whatever address it dialled). Keys are ECDSA P-256.

`issue` is pure (the time comes in); `write_mesh_tls` lays the result out the way a
Kubernetes TLS Secret mounts (`ca.crt`, `tls.crt`, `tls.key` in one directory per identity),
private to its owner. The CA's own key is never written: the local mesh issues a fresh set
at every start, so nothing can mint another identity afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DOMAIN = "voicemesh.internal"
CA_NAME = "voicemesh mesh CA"
CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "tls.crt", "tls.key"
# Clocks of the machines in a mesh may differ a little: certificates start this early.
BACKDATE = dt.timedelta(minutes=5)


def server_name(identity: str) -> str:
    """The DNS name an identity's certificate holds and a client expects of that peer."""
    return f"{identity}.{DOMAIN}"


@dataclass(frozen=True)
class Issued:
    """One identity's PEM files."""

    identity: str
    ca: bytes
    cert: bytes
    key: bytes


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue(identities: Iterable[str], now: dt.datetime, valid_for: dt.timedelta) -> list[Issued]:
    """A new CA and a certificate for each identity, valid from `now` (less BACKDATE) for
    `valid_for`."""
    names = list(identities)
    bad = [n for n in names if not n or not all(c.isalnum() or c == "-" for c in n)]
    if bad:
        raise ValueError(f"identities must be letters, digits and '-': {bad}")
    start, end = now - BACKDATE, now + valid_for
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(CA_NAME))
        .issuer_name(_name(CA_NAME))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    out = []
    for identity in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(identity))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name(identity))]), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        out.append(Issued(identity, ca_pem, cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)))
    return out


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT


def write_mesh_tls(
    root: Path, identities: Iterable[str], now: dt.datetime, valid_for: dt.timedelta = dt.timedelta(days=30)
) -> dict[str, Path]:
    """Issue a fresh set into `root/<identity>/` (0700 directories, 0600 files); returns
    each identity's directory (what VOICEMESH_MESH_TLS_DIR names)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    dirs = {}
    for issued in issue(identities, now, valid_for):
        d = root / issued.identity
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)
        _write_private(d / CA_FILE, issued.ca)
        _write_private(d / CERT_FILE, issued.cert)
        _write_private(d / KEY_FILE, issued.key)
        dirs[issued.identity] = d
    return dirs
