"""Certificates made at test time: a CA, server and client certificates, a second
unrelated CA, and the broken ones (expired, wrong host, mismatched key)."""

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PASSWORD = "correct horse"
_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Everything the TLS tests need, written under one folder."""

    ca: Path
    other_ca: Path
    server: Pair
    client: Pair
    other_server: Pair
    """Issued by the other CA."""
    expired_server: Pair
    wrong_host_server: Pair
    """Names only pacs.example.org."""
    encrypted_client_key: Path
    stray_key: Path
    """A key that matches no certificate."""

    def server_context(self, pair: Pair | None = None) -> ssl.SSLContext:
        """A server context that requires a client certificate from our CA."""
        pair = pair or self.server
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pair.cert, pair.key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(self.ca)
        return context


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dicom-send tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


@dataclass
class _Issuer:
    name: x509.Name
    key: rsa.RSAPrivateKey


def _ca(common: str, path: Path) -> _Issuer:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 30 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return _Issuer(cert.subject, key)


def _leaf(
    issuer: _Issuer,
    common: str,
    folder: Path,
    stem: str,
    *,
    client: bool = False,
    names: tuple[str, ...] = ("localhost", "127.0.0.1"),
    expired: bool = False,
) -> Pair:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    start, end = (
        (now - 60 * _DAY, now - 30 * _DAY) if expired else (now - _DAY, now + 30 * _DAY)
    )
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    usage = (
        ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )
    pair = Pair(folder / f"{stem}.crt", folder / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
    return pair


def _write_key(key: rsa.RSAPrivateKey, path: Path, password: str | None = None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            encryption,
        )
    )
    path.chmod(0o600)


def make_pki(folder: Path) -> Pki:
    """Write a test PKI into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca("dicom-send test CA", folder / "ca.crt")
    other = _ca("unrelated CA", folder / "other-ca.crt")
    client = _leaf(ca, "dicom-send client", folder, "client", client=True)
    encrypted = folder / "client-encrypted.key"
    key = serialization.load_pem_private_key(client.key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    _write_key(key, encrypted, PASSWORD)
    stray = folder / "stray.key"
    _write_key(_key(), stray)
    return Pki(
        ca=folder / "ca.crt",
        other_ca=folder / "other-ca.crt",
        server=_leaf(ca, "localhost", folder, "server"),
        client=client,
        other_server=_leaf(other, "localhost", folder, "other-server"),
        expired_server=_leaf(ca, "localhost", folder, "expired", expired=True),
        wrong_host_server=_leaf(
            ca, "pacs.example.org", folder, "wrong-host", names=("pacs.example.org",)
        ),
        encrypted_client_key=encrypted,
        stray_key=stray,
    )
