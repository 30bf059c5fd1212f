"""A throw-away PKI for TLS tests, made with `cryptography`: a test CA, a server certificate for
127.0.0.1/localhost, client certificates (CN = the MQTT identity), and a second, untrusted CA to
prove a certificate from elsewhere is refused. Plus the Mosquitto listener blocks that use them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert_path: Path
    key_path: Path

    @property
    def cert_pem(self) -> str:
        return self.cert_path.read_text()

    @property
    def key_pem(self) -> str:
        return self.key_path.read_text()


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "c2c-sync tests"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return Issued(cert_path, key_path)


class TestCA:
    """A CA that signs server and client certificates into `directory`."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "c2c-sync test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = name.replace(" ", "-")
        self.issued = _write(directory, stem, self.cert, self.key)

    @property
    def cert_path(self) -> Path:
        return self.issued.cert_path

    @property
    def cert_pem(self) -> str:
        return self.issued.cert_pem

    def _issue(self, cn: str, stem: str, *, server: bool, ip_addresses: tuple[str, ...] = ()) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        *(x509.IPAddress(IPv4Address(ip)) for ip in ("127.0.0.1", *ip_addresses)),
                    ]
                ),
                critical=False,
            )
        return _write(self.directory, stem, builder.sign(self.key, hashes.SHA256()), key)

    def server_certificate(self, stem: str = "server", *, ip_addresses: tuple[str, ...] = ()) -> Issued:
        """A server certificate for localhost, 127.0.0.1 and `ip_addresses` (e.g. a namespace's address)."""
        return self._issue("localhost", stem, server=True, ip_addresses=ip_addresses)

    def client_certificate(self, common_name: str) -> Issued:
        return self._issue(common_name, f"client-{common_name}", server=False)


def tls_listener(port: int, ca: TestCA, server: Issued, *, require_certificate: bool) -> str:
    """A Mosquitto `listener` block: TLS with the test CA; with `require_certificate`, mTLS whose
    certificate CN becomes the username (as AWS IoT Core binds a connection to its certificate)."""
    lines = [
        f"listener {port} 127.0.0.1",
        f"cafile {ca.cert_path}",
        f"certfile {server.cert_path}",
        f"keyfile {server.key_path}",
        "tls_version tlsv1.2",
    ]
    if require_certificate:
        lines += ["require_certificate true", "use_identity_as_username true"]
    return "\n".join(lines) + "\n"
